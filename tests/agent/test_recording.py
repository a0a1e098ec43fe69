"""The conversation WAV's timeline: agent turns in order, never overlapping, user audio mixed."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from livekit import rtc

from agent.recording import SAMPLE_RATE, ConversationRecording, mix
from agent.turn_audio import TurnAudio

SR = SAMPLE_RATE


def tone(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def test_typed_turns_keep_their_order_and_lose_the_typing_time() -> None:
    # turn 2 "starts" before turn 1 ends (non-real-time playout) and turn 3 after 30 s of typing
    agent = [(100.0, tone(SR, 1)), (100.5, tone(SR, 2)), (131.5, tone(SR // 2, 3))]
    pcm = mix(agent, [], origin=100.0, max_gap_s=0.5)
    assert len(pcm) == SR + SR + SR // 2 + SR // 2  # the 30 s gap is capped at 0.5 s
    assert (pcm[:SR] == 1).all() and (pcm[SR : 2 * SR] == 2).all()
    assert (pcm[2 * SR : 2 * SR + SR // 2] == 0).all() and (pcm[-SR // 2 :] == 3).all()


def test_console_keeps_the_real_timeline_and_mixes_the_microphone() -> None:
    agent = [(10.0, tone(SR, 1000)), (13.0, tone(SR, 1000))]
    user = [(11.5, tone(SR, 30000)), (12.0, tone(SR // 10, -5))]
    pcm = mix(agent, user, origin=10.0, max_gap_s=None)
    assert len(pcm) == 4 * SR
    assert (pcm[:SR] == 1000).all() and (pcm[3 * SR :] == 1000).all()
    assert pcm[int(1.6 * SR)] == 30000 and pcm[int(2.01 * SR)] == 29995
    both = mix([(10.0, tone(SR, 30000))], [(10.0, tone(SR, 30000))], origin=10.0, max_gap_s=None)
    assert both.max() == 32767  # clipped, not wrapped around


def test_an_interrupted_turn_is_kept_only_as_far_as_it_played(tmp_path: Path) -> None:
    clock = iter([50.0]).__next__
    recording = ConversationRecording(tmp_path, label="Maya Ü", clock=clock)
    assert recording.directory.parent == tmp_path and recording.directory.name.endswith("-maya")
    frame = rtc.AudioFrame(tone(SR, 7).tobytes(), SR, 1, SR)
    recording.add_turn(TurnAudio(1, SR, [frame], started_at=50.0, played_s=1.0))
    cut = TurnAudio(2, SR, [frame], started_at=51.0, played_s=0.25, interrupted=True)
    recording.add_turn(cut)
    path = recording.close()
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2)
        assert w.getnframes() == SR + SR // 4
    assert (recording.directory / "latency.jsonl").exists()
