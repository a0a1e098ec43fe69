"""Fixtures of the engine conformance suite (runs in .venv-vllm): see support_vllm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from support_adapters import BROKEN
from support_vllm import (
    BROKEN_VOICES,
    BUILDERS,
    write_checkpoint,
    write_hasty_voice,
    write_random_voice,
)

from inference_server.engine.base import Engine


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny-random-hd32")


@pytest.fixture(scope="session")
def voices(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("voices")
    paths = {name: write_random_voice(checkpoint, root / name, seed) for name, seed in
             (("ava", 1), ("bob", 2), ("cy", 3))}  # fmt: skip
    paths["hasty"] = write_hasty_voice(checkpoint, root / "hasty")
    for name in BROKEN_VOICES:  # real adapters that neither engine can serve
        paths[name] = BROKEN[name][0](root / name, str(checkpoint))
    return paths


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=sorted(BUILDERS))
async def engine(
    request: pytest.FixtureRequest, checkpoint: Path, voices: dict[str, Path]
) -> AsyncIterator[Engine]:
    """Each engine in turn, started once per module; close() must not hang."""
    engine = BUILDERS[request.param](checkpoint, voices)
    await engine.start()
    yield engine
    await asyncio.wait_for(engine.close(), 60)
