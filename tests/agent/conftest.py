"""The agent tests' tiny-random node, and import paths for `agent` and the scripted models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support_server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `import agent`
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import scripted_models`


@pytest.fixture(scope="module")
def inference_server(orpheus_server: ServerProcess) -> ServerProcess:
    """The module's tiny-random node (the shared `orpheus_server`)."""
    return orpheus_server
