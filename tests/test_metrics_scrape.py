"""/metrics of a real node after real traffic: every series is exposed and the values moved."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from support_adapters import write_voice
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

SHORT = pb.SamplingOptions(max_tokens=28)
END = pb.SynthesizeRequest(end_input=pb.EndInput())
SERIES = (
    "orpheus_ttfa_ms_bucket",
    "orpheus_head_silence_trimmed_ms_count",
    "orpheus_tokens_generated_total",
    "orpheus_audio_seconds_total",
    "orpheus_segments_total",
    "orpheus_live_sessions",
    "orpheus_engine_live_requests",
    "orpheus_engine_queue_depth",
    "orpheus_streams_playing",
    "orpheus_streams_starving",
    "orpheus_lora_cache_total",
    "orpheus_proxy_hops_total",
    "orpheus_sessions_total",
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("metrics")
    write_voice(tmp / "voices" / "ava", seed=1)
    proc = ServerProcess(tmp / "server.log", ("--voices-dir", str(tmp / "voices")))
    proc.start()
    yield proc
    proc.stop()


def start(session_id: str, voice: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(
        start=pb.SessionStart(session_id=session_id, voice=voice, sampling=SHORT)
    )


def text(t: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(text=pb.TextChunk(text=t))


async def speak(address: str, session_id: str, voice: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(
            iter([start(session_id, voice), text("Hello there."), END]), timeout=60
        )
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError:
            pass
        return await call.code()


def scrape_series(node: ServerProcess) -> set[str]:
    return {name.partition("{")[0] for name in node.metrics()}


async def test_values_move_with_traffic(node: ServerProcess) -> None:
    before = node.metrics()
    for i, voice in enumerate(("tara", "ava", "ava", "leo")):
        assert await speak(node.address, f"m{i}", voice) == grpc.StatusCode.OK
    assert await speak(node.address, "bad", "nobody") == grpc.StatusCode.NOT_FOUND
    after = node.metrics()
    assert not [s for s in SERIES if s not in scrape_series(node)]

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved("orpheus_ttfa_ms_count") == 4 and moved("orpheus_ttfa_ms_sum") > 0
    assert moved("orpheus_head_silence_trimmed_ms_count") == 4
    assert moved("orpheus_segments_total") == 4
    assert moved("orpheus_tokens_generated_total") >= 4 * 7
    assert moved("orpheus_audio_seconds_total") > 0
    assert moved('orpheus_sessions_total{code="OK"}') == 4
    assert moved('orpheus_sessions_total{code="NOT_FOUND"}') == 1
    assert moved('orpheus_lora_cache_total{result="miss"}') >= 1  # first "ava" session
    assert moved('orpheus_lora_cache_total{result="hit"}') >= 1  # second "ava" session
    assert after["orpheus_live_sessions"] == 0 and after["orpheus_engine_live_requests"] == 0


async def test_live_sessions_gauge_follows_an_open_session(node: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(timeout=60)
        await call.write(start("held", "tara"))
        assert (await call.read()).WhichOneof("kind") == "started"
        assert node.metric("orpheus_live_sessions") == 1
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass
    for _ in range(20):
        if node.metric("orpheus_live_sessions") == 0:
            break
        await asyncio.sleep(0.05)
    assert node.metric("orpheus_live_sessions") == 0


def test_metrics_endpoint_is_prometheus_text(node: ServerProcess) -> None:
    url = f"http://127.0.0.1:{node.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE orpheus_ttfa_ms histogram" in body
    assert 'orpheus_lora_cache_total{result="hit"}' in body
