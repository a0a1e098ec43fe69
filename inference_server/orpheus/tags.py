"""Emotion tags: the ones a model performs stay in the text; any other `<tag>` is removed.

Orpheus was trained with eight inline tags (`ORPHEUS_TAGS`). Any other tag-like markup
(`<whisper>`, `<laughs>`, `<break time="1s"/>`) and malformed tags (`<laugh`, `<<sigh>>`)
would be read aloud letter by letter, so they are removed before tokenising and counted
(SegmentMetrics.tags_removed).

What is tag-like, precisely: a `<` directly followed by a letter (any script), or by `/`
and a letter. Prose such as `3 < 5`, `x <= y`, `<3`, `<-` or `a << b` is left alone.
From there:

- `<name>`: kept when `name`, lower-cased, is one of the model's tags (and written in that
  lower-case spelling); removed otherwise (`<whisper>`, `<laughs>`, `<b>`).
- a tag with extra brackets (`<<sigh>>`, `<sigh>>`), a closing or self-closing slash
  (`</laugh>`, `<laugh/>`) or anything after its name before `>` on the same line
  (`<laugh >`, `<break time="1s"/>`): removed whole, malformed.
- `<name` with no `>` after it (`<laugh`, `<laugh and`): the `<name` is removed, malformed.
  So prose written without a space, `if x<y`, loses its `<y`: a TTS input's `<` before a
  letter is far more often markup than maths.

Removing a tag between two spaces leaves one space. A chunk's tags are filtered as a whole
text (session/synthesis.py), and chunks only end at sentence ends or whitespace, so a tag is
never split across chunks. Per-model tag sets: `tags_for_model` is the seam; every model
gets `ORPHEUS_TAGS` until a checkpoint's metadata lists its own.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import NamedTuple

# the tags of the Orpheus 0.1 checkpoints, in the model card's order
ORPHEUS_TAGS = ("laugh", "chuckle", "sigh", "cough", "sniffle", "groan", "yawn", "gasp")

_NAME = r"[^\W\d_][\w-]*"  # a letter (any script), then letters, digits, '_' or '-'
_TAG = re.compile(
    rf"""(?P<open><+)(?P<slash>/?)(?P<name>{_NAME})
    (?: (?P<rest>[^<>\n]*?) (?P<close>>+) )?""",
    re.VERBOSE,
)
_SPACED = re.compile(r"[ \t]{2,}")


def tags_for_model(model_name: str) -> frozenset[str]:
    """The tags `model_name` performs. Every Orpheus checkpoint so far uses the same eight;
    a model that lists its own (e.g. in its metadata) is looked up here."""
    del model_name  # one set for now: the seam for per-model sets
    return frozenset(ORPHEUS_TAGS)


class FilteredText(NamedTuple):
    text: str
    tags_removed: int


def filter_tags(text: str, known: Collection[str] = ORPHEUS_TAGS) -> FilteredText:
    """`text` with every tag not in `known` removed (see the module doc for the rule)."""
    if "<" not in text:
        return FilteredText(text, 0)
    removed = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal removed
        name = m["name"].lower()
        well_formed = len(m["open"]) == 1 and not m["slash"] and m["close"] == ">" and not m["rest"]
        if well_formed and name in known:
            return f"<{name}>"
        removed += 1
        return ""

    out = _TAG.sub(replace, text)
    if removed:
        out = _SPACED.sub(" ", out).strip()
    return FilteredText(out, removed)
