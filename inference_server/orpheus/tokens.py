"""Orpheus special token ids and the audio token layout (verified against the reference)."""

from __future__ import annotations

from typing import Any, TypeVar

BOS = 128000
END_OF_TEXT = 128009
START_OF_SPEECH = 128257
END_OF_SPEECH = 128258  # the stop token
START_OF_HUMAN = 128259
END_OF_HUMAN = 128260
START_OF_AI = 128261
END_OF_AI = 128262
PAD = 128263

VOCAB_SIZE = 156940
CUSTOM_TOKEN_BASE = 128256  # <custom_token_N> = CUSTOM_TOKEN_BASE + N
AUDIO_TOKEN_BASE = 128266
CODEBOOK_SIZE = 4096
FRAME_TOKENS = 7
AUDIO_TOKEN_END = AUDIO_TOKEN_BASE + FRAME_TOKENS * CODEBOOK_SIZE  # exclusive

# Position inside a frame -> SNAC codebook (0: coarse 12 Hz, 1: 23 Hz, 2: 47 Hz).
POSITION_CODEBOOK = (0, 1, 2, 2, 1, 2, 2)

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 2048  # SNAC hop 512 x 4 coarse steps
FRAME_MS = 1000.0 * SAMPLES_PER_FRAME / SAMPLE_RATE
TOKENS_PER_SECOND = FRAME_TOKENS * SAMPLE_RATE / SAMPLES_PER_FRAME  # 82.03 for real time

BASE_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")


def audio_token(position: int, code: int) -> int:
    """Token id of `code` at `position` (0..6) inside a frame."""
    return AUDIO_TOKEN_BASE + position * CODEBOOK_SIZE + code


def position_range(position: int) -> tuple[int, int]:
    """[start, end) token ids legal at `position` inside a frame."""
    start = AUDIO_TOKEN_BASE + position * CODEBOOK_SIZE
    return start, start + CODEBOOK_SIZE


# Both rules are plain arithmetic, so they take an int or a tensor of steps alike: the
# torch sampler and the vLLM logits processor apply these very functions to whole batches.
_Step = TypeVar("_Step")  # int or torch.Tensor of ints


def legal_start(audio_step: _Step) -> _Step:
    """First token id legal at generated audio step `audio_step` (its frame position's range)."""
    return AUDIO_TOKEN_BASE + (audio_step % FRAME_TOKENS) * CODEBOOK_SIZE


def stop_allowed(audio_step: _Step) -> Any:  # a bool, or a bool tensor
    """The stop token ends speech only at a frame boundary, after at least one whole frame."""
    return (audio_step > 0) & (audio_step % FRAME_TOKENS == 0)
