"""Where one Synthesize call is served: on this node, or forwarded one hop to its owner.

Stickiness: the node that serves a session keeps its sticky record alive (keepalive timer)
and releases it when the session ends. A node that only forwards never touches the record
after routing: if the owner dies, the record simply expires or is moved by the next route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import grpc

from ..errors import ClientError
from ..fleet.membership import Membership
from ..fleet.nodes import NodeInfo
from ..fleet.proxy import StreamProxy, hop_of
from ..fleet.router import NoNodeAvailable, SessionRouter
from ..metrics import NodeMetrics
from ..proto import tts_pb2 as pb
from ..proto import tts_pb2_grpc as pb_grpc
from .messages import check_session_id

log = logging.getLogger(__name__)

Requests = AsyncIterator[pb.SynthesizeRequest]
Responses = AsyncIterator[pb.SynthesizeResponse]
LocalServe = Callable[[pb.SessionStart, Requests, grpc.aio.ServicerContext], Responses]

# Before the owner answers, these mean "try the next candidate"; anything else is final.
_RETRY_BEFORE_RESPONSE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


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

    def stream(self) -> Requests:
        """A fresh view from the first request; older views stop yielding."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._read(), name="routing-request-pump")
        self._generation += 1
        return self._view(self._generation)

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


class FleetRouting:
    """Routes each new session to its owner: served here, or forwarded (one hop) with retries."""

    def __init__(
        self,
        self_id: str,
        membership: Membership,
        router: SessionRouter,
        proxy: StreamProxy,
        metrics: NodeMetrics,
        *,
        serves_locally: bool = True,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        suspect_s: float = 5.0,
        keepalive_s: float = 10.0,
        on_load: Callable[[int], None] | None = None,
    ) -> None:
        self.self_id = self_id
        self.membership = membership
        self.router = router
        self.proxy = proxy
        self.draining = False
        self.idle = asyncio.Event()  # set while no session is served or forwarded here
        self.idle.set()
        self._metrics = metrics
        self._serves_locally = serves_locally
        self._max_attempts = max_attempts
        self._connect_timeout_s = connect_timeout_s
        self._suspect_s = suspect_s
        self._keepalive_s = keepalive_s
        self._on_load = on_load
        self._suspects: dict[str, float] = {}
        self._active = 0  # sessions served or forwarded by this node
        self._held = 0  # sessions served by this node

    # -- entry ------------------------------------------------------------------------------

    async def dispatch(
        self, start: pb.SessionStart, requests: Requests, context: Any, serve_local: LocalServe
    ) -> Responses:
        """Serve the call here or forward it to the session's owner; yields the responses."""
        if self.draining:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "node is draining; retry on another node"
            )
        if hop_of(context.invocation_metadata()) is not None:
            if not self._serves_locally:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"node {self.self_id!r} is a router: it serves no sessions itself",
                )
            stream = self._serve_here(start, requests, context, serve_local)
        else:
            try:
                start = _with_session_id(start)
            except ClientError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            stream = self._route(start, requests, context, serve_local)
        self._active += 1
        self.idle.clear()
        try:
            async for response in stream:
                yield response
        finally:
            self._active -= 1
            if not self._active:
                self.idle.set()

    def suspects(self) -> set[str]:
        """Nodes that failed recently: routing avoids them until they expire."""
        now = time.monotonic()
        self._suspects = {n: t for n, t in self._suspects.items() if t > now}
        return set(self._suspects)

    def suspect(self, node_id: str) -> None:
        self._suspects[node_id] = time.monotonic() + self._suspect_s

    @property
    def forwarding(self) -> int:
        """Sessions this node forwards to another node right now."""
        return self._active - self._held

    # -- routing ----------------------------------------------------------------------------

    async def _route(
        self, start: pb.SessionStart, requests: Requests, context: Any, serve_local: LocalServe
    ) -> Responses:
        avoid = self.suspects()
        owner = await self._owner(start, avoid, context)
        if owner.node_id == self.self_id:  # the common case pays nothing for replays
            async for response in self._serve_here(start, requests, context, serve_local):
                yield response
            return
        replay = RequestReplay(requests)
        try:
            for attempt in range(1, self._max_attempts + 1):
                if owner.node_id == self.self_id:
                    served = self._serve_here(start, replay.stream(), context, serve_local)
                    async for response in served:
                        yield response
                    return
                error = None
                async for response in self._forward(owner, start, replay, context):
                    if isinstance(response, grpc.aio.AioRpcError):
                        error = response
                        break
                    yield response
                if error is None:
                    return
                avoid.add(owner.node_id)
                if attempt < self._max_attempts:
                    log.info(
                        "session %s: owner %s answered %s before any response (%s); "
                        "trying the next candidate",
                        start.session_id, owner.node_id, error.code().name, error.details(),
                    )  # fmt: skip
                    owner = await self._owner(start, avoid, context, last=error)
            await context.abort(
                error.code(),
                f"session {start.session_id}: {self._max_attempts} owner candidates failed; "
                f"last, node {owner.node_id}: {error.details()}",
            )
        finally:
            await replay.aclose()

    async def _owner(
        self,
        start: pb.SessionStart,
        avoid: Collection[str],
        context: Any,
        last: grpc.aio.AioRpcError | None = None,
    ) -> NodeInfo:
        try:
            return await self.router.route(start.model, start.voice, start.session_id, avoid)
        except NoNodeAvailable as exc:
            if last is not None:
                await context.abort(last.code(), f"{last.details()}; and {exc}")
            if not any(n.serves(start.model) for n in self.membership.nodes()):
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"model {start.model!r} is not served by any node of the fleet",
                )
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise  # unreachable: abort raises

    async def _forward(
        self, owner: NodeInfo, start: pb.SessionStart, replay: RequestReplay, context: Any
    ) -> AsyncIterator[pb.SynthesizeResponse | grpc.aio.AioRpcError]:
        """The owner's responses; an error before the first one is yielded (to retry)."""
        first_request = pb.SynthesizeRequest(start=start)
        upstream = self.proxy.forward(
            owner.address,
            first_request,
            replay.stream(),
            metadata=context.invocation_metadata(),
        )
        try:
            try:
                first = await asyncio.wait_for(anext(upstream), self._connect_timeout_s)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.suspect(owner.node_id)
                yield _Unreachable(owner, self._connect_timeout_s)
                return
            except grpc.aio.AioRpcError as err:
                if err.code() not in _RETRY_BEFORE_RESPONSE:
                    await context.abort(err.code(), err.details() or "")
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    self.suspect(owner.node_id)
                yield err
                return
            replay.commit()
            self._metrics.proxy_hops.inc()
            yield first
            try:
                async for response in upstream:
                    yield response
            except grpc.aio.AioRpcError as err:
                await self._lost_midstream(owner, start, err, context)
        finally:
            await upstream.aclose()

    async def _lost_midstream(
        self, owner: NodeInfo, start: pb.SessionStart, err: grpc.aio.AioRpcError, context: Any
    ) -> None:
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            await context.abort(err.code(), err.details() or "")
        self.suspect(owner.node_id)
        log.warning(
            "session %s: owner %s lost mid-stream: %s", start.session_id, owner.node_id, err
        )
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"node {owner.node_id} ({owner.address}) serving session {start.session_id} "
            f"was lost mid-stream ({err.details()}); resume the session on another node",
        )

    # -- serving here -----------------------------------------------------------------------

    async def _serve_here(
        self, start: pb.SessionStart, requests: Requests, context: Any, serve_local: LocalServe
    ) -> Responses:
        """Serve locally while keeping the session's sticky record alive; release it after."""
        self._held += 1
        self._report_load()
        keepalive = asyncio.create_task(self._keepalive(start.session_id))
        try:
            async for response in serve_local(start, requests, context):
                yield response
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            self._held -= 1
            self._report_load()
            if start.session_id:
                await self.router.release(start.session_id)

    async def _keepalive(self, session_id: str) -> None:
        if not session_id:
            return
        while True:
            await asyncio.sleep(self._keepalive_s)
            await self.router.keepalive(session_id)

    def _report_load(self) -> None:
        if self._on_load is not None:
            self._on_load(self._held)

    async def list_voices(self, request: pb.ListVoicesRequest) -> pb.ListVoicesResponse:
        """A router has no voices of its own: ask a live inference node."""
        for node in self.membership.nodes():
            if node.serves(request.model) and not node.draining and node.node_id != self.self_id:
                stub = pb_grpc.TTSStub(self.proxy.channel(node.address))
                with contextlib.suppress(grpc.aio.AioRpcError):
                    return await stub.ListVoices(request, timeout=self._connect_timeout_s)
        return pb.ListVoicesResponse()


class _Unreachable(grpc.aio.AioRpcError):
    """The owner did not answer SessionStart in time (counts as UNAVAILABLE)."""

    def __init__(self, owner: NodeInfo, timeout_s: float) -> None:
        details = f"node {owner.node_id} ({owner.address}) did not answer within {timeout_s}s"
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=details,
        )


def _with_session_id(start: pb.SessionStart) -> pb.SessionStart:
    """The session id is the routing key: assign one if the client sent none."""
    if start.session_id:
        check_session_id(start.session_id)
        return start
    assigned = pb.SessionStart()
    assigned.CopyFrom(start)
    assigned.session_id = uuid.uuid4().hex
    return assigned
