"""The plugin installs and imports from its declared dependencies alone: no torch, no server."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "livekit_plugins_orpheus"

CHECK = """
import importlib.util, sys
from livekit.plugins import orpheus
from livekit.agents import tts
t = orpheus.TTS(base_url="127.0.0.1:1")
assert isinstance(t, tts.TTS) and t.capabilities.streaming
assert t.sample_rate == 24000 and t.num_channels == 1
for forbidden in ("torch", "inference_server", "transformers", "snac"):
    assert importlib.util.find_spec(forbidden) is None, forbidden + " is importable"
    assert forbidden not in sys.modules, forbidden
print("ok", orpheus.__version__)
"""


def test_plugin_installs_alone(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # run from an empty directory so the repo's own packages are not on sys.path
    check = subprocess.run(
        [str(python), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok 0.1.0")
    assert sys.prefix != str(env_dir)
