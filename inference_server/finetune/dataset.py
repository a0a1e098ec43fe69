"""Read a folder of clips + transcripts, resample to 24 kHz and trim silence at both ends.

Layouts: LJSpeech (`metadata.csv`: `id|text[|normalized]` beside the audio) or `clip.wav`
+ `clip.txt` pairs. Audio longer than `--max-clip-seconds` is a long recording and its
text the whole transcript: it is cut at pauses into sentence clips (segment.py).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..orpheus.tokens import SAMPLE_RATE
from .segment import split_recording

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
METADATA = "metadata.csv"


class DatasetError(ValueError):
    """The training folder cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Clip:
    clip_id: str
    audio: Path
    text: str


@dataclass(frozen=True, slots=True)
class TrimmedClip:
    clip: Clip
    samples: np.ndarray  # mono float32 at 24 kHz, silence trimmed
    lead_ms: float
    tail_ms: float
    span_s: tuple[float, float] | None = None  # where in a long recording it was cut


@dataclass(frozen=True, slots=True)
class Dropped:
    """A clip left out of training, and why (the report lists them)."""

    clip_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DataOptions:
    silence_threshold_db: float = -40.0
    max_clip_s: float = 20.0
    min_pause_ms: float = 300.0
    tolerance: float = 1.3


def find_clips(data_dir: Path) -> list[Clip]:
    """Clips from `metadata.csv` (`id|text[|normalized]`) or from `clip.wav` + `clip.txt` pairs."""
    if not data_dir.is_dir():
        raise DatasetError(f"--data {data_dir}: not a directory")
    clips = _from_metadata(data_dir) if (data_dir / METADATA).is_file() else _from_pairs(data_dir)
    if not clips:
        raise DatasetError(f"--data {data_dir}: no WAV/FLAC clips found")
    return clips


def _audio_files(data_dir: Path) -> list[Path]:
    return sorted(
        p for p in data_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )


def _from_pairs(data_dir: Path) -> list[Clip]:
    clips, missing = [], []
    for audio in _audio_files(data_dir):
        transcript = audio.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else ""
        if text:
            clips.append(Clip(audio.stem, audio, text))
        else:
            missing.append(audio.relative_to(data_dir).as_posix())
    if missing:
        raise DatasetError(
            f"{len(missing)} clip(s) without a transcript (expected a non-empty .txt beside "
            f"each clip, or a {METADATA}): {', '.join(missing[:10])}"
        )
    return clips


