"""The agent tests' tiny-random node, and import paths for `agent` and the scripted models."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `import agent`
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import scripted_models`


@pytest.fixture(scope="package")
def inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One tiny-random node for every agent test module: a node start costs more than a test."""
    server = ServerProcess(tmp_path_factory.mktemp("agent-node") / "server.log").start()
    yield server
    server.stop()
