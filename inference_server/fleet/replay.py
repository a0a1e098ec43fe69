"""The client's requests of one forwarded call, replayable until an owner candidate answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..proto import tts_pb2 as pb

Requests = AsyncIterator[pb.SynthesizeRequest]


class RequestReplay:
    """The client's requests, replayable to the next candidate until one of them answers.

    One pump task reads the client stream (so no read is ever cut by a cancelled upstream
    call); each `stream()` starts from the first request, and once `commit()` is called
    requests are forgotten as they are consumed.
    """

    def __init__(self, source: Requests) -> None:
        self._source = source
        self._items: list[pb.SynthesizeRequest] = []
        self._base = 0  # absolute index of self._items[0]
        self._ended = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._generation = 0
        self._committed = False
        self._pump: asyncio.Task[None] | None = None
        self._failed = asyncio.Event()

    def stream(self) -> Requests:
        """A fresh view from the first request; older views stop yielding."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._read(), name="dispatch-request-pump")
        self._generation += 1
        return self._view(self._generation)

    async def client_failure(self) -> BaseException:
        """The error the client's stream failed with (a refused request, say), once it has.

        gRPC swallows an error raised inside a request iterator: the forwarded call would
        just wait for requests that never come. So the forwarder races the owner's
        responses against this and ends the call with the client's error itself.
        """
        await self._failed.wait()
        assert self._error is not None
        return self._error

    def commit(self) -> None:
        """The current view's upstream answered: nothing will be replayed any more."""
        self._committed = True

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _read(self) -> None:
        try:
            async for request in self._source:
                self._items.append(request)
                self._wake()
        except Exception as exc:  # the client's stream failed: every view ends with it
            self._error = exc
            self._failed.set()
        finally:
            self._ended = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _view(self, generation: int) -> Requests:
        index = 0
        while generation == self._generation:
            if index - self._base < len(self._items):
                item = self._items[index - self._base]
                index += 1
                if self._committed:
                    del self._items[: index - self._base]
                    self._base = index
                yield item
                continue
            if self._ended:
                if self._error is not None:
                    raise self._error
                return
            await self._changed.wait()
