"""One utterance's bidi Synthesize call, able to move to another node mid-utterance."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
from livekit.agents import APIConnectionError, APITimeoutError
from livekit.agents.utils import aio

from .endpoints import ServerEndpoints
from .errors import api_error_from_grpc
from .log import logger
from .proto import tts_pb2 as pb
from .resume import ResumeLedger

StartRequest = Callable[[pb.ResumeFrom | None], pb.SynthesizeRequest]
# Per utterance: a reset that repeats on the reconnect gets more tries. Each try first waits
# for a READY channel, and one that only met a connection gRPC had not yet seen die is
# given back (see _take_a_try), so the tries are spent on live connections.
MAX_RESUMES = 3
_CANCEL_WAIT_S = 1.0


def _node_gone(error: grpc.aio.AioRpcError) -> bool:
    # a node shutting down cancels its calls; one that died is UNAVAILABLE
    return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class SynthesisSession:
    """Requests are queued synchronously (`send`) and written in order by one writer.

    After audio has been delivered, a node that disappears is replaced by the next
    address: the session restarts there with `SessionStart.resume`, re-sends only
    the text not yet spoken, and drops any audio chunk it already delivered.
    Before any audio, failures are raised so LiveKit's own retry starts over.
    """

    def __init__(
        self,
        *,
        endpoints: ServerEndpoints,
        session_id: str,
        start_request: StartRequest,
        connect_timeout: float,
    ) -> None:
        self._endpoints = endpoints
        self.session_id = session_id
        self._start_request = start_request
        self._connect_timeout = connect_timeout
        self._ledger = ResumeLedger()
        self._outbox: asyncio.Queue[tuple[pb.SynthesizeRequest, str]] = asyncio.Queue()
        self._write_lock = asyncio.Lock()
        self._call: grpc.aio.StreamStreamCall | None = None
        self._index = endpoints.current
        # One address is usually a routing node: resuming there lands on another owner.
        self._resumes_left = MAX_RESUMES
        self._tried_on_old_connection = False  # the last resume try found the channel READY
        self._flushed = asyncio.Event()  # set when the server starts to owe audio
        self._writer: asyncio.Task[None] | None = None
        self.started: pb.SessionStarted | None = None

    async def open(self) -> pb.SessionStarted:
        """Start the session on the current primary; raises LiveKit API errors."""
        self._call, self.started = await self._start_on(self._index, resume=None)
        self._writer = asyncio.create_task(self._write_loop(), name="orpheus.session.writer")
        return self.started

    def send_text(self, text: str, segment_id: str) -> None:
        request = pb.SynthesizeRequest(text=pb.TextChunk(text=text, segment_id=segment_id))
        self._outbox.put_nowait((request, segment_id))

    def send_flush(self, segment_id: str) -> None:
        request = pb.SynthesizeRequest(flush=pb.Flush(segment_id=segment_id))
        self._outbox.put_nowait((request, segment_id))

    def send_end_input(self) -> None:
        self._outbox.put_nowait((pb.SynthesizeRequest(end_input=pb.EndInput()), ""))

    async def responses(self) -> AsyncIterator[pb.SynthesizeResponse]:
        """Audio, progress and segment-done messages until the server ends the stream."""
        while True:
            assert self._call is not None
            try:
                while (response := await self._next_response()) is not grpc.aio.EOF:
                    if self._accept(response):
                        yield response
                return
            except grpc.aio.AioRpcError as e:
                if not (_node_gone(e) and self._ledger.audio_received):
                    if _node_gone(e):
                        self._endpoints.mark_unreachable(self._index)
                    raise api_error_from_grpc(e, request_id=self.session_id) from None
                logger.warning(
                    "orpheus node %s lost mid-utterance (%s), resuming on the next node",
                    self._endpoints.addresses[self._index],
                    e.code().name,
                    extra={"session_id": self.session_id},
                )
                await self._resume_somewhere(e)

    async def _next_response(self) -> pb.SynthesizeResponse | object:
        """The next message; while the server owes audio, silence longer than the connect
        timeout is a stalled node (APITimeoutError), as LiveKit bounds every receive."""
        assert self._call is not None
        read = asyncio.ensure_future(self._call.read())
        try:
            while not self._ledger.awaiting_audio:  # waiting for the LLM: no bound
                self._flushed.clear()
                owed = asyncio.ensure_future(self._flushed.wait())
                await asyncio.wait({read, owed}, return_when=asyncio.FIRST_COMPLETED)
                owed.cancel()
                if read.done():
                    return read.result()
            async with asyncio.timeout(self._connect_timeout):
                return await read
        except TimeoutError:
            raise APITimeoutError(
                f"orpheus node {self._endpoints.addresses[self._index]} sent nothing for "
                f"{self._connect_timeout}s mid-utterance (conn_options.timeout)",
                retryable=not self._ledger.audio_received,
            ) from None
        finally:
            read.cancel()

    async def aclose(self) -> None:
        """Cancel the call: the server stops generating for this session."""
        if self._writer is not None:
            await aio.cancel_and_wait(self._writer)
        if self._call is not None:
            await _cancelled(self._call)

    def _accept(self, response: pb.SynthesizeResponse) -> bool:
        kind = response.WhichOneof("kind")
        if kind == "audio":
            return self._ledger.accept_audio(response.audio)
        if kind == "progress":
            self._ledger.on_progress(response.progress.chars_done)
        elif kind == "segment_done":
            self._ledger.on_segment_done()
        elif kind == "started":
            self.started = response.started
        return True

    async def _start_on(
        self, index: int, *, resume: pb.ResumeFrom | None
    ) -> tuple[grpc.aio.StreamStreamCall, pb.SessionStarted]:
        call = self._endpoints.stub(index).Synthesize(metadata=self._endpoints.metadata)
        try:
            async with asyncio.timeout(self._connect_timeout):  # connect, write and answer
                await call.write(self._start_message(resume))
                first = await call.read()
        except TimeoutError:
            call.cancel()
            raise APITimeoutError(
                f"orpheus node {self._endpoints.addresses[index]} did not start the session "
                f"within {self._connect_timeout}s"
            ) from None
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                self._endpoints.mark_unreachable(index)
            raise api_error_from_grpc(e, request_id=self.session_id) from None
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "started":
            call.cancel()
            raise APIConnectionError(
                f"orpheus node {self._endpoints.addresses[index]} answered SessionStart "
                f"with {first!r} instead of SessionStarted"
            )
        return call, first.started

    def _start_message(self, resume: pb.ResumeFrom | None) -> pb.SynthesizeRequest:
        request = self._start_request(resume)
        if resume is not None and self.started is not None and self.started.HasField("seed"):
            # the session's seed, so the session stays one seeded session (the seam does not
            # depend on it: the new node continues after the frames already heard)
            request.start.sampling.seed = self.started.seed
        return request

    async def _resume_somewhere(self, lost: grpc.aio.AioRpcError) -> None:
        """Resume on the next address, up to MAX_RESUMES per utterance in all: a reset that
        repeats on the reconnect, or a next node that is down too, gets another try."""
        self._tried_on_old_connection = False
        while True:
            try:
                if await self._resume():
                    return
            except APIConnectionError as e:  # unreachable or timed out: try the next one
                log_extra = {"session_id": self.session_id}
                logger.warning("orpheus resume failed (%s)", e, extra=log_extra)
                continue
            raise api_error_from_grpc(lost, request_id=self.session_id) from None

    async def _resume(self) -> bool:
        """One resume try; False if none is left."""
        async with self._write_lock:
            assert self._call is not None
            await _cancelled(self._call)
            self._endpoints.mark_unreachable(self._index)
            index = self._endpoints.next_after(self._index)
            if not await self._take_a_try(index):
                return False
            call, self.started = await self._start_on(index, resume=self._ledger.resume_from())
            try:
                for request in self._ledger.replay():
                    await call.write(request)
                if self._ledger.input_ended:
                    await call.done_writing()
            except grpc.aio.AioRpcError as e:
                await _cancelled(call)
                raise api_error_from_grpc(e, request_id=self.session_id) from None
            self._call, self._index = call, index
            return True

    async def _take_a_try(self, index: int) -> bool:
        """Wait (conn_options.timeout at most) for a READY channel to `index`, then spend one
        of the tries left; False if none is left. A try made while gRPC is still
        reconnecting would fail at once and be wasted; a channel not READY in time is a
        spent try, raised as APIConnectionError.

        A lost call's failure can reach us before gRPC has marked its dead connection
        closed, so the channel may still read READY and the try fails on that connection
        too. When the next wait sees the channel reconnect, that try met only a connection
        that had already failed, not a new one: it is given back. A channel that stays READY
        (a routing node whose owner died) never reconnects, so every try there counts."""
        if not self._resumes_left and not self._tried_on_old_connection:
            return False
        reconnected: bool | None = None  # None: not READY in time
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connect_timeout):
                reconnected = await self._endpoints.until_ready(index)
        if reconnected and self._tried_on_old_connection:
            self._resumes_left += 1
        self._tried_on_old_connection = reconnected is False
        if not self._resumes_left:
            return False
        self._resumes_left -= 1
        if reconnected is None:
            raise APIConnectionError(
                f"orpheus node {self._endpoints.addresses[index]}: no connection was ready "
                f"to resume on within {self._connect_timeout}s (conn_options.timeout)"
            )
        return True

    async def _write_loop(self) -> None:
        while True:
            request, segment_id = await self._outbox.get()
            async with self._write_lock:
                assert self._call is not None
                self._ledger.record(request, segment_id)
                if self._ledger.awaiting_audio:
                    self._flushed.set()
                # a failed write shows up on the read side, which resumes and replays it
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await self._call.write(request)
                    if request.WhichOneof("kind") == "end_input":
                        await self._call.done_writing()


async def _cancelled(call: grpc.aio.StreamStreamCall) -> None:
    """Cancel `call` and let gRPC finish it (a bare cancel() leaves its tasks running)."""
    call.cancel()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CANCEL_WAIT_S):
            await call.code()
