"""Per-stream bookkeeping that turns arriving SNAC frames into decode windows (no torch here).

SNAC's decoder is not causal: a frame's audio depends on about +-2.3 neighbouring frames.
A window therefore carries up to `left_context` already-emitted frames, the `k` frames
to emit and `right_context` frames of lookahead; only the emitted frames' samples are kept.
At the sequence edges a full decode sees zero padding too, so frame 0 needs no left
context and `finish()` needs no right context: both edges match a full decode exactly.

Measured on the real 24 kHz architecture with random weights (40 random frames incl.
codes 0 and 4095, one frame per window, the worst case), relative RMS error of the
streamed audio vs one full decode of the same codes:
  reference (4-frame window, 1 left / 2 right, keeps the 2nd frame): 6.1e-3
  left 1 / right 1: 8.7e-3   left 2 / right 2: 7.8e-5 (up to 8.2e-5 over seeds)
  left 3 / right 2: 5.5e-5   left 3 / right 3: 5.5e-7
Default left 3 / right 2: under the 1e-4 budget with margin; the extra left frame costs
no latency (it is already there), while right context delays the first audio.
bench/bench_snac_decode.py re-measures this and writes bench/results/snac_decode.json.

Incremental decode (`incremental=True`, what a session asks for when its decoder keeps
stream state, i.e. on CPU): the windows carry one `CodecState`, the decoder decodes each
frame once and keeps no left context error (codec/snac_stream.py); windows still carry
their context frames, so a decoder without stream state decodes them the same way.

Emission: a stream's first frame goes out as soon as its right context exists (low
TTFA). After that, ready frames (a later chunk's first ones too) may be held back while
the listener (audio/listener.py: the session's, so a later chunk knows what its listener
already has) still has more than `min_lead_ms` of audio buffered, so later windows
carry up to `max_emit_frames` frames: the context overhead is paid once per window
instead of once per frame, which is what brings decode cost per audio second far below
the reference's.
`min_lead_ms=0` emits every ready frame at once. The 500 ms default leaves room for a
16-frame window's decode on one busy CPU thread (about 260 ms alone here, with the
cropped decode of `SnacDecoder`, and more while other streams decode) after the lead
dips below it (2 sessions over gRPC, 6 utterances: at 300 ms 3 underran, by 92-153 ms;
at 500 ms 1, by 447 ms); bench/bench_snac_decode.py reports the cost and underruns.

Window size: never smaller than `min_window()`, the fewest frames whose audio outlasts
their decode at the observed cost (a busy CPU's 3-frame start-up windows once took
240 ms each for 255 ms of audio, so a stream fell further behind with every window),
and no larger than half the listener's buffer can pay for (`_affordable`). In-process, 3
sessions x 2 utterances: worst underruns 0-805 ms before, 0-85 ms with both rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..audio.listener import Listener
from ..orpheus.tokens import FRAME_MS, FRAME_TOKENS, SAMPLES_PER_FRAME

DEFAULT_LEFT_CONTEXT = 3
DEFAULT_RIGHT_CONTEXT = 2
DEFAULT_MAX_EMIT_FRAMES = 16
# Incremental windows pay one tail frame, not a context, so a longer window saves nothing
# (one thread: 19.2 ms per frame at 6 frames, 19.0 at 8, 19.6 at 16) and only holds a
# decode worker longer: 4 sessions over gRPC here, the wait of a bulk window for a worker
# fell from p90 321-429 ms with 16 to 179-255 ms with 8.
INCREMENTAL_MAX_EMIT_FRAMES = 8
DEFAULT_MIN_LEAD_MS = 500.0
KEEP_UP = 1.25  # a window's audio outlasts its decode by this much (see `min_window`)
# An incrementally decoded window costs its new frames plus a provisional right edge of
# about a frame (see codec/snac_stream.py), where a windowed one pays its whole context.
INCREMENTAL_TAIL = 1


class CodecState:
    """Where the codec keeps a stream's decoder state from one window to the next (opaque
    here: `codec/snac_stream.py`). Its windows then decode each frame once."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: object = None


