"""Slow readers: what a client that never reads costs a node, beside one that reads.

Six runs of one long utterance (tiny-random + random SNAC, default sampling), each on
a fresh node after a warm-up utterance: a client that reads it and two clients that never
read it, under the old behaviour (`--max-audio-ahead 0 --max-stalled-read 0`) and under
the new defaults (pacing 5 s ahead of the listener, stalled reads ended after 30 s).
For each: the node's CPU seconds and RSS (start, peak, end) over the run, and how the
call ended. The non-reading client is a default grpc-aio channel (BDP probing on), as a
real client is: it takes megabytes into its own buffers before a write waits; a second
one turns BDP probing off (a 64 KiB window, as a client may choose), so the node sees it
stop at once. Under the old behaviour nothing ever ends either, so each is watched for
`--observe` seconds (60 for the small window) and then cancelled. Each node's own CPU
while idle is measured first (`idle_cores`), to read the CPU figures against. A last run
opens idle sessions (start, no text) and reports when the node frees their capacity
(--first-text-timeout, default 10 s).
Writes bench/results/slow_reader.json. Run: python -m bench.bench_slow_reader [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.bench_longform import STORY
from bench.results_io import write_json
from inference_server.local_server import ServerProcess
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

MODES = {
    "old": ("--max-audio-ahead", "0", "--max-stalled-read", "0"),
    "new": (),  # the defaults
}
WARM_UP = "The lighthouse keeper climbed the stairs at dusk."
SMALL_WINDOW = (("grpc.http2.bdp_probe", 0),)
IDLE_S = 10.0
BYTES_PER_S = 48_000  # PCM16 mono 24 kHz
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


@dataclass
class Usage:
    """The node's CPU and RSS over one run, sampled every 0.25 s."""

    pid: int
    started: float = field(default_factory=time.perf_counter)
    cpu_start: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0

    def __post_init__(self) -> None:
        self.cpu_start = cpu_s(self.pid)
        self.rss_start = self.rss_peak = rss_mb(self.pid)

    async def sample(self) -> None:
        while True:
            self.rss_peak = max(self.rss_peak, rss_mb(self.pid))
            await asyncio.sleep(0.25)

    def row(self) -> dict[str, float]:
        wall = time.perf_counter() - self.started
        cpu = cpu_s(self.pid) - self.cpu_start
        rss = rss_mb(self.pid)
        return {
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "cores": round(cpu / wall, 2),
            "rss_start_mb": round(self.rss_start, 1),
            "rss_peak_mb": round(self.rss_peak, 1),
            "rss_end_mb": round(rss, 1),
            "rss_growth_peak_mb": round(self.rss_peak - self.rss_start, 1),
            "rss_kept_mb": round(rss - self.rss_start, 1),
        }


def opening(session_id: str, text: str) -> list[pb.SynthesizeRequest]:
    return [
        pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, voice="tara")),
        pb.SynthesizeRequest(text=pb.TextChunk(text=text)),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]


async def read_rest(call: grpc.aio.StreamStreamCall) -> tuple[int, str]:
    audio = 0
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        async for resp in call:
            audio += len(resp.audio.pcm)
    code = await call.code()
    return audio, code.name if code else "?"


async def reads(node: ServerProcess, text: str, observe_s: float) -> dict:
    async with grpc.aio.insecure_channel(node.address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(iter(opening("reads", text)))
        audio, code = await read_rest(call)
    return {"audio_read_s": round(audio / BYTES_PER_S, 1), "status": code}


async def never_reads(
    node: ServerProcess, text: str, observe_s: float, options: tuple = ()
) -> dict:
    async with grpc.aio.insecure_channel(node.address, options=options) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize()
        for msg in opening("never-reads", text):
            await call.write(msg)
        started = time.perf_counter()
        while time.perf_counter() - started < observe_s:
            await asyncio.sleep(0.5)
            if await asyncio.to_thread(node.metric, "orpheus_live_sessions") == 0:
                break
        ended_after = time.perf_counter() - started
        ended_by_node = ended_after < observe_s
        if not ended_by_node:
            call.cancel()
        audio, code = await read_rest(call)  # what gRPC held for it, then its status
    return {
        "ended_by_node": ended_by_node,
        "ended_after_s": round(ended_after, 1),
        "audio_buffered_for_client_s": round(audio / BYTES_PER_S, 1),
        "status": code,
    }


async def never_reads_small_window(node: ServerProcess, text: str, observe_s: float) -> dict:
    return await never_reads(node, text, min(observe_s, 60.0), SMALL_WINDOW)


async def measure(
    args: tuple[str, ...],
    client: Callable[[ServerProcess, str, float], Awaitable[dict]],
    text: str,
    observe_s: float,
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        node = ServerProcess(Path(tmp) / "server.log", args).start()
        try:
            await reads(node, WARM_UP, observe_s)  # first-use allocations out of the figures
            await asyncio.sleep(1.0)
            idle_cpu = cpu_s(node.proc.pid)
            await asyncio.sleep(IDLE_S)
            idle_cores = round((cpu_s(node.proc.pid) - idle_cpu) / IDLE_S, 3)
            usage = Usage(node.proc.pid)
            sampler = asyncio.create_task(usage.sample())
            row = await client(node, text, observe_s)
            await asyncio.sleep(2.0)  # what the node keeps once the call is over
            sampler.cancel()
            return row | usage.row() | {"idle_cores": idle_cores}
        finally:
            node.stop()


async def idle_sessions(count: int) -> dict:
    """`count` calls that never send text: when does the node end them and free capacity?"""
    with tempfile.TemporaryDirectory() as tmp:
        node = ServerProcess(Path(tmp) / "server.log", ("--capacity", str(count))).start()
        try:
            async with grpc.aio.insecure_channel(node.address) as channel:

                async def idle(i: int) -> tuple[str, float]:
                    call = pb_grpc.TTSStub(channel).Synthesize()
                    opened = time.perf_counter()
                    await call.write(opening(f"idle-{i}", "")[0])
                    _, code = await read_rest(call)
                    return code, time.perf_counter() - opened

                ends = await asyncio.gather(*(idle(i) for i in range(count)))
                live_after = await asyncio.to_thread(node.metric, "orpheus_live_sessions")
                call = pb_grpc.TTSStub(channel).Synthesize(iter(opening("after", WARM_UP)))
                audio, code_after = await read_rest(call)
        finally:
            node.stop()
    return {
        "idle_sessions": count,
        "capacity": count,
        "statuses": sorted({code for code, _ in ends}),
        "ended_after_s_max": round(max(t for _, t in ends), 2),
        "live_sessions_after": live_after,
        "next_session": code_after if audio else f"{code_after} (no audio)",
    }


async def run(text: str, observe_s: float) -> dict:
    rows = []
    for mode, args in MODES.items():
        for client in (reads, never_reads, never_reads_small_window):
            row = {"mode": mode, "client": client.__name__, "node_args": list(args)}
            row |= await measure(args, client, text, observe_s)
            print(row, flush=True)
            rows.append(row)
    idle = await idle_sessions(8)
    print(idle, flush=True)
    return {"rows": rows, "idle": idle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="story copies in the utterance")
    parser.add_argument("--observe", type=float, default=150.0, help="max seconds per client")
    parser.add_argument("--quick", action="store_true", help="1 copy, 60 s watch (a smoke run)")
    args = parser.parse_args(argv)
    copies = 1 if args.quick else args.copies
    observe = 60.0 if args.quick else args.observe
    text = " ".join([STORY] * copies)
    result = asyncio.run(run(text, observe))
    path = write_json("slow_reader", {"text_chars": len(text), **result})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
