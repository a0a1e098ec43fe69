"""A client that stopped reading: how a node sees it and how it ends the call (--max-stalled-read).

gRPC completes a response write once its bytes fit the client's HTTP/2 window, and a
grpc-aio client grants megabytes (over a minute of PCM) whether or not its code reads.
A write that stays pending therefore means the client has not taken anything for that
long with its buffers full: it stopped reading. Time spent waiting for text is not
counted; only a write in progress is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import grpc

from ..audio.listener import REAL_CLOCK, Clock
from ..errors import ClientTimeout
from .errors import to_status


class ReadStall:
    """Times the response write in progress; `watch()` returns once one has been pending
    for `limit_s` seconds."""

    def __init__(self, limit_s: float, clock: Clock = REAL_CLOCK) -> None:
        self.limit_s = limit_s
        self.error: ClientTimeout | None = None  # set once the client is found stalled
        self._clock = clock
        self._since: float | None = None  # start of the write in progress
        self._writing = asyncio.Event()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        self._since = self._clock.now()
        self._writing.set()
        try:
            yield
        finally:
            self._since = None
            self._writing.clear()

    def pending_s(self) -> float:
        """How long the write in progress has waited (0 when none is)."""
        return 0.0 if self._since is None else self._clock.now() - self._since

    async def watch(self) -> ClientTimeout:
        while True:
            await self._writing.wait()
            left = self.limit_s - self.pending_s()
            if left <= 0:
                self.error = ClientTimeout(
                    f"the client read no audio for max_stalled_read={self.limit_s:g}s "
                    "(--max-stalled-read): it must keep reading the stream"
                )
                return self.error
            await self._clock.sleep(left)


async def end_stalled_call(
    context: grpc.aio.ServicerContext, error: Exception, handler: asyncio.Task
) -> None:
    """End the call of a client that stopped reading.

    Its status can only follow the audio gRPC already holds for it (HTTP/2 keeps a stream's
    frames in order): a client that reads again gets that audio, then the status. So the
    call's handler is cancelled as well: the session, its engine request and its capacity
    are released now, not when (if ever) the client reads again.
    """
    err = to_status(error)
    abort = asyncio.ensure_future(context.abort(err.code, err.details))
    abort.add_done_callback(_abort_done)
    await asyncio.sleep(0)  # the status reaches gRPC before the handler is cancelled
    handler.cancel()


def _abort_done(abort: asyncio.Future) -> None:
    if not abort.cancelled():
        abort.exception()  # AbortError, as always after abort(): retrieved, not logged
