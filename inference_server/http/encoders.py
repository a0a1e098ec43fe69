"""Streaming audio encoders: PCM16 24 kHz mono in, bytes of a response format out, as it comes.

pcm is the node's audio unchanged (s16le, 24 kHz, mono). wav is that behind a header whose
sizes say "unknown" (0xFFFFFFFF), as OpenAI streams wav. mp3 (LAME), opus (in Ogg) and flac
are FFmpeg's encoders through PyAV, muxed into a write-only sink: a non-seekable output
makes the muxers write each packet as it is made (and skip rewriting headers at the end).
"""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import numpy as np

SAMPLE_RATE = 24000

MEDIA_TYPES = {
    "pcm": "audio/pcm",  # raw s16le, 24 kHz, mono (OpenAI answers pcm the same way)
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Opus in Ogg, like OpenAI's
    "flac": "audio/flac",
}


class Encoder:
    """Feed PCM16 chunks with `encode`, then `finish` once; each returns the bytes ready."""

    def encode(self, pcm: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""

    def close(self) -> None:
        """Release what `finish` would have (the response was abandoned)."""


class PcmEncoder(Encoder):
    def encode(self, pcm: bytes) -> bytes:
        return pcm


class WavEncoder(Encoder):
    """A 44-byte RIFF header with unknown sizes, then the PCM as it comes."""

    def __init__(self) -> None:
        self._header = wav_header()

    def encode(self, pcm: bytes) -> bytes:
        header, self._header = self._header, b""
        return header + pcm

    def finish(self) -> bytes:
        return self.encode(b"")  # an empty answer is still a WAV file


def wav_header(data_bytes: int = 0xFFFFFFFF) -> bytes:
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    byte_rate = SAMPLE_RATE * 2
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, byte_rate, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class _Sink:
    """A write-only file object: PyAV sees no seek, so muxers stream."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


# format -> (container, codec, bit rate or None, container options)
_PYAV = {
    "mp3": ("mp3", "libmp3lame", 64_000, {}),
    # Ogg pages of 20 ms instead of 1 s, so Opus packets leave as they are made
    "opus": ("ogg", "libopus", 32_000, {"page_duration": "20000"}),
    "flac": ("flac", "flac", None, {}),
}


class PyAvEncoder(Encoder):
    def __init__(self, fmt: str) -> None:
        container, codec, bit_rate, options = _PYAV[fmt]
        self._sink = _Sink()
        self._out = av.open(self._sink, mode="w", format=container, options=options)
        self._stream = self._out.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        if bit_rate:
            self._stream.bit_rate = bit_rate
        self._stream.time_base = Fraction(1, SAMPLE_RATE)
        self._resampler = av.AudioResampler(
            format=self._stream.codec_context.format, layout="mono", rate=SAMPLE_RATE
        )
        self._pts = 0
        self._closed = False

    def encode(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype=np.int16)
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._pts
            self._pts += samples.size
            for converted in self._resampler.resample(frame):
                self._mux(converted)
        return self._sink.take()

    def finish(self) -> bytes:
        if not self._closed:
            self._closed = True
            for converted in self._resampler.resample(None):
                self._mux(converted)
            self._mux(None)
            self._out.close()
        return self._sink.take()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.close()

    def _mux(self, frame: av.AudioFrame | None) -> None:
        for packet in self._stream.encode(frame):
            self._out.mux(packet)


def make_encoder(fmt: str) -> Encoder:
    if fmt == "pcm":
        return PcmEncoder()
    if fmt == "wav":
        return WavEncoder()
    return PyAvEncoder(fmt)
