"""HTTP front door vs gRPC: TTFA and audio seconds per wall second, same node, one run.

One tiny-random node serves both: gRPC on its port (the client of bench/load.py) and the
OpenAI speech API on --http-port (POST /v1/audio/speech, response_format pcm, read as it
streams). At each concurrency level, rounds alternate a burst of N gRPC utterances and a
burst of N HTTP utterances (which goes first alternates too), so machine noise hits both.
TTFA for both = request initiated at the client -> first PCM byte received (the gRPC call
writes SessionStart, the text and EndInput at once, as one POST carries them). pcm isolates
the front door's own cost (an encoder adds its frame delay: mp3 ~50 ms of audio).

Every burst starts after the same idle gap: on this VM an utterance that starts the moment
the previous one ended gets a different TTFA (by tens of ms, either transport) than one
after a pause, which would favour whichever transport happened to follow a switch.
Shared CPUs make latency noisy, so beside the pooled p50s the run keeps each round's pair
(gRPC and HTTP bursts back to back) and the node process's CPU seconds per audio second
for each transport, which load on other processes barely moves: the front door's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc

from bench.load import ADMIT_ALL, TEXT, Utterance, percentile
from bench.load import speak as speak_grpc
from bench.results_io import write_json
from inference_server.local_server import ServerProcess, free_port
from inference_server.orpheus.tokens import SAMPLE_RATE
from inference_server.proto import tts_pb2_grpc as pb_grpc

LEVELS = (1, 8)
MAX_TOKENS = 140  # per text chunk: 20 frames, 1.7 s of audio
TARGET_TTFA_RATIO = 1.1
IDLE_GAP_S = 0.25  # before every burst (see the module doc)


async def speak_http(
    http: aiohttp.ClientSession, url: str, session_id: str, text: str, max_tokens: int
) -> Utterance:
    body = {
        "model": "tts-1",
        "input": text,
        "voice": "tara",
        "response_format": "pcm",
        "max_tokens": max_tokens,
        "session_id": session_id,
    }
    result = Utterance()
    sent = time.perf_counter()
    async with http.post(url, json=body) as response:
        response.raise_for_status()
        async for data in response.content.iter_any():
            if result.audio_s == 0.0:
                result.ttfa_ms = 1000 * (time.perf_counter() - sent)
            result.audio_s += len(data) / 2 / SAMPLE_RATE
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def burst(speak, level: int, tag: str, pid: int) -> tuple[list[Utterance], float, float]:
    """`level` utterances at once; their results, the burst's wall time and node CPU time."""
    await asyncio.sleep(IDLE_GAP_S)
    cpu, started = cpu_seconds(pid), time.perf_counter()
    results = await asyncio.gather(*[speak(f"{tag}-{i}") for i in range(level)])
    return list(results), time.perf_counter() - started, cpu_seconds(pid) - cpu


