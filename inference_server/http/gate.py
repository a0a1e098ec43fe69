"""The sentence gate of the WebSocket stream: hold LLM text until it can be spoken well.

Same semantics as the LiveKit plugin's gate (livekit.plugins.orpheus.gate): closed until
`min_sentences` complete sentences are buffered, the segment is flushed, or
`max_buffer_delay` seconds pass since the oldest held character arrived; once open, each
sentence is released as soon as it is complete; `flush()` releases everything and closes
the gate for the next segment. A sentence is complete once the text after it shows the
boundary ("It costs 3." is not complete until " Then" or "5" arrives).

This is a second implementation, on purpose: the plugin's gate takes a LiveKit sentence
tokenizer and the plugin depends on livekit-agents, which the server must not import; the
plugin in turn must not depend on the server. The gate here takes any `SentenceEnds`
function (default: the end punctuation the node's own splitter uses) and is tested for
the same behaviour.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

# Where complete sentences end in a text: indices just past each one's end punctuation,
# for those whose boundary the text already shows (something follows them).
SentenceEnds = Callable[[str], list[int]]

# The node's sentence end (session/segment_text.py), confirmed by the whitespace after it.
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’)\]]*(?=\s)")


def punctuation_sentence_ends(text: str) -> list[int]:
    """End punctuation followed by whitespace; the last sentence waits for what follows."""
    return [m.end() for m in _SENTENCE_END.finditer(text)]


def split_sentences(text: str, ends: SentenceEnds = punctuation_sentence_ends) -> list[str]:
    """`text` cut after each complete sentence (the remainder last); joins back to `text`."""
    pieces, start = [], 0
    for end in ends(text):
        pieces.append(text[start:end])
        start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class SentenceGate:
    """Releases a segment's text to `release` in whole sentences (see the module doc)."""

    def __init__(
        self,
        *,
        release: Callable[[str], None],
        min_sentences: int = 2,
        max_buffer_delay: float = 0.8,
        sentence_ends: SentenceEnds = punctuation_sentence_ends,
    ) -> None:
        if min_sentences < 1:
            raise ValueError(f"min_sentences must be >= 1, got {min_sentences}")
        if max_buffer_delay <= 0:
            raise ValueError(f"max_buffer_delay must be > 0 seconds, got {max_buffer_delay}")
        self._release = release
        self._min_sentences = min_sentences
        self._max_buffer_delay = max_buffer_delay
        self._ends = sentence_ends
        self._pending = ""
        self._open = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def pending(self) -> str:
        return self._pending

    def push(self, text: str) -> None:
        """Add LLM text; releases whatever became speakable."""
        if not text:
            return
        self._pending += text
        ends = self._ends(self._pending)
        if not self._open and len(ends) >= self._min_sentences:
            self._open = True
        if self._open and ends:
            self._emit(ends[-1])
        elif self._timer is None:
            self._arm()

    def flush(self) -> None:
        """End of segment: release all held text and close the gate for the next one."""
        self._cancel_timer()
        text, self._pending = self._pending, ""
        self._open = False
        if text.strip():
            self._release(text)

    def close(self) -> None:
        """Drop held text and stop the timer (the stream is going away)."""
        self._cancel_timer()
        self._pending = ""

    def _emit(self, end: int) -> None:
        self._cancel_timer()
        text, self._pending = self._pending[:end], self._pending[end:]
        if text.strip():
            self._release(text)
        elif text:
            self._pending = text + self._pending  # whitespace only: keep it for the join
        if self._pending.strip():
            self._arm()

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._max_buffer_delay, self._on_delay)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_delay(self) -> None:
        self._timer = None
        self._open = True  # a slow LLM must not stall speech
        self._emit(len(self._pending))
