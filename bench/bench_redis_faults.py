"""Session start latency while Redis is healthy, frozen, down and restarted empty; owner records
restored after FLUSHALL.

Two real tiny-random nodes share one real redis-server. Every session enters node n0 (about
half are forwarded to n1); a start is timed from opening the call to SessionStarted. The
conditions run back to back in one run, on the same nodes:
- healthy: Redis answers;
- frozen: redis-server is SIGSTOPped (connections open, nothing answers);
- down: redis-server is SIGKILLed (connections refused);
- restarted_empty: a fresh redis-server on the same port, no data, timed from its start.
Then, with sessions live on both nodes (some proxied), FLUSHALL: how many owner records are
back, and when.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
import redis

from bench.results_io import write_json
from inference_server.local_server import ServerProcess, free_port
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
LIVE_SESSIONS = 6


class Redis:
    """One redis-server on a fixed port: freeze, thaw, kill, start again empty."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        """Start empty; returns when it answers PING (perf_counter of that moment)."""
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--dir", str(self.workdir), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return time.perf_counter()
            except redis.ConnectionError:
                time.sleep(0.01)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)


async def start_ms(address: str, session_id: str, voice: str) -> tuple[float, str]:
    """(ms from opening the call to SessionStarted, serving node id); the call is cancelled."""
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        t0 = time.perf_counter()
        call = pb_grpc.TTSStub(channel).Synthesize(timeout=30)
        await call.write(
            pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, voice=voice))
        )
        first = await call.read()
        elapsed = (time.perf_counter() - t0) * 1000
        call.cancel()
        return elapsed, first.started.node_id


async def measure(address: str, name: str, starts: int) -> dict[str, object]:
    latencies, served, errors = [], {}, 0
    for i in range(starts):
        try:
            ms, node = await start_ms(address, f"{name}-{i}", VOICES[i % len(VOICES)])
        except grpc.aio.AioRpcError as err:
            errors += 1
            print(f"  {name} start {i}: {err.code().name} {err.details()}")
            continue
        latencies.append(ms)
        served[node] = served.get(node, 0) + 1
    ordered = sorted(latencies)
    return {
        "starts": starts,
        "errors": errors,
        "served_by": served,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }


async def open_live(address: str) -> list[tuple[grpc.aio.Channel, object, str, str]]:
    """LIVE_SESSIONS sessions held open at `address`: (channel, call, session id, owner id)."""
    live = []
    for i in range(LIVE_SESSIONS):
        channel = grpc.aio.insecure_channel(address)
        call = pb_grpc.TTSStub(channel).Synthesize()
        sid = f"live-{i}"
        await call.write(
            pb.SynthesizeRequest(start=pb.SessionStart(session_id=sid, voice=VOICES[i]))
        )
        await call.write(pb.SynthesizeRequest(text=pb.TextChunk(text="Hi.")))
        first = await call.read()
        live.append((channel, call, sid, first.started.node_id))
    return live


async def restore_after_flushall(address: str, db: Redis, wait_s: float) -> dict[str, object]:
    live = await open_live(address)
    owners = {sid: owner for _, _, sid, owner in live}
    client = db.client()
    try:
        client.flushall()
        t0 = time.perf_counter()
        restored_at: dict[str, float] = {}
        while len(restored_at) < len(owners) and time.perf_counter() - t0 < wait_s:
            for sid, owner in owners.items():
                if (
                    sid not in restored_at
                    and client.get(f"orpheus:session:{sid}") == owner.encode()
                ):
                    restored_at[sid] = time.perf_counter() - t0
            await asyncio.sleep(0.02)
    finally:
        client.close()
        for channel, call, _, _ in live:
            call.cancel()
            await channel.close()
    return {
        "live_sessions": len(owners),
        "proxied": sum(1 for o in owners.values() if o != "n0"),
        "restored": len(restored_at),
        "lost": len(owners) - len(restored_at),
        "waited_s": wait_s,
        "last_restored_after_s": max(restored_at.values(), default=None),
    }


def wait_registered(db: Redis, ids: set[str], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if all(db.client().exists(f"orpheus:node:{i}") for i in ids):
                return
        except redis.ConnectionError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"nodes {sorted(ids)} did not register again")


async def run(address: str, db: Redis, starts: int, restore_wait_s: float) -> dict[str, object]:
    ids = {"n0", "n1"}
    results = {"healthy": await measure(address, "healthy", starts)}
    db.signal(signal.SIGSTOP)
    try:
        results["frozen"] = await measure(address, "frozen", starts)
    finally:
        db.signal(signal.SIGCONT)
    wait_registered(db, ids)
    db.kill()
    results["down"] = await measure(address, "down", starts)
    db.start()
    results["restarted_empty"] = await measure(address, "restarted", starts)
    wait_registered(db, ids)
    results["flushall_restore"] = await restore_after_flushall(address, db, restore_wait_s)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", type=int, default=200, help="session starts per condition")
    p.add_argument("--restore-wait", type=float, default=12.0, help="s to wait after FLUSHALL")
    p.add_argument("--quick", action="store_true", help="50 starts per condition")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    starts = 50 if args.quick else args.starts
    logs = Path(tempfile.mkdtemp(prefix="bench-redis-faults-"))
    db = Redis(logs)
    db.start()
    nodes = []
    try:
        for i in range(2):
            port = free_port()
            extra = (
                "--redis-url",
                db.url,
                "--node-id",
                f"n{i}",
                "--advertise",
                f"127.0.0.1:{port}",
            )
            nodes.append(ServerProcess(logs / f"n{i}.log", extra, port=port))
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_ready()
        wait_registered(db, {"n0", "n1"})
        time.sleep(2)  # each node has polled the other in
        results = asyncio.run(run(nodes[0].address, db, starts, args.restore_wait))
    finally:
        for node in nodes:
            node.stop()
        db.kill()
    healthy_p99 = results["healthy"]["p99_ms"]
    payload = {
        **results,
        "p99_ratio_to_healthy": {
            k: results[k]["p99_ms"] / healthy_p99 for k in ("frozen", "down", "restarted_empty")
        },
        "target_p99_ratio": 2.0,
        "setup": {
            "nodes": "2 tiny-random nodes (--redis-url), every session entering n0",
            "start": "open call -> SessionStarted (time to first response), then cancel",
            "starts_per_condition": starts,
            "p99": "nearest rank: sorted[int(0.99 * n)]",
        },
    }
    path = write_json("redis_faults", payload, args.out)
    for k in ("healthy", "frozen", "down", "restarted_empty"):
        r = results[k]
        print(
            f"{k:>16}: p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
            f"max {r['max_ms']:7.1f} ms  errors {r['errors']}"
        )
    f = results["flushall_restore"]
    print(
        f"FLUSHALL: {f['restored']}/{f['live_sessions']} owner records restored "
        f"({f['proxied']} proxied), last after {f['last_restored_after_s']} s -> {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
