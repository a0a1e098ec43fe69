"""Proxy hop overhead per audio chunk: through a `--role router` node vs straight to the owner.

Two measurements in one run:
- transit: an in-process upstream stamps each 4 KB audio chunk (85 ms of PCM16) with its
  send time; the client (same process, same clock) reads each chunk directly and through a
  real router process, so receive - stamp is the per-chunk transit, hop included or not.
- real owner: a tiny-random owner node speaks the same greedy text direct and proxied,
  interleaved; time to first audio and chunk inter-arrival are compared as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from bench.results_io import write_json
from inference_server.local_server import ServerProcess
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

TEXT = (
    "The proxy forwards every chunk. Nothing is buffered on the way. "
    "Each frame goes out as it comes in. The owner does all the work. "
    "A router only moves bytes. This is the last sentence here."
)
GREEDY = pb.SamplingOptions(temperature=1e-6, seed=7, max_tokens=140)
MAX_CHUNK_CHARS = 70  # a few generation chunks per session
CHUNK_BYTES = 4096  # 85 ms of PCM16 at 24 kHz, one SNAC frame


class StampingUpstream(pb_grpc.TTSServicer):
    """Answers each TextChunk with `chunks` audio chunks whose first 8 bytes are the send time."""

    def __init__(self, chunks: int, interval_s: float) -> None:
        self.chunks = chunks
        self.interval_s = interval_s

    async def Synthesize(self, request_iterator, context):
        async for request in request_iterator:
            if request.WhichOneof("kind") == "start":
                yield pb.SynthesizeResponse(started=pb.SessionStarted(node_id="stamp"))
            elif request.WhichOneof("kind") == "text":
                for sequence in range(self.chunks):
                    await asyncio.sleep(self.interval_s)
                    stamp = time.perf_counter_ns().to_bytes(8, "little")
                    chunk = pb.AudioChunk(pcm=stamp + bytes(CHUNK_BYTES - 8), sequence=sequence)
                    yield pb.SynthesizeResponse(audio=chunk)


async def transit_ms(address: str, session_id: str) -> list[float]:
    """Per-chunk transit (receive - upstream send) of one stamped session, in ms."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize()
        await call.write(pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id)))
        await call.write(pb.SynthesizeRequest(text=pb.TextChunk(text="go.")))
        await call.done_writing()
        transits = []
        async for response in call:
            if response.WhichOneof("kind") == "audio":
                sent = int.from_bytes(response.audio.pcm[:8], "little")
                transits.append((time.perf_counter_ns() - sent) / 1e6)
        return transits


async def measure_transit(direct: str, proxied: str, rounds: int) -> dict[str, float]:
    d, p = [], []
    for r in range(rounds):  # interleaved, so machine load hits both alike
        d += await transit_ms(direct, f"t-direct-{r}")
        p += await transit_ms(proxied, f"t-proxied-{r}")
    d50, p50 = statistics.median(d), statistics.median(p)
    return {
        "chunks_each": len(d),
        "direct_p50_ms": d50,
        "proxied_p50_ms": p50,
        "direct_p90_ms": _pct(d, 0.9),
        "proxied_p90_ms": _pct(p, 0.9),
        "added_p50_ms": p50 - d50,
        "ratio_p50_proxied_to_direct": p50 / d50,
    }


async def speak(address: str, session_id: str) -> tuple[float, list[float]]:
    """(time to first audio s, chunk inter-arrival gaps ms) of one greedy session."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize()
        start = pb.SessionStart(session_id=session_id, voice="tara", sampling=GREEDY)
        await call.write(pb.SynthesizeRequest(start=start))
        first = await call.read()
        assert first.WhichOneof("kind") == "started", first
        sent = time.perf_counter()
        await call.write(pb.SynthesizeRequest(text=pb.TextChunk(text=TEXT)))
        await call.write(pb.SynthesizeRequest(end_input=pb.EndInput()))
        await call.done_writing()
        arrivals = []
        while (response := await call.read()) is not grpc.aio.EOF:
            if response.WhichOneof("kind") == "audio":
                arrivals.append(time.perf_counter())
        gaps = [(y - x) * 1000 for x, y in itertools.pairwise(arrivals)]
        return arrivals[0] - sent, gaps


async def measure_owner(owner: str, router: str, rounds: int) -> dict[str, float]:
    ttfa = {"direct": [], "proxied": []}
    gaps = {"direct": [], "proxied": []}
    for r in range(rounds):
        for name, address in (("direct", owner), ("proxied", router)):
            t, g = await speak(address, f"o-{name}-{r}")
            ttfa[name].append(t * 1000)
            gaps[name] += g
    med = {k: statistics.median(v) for k, v in ttfa.items()}
    gap = {k: statistics.median(v) for k, v in gaps.items()}
    return {
        "ttfa_direct_p50_ms": med["direct"],
        "ttfa_proxied_p50_ms": med["proxied"],
        "ttfa_ratio": med["proxied"] / med["direct"],
        "inter_arrival_direct_p50_ms": gap["direct"],
        "inter_arrival_proxied_p50_ms": gap["proxied"],
        "inter_arrival_ratio": gap["proxied"] / gap["direct"],
    }


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_transit(logs: Path, rounds: int) -> dict[str, float]:
    server = grpc.aio.server()
    pb_grpc.add_TTSServicer_to_server(StampingUpstream(chunks=50, interval_s=0.02), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    upstream = f"127.0.0.1:{port}"
    router_args = ("--role", "router", "--node-id", "router", "--peers", f"stamp={upstream}")
    router = ServerProcess(logs / "router-transit.log", router_args)
    await asyncio.to_thread(router.start)
    try:
        return await measure_transit(upstream, router.address, rounds)
    finally:
        router.stop()
        await server.stop(None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    transit = asyncio.run(run_transit(logs, args.rounds))
    owner_args = ("--node-id", "owner", "--max-chunk-chars", str(MAX_CHUNK_CHARS))
    owner = ServerProcess(logs / "owner.log", owner_args).start()
    router_args = ("--role", "router", "--node-id", "router", "--peers", f"owner={owner.address}")
    router = ServerProcess(logs / "router.log", router_args).start()
    try:
        real = asyncio.run(measure_owner(owner.address, router.address, args.rounds))
    finally:
        router.stop()
        owner.stop()
    result = {
        "added_ms_per_chunk_p50": transit["added_p50_ms"],
        "target_added_p50_ms": 2.0,
        "transit": transit,
        "real_owner": real,
        "setup": {
            "transit": f"in-process stamping upstream, {CHUNK_BYTES}-byte chunks every 20 ms",
            "real_owner": "tiny-random + random SNAC owner; --role router with static --peers",
            "rounds": args.rounds,
            "text_chars": len(TEXT),
            "max_tokens_per_chunk": GREEDY.max_tokens,
        },
    }
    path = write_json("proxy", result, args.out)
    print(f"proxy hop: +{transit['added_p50_ms']:.3f} ms p50 per chunk "
          f"(transit ratio {transit['ratio_p50_proxied_to_direct']:.2f}); real owner: TTFA ratio "
          f"{real['ttfa_ratio']:.3f}, inter-arrival ratio {real['inter_arrival_ratio']:.3f} "
          f"-> {path}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
