"""Mid-utterance failover: the primary node dies after audio was delivered; the next one resumes."""

from __future__ import annotations

import asyncio
import logging

import pytest
from livekit.agents import tts
from livekit.plugins import orpheus

SENTENCES = [
    "The first sentence is spoken by the primary node.",
    "A second sentence follows right after it.",
    "Then a third one keeps the generation busy.",
    "And a fourth sentence closes the utterance.",
]


async def test_resumes_on_next_node_without_repeating_audio(
    server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livekit.plugins.orpheus")
    primary, backup = server_factory(), server_factory()
    async with orpheus.TTS(base_url=f"{primary.address},{backup.address}", max_tokens=140) as t:
        metrics = []
        errors: list[tts.TTSError] = []
        t.on("metrics_collected", metrics.append)
        t.on("error", errors.append)
        stream = t.stream()
        stream.push_text(" ".join(SENTENCES))
        stream.end_input()
        events: list[tts.SynthesizedAudio] = []
        async for ev in stream:
            events.append(ev)
            if len(events) == 1:
                primary.kill()  # crash with audio already delivered to the user
        await stream.aclose()
        for _ in range(50):
            if metrics:
                break
            await asyncio.sleep(0.02)
    assert any("resuming on the next node" in r.message for r in caplog.records)
    assert errors == []  # no LiveKit-level retry: the utterance continued on the backup
    assert len({ev.request_id for ev in events}) == 1
    assert [ev.is_final for ev in events].count(True) == 1 and events[-1].is_final
    assert len({ev.segment_id for ev in events}) == 1
    assert len(metrics) == 1
    assert metrics[0].metadata.node_id == backup.address
    # the backup spoke what was left after the primary's last progress mark
    assert sum(ev.frame.duration for ev in events) >= metrics[0].metadata.server_audio_ms / 1000
