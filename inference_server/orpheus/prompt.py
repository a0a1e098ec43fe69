"""Orpheus prompt layout: `[SOH] tok("{voice}: {text}") [EOT, EOH, SOA, SOS]`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from . import tokens as T

PROMPT_SUFFIX = (T.END_OF_TEXT, T.END_OF_HUMAN, T.START_OF_AI, T.START_OF_SPEECH)
TRAINING_SUFFIX = (T.END_OF_SPEECH, T.END_OF_AI)


class TextTokenizer(Protocol):
    def encode(self, text: str, *, split_special_tokens: bool) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class ContinuityContext:
    """The previous chunk of the same segment, replayed as a finished turn for continuity."""

    text: str
    audio_ids: Sequence[int]  # whole frames of the previous chunk's tail


def encode_text(tokenizer: TextTokenizer, voice: str, text: str) -> list[int]:
    """Token ids of `"{voice}: {text}"`, starting with BOS (the Llama-3 tokenizer adds it).

    User text is only ever text: `<|eot_id|>` or `<custom_token_5>` typed by a user is
    spelled out, never turned into a control or audio id."""
    ids = list(tokenizer.encode(f"{voice}: {text}", split_special_tokens=True))
    if ids and ids[0] == T.BOS:
        ids = ids[1:]
    if any(i >= T.BOS for i in ids):
        raise ValueError("text would encode to control token ids; remove special-token markup")
    return [T.BOS, *ids]


def build_prompt(
    tokenizer: TextTokenizer,
    voice: str,
    text: str,
    context: ContinuityContext | None = None,
) -> list[int]:
    """Prompt ids for speaking `text` in `voice`, optionally after a previous turn."""
    ids: list[int] = []
    if context is not None and context.audio_ids:
        ids += [T.START_OF_HUMAN, *encode_text(tokenizer, voice, context.text), *PROMPT_SUFFIX]
        ids += [*context.audio_ids, *TRAINING_SUFFIX]
    ids += [T.START_OF_HUMAN, *encode_text(tokenizer, voice, text), *PROMPT_SUFFIX]
    return ids


def build_training_row(
    tokenizer: TextTokenizer, voice: str, text: str, audio_ids: Sequence[int]
) -> list[int]:
    """One fine-tuning row: the prompt, the clip's audio ids, then end of speech and turn."""
    return [*build_prompt(tokenizer, voice, text), *audio_ids, *TRAINING_SUFFIX]