def _from_metadata(data_dir: Path) -> list[Clip]:
    audio_by_id: dict[str, Path] = {}
    for audio in _audio_files(data_dir):
        audio_by_id.setdefault(audio.stem, audio)
    clips, problems = [], []
    with (data_dir / METADATA).open(encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), 1):
            if not row or not row[0].strip():
                continue
            clip_id = row[0].strip()
            text = next((t.strip() for t in reversed(row[1:]) if t.strip()), "")
            if not text:
                problems.append(f"line {lineno}: clip {clip_id!r} has no transcript")
            elif clip_id not in audio_by_id:
                problems.append(f"line {lineno}: no audio file {clip_id}.wav/.flac")
            else:
                clips.append(Clip(clip_id, audio_by_id.pop(clip_id), text))
    problems += [f"{p.name} has no transcript in {METADATA}" for p in audio_by_id.values()]
    if problems:
        raise DatasetError(f"{data_dir / METADATA}: " + "; ".join(problems[:10]))
    return clips


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 samples at 24 kHz."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DatasetError(f"unreadable audio {path}: {exc}") from exc
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def trim_silence(
    samples: np.ndarray, threshold_db: float = -40.0, window_ms: float = 10.0, pad_ms: float = 10.0
) -> tuple[np.ndarray, float, float]:
    """Cut leading and trailing windows quieter than `threshold_db` below the loudest window.

    Returns the trimmed samples and the milliseconds cut at the start and at the end.
    """
    window = max(1, int(SAMPLE_RATE * window_ms / 1000))
    n = len(samples) // window
    if n == 0:
        return samples[:0], 0.0, len(samples) * 1000.0 / SAMPLE_RATE
    rms = np.sqrt(np.mean(samples[: n * window].reshape(n, window) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db) if rms.max() > 1e-9 else []
    if len(loud) == 0:
        return samples[:0], 0.0, len(samples) * 1000.0 / SAMPLE_RATE
    pad = int(SAMPLE_RATE * pad_ms / 1000)
    start = max(0, loud[0] * window - pad)
    end = min(len(samples), (loud[-1] + 1) * window + pad)
    to_ms = 1000.0 / SAMPLE_RATE
    return samples[start:end], start * to_ms, (len(samples) - end) * to_ms


def load_trimmed(
    clips: list[Clip], options: DataOptions
) -> tuple[list[TrimmedClip], list[Dropped]]:
    """Load, resample and trim every clip, splitting long recordings; report what is dropped."""
    out: list[TrimmedClip] = []
    dropped: list[Dropped] = []
    for clip in clips:
        samples = load_audio(clip.audio)
        if len(samples) > options.max_clip_s * SAMPLE_RATE:
            kept, lost = _split(clip, samples, options)
            out += kept
            dropped += lost
            continue
        item = _trimmed(clip, samples, options.silence_threshold_db)
        if item is None:
            dropped.append(Dropped(clip.clip_id, _silent(options)))
        else:
            out.append(item)
    if not out:
        raise DatasetError(
            "no usable clip: " + "; ".join(f"{d.clip_id}: {d.reason}" for d in dropped[:5])
        )
    return out, dropped


def _silent(options: DataOptions) -> str:
    return f"silent at --silence-threshold-db {options.silence_threshold_db:g}"


def _trimmed(
    clip: Clip, samples: np.ndarray, threshold_db: float, span: tuple[float, float] | None = None
) -> TrimmedClip | None:
    trimmed, lead, tail = trim_silence(samples, threshold_db)
    if len(trimmed) == 0:
        log.warning("clip %s: silent at %.0f dB, skipped", clip.clip_id, threshold_db)
        return None
    log.info("clip %s: trimmed %.0f ms leading, %.0f ms trailing silence", clip.clip_id, lead, tail)
    return TrimmedClip(clip, trimmed, lead, tail, span)


def _split(
    clip: Clip, samples: np.ndarray, options: DataOptions
) -> tuple[list[TrimmedClip], list[Dropped]]:
    pieces = split_recording(
        samples,
        clip.text,
        threshold_db=options.silence_threshold_db,
        min_pause_ms=options.min_pause_ms,
        max_clip_s=options.max_clip_s,
        tolerance=options.tolerance,
    )
    if not pieces:
        return [], [Dropped(clip.clip_id, _silent(options))]
    kept, dropped = [], []
    for n, piece in enumerate(pieces, 1):
        part = Clip(f"{clip.clip_id}-{n:03d}", clip.audio, piece.text)
        span = (round(piece.start_s, 2), round(piece.end_s, 2))
        if piece.problem:
            dropped.append(Dropped(part.clip_id, f"{span[0]}-{span[1]} s: {piece.problem}"))
            continue
        lo, hi = int(piece.start_s * SAMPLE_RATE), int(piece.end_s * SAMPLE_RATE)
        item = _trimmed(part, samples[lo:hi], options.silence_threshold_db, span)
        if item is None:
            dropped.append(Dropped(part.clip_id, _silent(options)))
        else:
            kept.append(item)
    if any("uncertain" in d.reason for d in dropped):
        log.warning(
            "recording %s: some clips do not fit their text; is the transcript exactly what "
            "was said, in order?",
            clip.clip_id,
        )
    log.info(
        "recording %s (%.0f s): %d sentence clips kept, %d dropped",
        clip.clip_id,
        len(samples) / SAMPLE_RATE,
        len(kept),
        len(dropped),
    )
    return kept, dropped
