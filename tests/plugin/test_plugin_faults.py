"""LiveKit's own TTS fault cases (toxiproxy in livekit/agents tests/test_tts.py), re-created
with the in-repo TCP fault proxy between the plugin and a real node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from livekit.agents import APIConnectOptions, APITimeoutError
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.plugins import orpheus
from livekit.plugins.orpheus.session import MAX_RESUMES
from support_faults import FaultProxy
from test_plugin_server import (
    MAX_TOKENS,
    TEXT,
    Collected,
    assert_frames_conform,
    settle_metrics,
)

# LiveKit's window for a 2 s timeout against a node that never answers
TIMEOUT_OPTIONS = APIConnectOptions(max_retry=0, timeout=2.0)
LIVEKIT_WINDOW_S = (1.5, 3.5)


@pytest.fixture
async def proxy(orpheus_server) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(orpheus_server.address).start()
    yield proxy
    await proxy.aclose()


async def test_never_answering_node_times_out_within_livekits_window(proxy: FaultProxy) -> None:
    proxy.faults.blackhole = True
    async with orpheus.TTS(base_url=proxy.address, max_tokens=MAX_TOKENS) as t:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            async for _ in t.synthesize(TEXT, conn_options=TIMEOUT_OPTIONS):
                pass
        elapsed = time.monotonic() - started
    print(f"never-answering node: APITimeoutError after {elapsed:.2f} s")
    assert LIVEKIT_WINDOW_S[0] <= elapsed <= LIVEKIT_WINDOW_S[1], elapsed


async def test_never_answering_node_times_out_for_a_stream_too(proxy: FaultProxy) -> None:
    proxy.faults.blackhole = True
    async with orpheus.TTS(base_url=proxy.address, max_tokens=MAX_TOKENS) as t:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            async with t.stream(conn_options=TIMEOUT_OPTIONS) as stream:
                stream.push_text(TEXT)
                stream.end_input()
                async for _ in stream:
                    pass
        elapsed = time.monotonic() - started
    print(f"never-answering node: APITimeoutError after {elapsed:.2f} s")
    assert LIVEKIT_WINDOW_S[0] <= elapsed <= LIVEKIT_WINDOW_S[1], elapsed


@pytest.mark.parametrize("rtt_ms", [250, 400])
async def test_slow_links_succeed_on_the_first_attempt(proxy: FaultProxy, rtt_ms: int) -> None:
    proxy.faults.latency_s = rtt_ms / 2000
    async with orpheus.TTS(base_url=proxy.address, max_tokens=MAX_TOKENS) as t:
        errors: list[object] = []
        t.on("error", errors.append)
        events = [ev async for ev in t.synthesize(TEXT)]
    assert_frames_conform(events)
    assert errors == [] and proxy.connections == 1  # no failed handshake, no retry


async def first_audio_then(stream: orpheus.SynthesizeStream, fault: Callable[[], None]) -> list:
    """Every event of `stream`; `fault` runs once the first audio frame has arrived."""
    events = []
    async for ev in stream:
        if not events:
            fault()
        events.append(ev)
    return events


async def test_a_stall_mid_utterance_is_a_timeout_within_the_connect_timeout(
    proxy: FaultProxy,
) -> None:
    """LiveKit bounds every receive: a node that goes silent mid-utterance is an
    APITimeoutError after conn_options.timeout (default options), not a minute of dead air."""
    stalled_at: list[float] = []

    def stall() -> None:
        stalled_at.append(time.monotonic())
        proxy.stall()

    async with orpheus.TTS(base_url=proxy.address, max_tokens=MAX_TOKENS) as t:
        stream = t.stream()  # DEFAULT_API_CONNECT_OPTIONS
        stream.push_text(TEXT + " " + TEXT)
        stream.end_input()
        with pytest.raises(APITimeoutError, match="sent nothing"):
            async with stream:
                await first_audio_then(stream, stall)
        waited = time.monotonic() - stalled_at[0]
    proxy.resume()
    print(f"stall mid-utterance: APITimeoutError {waited:.2f} s after the stall")
    timeout = DEFAULT_API_CONNECT_OPTIONS.timeout
    assert timeout <= waited <= timeout + 1.0, waited


def resets_until(proxy: FaultProxy, after_bytes: int, let_through: int) -> Callable[[], None]:
    """A fault: reset the connection now, and each new one after `after_bytes` sent to the
    client, until connection number `let_through`, which flows."""

    def fault() -> None:
        proxy.faults.reset_after_downstream_bytes = after_bytes
        proxy.on_accept = lambda n: (
            n >= let_through and setattr(proxy.faults, "reset_after_downstream_bytes", 0)
        )
        proxy.reset()

    return fault


async def speak_through_fault(
    proxy: FaultProxy, fault: Callable[[], None]
) -> tuple[list, Collected]:
    """One utterance through the proxy, `fault` injected at its first audio."""
    async with orpheus.TTS(base_url=proxy.address, max_tokens=MAX_TOKENS) as t:
        collected = Collected(t)
        stream = t.stream()
        stream.push_text(TEXT)
        stream.end_input()
        async with stream:
            events = await first_audio_then(stream, fault)
        await settle_metrics(collected, 1)
    return events, collected


async def test_a_reset_that_repeats_on_the_reconnect_still_completes(proxy: FaultProxy) -> None:
    """The reset mid-utterance resumes; the resume's own connection is reset too; the
    third connection carries the rest. The listener gets one stream of audio."""
    # The reconnect dies early too.
    events, collected = await speak_through_fault(proxy, resets_until(proxy, 200, 3))
    assert_frames_conform(events)
    assert proxy.connections >= 3
    assert len(collected.metrics) == 1  # one segment, one metrics event, resumes or not
    assert collected.metrics[0].request_id == events[0].request_id


async def test_resume_tries_wait_for_the_reconnect_to_be_ready(proxy: FaultProxy) -> None:
    """The reset mid-utterance is followed by more refused connections (each reset before
    its HTTP/2 handshake ends) than there are resume tries: gRPC is still reconnecting, in
    backoff, while the plugin resumes. Each try waits for a READY channel rather than
    failing at once on the reconnecting one, so the utterance completes on the first
    connection that is let through, with no error."""
    let_through = 2 + MAX_RESUMES + 1  # connection 1 is reset, the next MAX_RESUMES + 1 refused
    # 1 byte: not even the server's SETTINGS go through.
    events, collected = await speak_through_fault(proxy, resets_until(proxy, 1, let_through))
    assert_frames_conform(events)
    assert proxy.connections >= let_through
    assert collected.errors == [] and len(collected.metrics) == 1


async def test_a_bandwidth_capped_link_still_delivers_every_frame(proxy: FaultProxy) -> None:
    """LiveKit's bandwidth toxic: 64 KB/s each way, above audio's 48 KB/s."""
    proxy.faults.bytes_per_s = 64_000
    async with orpheus.TTS(base_url=proxy.address, max_tokens=MAX_TOKENS) as t:
        collected = Collected(t)
        events = [ev async for ev in t.synthesize(TEXT)]
        await settle_metrics(collected, 1)
    assert_frames_conform(events)
    assert collected.errors == [] and len(collected.metrics) == 1
