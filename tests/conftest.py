"""Fixtures shared by every test package: real orpheus-server processes on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support_redis import RedisServer
from support_server import ServerProcess, free_port

# tiny-random never says stop, so a test's few words run their whole token budget: often
# tens of seconds of audio, which a node paced at real time (its default) would take as
# long to send. Test nodes generate flat out unless a test passes --max-audio-ahead.
os.environ.setdefault("ORPHEUS_MAX_AUDIO_AHEAD", "0")
# The decode warm-up costs a node about a second of CPU at start and the suite starts
# many: test nodes skip it unless a test asks (tests/test_codec_warm_up.py).
os.environ.setdefault("ORPHEUS_WARM_UP_FRAMES", "0")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start nodes on fresh ports (`start=False` only reserves one); all stop at teardown."""
    started: list[ServerProcess] = []

    def make(*extra_args: str, port: int | None = None, start: bool = True) -> ServerProcess:
        server = ServerProcess(
            tmp_path / f"server-{len(started)}.log",
            extra_args=extra_args,
            port=port or free_port(),
        )
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def orpheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One tiny-random node shared by a test module."""
    server = ServerProcess(tmp_path_factory.mktemp("server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, stopped at teardown."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


# The engine conformance suite runs both engines, so it needs vLLM: `make test` runs it
# with .venv-vllm's interpreter (`pytest tests/engine_conformance`).
collect_ignore = [] if importlib.util.find_spec("vllm") else ["engine_conformance"]