@dataclass(frozen=True, slots=True)
class DecodeWindow:
    """Frames to decode together and the sample range of the result to keep."""

    frames: np.ndarray  # (n, 7) int64 codes
    keep_start: int  # first sample to keep
    keep_end: int  # one past the last sample to keep
    first_frame: int  # stream index of the first emitted frame
    codec: CodecState | None = None  # the stream's, when its windows decode incrementally

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def frames_start(self) -> int:
        """Stream index of `frames[0]`."""
        return self.first_frame - self.keep_start // SAMPLES_PER_FRAME

    @property
    def cost_frames(self) -> int:
        """Frames' worth of decoding this window costs (`SnacDecodeBatcher.ms_per_frame`)."""
        return self.num_frames if self.codec is None else self.emitted_frames + INCREMENTAL_TAIL

    @property
    def shape(self) -> tuple[int, int, int]:
        """Windows of one shape decode together in one pass (`SnacDecoder.decode_windows`)."""
        return self.num_frames, self.keep_start, self.keep_end

    @property
    def emitted_frames(self) -> int:
        return (self.keep_end - self.keep_start) // SAMPLES_PER_FRAME

    @property
    def emitted(self) -> np.ndarray:
        """The frames whose audio this window produces (n, 7)."""
        lo = self.keep_start // SAMPLES_PER_FRAME
        return self.frames[lo : lo + self.emitted_frames]


