"""Text of one segment as it streams in, handed out as speakable sentence groups.

A sentence is complete when its end punctuation is followed by whitespace or by the
end of what the client has sent so far (clients such as the LiveKit plugin send whole
sentences). Ready sentences are grouped up to `max_chars` per generation chunk: the
model degrades past ~45-60 s of audio per generation, so long text is spoken as
several chunks, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’)\]]*(?=\s|$)")
_SOFT_BREAK = re.compile(r"[,;:—–-]\s|\s")


@dataclass(frozen=True, slots=True)
class TextSpan:
    """A chunk to speak: its text and where it ends inside the segment's text."""

    text: str
    end: int


class SegmentText:
    def __init__(self, segment_id: str, *, max_chars: int = 300, offset: int = 0) -> None:
        """`offset`: chars of this segment already spoken elsewhere (resume after failover)."""
        if max_chars < 20:
            raise ValueError(f"max_chars must be >= 20, got {max_chars}")
        self.segment_id = segment_id
        self.max_chars = max_chars
        self.closed = False
        self._text = ""
        self._taken = 0  # chars already handed out
        self._offset = offset

    @property
    def text(self) -> str:
        return self._text

    def append(self, text: str) -> None:
        if self.closed:
            raise RuntimeError(f"segment {self.segment_id!r} is closed")
        self._text += text

    def close(self) -> None:
        self.closed = True

    @property
    def exhausted(self) -> bool:
        """Closed and everything handed out."""
        return self.closed and not self._text[self._taken :].strip()

    def next_chunk(self) -> TextSpan | None:
        """The next group of complete sentences (everything left once closed), or None."""
        rest = self._text[self._taken :]
        ready = len(rest) if self.closed else _complete_prefix(rest)
        if not rest[:ready].strip():
            if self.closed:
                self._taken = len(self._text)
            return None
        cut = _group_end(rest[:ready], self.max_chars)
        start = self._taken
        self._taken += cut
        return TextSpan(self._text[start : self._taken].strip(), self._offset + self._taken)


def _complete_prefix(text: str) -> int:
    """Length of the longest prefix made of complete sentences."""
    end = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
    return end


def _group_end(text: str, max_chars: int) -> int:
    """Where the first chunk of at most `max_chars` ends: a sentence end, else a soft break."""
    if len(text) <= max_chars:
        return len(text)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, max_chars + 1) if m.end() > 0]
    if ends:
        return ends[-1]
    breaks = [m.end() for m in _SOFT_BREAK.finditer(text, 0, max_chars)]
    return breaks[-1] if breaks else max_chars
