"""Text of one segment as it streams in, handed out as speakable sentence groups.

A sentence is complete when its end punctuation is followed by whitespace or by the
end of what the client has sent so far (clients such as the LiveKit plugin send whole
sentences). Ready sentences are grouped up to `max_chars` per generation chunk: the
model degrades past ~45-60 s of audio per generation, so long text is spoken as
several chunks, in order.

Positions handed out (`TextSpan.end`) count UTF-8 bytes of the segment's text, the unit of
the wire contract (TextProgress.chars_done, see tts.proto); the chunking itself counts
characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ClientError

_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’)\]]*(?=\s|$)")
_SOFT_BREAK = re.compile(r"[,;:—–-]\s|\s")


@dataclass(frozen=True, slots=True)
class TextSpan:
    """A chunk to speak: its text and where it starts and ends (UTF-8 bytes) in the segment."""

    text: str
    end: int
    start: int = 0


class SegmentText:
    def __init__(
        self, segment_id: str, *, max_chars: int = 300, offset: int = 0, first_end: int = 0
    ) -> None:
        """Resume after failover: `offset` bytes of this segment were spoken elsewhere, and
        the first chunk ends at byte `first_end` (0 = anywhere), where the failed node cut
        the chunk it was speaking: the same text regenerates the same audio."""
        if max_chars < 20:
            raise ValueError(f"max_chars must be >= 20, got {max_chars}")
        self.segment_id = segment_id
        self.max_chars = max_chars
        self.offset = offset
        self.closed = False
        self._text = ""
        self._taken = 0  # chars already handed out
        self._taken_bytes = offset  # the same position in UTF-8 bytes, counting `offset`
        self._first_end = first_end

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
        """Closed and everything handed out (a resumed first chunk is always due)."""
        return self.closed and not self._first_end and not self._text[self._taken :].strip()

    def next_chunk(self) -> TextSpan | None:
        """The next group of complete sentences (everything left once closed), or None."""
        rest = self._text[self._taken :]
        if self._first_end:
            return self._take(rest, self._resumed_cut(rest))
        ready = len(rest) if self.closed else _complete_prefix(rest)
        if not rest[:ready].strip():
            if self.closed:
                self._take(rest, len(rest))
            return None
        return self._take(rest, _group_end(rest[:ready], self.max_chars))

    def _take(self, rest: str, cut: int | None) -> TextSpan | None:
        if cut is None:
            return None
        start = self._taken_bytes
        self._taken += cut
        self._taken_bytes += len(rest[:cut].encode())
        return TextSpan(rest[:cut].strip(), self._taken_bytes, start)

    def _resumed_cut(self, rest: str) -> int | None:
        """Chars of `rest` up to byte `first_end`; None until that much text has arrived."""
        field = f"resume.chunk_end={self._first_end}"
        data = rest.encode()[: self._first_end - self._taken_bytes]
        if len(data) < self._first_end - self._taken_bytes:
            if self.closed:
                raise ClientError(f"{field} is past the end of segment {self.segment_id!r}")
            return None
        try:
            cut = len(data.decode())
        except UnicodeDecodeError:
            raise ClientError(f"{field} is not on a character boundary") from None
        if cut > _longest_cut(self.max_chars) or not rest[:cut].strip():
            raise ClientError(
                f"{field} is not where this node could end a chunk (1 to "
                f"{_longest_cut(self.max_chars)} characters after resume.chars_done, "
                "--max-chunk-chars)"
            )
        self._first_end = 0
        return cut


def _complete_prefix(text: str) -> int:
    """Length of the longest prefix made of complete sentences."""
    end = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
    return end


def _longest_cut(max_chars: int) -> int:
    """The longest cut `_group_end` makes: a sentence end may close right after max_chars."""
    return max_chars + 1


def _group_end(text: str, max_chars: int) -> int:
    """Where the first chunk of at most `max_chars` ends: a sentence end, else a soft break."""
    if len(text) <= max_chars:
        return len(text)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, max_chars + 1) if m.end() > 0]
    if ends:
        return ends[-1]
    breaks = [m.end() for m in _SOFT_BREAK.finditer(text, 0, max_chars)]
    return breaks[-1] if breaks else max_chars
