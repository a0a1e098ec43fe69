"""This machine's microphone and speaker as a session's audio (`console` mode), via PortAudio.

sounddevice needs the PortAudio library (Debian `libportaudio2`, installed by
`make system-deps`); without it, or without a device, `open_console_audio()` raises
AudioDeviceError with one line saying what is missing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents.voice import io

from .turn_audio import TurnAudio, TurnAudioSink

SAMPLE_RATE = 24000
BLOCK = SAMPLE_RATE // 100  # 10 ms frames, what the VAD and the rooms use


class AudioDeviceError(RuntimeError):
    """Console audio cannot start; the message is one line naming what is missing."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as e:  # the module loads the C library at import
        raise AudioDeviceError(
            f"console audio needs the PortAudio library ({e}): install the Debian package "
            "libportaudio2 (`make system-deps`), or type with `text`"
        ) from None
    return sounddevice


def console_devices() -> Any:
    """sounddevice, once a default microphone and speaker are known to work at 24 kHz."""
    sd = _sounddevice()
    devices = sd.query_devices()
    for kind, channels in (
        ("microphone", "max_input_channels"),
        ("speaker", "max_output_channels"),
    ):
        if not any(d[channels] > 0 for d in devices):
            raise AudioDeviceError(
                f"console needs a microphone and a speaker, and PortAudio finds no {kind} on "
                "this machine; type with `text` instead"
            )
    try:
        sd.check_input_settings(samplerate=SAMPLE_RATE, channels=1, dtype="int16")
        sd.check_output_settings(samplerate=SAMPLE_RATE, channels=1, dtype="int16")
    except Exception as e:  # PortAudioError, or ValueError for an unusable default device
        raise AudioDeviceError(
            f"console needs a microphone and a speaker: {e}; type with `text` instead"
        ) from None
    return sd


class MicrophoneInput(io.AudioInput):
    """The default input device as 10 ms PCM16 frames; `on_mic` sees each one (recording)."""

    def __init__(self, sd: Any, *, on_mic: Callable[[rtc.AudioFrame], None]) -> None:
        super().__init__(label="microphone")
        self._on_mic = on_mic
        self._frames: asyncio.Queue[rtc.AudioFrame] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._stream = sd.RawInputStream(
            samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=BLOCK, callback=self._read
        )
        self._stream.start()

    def _read(self, data: Any, frames: int, _time: Any, _status: Any) -> None:
        frame = rtc.AudioFrame(bytes(data), SAMPLE_RATE, 1, frames)
        self._loop.call_soon_threadsafe(self._frames.put_nowait, frame)

    async def __anext__(self) -> rtc.AudioFrame:
        frame = await self._frames.get()
        self._on_mic(frame)
        return frame

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class SpeakerSink(TurnAudioSink):
    """TurnAudioSink (real-time playout, WAV per turn) that also plays on the default speaker."""

    def __init__(self, sd: Any, *, wav_dir: Path, on_turn: Callable[[TurnAudio], None]) -> None:
        super().__init__(wav_dir=wav_dir, realtime=True, on_turn=on_turn, label="speaker")
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._stream = sd.RawOutputStream(
            samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=BLOCK, callback=self._write
        )
        self._stream.start()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        with self._lock:
            self._pending += bytes(frame.data)

    def clear_buffer(self) -> None:
        super().clear_buffer()
        with self._lock:  # an interruption: stop the sound now, not after the buffer drains
            self._pending.clear()

    def _write(self, out: Any, frames: int, _time: Any, _status: Any) -> None:
        with self._lock:
            n = min(len(out), len(self._pending))
            out[:n] = self._pending[:n]
            del self._pending[:n]
        out[n:] = b"\0" * (len(out) - n)

    async def aclose(self) -> None:
        await super().aclose()
        self._stream.stop()
        self._stream.close()
