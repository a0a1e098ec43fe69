"""How long a text should take to speak: the yardstick for a chunk that runs past its text.

Estimate = spoken characters / the language's rate + a pause per punctuation mark + a
second per emotion tag. Spoken characters are letters and digits in any script (a Hangul
syllable or a Han character is one; Devanagari vowel signs are not counted), so each
language's rate absorbs its script's density. The rates were fitted on speech from
espeak-ng at its default speed (bench/bench_speech_length.py refits them and reports the
estimator's error on held-out texts): a real checkpoint's own rate is within the slack of
`overrun_limit_s`; refit from its audio for a tighter bound.
"""

from __future__ import annotations

import re

from .tags import ORPHEUS_TAGS

# spoken characters per second (bench/bench_speech_length.py, espeak-ng default speed)
CHARS_PER_SECOND: dict[str, float] = {
    "en": 16.2,
    "fr": 18.7,
    "de": 18.1,
    "es": 15.9,
    "it": 15.3,
    "ko": 5.8,
    "zh": 2.7,
    "hi": 7.3,
}
DEFAULT_CHARS_PER_SECOND = CHARS_PER_SECOND["en"]
SENTENCE_PAUSE_S = 0.35
CLAUSE_PAUSE_S = 0.2
TAG_S = 1.0  # a laugh or a sigh takes about a second
GRACE_S = 1.0  # short texts: a breath before and after

_SENTENCE_END = re.compile(r"[.!?。！？…।]+")
_CLAUSE = re.compile(r"[,;:，、；：]")
_TAG = re.compile(r"<(" + "|".join(ORPHEUS_TAGS) + r")>")


def spoken_seconds(text: str, language: str = "en") -> float:
    """Seconds `text` should take to speak in `language` (unknown languages: English's rate)."""
    rate = CHARS_PER_SECOND.get(language.split("-")[0].lower(), DEFAULT_CHARS_PER_SECOND)
    tags = len(_TAG.findall(text))
    words = _TAG.sub(" ", text)
    chars = sum(c.isalnum() for c in words)
    pauses = (
        len(_SENTENCE_END.findall(words)) * SENTENCE_PAUSE_S
        + len(_CLAUSE.findall(words)) * CLAUSE_PAUSE_S
    )
    return chars / rate + pauses + tags * TAG_S


def overrun_limit_s(text: str, language: str, factor: float) -> float:
    """The audio length past which a chunk speaking `text` has overrun (factor 0: no limit)."""
    if factor <= 0:
        return float("inf")
    return factor * spoken_seconds(text, language) + GRACE_S
