"""Reading what a client already sent before its call ends with an error.

grpc/grpc#36066: a Python aio client whose write is still in flight when the call ends
reports INTERNAL "Internal error from Core" instead of our status. Clients write ahead
(a SessionStart with text behind it, LLM tokens as they come) and read meanwhile, so every
refusal, at any point of a stream, first reads the messages already on their way, within
a small bound, and only then ends the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

READ_S = 0.5  # at most this long in all
IDLE_S = 0.05  # and no longer than this for a message after the first
MAX_MESSAGES = 16


async def read_in_flight(requests: AsyncIterator[object], *, first_idle_s: float = READ_S) -> None:
    """Consume (and drop) the client's messages until it half-closes, goes quiet or the
    bound is reached. Whatever these messages would raise is moot: the call is ending."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(READ_S):
            await asyncio.wait_for(anext(requests), first_idle_s)
            for _ in range(MAX_MESSAGES - 1):
                await asyncio.wait_for(anext(requests), IDLE_S)
