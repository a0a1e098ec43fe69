"""SnacStreamDecoder bookkeeping: window shapes, keep ranges, emission timing (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_server.audio.listener import Clock, Listener
from inference_server.codec.stream_decoder import DecodeWindow, SnacStreamDecoder
from inference_server.orpheus.tokens import FRAME_MS

SPF = 2048


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SentOnEmission(SnacStreamDecoder):
    """The decoder as its session uses it, with decoding taking no time: each window's audio
    reaches the stream's listener the moment it is emitted."""

    def __init__(self, clock: FakeClock, **cfg) -> None:
        super().__init__(listener=Listener(Clock(now=clock)), **cfg)

    def _emit_until(self, end: int) -> list[DecodeWindow]:  # every emission passes here
        windows = super()._emit_until(end)
        for window in windows:
            self.listener.sent(window.emitted_frames * FRAME_MS)
        return windows


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (n, 7), dtype=np.int64)


def covered_frames(windows: list[DecodeWindow]) -> list[int]:
    out = []
    for w in windows:
        assert (w.keep_end - w.keep_start) % SPF == 0
        out.extend(range(w.first_frame, w.first_frame + w.emitted_frames))
    return out


def test_first_window_comes_with_first_frame_plus_right_context() -> None:
    dec = SentOnEmission(FakeClock(), left_context=3, right_context=2)
    seq = frames(3)
    assert dec.push(seq[0]) == []
    assert dec.push(seq[1]) == []
    (window,) = dec.push(seq[2])
    assert window.first_frame == 0 and window.emitted_frames == 1
    assert window.keep_start == 0 and window.keep_end == SPF  # frame 0 needs no left context
    np.testing.assert_array_equal(window.frames, seq)


def test_window_carries_left_and_right_context() -> None:
    dec = SentOnEmission(FakeClock(), left_context=3, right_context=2, min_lead_ms=0)
    seq = frames(10)
    windows = [w for f in seq for w in dec.push(f)]
    last = windows[-1]  # frame 7 emitted once frame 9 arrived
    assert last.first_frame == 7 and last.emitted_frames == 1
    np.testing.assert_array_equal(last.frames, seq[4:10])
    assert (last.keep_start, last.keep_end) == (3 * SPF, 4 * SPF)


def test_pending_frames_go_out_in_one_window() -> None:
    dec = SentOnEmission(FakeClock(), left_context=3, right_context=2, min_lead_ms=0)
    seq = frames(12)
    dec.push(seq[:3])
    (window,) = dec.push(seq[3:12])  # a burst: 9 new frames, frames 1..9 are ready
    assert (window.first_frame, window.emitted_frames, window.num_frames) == (1, 9, 12)
    (tail,) = dec.finish()
    assert (tail.first_frame, tail.emitted_frames) == (10, 2)
    assert tail.keep_end == tail.num_frames * SPF  # no right context at the end


def test_frames_are_held_while_the_listener_has_audio_buffered() -> None:
    clock = FakeClock()
    dec = SentOnEmission(clock, right_context=2, max_emit_frames=4, min_lead_ms=50.0)
    seq = frames(20)
    assert len(dec.push(seq[:3])) == 1  # frame 0 at once; the listener now has 85 ms
    assert dec.push(seq[3:6]) == []  # frames 1..3 ready, held: lead 85 ms >= 50 ms
    (full,) = dec.push(seq[6])  # a full window of max_emit_frames goes out regardless
    assert (full.first_frame, full.emitted_frames) == (1, 4)
    clock.now = 0.4  # lead = 5 * 85.3 - 400 = 27 ms < 50 ms: emit whatever is ready
    (due,) = dec.push(seq[7])
    assert (due.first_frame, due.emitted_frames) == (5, 1)
    dec.push(seq[8])
    clock.now = 1.0
    (polled,) = dec.poll()  # frames stalled: a timer poll releases the held frame
    assert (polled.first_frame, polled.emitted_frames) == (6, 1)


