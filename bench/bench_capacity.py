"""A node's capacity, and what each fraction of it offered does to its streams, one run.

1. Capacity: `--saturate` sessions at once, each speaking long texts with pacing off
   (`--max-audio-ahead 0`), so every stream is backlogged: the node's audio seconds per
   wall second is its capacity C.
2. What the node's scheduling keeps real time: a node with pacing on that admits every
   session, offered floor(f * C) concurrent sessions for each fraction f: streaming
   viability (bench/load.py's definition) and TTFA p50/p99. Each session is one
   real-time listener taking turns: it sends its next utterance when it has heard the
   last one to the end (no pause between turns), so it asks for at most one audio second
   per wall second and the sessions together for at most floor(f * C) <= f * C. (A
   client that sent its next utterance on the previous one's last byte would ask for up
   to `--max-audio-ahead` seconds more per turn: no listener does that.)
   Then 1, 2, 3... sessions on the same node until one count is not viable (>= 0.99)
   in each of `--count-trials` runs: the last count that was is the node's
   `--realtime-streams`.
3. The node as deployed: the same sweep on a node started with that
   `--realtime-streams`: viability of the admitted streams, and how many sessions were
   refused and how fast (RESOURCE_EXHAUSTED).

tiny-random + random SNAC on this machine: read the ratios (TTFA at f over TTFA of 1
session; viability) rather than absolute times. Writes bench/results/capacity.json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.load import ADMIT_ALL, TEXT, Utterance, percentile, run_load, speak
from bench.results_io import write_json
from inference_server.local_server import ServerProcess
from inference_server.proto import tts_pb2_grpc as pb_grpc

STORY = " ".join([TEXT] * 4)  # ~20 s of speech: every stream stays backlogged
VIABLE = 0.99


@dataclass
class Offered:
    fraction: float
    sessions: int
    capacity: float
    utterances: list[Utterance] = field(default_factory=list)
    refusals_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self, ttfa_one_ms: float | None) -> dict:
        ttfa = sorted(u.ttfa_ms for u in self.utterances)
        refused = sorted(self.refusals_ms)
        p50 = percentile(ttfa, 50)
        return {
            "fraction_of_capacity": self.fraction,
            "sessions": self.sessions,
            "sessions_over_capacity": self.sessions / self.capacity,
            "utterances": len(self.utterances),
            "streaming_viability": (
                sum(u.viable for u in self.utterances) / len(self.utterances)
                if self.utterances
                else float("nan")
            ),
            "ttfa_p50_ms": p50,
            "ttfa_p99_ms": percentile(ttfa, 99),
            "ttfa_p50_over_one_session": p50 / ttfa_one_ms if ttfa_one_ms else float("nan"),
            "refused": len(refused),
            "refusal_p99_ms": percentile(refused, 99),
            "audio_s_per_wall_s": sum(u.audio_s for u in self.utterances) / self.wall_s,
        }


def measure_capacity(saturate: int, max_tokens: int, logs: Path) -> float:
    node = ServerProcess(logs / "saturated.log", extra_args=(*ADMIT_ALL, "--max-audio-ahead", "0"))
    node.start()
    try:
        load = asyncio.run(
            run_load(node.address, saturate, utterances=1, text=STORY, max_tokens=max_tokens)
        )
    finally:
        node.stop()
    return load.summary()["audio_s_per_wall_s"]


async def offer(
    address: str, fraction: float, sessions: int, utterances: int, capacity: float
) -> Offered:
    """`sessions` listeners at once, each saying `utterances` in turn, the next when the
    last one's audio has played; a refused utterance counts, and the next one retries."""
    result = Offered(fraction, sessions, capacity)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TTSStub(channel)

        async def listener(i: int) -> None:
            await asyncio.sleep(i / sessions)  # arrivals spread over one second
            for k in range(utterances):
                sent = time.perf_counter()
                try:
                    heard = await speak(stub, f"cap-{fraction}-{i}-{k}", TEXT, 560)
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    result.refusals_ms.append(1000 * (time.perf_counter() - sent))
                    continue
                result.utterances.append(heard)
                played = sent + (heard.ttfa_ms + heard.worst_deficit_ms) / 1000 + heard.audio_s
                await asyncio.sleep(max(0.0, played - time.perf_counter()))

        started = time.perf_counter()
        await asyncio.gather(*(listener(i) for i in range(sessions)))
        result.wall_s = time.perf_counter() - started
    return result


