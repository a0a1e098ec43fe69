"""Trimmed clips -> Orpheus training rows (prompt, SNAC audio ids, end of speech).

SNAC codes are cached on disk, keyed by the trimmed samples and the codec, so a second
run (another learning rate, more epochs, `--resume`) does not re-encode: encoding is the
slow part of data preparation with a real codec.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..orpheus.codes import frames_to_token_ids
from ..orpheus.prompt import TextTokenizer, build_prompt, build_training_row
from ..orpheus.tokens import FRAME_TOKENS
from .dataset import Dropped, TrimmedClip

log = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 2048  # SNAC 24 kHz: hop 512, coarsest codebook every 4th step
Encoder = Callable[[np.ndarray], np.ndarray]  # 24 kHz samples -> frames (n, 7)


@dataclass(frozen=True, slots=True)
class TrainingRow:
    clip_id: str
    input_ids: list[int]
    prompt_len: int  # tokens before the audio; excluded from the loss


@dataclass(slots=True)
class EncodeStats:
    encoded: int = 0
    cached: int = 0
    dropped: list[Dropped] = field(default_factory=list)


def codec_id(snac_spec: str, seed: int = 0) -> str:
    """What the cached codes depend on besides the audio: the codec's weights."""
    path = Path(snac_spec)
    if not path.is_dir():
        return f"{snac_spec}-seed{seed}"
    stats = [
        f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in sorted(path.iterdir())
        if f.is_file()
    ]
    return f"{path.resolve()}|{'|'.join(stats)}"


class CodeCache:
    """`<dir>/<sha256>.npy` frames per (samples, codec); written atomically."""

    def __init__(self, directory: Path, codec: str) -> None:
        self.directory = directory
        self.codec = codec.encode()

    def key(self, samples: np.ndarray) -> str:
        digest = hashlib.sha256(self.codec)
        digest.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def get(self, samples: np.ndarray) -> np.ndarray | None:
        file = self.directory / f"{self.key(samples)}.npy"
        return np.load(file) if file.is_file() else None

    def put(self, samples: np.ndarray, frames: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        file = self.directory / f"{self.key(samples)}.npy"
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.save(f, np.asarray(frames, dtype=np.int16))  # codes < 4096
        tmp.replace(file)


def estimate_tokens(tokenizer: TextTokenizer, voice: str, item: TrimmedClip) -> int:
    """A row's length without encoding: the prompt plus 7 ids per SNAC frame, plus 2 ends."""
    frames = -(-len(item.samples) // SAMPLES_PER_FRAME)
    return len(build_prompt(tokenizer, voice, item.clip.text)) + frames * FRAME_TOKENS + 2


def encode_rows(
    clips: Sequence[TrimmedClip],
    encode: Encoder,
    cache: CodeCache,
    tokenizer: TextTokenizer,
    voice: str,
    max_tokens: int,
) -> tuple[list[TrainingRow], EncodeStats]:
    """SNAC-encode each clip (or take it from the cache) into an Orpheus training row."""
    rows, stats = [], EncodeStats()
    for item in clips:
        frames = cache.get(item.samples)
        if frames is None:
            frames = encode(item.samples)
            cache.put(item.samples, frames)
            stats.encoded += 1
        else:
            stats.cached += 1
        audio_ids = frames_to_token_ids(np.asarray(frames, dtype=np.int64))
        ids = build_training_row(tokenizer, voice, item.clip.text, audio_ids)
        if len(ids) > max_tokens:
            reason = f"{len(ids)} tokens > --max-row-tokens {max_tokens} (split long clips)"
            log.warning("clip %s: %s, skipped", item.clip.clip_id, reason)
            stats.dropped.append(Dropped(item.clip.clip_id, reason))
            continue
        prompt_len = len(build_prompt(tokenizer, voice, item.clip.text))
        rows.append(TrainingRow(item.clip.clip_id, ids, prompt_len))
    log.info("SNAC codes: %d clips encoded, %d from the cache", stats.encoded, stats.cached)
    return rows, stats
