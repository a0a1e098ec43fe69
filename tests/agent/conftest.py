"""A real orpheus-server (tiny-random, random SNAC) with Prometheus metrics, per test module."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `import agent`
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import scripted_models`

SERVER_START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class InferenceServer:
    """`python -m inference_server` on 127.0.0.1 with --metrics-port."""

    port: int
    metrics_port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metric(self, name: str) -> float:
        """One unlabelled gauge/counter from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        raise KeyError(f"{name} not in {url}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _wait_healthy(server: InferenceServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"orpheus-server exited:\n{server.log()}")
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"orpheus-server not healthy after {SERVER_START_TIMEOUT}s:\n{server.log()}")


@pytest.fixture(scope="module")
def inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceServer]:
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("orpheus") / "server.log"
    args = [
        sys.executable, "-m", "inference_server", "--host", "127.0.0.1", "--port", str(port),
        "--metrics-port", str(metrics_port), "--model", "tiny-random", "--snac", "random",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = InferenceServer(port, metrics_port, proc, log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
