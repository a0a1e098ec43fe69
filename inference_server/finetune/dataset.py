"""Read a folder of clips + transcripts, resample to 24 kHz and trim silence at both ends."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..orpheus.tokens import SAMPLE_RATE

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


def load_trimmed(clips: list[Clip], threshold_db: float) -> list[TrimmedClip]:
    """Load, resample and trim every clip; silent clips are skipped with a warning."""
    out = []
    for clip in clips:
        trimmed, lead, tail = trim_silence(load_audio(clip.audio), threshold_db)
        if len(trimmed) == 0:
            log.warning("clip %s: silent at %.0f dB, skipped", clip.clip_id, threshold_db)
            continue
        log.info(
            "clip %s: trimmed %.0f ms leading, %.0f ms trailing silence", clip.clip_id, lead, tail
        )
        out.append(TrimmedClip(clip, trimmed, lead, tail))
    if not out:
        raise DatasetError(f"every clip is silent at --silence-threshold-db {threshold_db}")
    return out
