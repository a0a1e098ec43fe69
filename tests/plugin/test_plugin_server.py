"""The plugin against a real orpheus-server (tiny-random, random SNAC) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from livekit.agents import APIConnectionError, APIConnectOptions, APIStatusError, tts
from livekit.agents.metrics import TTSMetrics
from livekit.plugins import orpheus
from plugin_support import ScriptedLLM
from support_server import free_port

SAMPLE_RATE = 24000
MAX_TOKENS = 140  # 20 frames: keeps each CPU generation short
ONE_SAMPLE = 1.0 / SAMPLE_RATE
TEXT = "Hello there, my good friend. How are you doing today?"


class Collected:
    """metrics_collected and error events of one TTS."""

    def __init__(self, t: orpheus.TTS) -> None:
        self.metrics: list[TTSMetrics] = []
        self.errors: list[tts.TTSError] = []
        t.on("metrics_collected", self.metrics.append)
        t.on("error", self.errors.append)


def assert_frames_conform(events: list[tts.SynthesizedAudio]) -> None:
    assert events, "no audio"
    request_ids = {ev.request_id for ev in events}
    assert len(request_ids) == 1 and "" not in request_ids
    assert [ev.is_final for ev in events].count(True) == 1
    assert events[-1].is_final
    for ev in events:
        assert ev.frame.sample_rate == SAMPLE_RATE
        assert ev.frame.num_channels == 1
        assert len(ev.frame.data.tobytes()) == 2 * ev.frame.samples_per_channel  # PCM16 mono


def server_audio_s(metrics: TTSMetrics) -> float:
    assert isinstance(metrics.metadata, orpheus.OrpheusSegmentMetadata)
    return metrics.metadata.server_audio_ms / 1000.0


async def settle_metrics(collected: Collected, n: int) -> None:
    for _ in range(50):
        if len(collected.metrics) >= n:
            return
        await asyncio.sleep(0.02)


async def test_synthesize_conformance(orpheus_server) -> None:
    async with orpheus.TTS(base_url=orpheus_server.address, max_tokens=MAX_TOKENS) as t:
        collected = Collected(t)
        events = [ev async for ev in t.synthesize(TEXT)]
        await settle_metrics(collected, 1)
    assert_frames_conform(events)
    assert len(collected.metrics) == 1
    m = collected.metrics[0]
    duration = sum(ev.frame.duration for ev in events)
    assert abs(duration - server_audio_s(m)) < ONE_SAMPLE
    assert abs(m.audio_duration - duration) < ONE_SAMPLE
    assert m.request_id == events[0].request_id
    assert m.output_tokens == m.metadata.tokens_generated > 0
    assert m.metadata.node_id == orpheus_server.address


async def test_stream_conformance(orpheus_server) -> None:
    async with orpheus.TTS(base_url=orpheus_server.address, max_tokens=MAX_TOKENS) as t:
        collected = Collected(t)
        stream = t.stream()
        await ScriptedLLM(tokens_per_second=200).run(stream.push_text, TEXT)
        stream.end_input()
        events = [ev async for ev in stream]
        await stream.aclose()
        await settle_metrics(collected, 1)
    assert_frames_conform(events)
    segment_ids = {ev.segment_id for ev in events}
    assert len(segment_ids) == 1 and "" not in segment_ids  # one flushed segment, one id
    assert len(collected.metrics) == 1  # one metrics_collected per segment
    m = collected.metrics[0]
    assert m.segment_id in segment_ids and m.streamed
    assert m.ttfb > 0
    duration = sum(ev.frame.duration for ev in events)
    assert abs(duration - server_audio_s(m)) < ONE_SAMPLE
    assert m.metadata.text_chunks >= 1  # the server's own per-segment figures ride along


async def test_update_options_reaches_the_server(orpheus_server) -> None:
    async with orpheus.TTS(base_url=orpheus_server.address, max_tokens=MAX_TOKENS) as t:
        t.update_options(voice="nobody-by-this-name")
        with pytest.raises(APIStatusError) as err:
            await t.synthesize("Hi there.", conn_options=APIConnectOptions(max_retry=0)).collect()
    assert err.value.status_code == 404


async def test_not_found_voice_is_tried_once(orpheus_server) -> None:
    async with orpheus.TTS(base_url=orpheus_server.address, voice="nobody") as t:
        collected = Collected(t)
        stream = t.stream(conn_options=APIConnectOptions(max_retry=3, retry_interval=0.1))
        stream.push_text(TEXT)
        stream.end_input()
        with pytest.raises(APIStatusError) as err:
            _ = [ev async for ev in stream]
        await stream.aclose()
    assert err.value.status_code == 404 and not err.value.retryable
    assert "tara" in err.value.message  # the server lists the valid voices
    assert [e.recoverable for e in collected.errors] == [False]  # one attempt, no retry


async def test_server_down_raises_connection_error_after_retries(server_factory) -> None:
    down = server_factory(start=False)  # a free port nobody listens on
    retries = 2
    async with orpheus.TTS(base_url=down.address) as t:
        collected = Collected(t)
        opts = APIConnectOptions(max_retry=retries, retry_interval=0.2, timeout=2.0)
        started = time.perf_counter()
        with pytest.raises(APIConnectionError):
            await t.synthesize(TEXT, conn_options=opts).collect()
        elapsed = time.perf_counter() - started
    assert [e.recoverable for e in collected.errors] == [True] * retries + [False]
    print(f"\n[retries] {retries + 1} attempts against a closed port failed in {elapsed:.2f}s")


async def test_server_back_between_attempts_succeeds(server_factory) -> None:
    server = server_factory(start=False)
    async with orpheus.TTS(base_url=server.address, max_tokens=MAX_TOKENS) as t:
        collected = Collected(t)
        first = t.synthesize(TEXT, conn_options=APIConnectOptions(max_retry=0))
        with pytest.raises(APIConnectionError):
            await first.collect()
        server.start(wait=False)  # comes up while the next request is retrying
        opts = APIConnectOptions(max_retry=60, retry_interval=1.0, timeout=5.0)
        frame = await t.synthesize(TEXT, conn_options=opts).collect()
    assert frame.duration > 0
    assert any(e.recoverable for e in collected.errors)  # it did retry before succeeding


def scrape(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_aclose_mid_utterance_stops_generation(server_factory) -> None:
    metrics_port = free_port()
    server = server_factory("--metrics-port", str(metrics_port))
    long_text = " ".join([TEXT] * 6)
    async with orpheus.TTS(base_url=server.address, max_tokens=2800) as t:
        stream = t.stream()
        stream.push_text(long_text)
        stream.flush()
        async for _ in stream:
            break  # first audio: the model is mid-generation
        assert scrape(metrics_port, "orpheus_engine_live_requests") >= 1
        closed_at = time.perf_counter()
        await stream.aclose()
        while True:
            live = scrape(metrics_port, "orpheus_engine_live_requests")
            sessions = scrape(metrics_port, "orpheus_live_sessions")
            stopped = time.perf_counter() - closed_at
            if live == 0 and sessions == 0:
                break
            assert stopped < 1.0, f"still {live} live requests {stopped:.2f}s after aclose()"
            await asyncio.sleep(0.01)
    print(f"\n[interruption] server generation stopped {stopped * 1000:.0f} ms after aclose()")
