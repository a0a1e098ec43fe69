"""Incremental SNAC decode (codec/snac_stream.py) on the real 24 kHz architecture with
random weights: each frame decoded once, against a full decode and the windowed decode."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from inference_server.audio.listener import Clock, Listener
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.codec.snac_stream import UnsupportedLayer, streaming
from inference_server.codec.stream_decoder import INCREMENTAL_MAX_EMIT_FRAMES, SnacStreamDecoder

SPF = 2048
ERROR_BOUND = 1e-4  # the windowed decode's relative RMS budget (test_codec_snac_decode.py)


@pytest.fixture(scope="module")
def snac() -> nn.Module:
    return load_snac("random", seed=0)


@pytest.fixture(scope="module")
def decoder(snac: nn.Module) -> SnacDecoder:
    return SnacDecoder(snac)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    seq = np.random.default_rng(7).integers(0, 4096, (30, 7), dtype=np.int64)
    seq[1], seq[-2] = 0, 4095
    return seq


def rel_rms(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - ref) ** 2)) / np.sqrt(np.mean(ref**2)))


def streamed(decoder: SnacDecoder, seq: np.ndarray, **options) -> np.ndarray:
    """Frames pushed one by one; each window decoded as it comes out, as a session does."""
    stream = SnacStreamDecoder(incremental=True, **{"min_lead_ms": 0.0, **options})
    pieces = [decoder.decode_windows([w])[0] for frame in seq for w in stream.push(frame)]
    pieces += [decoder.decode_windows([w])[0] for w in stream.finish()]
    return np.concatenate(pieces)


def test_the_cpu_decoder_decodes_incrementally(decoder: SnacDecoder) -> None:
    assert decoder.incremental


def test_with_the_whole_reach_ahead_every_sample_is_a_full_decodes(
    decoder: SnacDecoder, frames: np.ndarray
) -> None:
    # 3 frames ahead cover the decoder's ~2.3-frame reach: every kept sample is committed,
    # and the end is the true end, so the audio is a full decode's up to float rounding.
    audio = streamed(decoder, frames, right_context=3)
    full = decoder.decode_frames(frames)
    assert audio.shape == full.shape
    assert rel_rms(audio, full) < 1e-6


def test_two_frames_ahead_stay_within_the_windowed_budget_and_error(
    decoder: SnacDecoder, frames: np.ndarray
) -> None:
    full = decoder.decode_frames(frames)
    incremental = streamed(decoder, frames)
    windowed_stream = SnacStreamDecoder(min_lead_ms=0.0)
    windows = [w for frame in frames for w in windowed_stream.push(frame)]
    windowed = np.concatenate(decoder.decode_windows(windows + windowed_stream.finish()))
    assert rel_rms(incremental, full) < ERROR_BOUND
    # No left context to cut short: never worse than the windowed decode's error.
    assert rel_rms(incremental, full) <= rel_rms(windowed, full) * 1.001


def test_window_sizes_change_only_the_provisional_edges(
    decoder: SnacDecoder, frames: np.ndarray
) -> None:
    full = decoder.decode_frames(frames)
    listener = Listener(Clock(now=lambda: 0.0))
    listener.sent(60_000)  # a minute buffered on a stopped clock: frames are held
    stream = SnacStreamDecoder(listener=listener, incremental=True)
    windows = [w for frame in frames for w in stream.push(frame)] + stream.finish()
    assert max(w.emitted_frames for w in windows) == INCREMENTAL_MAX_EMIT_FRAMES
    held = np.concatenate([decoder.decode_windows([w])[0] for w in windows])
    assert rel_rms(held, full) < ERROR_BOUND


def test_a_streams_windows_decode_in_order(decoder: SnacDecoder, frames: np.ndarray) -> None:
    stream = SnacStreamDecoder(min_lead_ms=0.0, incremental=True)
    windows = [w for frame in frames[:8] for w in stream.push(frame)]
    assert len(windows) >= 3
    decoder.decode_windows([windows[0]])
    with pytest.raises(RuntimeError, match="in order"):
        decoder.decode_windows([windows[2]])  # skips the second


def test_a_resumed_chunk_continues_the_heard_frames(
    decoder: SnacDecoder, frames: np.ndarray
) -> None:
    stream = SnacStreamDecoder(min_lead_ms=0.0, incremental=True)
    stream.prime(frames[:10])  # heard before a failover: context only
    windows = [w for frame in frames[10:] for w in stream.push(frame)] + stream.finish()
    assert windows[0].first_frame == 10 and windows[0].frames_start == 7  # 3 frames of context
    audio = np.concatenate([decoder.decode_windows([w])[0] for w in windows])
    full = decoder.decode_frames(frames)[10 * SPF :]
    assert audio.shape == full.shape
    assert rel_rms(audio, full) < ERROR_BOUND


def test_streams_and_plain_windows_in_one_call_come_back_in_order(
    decoder: SnacDecoder, frames: np.ndarray
) -> None:
    a = SnacStreamDecoder(min_lead_ms=0.0, incremental=True).push(frames[:6])[0]
    b = SnacStreamDecoder(min_lead_ms=0.0).push(frames[5:11])[0]
    c = SnacStreamDecoder(min_lead_ms=0.0, incremental=True).push(frames[10:16])[0]
    together = decoder.decode_windows([a, b, c])
    a2 = SnacStreamDecoder(min_lead_ms=0.0, incremental=True).push(frames[:6])[0]
    c2 = SnacStreamDecoder(min_lead_ms=0.0, incremental=True).push(frames[10:16])[0]
    alone = [decoder.decode_windows([w])[0] for w in (a2, b, c2)]
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_windowed_decoder_ignores_a_streams_state(snac: nn.Module, frames: np.ndarray) -> None:
    windowed = SnacDecoder(snac, incremental=False)  # what a GPU decoder does
    assert not windowed.incremental
    audio = streamed(windowed, frames)
    assert rel_rms(audio, windowed.decode_frames(frames)) < ERROR_BOUND


def test_layers_without_an_incremental_form_are_named() -> None:
    with pytest.raises(UnsupportedLayer, match="LSTM"):
        streaming(nn.LSTM(4, 4))
    with pytest.raises(UnsupportedLayer, match="stride-1"):
        streaming(nn.Conv1d(4, 4, 3, stride=2, padding=1))
