"""One conversation's recordings: a WAV per agent turn, one conversation WAV, the latency log.

`text` and `console` mode write into a new directory per conversation, so a second run
never mixes its turns with the first's:

    agent-turns/20261124-153012-maya/
        turn-001.wav      the greeting
        turn-002.wav ...  one per agent turn, as played (an interrupted turn is cut there)
        conversation.wav  every turn in order, with the user's microphone in console mode
        latency.jsonl     the latency log's lines (one per turn, then the summary)
"""

from __future__ import annotations

import logging
import re
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
from livekit import rtc

from .latency import logger as latency_logger
from .turn_audio import TurnAudio

SAMPLE_RATE = 24000
# typed turns: the time spent typing is not worth keeping as silence in the conversation
TEXT_MODE_MAX_GAP_S = 0.5


class ConversationRecording:
    """Collects a conversation's audio and writes it under `directory`."""

    def __init__(self, root: Path, *, label: str, clock=time.time) -> None:
        self.directory = _new_directory(root, label)
        self._clock = clock
        self.started_at = clock()
        self.turns: list[TurnAudio] = []
        self._user: list[tuple[float, np.ndarray]] = []
        self._log_handler = logging.FileHandler(self.directory / "latency.jsonl")
        self._log_handler.setFormatter(logging.Formatter("%(message)s"))
        latency_logger.addHandler(self._log_handler)

    def add_turn(self, turn: TurnAudio) -> None:
        """An agent turn finished playing (its WAV is already written by the sink)."""
        self.turns.append(turn)

    def add_user_audio(self, frame: rtc.AudioFrame) -> None:
        """A microphone frame, captured now."""
        self._user.append((self._clock() - frame.duration, _mono(frame)))

    def close(self) -> Path:
        """Write conversation.wav and stop the latency log; returns the conversation's path."""
        latency_logger.removeHandler(self._log_handler)
        self._log_handler.close()
        max_gap = None if self._user else TEXT_MODE_MAX_GAP_S
        agent = [(t.started_at or self.started_at, _turn_pcm(t)) for t in self.turns]
        pcm = mix(agent, self._user, origin=self.started_at, max_gap_s=max_gap)
        return write_wav(self.directory / "conversation.wav", pcm, SAMPLE_RATE)


def mix(
    agent: list[tuple[float, np.ndarray]],
    user: list[tuple[float, np.ndarray]],
    *,
    origin: float,
    max_gap_s: float | None,
) -> np.ndarray:
    """Place agent turns (never overlapping each other) and user audio on one timeline."""
    placed: list[tuple[int, np.ndarray]] = []
    cursor = 0
    for at, pcm in agent:
        start = max(round((at - origin) * SAMPLE_RATE), 0)
        if max_gap_s is not None:
            start = min(start, cursor + round(max_gap_s * SAMPLE_RATE))
        start = max(start, cursor)
        placed.append((start, pcm))
        cursor = start + len(pcm)
    placed += [(max(round((at - origin) * SAMPLE_RATE), 0), pcm) for at, pcm in user]
    length = max((start + len(pcm) for start, pcm in placed), default=0)
    out = np.zeros(length, dtype=np.int32)
    for start, pcm in placed:
        out[start : start + len(pcm)] += pcm
    return np.clip(out, -32768, 32767).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> Path:
    """Write mono PCM16 as a WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return path


def _turn_pcm(turn: TurnAudio) -> np.ndarray:
    if not turn.frames:
        return np.zeros(0, dtype=np.int16)
    pcm = np.concatenate([_mono(f) for f in turn.frames])
    # an interrupted turn was heard only up to where playout stopped
    return pcm[: round(turn.played_s * turn.sample_rate)] if turn.interrupted else pcm


def _mono(frame: rtc.AudioFrame) -> np.ndarray:
    if frame.sample_rate != SAMPLE_RATE:
        frame = _resample(frame)
    samples = np.frombuffer(bytes(frame.data), dtype=np.int16)
    return samples.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)


def _resample(frame: rtc.AudioFrame) -> rtc.AudioFrame:
    resampler = rtc.AudioResampler(frame.sample_rate, SAMPLE_RATE, num_channels=frame.num_channels)
    frames = resampler.push(frame) + resampler.flush()
    return rtc.combine_audio_frames(frames) if frames else frame


def _new_directory(root: Path, label: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "agent"
    base = root / f"{datetime.now():%Y%m%d-%H%M%S}-{slug}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path
