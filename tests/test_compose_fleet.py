"""docker-compose.yml's fleet, started as local processes, synthesizes through its router.

Each service runs the command and environment written in docker-compose.yml (the image's
entrypoint is `orpheus-server` = `python -m inference_server`), with a real redis-server.
In compose every container has its own network namespace, so all nodes listen on 50051;
here they share one host, so each service's ports map to free loopback ports and
`service:port` references (ORPHEUS_REDIS_URL, --advertise) point at them. Startup order
and readiness follow compose's depends_on/healthcheck: nodes, then the router, each
waited for on /readyz.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from support_fleet import audio_of, collect, start_request, text_requests
from support_redis import RedisServer
from support_server import free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
# Shutdown is not under test here (tests/test_probes_http.py drains a node): stop fast.
STOP_WAIT_S = 3.0
NODE_PORTS = {"ORPHEUS_PORT": 50051, "ORPHEUS_METRICS_PORT": 9100}


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} from this process's environment (defaults here)."""
    return INTERPOLATION.sub(lambda m: os.environ.get(m[1]) or m[2] or "", value)


class LocalService:
    """One compose service of the orpheus-server image as a local process."""

    def __init__(self, name: str, spec: dict, workdir: Path) -> None:
        self.name = name
        self.env = {k: interpolate(str(v)) for k, v in spec.get("environment", {}).items()}
        self.args = [interpolate(str(a)) for a in spec.get("command", [])]
        self.ports = {name: free_port() for name in NODE_PORTS}  # ORPHEUS_* -> local port
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['ORPHEUS_PORT']}"

    def start(self, hosts: dict[str, dict[int, int]]) -> None:
        """`hosts`: service -> {container port: local port}, for `service:port` values."""

        def local(value: str) -> str:
            def sub(m: re.Match) -> str:
                return f"127.0.0.1:{hosts[m[1]][int(m[2])]}"

            return re.sub(rf"\b({'|'.join(hosts)}):(\d+)\b", sub, value)

        env = {k: v for k, v in os.environ.items() if not k.startswith("ORPHEUS_")}
        env.update({k: local(v) for k, v in self.env.items()}, PYTHONUNBUFFERED="1")
        assert env["ORPHEUS_HOST"] == "0.0.0.0"
        env["ORPHEUS_HOST"] = "127.0.0.1"  # the container's 0.0.0.0 is its own namespace
        env.update({k: str(port) for k, port in self.ports.items()})
        args = [sys.executable, "-m", "inference_server", *map(local, self.args)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def readyz(self) -> int | None:
        url = f"http://127.0.0.1:{self.ports['ORPHEUS_METRICS_PORT']}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    def wait_ready(self, deadline_s: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < deadline_s:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-4000:]}")
            if self.readyz() == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{self.log.read_text()[-4000:]}")

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.ports['ORPHEUS_METRICS_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # compose down: SIGTERM

    def wait_exit(self, timeout_s: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # compose's SIGKILL after stop_grace_period (shortened here)
            self.proc.wait()


def start_order(services: dict) -> list[str]:
    """Services in depends_on order (compose's own rule)."""
    order: list[str] = []

    def visit(name: str) -> None:
        for dep in services[name].get("depends_on", {}):
            visit(dep)
        if name not in order:
            order.append(name)

    for name in services:
        visit(name)
    return order


@pytest.fixture
def compose_fleet(tmp_path: Path):
    spec = yaml.safe_load(COMPOSE.read_text())
    services = {n: s for n, s in spec["services"].items() if not s.get("profiles")}
    assert set(services) == {"redis", "node1", "node2", "router"}
    redis = RedisServer(tmp_path).start()
    hosts: dict[str, dict[int, int]] = {"redis": {6379: redis.port}}
    fleet: dict[str, LocalService] = {}
    t0 = time.monotonic()
    try:
        waves: list[list[LocalService]] = []  # services whose dependencies are all ready
        for name in start_order(services):
            if name == "redis":
                continue
            svc = LocalService(name, services[name], tmp_path)
            fleet[name] = svc
            hosts[name] = {NODE_PORTS[k]: p for k, p in svc.ports.items()}
            deps = set(services[name].get("depends_on", {})) - {"redis"}
            if waves and not deps & {s.name for s in waves[-1]}:
                waves[-1].append(svc)
            else:
                waves.append([svc])
        for wave in waves:  # node1 and node2 load in parallel; then the router
            for svc in wave:
                svc.start(hosts)
            for svc in wave:
                svc.wait_ready(60)
            print(f"{[s.name for s in wave]} ready at {time.monotonic() - t0:.1f}s")
        yield fleet
    finally:
        for svc in fleet.values():
            svc.terminate()
        deadline = time.monotonic() + STOP_WAIT_S  # one wait for all, as compose does
        for svc in fleet.values():
            svc.wait_exit(max(0.0, deadline - time.monotonic()))
        redis.stop()


async def test_compose_fleet_synthesizes_through_router(compose_fleet) -> None:
    fleet = compose_fleet
    router = fleet["router"]
    assert "--role" in router.args and router.args[router.args.index("--role") + 1] == "router"
    key = fleet["router"].env["ORPHEUS_ACCEPTED_API_KEYS"].split(",")[0]
    auth = (("authorization", f"Bearer {key}"),)

    with pytest.raises(grpc.aio.AioRpcError) as refused:  # the compose fleet has API keys
        await collect(router.address, [start_request("anon"), *text_requests("Hi.")])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    owners = set()
    hops_before = router.metric("orpheus_proxy_hops_total")
    for i, voice in enumerate(("tara", "leo", "mia", "zac")):
        responses = await collect(
            router.address, [start_request(f"compose-{i}", voice), *text_requests("Hello.")], auth
        )
        started = [r.started for r in responses if r.WhichOneof("kind") == "started"]
        assert started and started[0].node_id in {"node1", "node2"}
        owners.add(started[0].node_id)
        assert len(audio_of(responses)) > 0
    assert router.metric("orpheus_proxy_hops_total") - hops_before == 4  # all forwarded
    served = sum(fleet[n].metric('orpheus_sessions_total{code="OK"}') for n in ("node1", "node2"))
    assert served == 4, owners