def test_a_larger_first_window_waits_for_its_frames() -> None:
    dec = SnacStreamDecoder(right_context=2, first_emit_frames=3, min_lead_ms=0.0)
    seq = frames(12)
    assert dec.push(seq[:4]) == []  # 3 frames + 2 of right context are not there yet
    (first,) = dec.push(seq[4])
    assert (first.first_frame, first.emitted_frames) == (0, 3)
    windows = dec.push(seq[5:]) + dec.finish()
    assert covered_frames([first, *windows]) == list(range(12))


def test_slow_decoding_releases_held_frames_earlier() -> None:
    clock = FakeClock()
    dec = SentOnEmission(clock, right_context=2, max_emit_frames=16, min_lead_ms=100.0)
    seq = frames(20)
    dec.push(seq[:3])  # frame 0 out: the listener has 85 ms ... then frames 1..3 go out
    assert dec.push(seq[3:6])  # lead 85 ms < 100 ms: emitted at once
    assert dec.push(seq[6:9]) == []  # lead 341 ms >= 100 ms: held
    dec.decode_ms_per_frame = 30.0  # a window of 3 + 5 context frames now costs 240 ms
    (released,) = dec.push(seq[9])  # 341 - 240 < 100: release before the listener runs dry
    assert released.first_frame == 4


def test_windows_ramp_up_with_the_listeners_buffer() -> None:
    clock = FakeClock()
    dec = SentOnEmission(clock, first_emit_frames=3, max_emit_frames=16)
    dec.decode_ms_per_frame = 10.0
    seq = frames(60)
    (first,) = dec.push(seq[:5])
    assert first.emitted_frames == 3  # the listener now has 256 ms
    # 20 frames are ready, but decoding them all could outlast 256 ms: 256/2/10 - 5 = 7.
    (second,) = dec.push(seq[5:25])
    assert (second.first_frame, second.emitted_frames) == (3, 7)
    clock.now += 2.0  # the listener ran dry: size no longer matters, every ready frame goes
    assert [w.emitted_frames for w in dec.poll()] == [13]
    # The listener stalled from 0.853 s to 2.0 s and resumed with those 13 frames (1109 ms).
    # Past the ramp (23 frames emitted), a short buffer (163 ms at 2.947 s) still sizes
    # the window to it: 163/2/10 - 5 = 3 frames, not all 20 ready (a 250 ms decode).
    clock.now = 2.947
    assert [w.emitted_frames for w in dec.push(seq[25:45])] == [3]
    clock.now += 2.0  # dry again: every ready frame goes, 16 per window
    assert [w.emitted_frames for w in dec.poll()] == [16, 1]


def test_a_flush_during_the_ramp_starts_small() -> None:
    clock = FakeClock()
    dec = SentOnEmission(clock, first_emit_frames=3, max_emit_frames=16)
    seq = frames(25)
    dec.push(seq[:5])  # first window: 3 frames
    dec.decode_ms_per_frame = 10.0
    assert [w.emitted_frames for w in dec.push(seq[5:25])] == [7]  # 10 frames out in all
    clock.now = 0.6  # the listener has 853 - 600 = 253 ms left: 7 frames are affordable
    windows = dec.finish()
    assert [w.emitted_frames for w in windows] == [7, 8]  # then doubling, up to the end
    assert windows[-1].first_frame + windows[-1].emitted_frames == 25


def test_a_later_chunk_knows_what_its_listener_has_buffered() -> None:
    """One listener per session: a segment's second chunk gets a new decoder, which sees the
    3.4 s the listener already has, so it neither rushes out a small first window nor
    ramps up from small windows as if the listener had nothing (the 7-frame window of the
    test above): its first window is a full one."""
    listener = Listener(Clock(now=FakeClock()))
    listener.sent(40 * FRAME_MS)  # the first chunk's audio, just sent
    dec = SnacStreamDecoder(first_emit_frames=3, max_emit_frames=16, listener=listener)
    dec.decode_ms_per_frame = 10.0
    seq = frames(25)
    assert dec.push(seq[:5]) == []  # held: the listener has 3.4 s to play meanwhile
    assert [w.emitted_frames for w in dec.push(seq[5:25])] == [16]  # held to a full window


