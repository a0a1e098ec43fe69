"""An in-process speaker: plays agent audio at real-time pace and keeps (or writes) each turn."""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from livekit import rtc
from livekit.agents.voice import io


@dataclass
class TurnAudio:
    """One playback segment (one agent turn's speech) as received by the sink."""

    index: int
    sample_rate: int
    frames: list[rtc.AudioFrame] = field(default_factory=list)
    started_at: float | None = None  # time.time() of the first frame
    finished_at: float | None = None
    played_s: float = 0.0
    interrupted: bool = False
    path: Path | None = None

    @property
    def duration_s(self) -> float:
        return sum(f.duration for f in self.frames)

    def pcm(self) -> bytes:
        return b"".join(bytes(f.data) for f in self.frames)


class TurnAudioSink(io.AudioOutput):
    """`io.AudioOutput` without a device: playout is simulated at real-time pace.

    Each segment (one flush) becomes a `TurnAudio`; with `wav_dir` set it is written to
    `wav_dir/turn-NNN.wav` when it finishes, then handed to `on_turn`. `clear_buffer()`
    (an interruption) ends the segment at the position real-time playout had reached.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        wav_dir: Path | str | None = None,
        realtime: bool = True,
        label: str = "TurnAudioSink",
        on_turn: Callable[[TurnAudio], None] | None = None,
    ) -> None:
        super().__init__(
            label=label,
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )
        self._wav_dir = Path(wav_dir) if wav_dir is not None else None
        self._realtime = realtime
        self._on_turn = on_turn
        self.turns: list[TurnAudio] = []
        self._current: TurnAudio | None = None
        self._interrupted = asyncio.Event()
        self._playout: asyncio.Task[None] | None = None

    @property
    def current(self) -> TurnAudio | None:
        return self._current

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._playout is not None and not self._playout.done():
            await self._playout  # the previous segment is still playing out
        if self._current is None:
            turn = TurnAudio(index=len(self.turns) + 1, sample_rate=frame.sample_rate)
            self.turns.append(turn)
            self._current = turn
            self._interrupted.clear()
        if self._current.started_at is None:
            self._current.started_at = time.time()
            self.on_playback_started(created_at=self._current.started_at)
        self._current.frames.append(frame)

    def flush(self) -> None:
        super().flush()
        if self._current is not None and self._playout is None:
            self._playout = asyncio.create_task(self._play_out(self._current))

    def clear_buffer(self) -> None:
        if self._current is not None:
            self._interrupted.set()

    async def _play_out(self, turn: TurnAudio) -> None:
        try:
            remaining = turn.duration_s - (time.time() - (turn.started_at or time.time()))
            if self._realtime and remaining > 0 and not self._interrupted.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._interrupted.wait(), remaining)
            turn.finished_at = time.time()
            turn.interrupted = self._interrupted.is_set()
            elapsed = turn.finished_at - (turn.started_at or turn.finished_at)
            turn.played_s = min(elapsed, turn.duration_s) if turn.interrupted else turn.duration_s
            if self._wav_dir is not None:
                turn.path = write_wav(self._wav_dir / f"turn-{turn.index:03d}.wav", turn)
            if self._on_turn is not None:
                self._on_turn(turn)
        finally:
            self._current, self._playout = None, None
        self.on_playback_finished(playback_position=turn.played_s, interrupted=turn.interrupted)

    async def aclose(self) -> None:
        if self._playout is not None:
            self._interrupted.set()
            await self._playout


def write_wav(path: Path, turn: TurnAudio) -> Path:
    """Write a turn's PCM16 mono audio as a WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = turn.frames[0].num_channels if turn.frames else 1
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(turn.sample_rate)
        w.writeframes(turn.pcm())
    return path