def sweep(address: str, fractions: list[float], capacity: float, utterances: int) -> list:
    """One session alone, then floor(f * capacity) sessions (at least 1) for each f."""
    one = asyncio.run(offer(address, 0.0, 1, utterances, capacity))
    ttfa_one = percentile(sorted(u.ttfa_ms for u in one.utterances), 50)
    rows = [one.summary(ttfa_one)]
    for fraction in fractions:
        sessions = max(1, math.floor(fraction * capacity + 1e-9))
        offered = asyncio.run(offer(address, fraction, sessions, utterances, capacity))
        rows.append(offered.summary(ttfa_one))
        print(rows[-1], flush=True)
    return rows


def realtime_streams(
    address: str, utterances: int, capacity: float, trials: int = 2
) -> tuple[int, list]:
    """1, 2, 3... concurrent sessions until one count is not viable in every one of its
    `trials` runs: the last count that was, and every count's row (its runs merged).

    One run is not enough to call a count real time on a noisy machine: 3 sessions once
    passed (1.00) and then, as deployed minutes later, kept 0.33-0.56."""
    rows = []
    for sessions in range(1, max(2, math.ceil(2 * capacity)) + 1):
        runs = [
            asyncio.run(offer(address, sessions / capacity, sessions, utterances, capacity))
            for _ in range(trials)
        ]
        merged = Offered(sessions / capacity, sessions, capacity)
        for run in runs:
            merged.utterances += run.utterances
            merged.refusals_ms += run.refusals_ms
            merged.wall_s += run.wall_s
        viabilities = [run.summary(None)["streaming_viability"] for run in runs]
        rows.append({**merged.summary(None), "trial_viability": viabilities})
        print(f"{sessions} sessions: viability per trial {viabilities}", flush=True)
        if min(viabilities) < VIABLE:
            return sessions - 1, rows
    return len(rows), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", default="0.25,0.5,0.7,1.0,2.0")
    parser.add_argument("--saturate", type=int, default=16, help="backlogged sessions")
    parser.add_argument("--utterances", type=int, default=3)
    parser.add_argument(
        "--count-trials", type=int, default=2, help="runs each session count must pass"
    )
    parser.add_argument("--quick", action="store_true", help="fractions 0.5,2.0; 1 utterance")
    args = parser.parse_args(argv)
    if args.quick:
        args.fractions, args.utterances, args.saturate, args.count_trials = "0.5,2.0", 1, 8, 1
    logs = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    capacity = measure_capacity(args.saturate, 1400, logs)
    print(f"capacity: {capacity:.2f} audio s per wall s", flush=True)
    fractions = [float(x) for x in args.fractions.split(",")]
    admit_all = ServerProcess(logs / "admit-all.log", extra_args=ADMIT_ALL).start()
    try:
        scheduling = sweep(admit_all.address, fractions, capacity, args.utterances)
        streams, by_count = realtime_streams(
            admit_all.address, args.utterances, capacity, args.count_trials
        )
    finally:
        admit_all.stop()
    print(f"realtime streams: {streams}", flush=True)
    deployed_args = ("--realtime-streams", str(streams)) if streams else ()
    deployed = ServerProcess(logs / "node.log", extra_args=deployed_args).start()
    try:
        offered = sweep(deployed.address, fractions, capacity, args.utterances)
    finally:
        deployed.stop()
    write_json(
        "capacity",
        {
            "capacity_audio_s_per_wall_s": capacity,
            "realtime_streams": streams,
            "realtime_fraction_of_capacity": streams / capacity,
            "admitting_all": scheduling,
            "admitting_all_by_sessions": by_count,
            "offered": offered,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
