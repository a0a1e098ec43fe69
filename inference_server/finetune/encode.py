"""Trimmed clips -> Orpheus training rows (prompt, SNAC audio ids, end of speech)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from snac import SNAC

from ..codec.snac_model import encode_audio
from ..orpheus.codes import frames_to_token_ids
from ..orpheus.prompt import TextTokenizer, build_prompt, build_training_row
from ..orpheus.tokens import FRAME_TOKENS
from .dataset import TrimmedClip

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainingRow:
    clip_id: str
    input_ids: list[int]
    prompt_len: int  # tokens before the audio; excluded from the loss


def encode_rows(
    clips: Sequence[TrimmedClip],
    snac: SNAC,
    tokenizer: TextTokenizer,
    voice: str,
    max_tokens: int,
) -> list[TrainingRow]:
    """SNAC-encode each clip and lay it out as an Orpheus training row; overlong rows skipped."""
    rows = []
    for item in clips:
        frames = encode_audio(snac, item.samples)
        audio_ids = frames_to_token_ids(np.asarray(frames))
        ids = build_training_row(tokenizer, voice, item.clip.text, audio_ids)
        if len(ids) > max_tokens:
            log.warning(
                "clip %s: %d tokens > --max-row-tokens %d, skipped (split long clips)",
                item.clip.clip_id,
                len(ids),
                max_tokens,
            )
            continue
        prompt_len = len(build_prompt(tokenizer, voice, item.clip.text))
        rows.append(TrainingRow(item.clip.clip_id, ids, prompt_len))
        log.debug("clip %s: %d frames", item.clip.clip_id, len(audio_ids) // FRAME_TOKENS)
    return rows
