"""Plugin overhead: TTFA through `orpheus.TTS().stream()` vs a raw gRPC client, same node.

Both send the whole text at once (the plugin's gate releases at end_input), alternate
run by run against one tiny-random node, and report the p50 difference and ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from livekit.plugins import orpheus

from bench.load import TEXT, speak
from bench.results_io import write_json
from inference_server.local_server import ServerProcess
from inference_server.proto import tts_pb2_grpc as pb_grpc

MAX_TOKENS = 70


async def plugin_utterance(
    address: str, max_tokens: int = MAX_TOKENS
) -> tuple[float, orpheus.OrpheusSegmentMetadata]:
    """TTFA (ms) of one utterance through `orpheus.TTS().stream()`, and the server's figures."""
    async with orpheus.TTS(base_url=address, max_tokens=max_tokens) as tts:
        metrics = []
        tts.on("metrics_collected", metrics.append)
        stream = tts.stream()
        sent = time.perf_counter()
        stream.push_text(TEXT)
        stream.end_input()
        first = None
        async for event in stream:
            if first is None and event.frame.samples_per_channel:
                first = time.perf_counter()
        await stream.aclose()
        for _ in range(100):  # metrics are emitted just after the last frame
            if metrics:
                break
            await asyncio.sleep(0.02)
    return 1000 * (first - sent), metrics[0].metadata


async def plugin_ttfa(address: str) -> float:
    return (await plugin_utterance(address))[0]


async def raw_ttfa(address: str, i: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        result = await speak(pb_grpc.TTSStub(channel), f"raw-{i}", TEXT, MAX_TOKENS)
    return result.ttfa_ms


async def run(address: str, rounds: int) -> dict:
    plugin, raw = [], []
    for i in range(rounds):
        raw.append(await raw_ttfa(address, i))
        plugin.append(await plugin_ttfa(address))
    p50_plugin, p50_raw = statistics.median(plugin), statistics.median(raw)
    return {
        "rounds": rounds,
        "ttfa_p50_ms_plugin": p50_plugin,
        "ttfa_p50_ms_raw_grpc": p50_raw,
        "plugin_overhead_p50_ms": p50_plugin - p50_raw,
        "plugin_over_raw": p50_plugin / p50_raw,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    server = ServerProcess(Path(tempfile.mkdtemp(prefix="bench-plugin-")) / "server.log").start()
    try:
        figures = asyncio.run(run(server.address, 4 if args.quick else args.rounds))
    finally:
        server.stop()
    print(figures)
    write_json("plugin", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
