"""Test helpers for the LiveKit plugin tests: a scripted LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


def llm_tokens(text: str) -> list[str]:
    """Split text into LLM-like tokens: words carrying their leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


@dataclass
class ScriptedLLM:
    """Pushes tokens at a fixed rate, with optional stalls, recording when each was pushed."""

    tokens_per_second: float = 30.0
    pushed: list[tuple[float, str]] = field(default_factory=list)

    async def run(
        self,
        push: Callable[[str], None],
        text: str,
        *,
        stall_after: int | None = None,
        stall: float = 0.0,
    ) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.tokens_per_second
        next_at = loop.time()
        for i, token in enumerate(llm_tokens(text)):
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.pushed.append((loop.time(), token))
            push(token)
            next_at += interval
            if stall_after is not None and i + 1 == stall_after:
                next_at += stall

    def time_text_complete(self, prefix: str) -> float:
        """When the token completing `prefix` was pushed."""
        text = ""
        for t, token in self.pushed:
            text += token
            if len(text) >= len(prefix):
                assert text.startswith(prefix), (text, prefix)
                return t
        raise AssertionError(f"{prefix!r} was never pushed")


async def aiter_all(stream: AsyncIterator) -> list:
    return [ev async for ev in stream]