async def measure(grpc_address: str, http_url: str, pid: int, level: int, rounds: int) -> dict:
    utterances: dict[str, list[Utterance]] = {"grpc": [], "http": []}
    wall = {"grpc": 0.0, "http": 0.0}
    cpu = {"grpc": 0.0, "http": 0.0}
    paired: list[float] = []  # per round: HTTP burst's TTFA p50 / gRPC burst's
    limits = aiohttp.TCPConnector(limit=64)
    async with (
        grpc.aio.insecure_channel(grpc_address) as channel,
        aiohttp.ClientSession(connector=limits, timeout=aiohttp.ClientTimeout(300)) as http,
    ):
        stub = pb_grpc.TTSStub(channel)
        speakers = {
            "grpc": lambda sid: speak_grpc(stub, sid, TEXT, MAX_TOKENS),
            "http": lambda sid: speak_http(http, http_url, sid, TEXT, MAX_TOKENS),
        }
        for name in ("grpc", "http"):  # connections up, caches warm
            await burst(speakers[name], level, f"warm-{name}-{level}", pid)
        for r in range(rounds):
            order = ("grpc", "http") if r % 2 == 0 else ("http", "grpc")
            p50 = {}
            for name in order:
                results, seconds, used = await burst(
                    speakers[name], level, f"{name}-{level}-{r}", pid
                )
                utterances[name] += results
                wall[name] += seconds
                cpu[name] += used
                p50[name] = statistics.median(u.ttfa_ms for u in results)
            paired.append(p50["http"] / p50["grpc"])
    out: dict = {"concurrency": level, "rounds": rounds}
    for name, results in utterances.items():
        ttfa = sorted(u.ttfa_ms for u in results)
        audio = sum(u.audio_s for u in results)
        out[name] = {
            "utterances": len(results),
            "ttfa_p50_ms": statistics.median(ttfa),
            "ttfa_p90_ms": percentile(ttfa, 90),
            "audio_s": audio,
            "wall_s": wall[name],
            "audio_s_per_wall_s": audio / wall[name],
            "node_cpu_s_per_audio_s": cpu[name] / audio,
        }
    out["ttfa_p50_ratio_http_to_grpc"] = out["http"]["ttfa_p50_ms"] / out["grpc"]["ttfa_p50_ms"]
    out["throughput_ratio_http_to_grpc"] = (
        out["http"]["audio_s_per_wall_s"] / out["grpc"]["audio_s_per_wall_s"]
    )
    out["ttfa_p50_ratio_paired_rounds_median"] = statistics.median(paired)
    out["ttfa_p50_ratio_paired_rounds"] = [round(x, 3) for x in paired]
    out["node_cpu_ratio_http_to_grpc"] = (
        out["http"]["node_cpu_s_per_audio_s"] / out["grpc"]["node_cpu_s_per_audio_s"]
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=16, help="bursts per transport and level")
    p.add_argument("--quick", action="store_true", help="4 rounds")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rounds = 4 if args.quick else args.rounds
    logs = Path(tempfile.mkdtemp(prefix="bench-http-"))
    http_port = free_port()
    node_args = ("--http-port", str(http_port), "--max-audio-ahead", "0", *ADMIT_ALL)
    node = ServerProcess(logs / "node.log", node_args).start()
    url = f"http://127.0.0.1:{http_port}/v1/audio/speech"
    try:
        pid = node.proc.pid
        levels = [asyncio.run(measure(node.address, url, pid, lv, rounds)) for lv in LEVELS]
    finally:
        node.stop()
    result = {
        "target_ttfa_p50_ratio": TARGET_TTFA_RATIO,
        "within_target": all(
            lv["ttfa_p50_ratio_http_to_grpc"] <= TARGET_TTFA_RATIO for lv in levels
        ),
        "levels": levels,
        "setup": {
            "node": "one tiny-random + random SNAC node, --max-audio-ahead 0 (flat out)",
            "http": "POST /v1/audio/speech, response_format pcm, aiohttp client, streamed",
            "grpc": "bench/load.py speak(): SessionStart + text + EndInput written at once",
            "ttfa": "request initiated -> first PCM byte received, at the client",
            "text_chars": len(TEXT),
            "max_tokens_per_chunk": MAX_TOKENS,
            "bursts": "each round: N concurrent utterances per transport, order alternating",
            "idle_gap_before_each_burst_s": IDLE_GAP_S,
        },
    }
    path = write_json("http_vs_grpc", result, args.out)
    for lv in levels:
        print(
            f"c={lv['concurrency']}: TTFA p50 gRPC {lv['grpc']['ttfa_p50_ms']:.1f} ms, "
            f"HTTP {lv['http']['ttfa_p50_ms']:.1f} ms (x{lv['ttfa_p50_ratio_http_to_grpc']:.3f}); "
            f"audio s/wall s gRPC {lv['grpc']['audio_s_per_wall_s']:.2f}, "
            f"HTTP {lv['http']['audio_s_per_wall_s']:.2f} "
            f"(x{lv['throughput_ratio_http_to_grpc']:.3f}); paired TTFA "
            f"x{lv['ttfa_p50_ratio_paired_rounds_median']:.3f}; node CPU per audio s "
            f"x{lv['node_cpu_ratio_http_to_grpc']:.3f}"
        )
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