class SnacStreamDecoder:
    """Accepts frames in stream order and returns the windows that are ready to decode."""

    def __init__(
        self,
        *,
        left_context: int = DEFAULT_LEFT_CONTEXT,
        right_context: int = DEFAULT_RIGHT_CONTEXT,
        max_emit_frames: int | None = None,
        min_lead_ms: float = DEFAULT_MIN_LEAD_MS,
        first_emit_frames: int = 1,
        listener: Listener | None = None,
        incremental: bool = False,
    ) -> None:
        """`listener`: the stream's, told by its owner what was sent (a session, after
        decoding and trimming). Without one nothing is ever buffered: nothing is held.
        `incremental`: the windows carry one `CodecState`, so a decoder that keeps the
        stream's state (`SnacDecoder.incremental`) decodes each frame once; the cost
        model then charges a window its frames plus `INCREMENTAL_TAIL`, not its context.
        `max_emit_frames`: by default `INCREMENTAL_MAX_EMIT_FRAMES` when incremental,
        else `DEFAULT_MAX_EMIT_FRAMES`, and never fewer than `first_emit_frames`."""
        if max_emit_frames is None:
            default = INCREMENTAL_MAX_EMIT_FRAMES if incremental else DEFAULT_MAX_EMIT_FRAMES
            max_emit_frames = max(default, first_emit_frames)
        if left_context < 0 or right_context < 0:
            raise ValueError(f"context must be >= 0, got left={left_context} right={right_context}")
        if not 1 <= first_emit_frames <= max_emit_frames:
            raise ValueError(
                f"first_emit_frames must be in [1, max_emit_frames], got {first_emit_frames}"
            )
        if max_emit_frames < 1:
            raise ValueError(f"max_emit_frames must be >= 1, got {max_emit_frames}")
        self.left_context = left_context
        self.right_context = right_context
        self.max_emit_frames = max_emit_frames
        self.min_lead_ms = min_lead_ms
        # Frames in the first window: more audio up front lets a slow decoder start the
        # second window before the listener runs dry, at the cost of that much later TTFA.
        self.first_emit_frames = first_emit_frames
        # Observed decode cost (set by the caller): frames are held only while the listener's
        # buffer outlasts decoding them, so a slow decoder starts its next window in time.
        self.decode_ms_per_frame = 0.0
        self.listener = listener or Listener()
        self._codec = CodecState() if incremental else None
        self._frames: list[np.ndarray] = []
        self._emitted = 0
        self._primed = 0  # frames given by `prime`: context only, never emitted here
        self._finished = False

    @property
    def frames_received(self) -> int:
        return len(self._frames)

    @property
    def frames_emitted(self) -> int:
        return self._emitted

    def prime(self, frames: np.ndarray | Sequence[np.ndarray]) -> None:
        """Frames the listener already heard (a resumed chunk): left context for the frames
        pushed next, whose audio then continues theirs; their own audio is not emitted."""
        if self._frames:
            raise RuntimeError("prime() before any push()")
        self._frames.extend(_as_frames(frames))
        self._emitted = self._primed = len(self._frames)

    def push(self, frames: np.ndarray | Sequence[np.ndarray]) -> list[DecodeWindow]:
        """Add one frame (7,) or several ((n, 7) or a list); return the windows now due."""
        if self._finished:
            raise RuntimeError("push() after finish(): start a new SnacStreamDecoder per segment")
        self._frames.extend(_as_frames(frames))
        return self.poll()

    def poll(self) -> list[DecodeWindow]:
        """Windows due now without new frames (call on a timer if frames may stall)."""
        ready = len(self._frames) - self.right_context
        pending = ready - self._emitted
        first = self._emitted == self._primed
        if pending <= 0 or (first and pending < self.first_emit_frames):
            return []
        lead = self.listener.buffer_ms()
        # A stream's first audio never waits; a later chunk's first window waits like any
        # other while its listener still has the earlier chunks' audio to play.
        may_hold = not first or self.listener.playing
        holding = may_hold and 0 < self.min_lead_ms <= lead - self._window_cost_ms(pending)
        if not holding and not (may_hold and self._worth_waiting(pending, lead)):
            return self._emit_until(self._emitted + self._affordable(pending, lead))
        if not holding:
            return []
        full = pending - pending % self.max_emit_frames
        return self._emit_until(self._emitted + full)

    def min_window(self) -> int:
        """The fewest frames a window should emit at the observed decode cost: its audio
        must outlast its decode by `KEEP_UP`, or the stream falls further behind with every
        window (each pays the context frames again); 1 until a cost is known."""
        cost = self.decode_ms_per_frame
        spare = FRAME_MS - KEEP_UP * cost
        if cost <= 0:
            return 1
        if spare <= 0:
            return self.max_emit_frames
        overhead = self._overhead_frames
        return min(self.max_emit_frames, max(1, math.ceil(KEEP_UP * overhead * cost / spare)))

    def _worth_waiting(self, pending: int, lead: float) -> bool:
        """Fewer frames than `min_window` are ready, and the listener's buffer still covers
        decoding a window of that size once they are: wait for them."""
        smallest = self.min_window()
        return 0 < pending < smallest and lead > self._window_cost_ms(smallest)

    def _affordable(self, pending: int, lead: float) -> int:
        """Of `pending` frames, those whose decode takes at most half the listener's buffer,
        but never fewer than `min_window` (smaller windows only add context overhead).

        Right after the first window the buffer is short: a window of every ready frame
        could outlast it, so the window is sized to the buffer instead and the next one
        (with more buffer) grows. The same holds whenever the buffer runs short later (the
        first 16-frame window after the ramp once came with 427 ms buffered and took 509 ms
        to decode). Once the listener has run dry, or before a decode cost is known, every
        ready frame goes.
        """
        after_first = self._emitted > self._primed
        if not after_first or lead <= 0 or self.decode_ms_per_frame <= 0:
            return pending
        frames = int(lead / 2 / self.decode_ms_per_frame) - self._overhead_frames
        return min(pending, max(self.first_emit_frames, self.min_window(), frames))

    def _window_cost_ms(self, frames: int) -> float:
        """Expected decode time of a window emitting `frames` (0 until a cost is known)."""
        return (frames + self._overhead_frames) * self.decode_ms_per_frame

    @property
    def _overhead_frames(self) -> int:
        """Frames' worth of decoding a window costs beyond the frames it emits."""
        if self._codec is not None:
            return INCREMENTAL_TAIL
        return self.left_context + self.right_context

    def finish(self) -> list[DecodeWindow]:
        """End of the sequence: flush every remaining frame (no right context exists).

        During the ramp the flush is split like the ramp itself: a first window the
        listener's buffer can afford, then windows doubling in size, so the stream's last
        audio (and other streams' windows queued behind it) never waits on one big call.
        """
        self._finished = True
        end, windows = len(self._frames), []
        size = self._affordable(end - self._emitted, self.listener.buffer_ms())
        while self._emitted < end:
            windows += self._emit_until(min(end, self._emitted + size))
            size = min(self.max_emit_frames, 2 * size)
        return windows

    def _emit_until(self, end: int) -> list[DecodeWindow]:
        windows = []
        while self._emitted < end:
            windows.append(
                self._window(self._emitted, min(end, self._emitted + self.max_emit_frames))
            )
            self._emitted = windows[-1].first_frame + windows[-1].emitted_frames
        return windows

    def _window(self, start: int, end: int) -> DecodeWindow:
        lo = max(0, start - self.left_context)
        hi = min(len(self._frames), end + self.right_context)
        return DecodeWindow(
            frames=np.stack(self._frames[lo:hi]),
            keep_start=(start - lo) * SAMPLES_PER_FRAME,
            keep_end=(end - lo) * SAMPLES_PER_FRAME,
            first_frame=start,
            codec=self._codec,
        )


def _as_frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arr = np.asarray(frames, dtype=np.int64)
    if arr.size == 0 and arr.ndim <= 1:
        return arr.reshape(0, FRAME_TOKENS)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != FRAME_TOKENS:
        raise ValueError(f"frames must have shape (7,) or (n, 7), got {np.shape(frames)}")
    if arr.size and (arr.min() < 0 or arr.max() >= 4096):
        raise ValueError("frame codes must lie in [0, 4096)")
    return arr
