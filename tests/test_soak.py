"""Soak (slow): 200 sessions over 2 minutes against one node: no errors, flat memory, no leaks.

Run with `make test-slow`. Prints the RSS samples it judged by.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import psutil
import pytest
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

SESSIONS = 200
DURATION_S = 120.0
MAX_RSS_GROWTH = 0.10  # last-third median RSS vs first-third median


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("soak") / "server.log")
    proc.start()
    yield proc
    proc.stop()


async def one_session(stub: pb_grpc.TTSStub, i: int) -> tuple[grpc.StatusCode, int]:
    msgs = [
        pb.SynthesizeRequest(
            start=pb.SessionStart(
                session_id=f"soak-{i}",
                voice=("tara", "leo", "mia", "zac")[i % 4],
                sampling=pb.SamplingOptions(max_tokens=28),
            )
        ),
        pb.SynthesizeRequest(text=pb.TextChunk(text=f"Soak session {i} says hello.")),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]
    call = stub.Synthesize(iter(msgs), timeout=60)
    audio = 0
    async for resp in call:
        audio += len(resp.audio.pcm)
    return await call.code(), audio


@pytest.mark.slow
async def test_soak_200_sessions_over_two_minutes(node: ServerProcess) -> None:
    rss: list[tuple[float, float]] = []
    server = psutil.Process(node.proc.pid)
    results: list[tuple[grpc.StatusCode, int]] = []
    t0 = time.monotonic()
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = pb_grpc.TTSStub(channel)
        tasks = []
        for i in range(SESSIONS):
            await asyncio.sleep(max(0.0, t0 + i * DURATION_S / SESSIONS - time.monotonic()))
            tasks.append(asyncio.create_task(one_session(stub, i)))
            if i % 10 == 0:
                rss.append((time.monotonic() - t0, server.memory_info().rss / 2**20))
        results = await asyncio.gather(*tasks)
    rss.append((time.monotonic() - t0, server.memory_info().rss / 2**20))
    wall = time.monotonic() - t0

    third = len(rss) // 3
    first = sorted(m for _, m in rss[:third])[third // 2]
    last = sorted(m for _, m in rss[-third:])[third // 2]
    print(
        f"\nsoak: {SESSIONS} sessions in {wall:.0f}s; RSS MiB first-third median {first:.0f}, "
        f"last-third median {last:.0f} ({100 * (last / first - 1):+.1f}%); "
        f"samples {[round(m) for _, m in rss]}"
    )
    assert all(code == grpc.StatusCode.OK for code, _ in results)
    assert all(audio > 0 for _, audio in results)
    assert last <= first * (1 + MAX_RSS_GROWTH)
    metrics = node.metrics()
    assert metrics["orpheus_live_sessions"] == 0 and metrics["orpheus_engine_live_requests"] == 0
    assert metrics['orpheus_sessions_total{code="OK"}'] == SESSIONS
