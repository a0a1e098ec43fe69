"""LiveKit's own TTS fault cases (toxiproxy in livekit/agents tests/test_tts.py), re-created
with the in-repo TCP fault proxy between the plugin and a real node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from livekit.agents import APIConnectOptions, APITimeoutError
from livekit.plugins import orpheus
from support_faults import FaultProxy
from test_plugin_server import MAX_TOKENS, TEXT, assert_frames_conform

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
