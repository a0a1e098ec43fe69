"""SNAC streaming decode: CPU cost per audio second and error vs a full decode, ours vs reference.

The reference decodes the last 4 frames every time a frame arrives and keeps the 2nd
(1 frame of left context, 2 of right; never emits frame 0 or the last 2 frames), with
SNAC's own layer code and a full decode of the window, as the reference server does.
Ours is `SnacStreamDecoder` (default config) + `SnacDecoder` (on CPU incremental: each
frame decoded once, codec/snac_stream.py; fast CPU kernels); `ours_stock_kernels` repeats
ours with SNAC's layer code, `one_at_a_time_windowed` with the windowed decode (a window's
context decoded again each time, as on a GPU). Frames arrive on a simulated
clock at `--speed` x real time (one at a time, or in bursts); decode runs whenever
windows are due and its measured CPU time (one thread) advances the clock, so holding,
lead and underruns are those a single stream on one decode thread would see. The real
24 kHz architecture with seeded random weights decodes on CPU.
Writes bench/results/snac_decode.json.
Run: python -m bench.bench_snac_decode [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from inference_server.audio.listener import Clock, Listener
from inference_server.codec.snac_decoder import SnacDecoder
from inference_server.codec.snac_model import load_snac
from inference_server.codec.stream_decoder import DecodeWindow, SnacStreamDecoder
from inference_server.orpheus.tokens import FRAME_MS, SAMPLE_RATE, SAMPLES_PER_FRAME

RESULTS = Path(__file__).parent / "results" / "snac_decode.json"
FRAME_S = SAMPLES_PER_FRAME / SAMPLE_RATE
POLL_S = 0.05  # the session's timer poll while frames are held


@dataclass
class Run:
    """One streamed decode: cost, audio, and when each piece reached the listener."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    calls: int = 0
    decoded_frames: int = 0  # frames pushed through the network, context included
    emitted: list[tuple[float, int]] = field(default_factory=list)  # (time, frames)
    pieces: list[np.ndarray] = field(default_factory=list)

    def decode(
        self, decoder: SnacDecoder | ReferenceWindowDecoder, windows: list[DecodeWindow]
    ) -> float:
        cpu, wall = time.process_time(), time.perf_counter()
        pcm = decoder.decode_windows(windows)
        self.wall_s += time.perf_counter() - wall
        took = time.process_time() - cpu
        self.cpu_s += took
        self.calls += 1
        self.decoded_frames += sum(w.num_frames for w in windows)
        self.pieces += pcm
        return took  # CPU time of one decode thread: the simulated clock ignores others' load

    def summary(self, full: np.ndarray, skip_head: int = 0) -> dict:
        audio = np.concatenate(self.pieces)
        ref = full[skip_head * SAMPLES_PER_FRAME :][: len(audio)]
        audio_s = len(audio) / SAMPLE_RATE
        frames = sum(n for _, n in self.emitted)
        return {
            "audio_s": round(audio_s, 4),
            "cpu_s_per_audio_s": self.cpu_s / audio_s,
            "wall_s_per_audio_s": self.wall_s / audio_s,
            "decode_calls": self.calls,
            "mean_frames_emitted_per_call": frames / max(1, len(self.emitted)),
            "decoded_frames_per_emitted_frame": self.decoded_frames / frames,
            "rel_rms_error": rel_rms(audio, ref),
            "first_audio_s": self.emitted[0][0],
            **underruns(self.emitted),
        }


def rel_rms(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - ref) ** 2)) / np.sqrt(np.mean(ref**2)))


def underruns(emitted: list[tuple[float, int]]) -> dict:
    """Playback starts with the first audio; an underrun is a piece that lands after it ran dry."""
    start, buffered, count, gap = emitted[0][0], 0.0, 0, 0.0
    for at, frames in emitted:
        late = (at - start) - buffered
        if late > 1e-9:
            count, gap, start = count + 1, gap + late, start + late  # playback stalls, then resumes
        buffered += frames * FRAME_S
    return {"underruns": count, "underrun_s": round(gap, 4)}


