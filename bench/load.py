"""Client-side load: concurrent sessions of back-to-back utterances, measured at the client.

Definitions (DESIGN.md): TTFA = text sent -> first PCM byte received; a stream is viable
when, after its first audio, the audio received so far never falls behind the time
elapsed since that first audio (it never underruns); aggregate throughput = audio
seconds received per wall second over the whole run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import grpc

from inference_server.orpheus.tokens import SAMPLE_RATE
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

TEXT = "The lighthouse keeper climbed the stairs at dusk. He lit the lamp and watched the sea."
UNDERRUN_TOLERANCE_MS = 5.0  # timer noise, not an audible gap
# Server flags for benchmarks that overload a node on purpose: admit every session.
ADMIT_ALL = ("--capacity", "64", "--admit-starving-ms", "0")


@dataclass
class Utterance:
    ttfa_ms: float = 0.0
    audio_s: float = 0.0
    worst_deficit_ms: float = 0.0  # largest shortfall of audio vs playback time
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (t, audio s so far)

    @property
    def viable(self) -> bool:
        return self.worst_deficit_ms <= UNDERRUN_TOLERANCE_MS


@dataclass
class LoadResult:
    concurrency: int
    wall_s: float
    utterances: list[Utterance]

    def summary(self) -> dict[str, float]:
        ttfa = sorted(u.ttfa_ms for u in self.utterances)
        audio = sum(u.audio_s for u in self.utterances)
        return {
            "concurrency": self.concurrency,
            "utterances": len(self.utterances),
            "ttfa_p50_ms": percentile(ttfa, 50),
            "ttfa_p95_ms": percentile(ttfa, 95),
            "ttfa_p99_ms": percentile(ttfa, 99),
            "streaming_viability": sum(u.viable for u in self.utterances) / len(self.utterances),
            "worst_underrun_ms_p50": statistics.median(u.worst_deficit_ms for u in self.utterances),
            "audio_s": audio,
            "wall_s": self.wall_s,
            "audio_s_per_wall_s": audio / self.wall_s,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def speak(stub: pb_grpc.TTSStub, session_id: str, text: str, max_tokens: int) -> Utterance:
    """One utterance = one Synthesize call, text sent at once (the gate already released it)."""
    requests = [
        pb.SynthesizeRequest(
            start=pb.SessionStart(
                session_id=session_id,
                voice="tara",
                sampling=pb.SamplingOptions(max_tokens=max_tokens),
            )
        ),
        pb.SynthesizeRequest(text=pb.TextChunk(text=text)),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]
    result = Utterance()
    sent = time.perf_counter()
    first = None
    async for response in stub.Synthesize(iter(requests)):
        if response.WhichOneof("kind") != "audio" or not response.audio.pcm:
            continue
        now = time.perf_counter()
        if first is None:
            first = now
            result.ttfa_ms = 1000 * (now - sent)
        deficit = 1000 * ((now - first) - result.audio_s)
        result.worst_deficit_ms = max(result.worst_deficit_ms, deficit)
        result.audio_s += len(response.audio.pcm) / 2 / SAMPLE_RATE
        result.arrivals.append((now - sent, result.audio_s))
    return result


async def run_load(
    address: str,
    concurrency: int,
    *,
    utterances: int = 2,
    text: str = TEXT,
    max_tokens: int = 140,
    stagger_s: float = 1.0,
) -> LoadResult:
    """`concurrency` sessions, started `stagger_s` apart in total, each saying `utterances`."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TTSStub(channel)

        async def session(i: int) -> list[Utterance]:
            await asyncio.sleep(stagger_s * i / concurrency)
            return [
                await speak(stub, f"bench-{concurrency}-{i}-{k}", text, max_tokens)
                for k in range(utterances)
            ]

        started = time.perf_counter()
        per_session = await asyncio.gather(*[session(i) for i in range(concurrency)])
        wall = time.perf_counter() - started
    return LoadResult(concurrency, wall, [u for s in per_session for u in s])
