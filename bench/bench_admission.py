"""Admission control: a node offered 2x its --capacity refuses the excess fast and keeps the
admitted sessions real-time.

One `orpheus-server --capacity C` (tiny-random, CPU). Each round opens N sessions at once
(N = C for 1x, 2C for 2x; rounds interleaved) and, while they speak, probes the full node
with further sessions one after the other. Refusal latency = call start -> RESOURCE_EXHAUSTED
status at the client. Streaming viability (DESIGN.md) of the admitted sessions is compared
as a ratio 2x / 1x inside the run.
Writes bench/results/admission.json. Run: python -m bench.bench_admission [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from bench.load import Utterance, percentile, speak
from bench.results_io import write_json
from inference_server.local_server import ServerProcess
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

CAPACITY = 2  # this shared 2-core CPU keeps 2 tiny-random streams above real time
TEXT = "The lighthouse keeper climbed the stairs at dusk. He lit the lamp and watched the sea."
MAX_TOKENS = 420  # 5 s of audio: the admitted sessions are still speaking while probed
REFUSAL_BUDGET_MS = 50.0


def is_refusal(err: grpc.aio.AioRpcError) -> bool:
    """RESOURCE_EXHAUSTED, or the status grpc-aio puts in its place when the request write
    races the server's early end of the call (grpc/grpc#36066; the server log shows it)."""
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.INTERNAL and details == "Internal error from Core":
        return True
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def attempt(stub: pb_grpc.TTSStub, session_id: str) -> Utterance | float:
    """An admitted session's utterance, or the ms it took to be refused."""
    started = time.perf_counter()
    try:
        return await speak(stub, session_id, TEXT, MAX_TOKENS)
    except grpc.aio.AioRpcError as err:
        if not is_refusal(err):
            raise
        return 1000 * (time.perf_counter() - started)


async def probe_refusals(stub: pb_grpc.TTSStub, count: int, tag: str) -> list[float]:
    """Sessions opened one by one against a full node: each must be refused."""
    await asyncio.sleep(0.5)  # the round's sessions are admitted and generating
    refusals = []
    for i in range(count):
        start = pb.SynthesizeRequest(start=pb.SessionStart(session_id=f"probe-{tag}-{i}"))
        t0 = time.perf_counter()
        try:
            async for _ in stub.Synthesize(iter([start])):
                raise AssertionError("a full node admitted a probe session")
        except grpc.aio.AioRpcError as err:
            assert is_refusal(err), err
            refusals.append(1000 * (time.perf_counter() - t0))
    return refusals


async def one_round(address: str, offered: int, tag: str, probes: int) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TTSStub(channel)
        await channel.channel_ready()
        outcomes, probe_ms = await asyncio.gather(
            asyncio.gather(*[attempt(stub, f"{tag}-{i}") for i in range(offered)]),
            probe_refusals(stub, probes, tag),
        )
    admitted = [o for o in outcomes if isinstance(o, Utterance)]
    refused = [o for o in outcomes if not isinstance(o, Utterance)]
    return {"admitted": admitted, "refused_ms": refused, "probe_ms": probe_ms}


def delivery_rate(u: Utterance) -> float:
    """Audio seconds delivered per wall second after the first audio (>= 1 keeps pace)."""
    span = u.arrivals[-1][0] - u.ttfa_ms / 1000 if u.arrivals else 0.0
    return u.audio_s / span if span > 0 else float("inf")


def summarize(rounds: list[dict]) -> dict:
    admitted = [u for r in rounds for u in r["admitted"]]
    refused = sorted(ms for r in rounds for ms in r["refused_ms"] + r["probe_ms"])
    ttfa = sorted(u.ttfa_ms for u in admitted)
    return {
        "sessions_admitted": len(admitted),
        "sessions_refused": len(refused),
        "admitted_per_round": [len(r["admitted"]) for r in rounds],
        "streaming_viability": sum(u.viable for u in admitted) / len(admitted),
        "worst_underrun_ms_p50": percentile(sorted(u.worst_deficit_ms for u in admitted), 50),
        "worst_underrun_ms_max": max(u.worst_deficit_ms for u in admitted),
        "delivery_x_realtime_p50": percentile(sorted(delivery_rate(u) for u in admitted), 50),
        "ttfa_p50_ms": percentile(ttfa, 50),
        "ttfa_p95_ms": percentile(ttfa, 95),
        "refusal_ms_p50": percentile(refused, 50),
        "refusal_ms_p99": percentile(refused, 99),
        "refusal_ms_max": max(refused) if refused else float("nan"),
        "refusals_within_50ms": sum(ms < REFUSAL_BUDGET_MS for ms in refused) / len(refused)
        if refused
        else float("nan"),
    }


async def run(address: str, capacity: int, rounds: int, probes: int) -> dict:
    by_load: dict[str, list[dict]] = {"1x": [], "2x": []}
    for r in range(rounds):  # interleaved so machine noise hits both loads alike
        for load, offered in (("1x", capacity), ("2x", 2 * capacity)):
            by_load[load].append(await one_round(address, offered, f"{load}-{r}", probes))
    return {load: summarize(rs) for load, rs in by_load.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--capacity", type=int, default=CAPACITY)
    args = parser.parse_args()
    rounds, probes = (2, 10) if args.quick else (5, 20)
    with tempfile.TemporaryDirectory() as tmp:
        node = ServerProcess(Path(tmp) / "server.log", ("--capacity", str(args.capacity)))
        node.start()
        try:
            loads = asyncio.run(run(node.address, args.capacity, rounds, probes))
        finally:
            node.stop()
    one, two = loads["1x"], loads["2x"]
    result = {
        "capacity": args.capacity,
        "rounds": rounds,
        "probes_per_round": probes,
        "text": TEXT,
        "max_tokens": MAX_TOKENS,
        "loads": loads,
        "viability_ratio_2x_over_1x": two["streaming_viability"] / one["streaming_viability"]
        if one["streaming_viability"]
        else float("nan"),
        "excess_refused_within_50ms": two["refusals_within_50ms"],
    }
    path = write_json("admission", result)
    print(f"wrote {path}")
    for load, s in loads.items():
        print(
            f"{load}: admitted {s['sessions_admitted']} refused {s['sessions_refused']} "
            f"viability {s['streaming_viability']:.2f} "
            f"delivery {s['delivery_x_realtime_p50']:.2f}x refusal p50/p99/max "
            f"{s['refusal_ms_p50']:.1f}/{s['refusal_ms_p99']:.1f}/{s['refusal_ms_max']:.1f} ms"
        )


if __name__ == "__main__":
    main()
