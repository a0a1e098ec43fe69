"""The sentence gate: hold LLM text until enough of it exists to be spoken with good prosody."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from livekit.agents import tokenize


def complete_prefix(tokenizer: tokenize.SentenceTokenizer, text: str) -> tuple[int, int]:
    """Count the complete sentences at the start of `text` and where they end in it.

    A sentence is complete once text after it shows the boundary: "It costs 3." is not
    complete until the next character arrives ("3.5" or " Then"). The end index is
    found by counting non-space characters, so any tokenizer that only normalises
    whitespace maps back onto the raw text exactly.
    """
    sentences = tokenizer.tokenize(text)
    if len(sentences) < 2:
        return 0, 0
    complete = sentences[:-1]
    wanted = sum(len(s) - sum(c.isspace() for c in s) for s in complete)
    seen = 0
    for i, ch in enumerate(text):
        if not ch.isspace():
            seen += 1
            if seen == wanted:
                return len(complete), i + 1
    return 0, 0  # the tokenizer rewrote the text: wait for flush or the delay instead


class SentenceGate:
    """Releases a segment's text to `release` in whole sentences.

    Closed until `min_sentences` complete sentences are buffered, the segment is
    flushed, or `max_buffer_delay` seconds pass since the oldest held character
    arrived. Once open, each sentence is released as soon as it completes; text
    is never held longer than `max_buffer_delay`. `flush()` releases everything
    and closes the gate again for the next segment.
    """

    def __init__(
        self,
        *,
        tokenizer: tokenize.SentenceTokenizer,
        min_sentences: int,
        max_buffer_delay: float,
        release: Callable[[str], None],
    ) -> None:
        if min_sentences < 1:
            raise ValueError(f"min_sentences must be >= 1, got {min_sentences}")
        if max_buffer_delay <= 0:
            raise ValueError(f"max_buffer_delay must be > 0 seconds, got {max_buffer_delay}")
        self._tokenizer = tokenizer
        self._min_sentences = min_sentences
        self._max_buffer_delay = max_buffer_delay
        self._release = release
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
        count, end = complete_prefix(self._tokenizer, self._pending)
        if not self._open and count >= self._min_sentences:
            self._open = True
        if self._open and count:
            self._emit(end)
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
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._max_buffer_delay, self._on_delay)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_delay(self) -> None:
        self._timer = None
        self._open = True  # a slow LLM must not stall speech
        self._emit(len(self._pending))
