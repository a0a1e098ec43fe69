"""The frame bookkeeping behind an exact failover seam: priming the stream decoder with the
frames the listener heard, and handing frames out with the audio that completes them."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.codec.stream_decoder import SnacStreamDecoder
from inference_server.session.resume import FrameLedger

SPF = 2048


def frames(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n)[:, None] * 7 + np.arange(7)[None, :]) % 4096


def test_primed_frames_are_left_context_only() -> None:
    decoder = SnacStreamDecoder(min_lead_ms=0)
    decoder.prime(frames(5))
    windows = decoder.push(frames(4, start=5)) + decoder.finish()
    assert windows[0].first_frame == 5  # the first frame emitted is the first new one
    assert windows[0].keep_start == 3 * SPF  # after 3 heard frames of left context
    np.testing.assert_array_equal(windows[0].frames[:3], frames(3, start=2))
    emitted = np.concatenate([w.emitted for w in windows])
    np.testing.assert_array_equal(emitted, frames(4, start=5))  # each new frame once


def test_prime_comes_first() -> None:
    decoder = SnacStreamDecoder()
    decoder.push(frames(1))
    with pytest.raises(RuntimeError):
        decoder.prime(frames(1))


def test_frames_wait_for_the_audio_that_completes_them() -> None:
    ledger = FrameLedger(frames_before=2)  # a resumed chunk: 2 frames heard already
    ledger.decoded(frames(1, start=2))  # its audio held back (head-silence trimmer)
    ledger.decoded(frames(2, start=3))
    first, out = ledger.take()  # audio goes out: every frame so far is the listener's
    assert first == 2
    np.testing.assert_array_equal(out, frames(3, start=2))
    first, out = ledger.take()
    assert (first, len(out)) == (5, 0)
