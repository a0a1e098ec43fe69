"""Fixtures for the LiveKit plugin: a real orpheus-server subprocess and a scripted LLM."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from plugin_support import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 180.0


def wait_healthy(address: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Block until the gRPC health check answers SERVING (or fail with the server's log)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"orpheus-server exited with {proc.returncode}")
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"orpheus-server at {address} not healthy after {timeout}s")


@dataclass
class ServerProcess:
    """A real `python -m inference_server` on 127.0.0.1, started and stopped by tests."""

    port: int
    log_path: Path
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "inference_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--model",
            "tiny-random",
            "--snac",
            "random",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        try:
            wait_healthy(self.address, SERVER_START_TIMEOUT, self.proc)
        except Exception as e:
            raise RuntimeError(f"{e}\n--- server log ---\n{self.log()}") from e

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Die without a goodbye, like a crashed node."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on fresh ports; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def make(*extra_args: str, port: int | None = None, start: bool = True) -> ServerProcess:
        server = ServerProcess(
            port=port or free_port(),
            log_path=tmp_path / f"server-{len(started)}.log",
            extra_args=extra_args,
        )
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def orpheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a test module."""
    server = ServerProcess(port=free_port(), log_path=tmp_path_factory.mktemp("srv") / "server.log")
    server.start()
    yield server
    server.stop()