def test_a_later_chunk_whose_listener_runs_dry_starts_at_once() -> None:
    clock = FakeClock()
    listener = Listener(Clock(now=clock))
    listener.sent(4 * FRAME_MS)
    clock.now += 0.25  # 90 ms left to play
    dec = SnacStreamDecoder(first_emit_frames=3, max_emit_frames=16, listener=listener)
    dec.decode_ms_per_frame = 10.0
    (first,) = dec.push(frames(5))
    assert first.emitted_frames == 3


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    bursts=st.lists(st.integers(1, 6), min_size=1, max_size=40),
    left=st.integers(0, 4),
    right=st.integers(0, 4),
    max_emit=st.integers(1, 20),
    lead=st.sampled_from([0.0, 300.0, 1e9]),
)
def test_every_frame_is_emitted_exactly_once_in_order(
    n: int, bursts: list[int], left: int, right: int, max_emit: int, lead: float
) -> None:
    dec = SentOnEmission(
        FakeClock(),
        left_context=left,
        right_context=right,
        max_emit_frames=max_emit,
        min_lead_ms=lead,
    )
    seq, windows, i = frames(n), [], 0
    for size in bursts * (n + 1):
        if i >= n:
            break
        windows += dec.push(seq[i : i + size])
        i += size
    windows += dec.finish()
    assert covered_frames(windows) == list(range(n))
    assert sum(w.keep_end - w.keep_start for w in windows) == SPF * n
    for w in windows:
        assert w.emitted_frames <= max_emit
        assert w.keep_start == min(w.first_frame, left) * SPF
        lo = w.first_frame - w.keep_start // SPF
        np.testing.assert_array_equal(w.frames, seq[lo : lo + w.num_frames])


def test_bad_input_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="context"):
        SnacStreamDecoder(left_context=-1)
    with pytest.raises(ValueError, match="max_emit_frames"):
        SnacStreamDecoder(max_emit_frames=0)
    dec = SnacStreamDecoder()
    with pytest.raises(ValueError, match="shape"):
        dec.push(np.zeros(6, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        dec.push(np.full(7, 4096))
    dec.finish()
    with pytest.raises(RuntimeError, match="finish"):
        dec.push(np.zeros(7, dtype=np.int64))


def test_a_slow_decoder_waits_for_a_window_that_keeps_up_unless_the_listener_would_starve() -> None:
    """At 35 ms per decoded frame a 1-frame window (6 frames decoded: 210 ms) plays 85 ms:
    every such window puts the stream further behind. The fewest frames whose audio
    outlasts their decode by 1.25x is 6; smaller windows wait while the buffer covers it."""
    clock = FakeClock()
    dec = SentOnEmission(clock, first_emit_frames=5, max_emit_frames=16)
    seq = frames(40)
    (first,) = dec.push(seq[:7])
    assert first.emitted_frames == 5  # the listener has 427 ms
    dec.decode_ms_per_frame = 35.0
    assert dec.min_window() == 6
    assert dec.push(seq[7:9]) == []  # 2 ready: 427 ms covers a 6-frame window (385 ms)
    assert [w.emitted_frames for w in dec.push(seq[9:13])] == [6]
    assert dec.push(seq[13:15]) == []  # 2 ready, 939 ms buffered: held
    clock.now += 0.6  # 339 ms left: no longer covers a 6-frame window, so the 2 go now
    assert [w.emitted_frames for w in dec.poll()] == [2]


def test_incremental_windows_are_shorter_by_default_but_never_below_the_first() -> None:
    clock = FakeClock()
    clock.now = 100.0  # long after the last audio: the listener is starving, frames go at once
    for incremental, longest in [(False, 16), (True, 8)]:
        dec = SentOnEmission(clock, incremental=incremental)
        dec.listener.sent(FRAME_MS)  # playing since t=0
        windows = dec.push(frames(40)) + dec.finish()
        assert max(w.emitted_frames for w in windows) == longest
        assert sum(w.emitted_frames for w in windows) == 40
    assert SnacStreamDecoder(first_emit_frames=12, incremental=True).max_emit_frames == 12