def arrival_times(n: int, speed: float, burst: int) -> np.ndarray:
    """Frame j is generated at (j + 1) / rate; in bursts, a group lands with its last frame."""
    times = (np.arange(n) + 1) * FRAME_S / speed
    last = np.minimum((np.arange(n) // burst + 1) * burst, n) - 1
    return times[last]


def run_ours(decoder: SnacDecoder, frames: np.ndarray, arrivals: np.ndarray, **cfg) -> Run:
    now = 0.0
    listener = Listener(Clock(now=lambda: now))  # on the simulated time below
    stream = SnacStreamDecoder(listener=listener, **{"incremental": decoder.incremental, **cfg})
    run, i, n = Run(), 0, len(frames)
    while i < n or stream.frames_emitted < n:
        while i < n and arrivals[i] <= now:
            i += 1
        if i > stream.frames_received:
            windows = stream.push(frames[stream.frames_received : i])
        else:
            windows = stream.poll()
        if i == n:
            windows += stream.finish()
        if windows:
            now += run.decode(decoder, windows)
            run.emitted += [(now, w.emitted_frames) for w in windows]
            listener.sent(sum(w.emitted_frames for w in windows) * FRAME_MS)
        elif i < n:
            now = min(arrivals[i], now + POLL_S)
    return run


class ReferenceWindowDecoder:
    """The reference's decode: the whole 4-frame window through stock SNAC, then slice."""

    def __init__(self, decoder: SnacDecoder) -> None:
        self._decoder = decoder

    def decode_windows(self, windows: list[DecodeWindow]) -> list[np.ndarray]:
        return [self._decoder.decode_frames(w.frames)[w.keep_start : w.keep_end] for w in windows]


def run_reference(decoder: ReferenceWindowDecoder, frames: np.ndarray, arrivals: np.ndarray) -> Run:
    run, now = Run(), 0.0
    for j in range(3, len(frames)):
        now = max(now, arrivals[j])
        window = DecodeWindow(
            frames[j - 3 : j + 1], SAMPLES_PER_FRAME, 2 * SAMPLES_PER_FRAME, j - 2
        )
        now += run.decode(decoder, [window])
        run.emitted.append((now, 1))
    return run


def context_errors(decoder: SnacDecoder, frames: np.ndarray) -> dict:
    """Worst case (one frame per window) error for several left/right contexts."""
    full, out = decoder.decode_frames(frames), {}
    for left, right in ((1, 1), (2, 2), (3, 2), (3, 3)):
        stream = SnacStreamDecoder(
            left_context=left, right_context=right, max_emit_frames=1, min_lead_ms=0
        )
        windows = [w for f in frames for w in stream.push(f)] + stream.finish()
        audio = np.concatenate(decoder.decode_windows(windows))
        out[f"left{left}_right{right}"] = rel_rms(audio, full)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24 frames instead of --frames")
    parser.add_argument("--frames", type=int, default=120, help="10 s: one sentence group")
    parser.add_argument("--speed", type=float, default=1.5, help="generation speed x real time")
    parser.add_argument("--burst", type=int, default=7, help="frames per burst (burst case)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    n = 24 if args.quick else args.frames
    torch.set_num_threads(args.threads)

    decoder = SnacDecoder(load_snac("random", seed=0))
    stock = SnacDecoder(load_snac("random", seed=0, fast_kernels=False))
    frames = np.random.default_rng(0).integers(0, 4096, (n, 7), dtype=np.int64)
    frames[1], frames[-2] = 0, 4095
    full = decoder.decode_frames(frames)
    decoder.decode_frames(frames[:4])  # warm-up
    stock.decode_frames(frames[:4])

    steady = arrival_times(n, args.speed, 1)
    bursts = arrival_times(n, args.speed, args.burst)
    reference = run_reference(ReferenceWindowDecoder(stock), frames, steady)
    reference = reference.summary(full, skip_head=1)
    cases = {
        "one_at_a_time": run_ours(decoder, frames, steady).summary(full),
        "bursts": run_ours(decoder, frames, bursts).summary(full),
        "one_at_a_time_no_hold": run_ours(decoder, frames, steady, min_lead_ms=0).summary(full),
        "one_at_a_time_stock_kernels": run_ours(stock, frames, steady).summary(full),
        "one_at_a_time_windowed": run_ours(decoder, frames, steady, incremental=False).summary(
            full
        ),
    }
    ref_cpu = reference["cpu_s_per_audio_s"]
    result = {
        "frames": n,
        "generation_speed_x_realtime": args.speed,
        "burst_frames": args.burst,
        "torch_threads": args.threads,
        "defaults": {
            k: getattr(SnacStreamDecoder(), k)
            for k in ("left_context", "right_context", "max_emit_frames", "min_lead_ms")
        },
        "reference": reference,
        "ours": cases,
        "cpu_ratio_vs_reference": {k: v["cpu_s_per_audio_s"] / ref_cpu for k, v in cases.items()},
        "error_ratio_vs_reference": {
            k: v["rel_rms_error"] / reference["rel_rms_error"] for k, v in cases.items()
        },
        "worst_case_error_by_context": context_errors(decoder, frames[:40]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
