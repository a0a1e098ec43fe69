"""Where one Synthesize call is served: on this node, or forwarded one hop to its owner.

Errors are raised as the kinds of `inference_server.errors` (a status a peer decided as
`PeerStatus`); the service turns them into the call's status. Messages for the client name
nodes by id only: peer addresses go to the log.

Stickiness: the node that serves a session holds its owner record (the router keeps it
alive) and releases it when the session ends. A node that only forwards never touches the
record after routing: if the owner dies, the record expires or is moved by the next route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

import grpc

from .. import errors as E
from ..metrics import NodeMetrics
from ..node_state import NodeState
from ..proto import tts_pb2 as pb
from ..proto import tts_pb2_grpc as pb_grpc
from .catalog import ModelCatalog
from .membership import Membership
from .nodes import NodeInfo
from .proxy import Metadata, StreamProxy, forwarded_metadata, hop_of, trusted_hop
from .replay import RequestReplay, Requests
from .router import NoNodeAvailable, SessionRouter

log = logging.getLogger(__name__)

Responses = AsyncIterator[pb.SynthesizeResponse]
LocalServe = Callable[[pb.SessionStart, Requests, Any], Responses]

# Before the owner answers, these mean "try the next candidate"; anything else is final.
_RETRY_BEFORE_RESPONSE: dict[grpc.StatusCode, type[E.OrpheusError]] = {
    grpc.StatusCode.UNAVAILABLE: E.Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: E.Overloaded,
}


@dataclass(frozen=True, slots=True)
class _NoAnswer:
    """An owner candidate failed before its first response (the call may move on)."""

    node_id: str
    kind: type[E.OrpheusError]
    details: str  # safe for the client: node ids, no addresses


class FleetDispatch:
    """Routes each new session to its owner: served here, or forwarded (one hop) with retries."""

    def __init__(
        self,
        membership: Membership,
        router: SessionRouter,
        proxy: StreamProxy,
        state: NodeState,
        metrics: NodeMetrics,
        *,
        serves_locally: bool = True,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        suspect_s: float = 5.0,
    ) -> None:
        self.self_id = router.self_id
        self.membership = membership
        self.router = router
        self.proxy = proxy
        self.state = state
        self._metrics = metrics
        self._serves_locally = serves_locally
        self._max_attempts = max_attempts
        self._connect_timeout_s = connect_timeout_s
        self._suspect_s = suspect_s
        self._suspects: dict[str, float] = {}

    async def dispatch(
        self, start: pb.SessionStart, requests: Requests, context: Any, serve_local: LocalServe
    ) -> Responses:
        """Serve the call here or forward it to the session's owner; yields the responses.

        `start.session_id` must be set (the routing key). A call serves here when a peer
        holding the cluster secret forwarded it, or when it claims a hop for a session this
        node is routing itself (a loop between nodes whose views disagree)."""
        if self.state.draining:
            raise E.Unavailable("node is draining; retry on another node")
        metadata = context.invocation_metadata()
        looped = hop_of(metadata) is not None and self.state.is_routing(start.session_id)
        if trusted_hop(metadata, self.proxy.cluster_secret) is not None or looped:
            async for response in self._serve_here(start, requests, context, serve_local):
                yield response
            return
        with self.state.routing(start.session_id):
            async for response in self._route(start, requests, context, serve_local):
                yield response

    def suspects(self) -> set[str]:
        """Nodes that failed recently: routing avoids them until they expire."""
        now = time.monotonic()
        self._suspects = {n: t for n, t in self._suspects.items() if t > now}
        return set(self._suspects)

    def suspect(self, node_id: str) -> None:
        self._suspects[node_id] = time.monotonic() + self._suspect_s

    def catalog(self) -> ModelCatalog:
        """The models the fleet serves now, from the membership records."""
        return ModelCatalog.of_nodes(self.membership.nodes())

    async def list_voices(
        self, request: pb.ListVoicesRequest, metadata: Metadata | None = None
    ) -> pb.ListVoicesResponse:
        """A router has no voices of its own: ask a live node of each model the fleet serves
        (only `request.model`'s when named), with the caller's `metadata` (its API key)."""
        voices: list[pb.Voice] = []
        for model, nodes in self._voice_sources(request.model):
            asked = pb.ListVoicesRequest(model=model)
            voices.extend(await self._ask_voices(asked, nodes, metadata))
        return pb.ListVoicesResponse(voices=voices)

    def _voice_sources(self, model: str) -> list[tuple[str, list[NodeInfo]]]:
        """(model, live nodes serving it) for each model to list; static peers, which
        advertise no model, answer for whatever they serve."""
        live = [n for n in self.membership.nodes() if not n.draining and n.node_id != self.self_id]
        named = [
            (m.name, [n for n in live if n.node_id in m.node_ids])
            for m in ModelCatalog.of_nodes(live).models()
            if not model or m.name == model
        ]
        unnamed = [n for n in live if n.role == "inference" and not n.models]
        return named or ([(model, unnamed)] if unnamed else [])

    async def _ask_voices(
        self, request: pb.ListVoicesRequest, nodes: list[NodeInfo], metadata: Metadata | None
    ) -> list[pb.Voice]:
        """The voices the first of `nodes` that answers lists."""
        upstream = forwarded_metadata(metadata, self.self_id, self.proxy.cluster_secret)
        for node in nodes:
            stub = pb_grpc.TTSStub(self.proxy.channel(node.address))
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.ListVoices(
                    request, metadata=upstream, timeout=self._connect_timeout_s
                )
                return list(reply.voices)
        return []

    # -- routing ----------------------------------------------------------------------------

    async def _route(
        self, start: pb.SessionStart, requests: Requests, context: Any, serve_local: LocalServe
    ) -> Responses:
        start = self._with_model(start)
        avoid = self.suspects()
        owner = await self._owner(start, avoid)
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
                failed = None
                async for item in self._forward(owner, start, replay, context):
                    if isinstance(item, _NoAnswer):
                        failed = item
                        break
                    yield item
                if failed is None:
                    return
                avoid.add(owner.node_id)
                if attempt == self._max_attempts:
                    raise failed.kind(
                        f"session {start.session_id}: {self._max_attempts} owner candidates "
                        f"failed; last, node {failed.node_id}: {failed.details}"
                    )
                log.info(
                    "session %s: owner %s failed before any response (%s); trying the next "
                    "candidate", start.session_id, owner.node_id, failed.details,
                )  # fmt: skip
                owner = await self._owner(start, avoid, last=failed)
        finally:
            await replay.aclose()

    def _with_model(self, start: pb.SessionStart) -> pb.SessionStart:
        """`start` naming the model it runs on (picked by its language when it names none):
        the routing key, and what the owner checks it serves."""
        model = self.catalog().resolve(start.model, start.language)
        if model == start.model:
            return start
        resolved = pb.SessionStart()
        resolved.CopyFrom(start)
        resolved.model = model
        return resolved

    async def _owner(
        self, start: pb.SessionStart, avoid: Collection[str], last: _NoAnswer | None = None
    ) -> NodeInfo:
        try:
            return await self.router.route(start.model, start.voice, start.session_id, avoid)
        except NoNodeAvailable as exc:
            if last is not None:
                raise last.kind(f"node {last.node_id}: {last.details}; and {exc}") from None
            if not any(n.serves(start.model) for n in self.membership.nodes()):
                raise E.NotFound(
                    f"model {start.model!r} is not served by any node of the fleet"
                ) from None
            raise E.Unavailable(str(exc)) from None

    async def _forward(
        self, owner: NodeInfo, start: pb.SessionStart, replay: RequestReplay, context: Any
    ) -> AsyncIterator[pb.SynthesizeResponse | _NoAnswer]:
        """The owner's responses; a retryable failure before the first one is yielded."""
        upstream = self.proxy.forward(
            owner.address,
            pb.SynthesizeRequest(start=start),
            replay.stream(),
            metadata=context.invocation_metadata(),
            timeout=context.time_remaining(),
        )
        upstream = _until_client_fails(upstream, replay)
        try:
            try:
                first = await asyncio.wait_for(anext(upstream), self._connect_timeout_s)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield self._unreachable(owner, f"did not answer within {self._connect_timeout_s}s")
                return
            except grpc.aio.AioRpcError as err:
                yield self._no_answer(owner, err)
                return
            replay.commit()
            self._metrics.proxy_hops.inc()
            yield first
            try:
                async for response in upstream:
                    yield response
            except grpc.aio.AioRpcError as err:
                raise self._lost_midstream(owner, start, err) from None
        finally:
            await upstream.aclose()

    def _no_answer(self, owner: NodeInfo, err: grpc.aio.AioRpcError) -> _NoAnswer:
        kind = _RETRY_BEFORE_RESPONSE.get(err.code())
        if kind is None:  # the owner's own verdict on this session: relay it
            raise E.PeerStatus(err.code().name, self._without_addresses(err.details() or ""))
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return self._unreachable(owner, f"unavailable ({err.details()})")
        return _NoAnswer(owner.node_id, kind, self._without_addresses(err.details() or ""))

    def _unreachable(self, owner: NodeInfo, why: str) -> _NoAnswer:
        self.suspect(owner.node_id)
        log.warning("owner %s at %s %s", owner.node_id, owner.address, why)
        return _NoAnswer(owner.node_id, E.Unavailable, "unreachable")

    def _lost_midstream(
        self, owner: NodeInfo, start: pb.SessionStart, err: grpc.aio.AioRpcError
    ) -> E.OrpheusError:
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            return E.PeerStatus(err.code().name, self._without_addresses(err.details() or ""))
        self.suspect(owner.node_id)
        log.warning(
            "session %s: owner %s at %s lost mid-stream: %s",
            start.session_id, owner.node_id, owner.address, err.details(),
        )  # fmt: skip
        return E.Unavailable(
            f"node {owner.node_id} serving session {start.session_id} was lost mid-stream; "
            "resume the session on another node"
        )

    def _without_addresses(self, details: str) -> str:
        """A peer's message with any fleet address it names replaced by that node's id."""
        for node in self.membership.nodes():
            details = details.replace(node.address, f"node {node.node_id}")
        return details

    # -- serving here -----------------------------------------------------------------------

    async def _serve_here(
        self, start: pb.SessionStart, requests: Requests, context: Any, serve_local: LocalServe
    ) -> Responses:
        """Serve locally while holding the session's owner record; release it after."""
        if not self._serves_locally:
            raise E.Unusable(f"node {self.self_id!r} is a router: it serves no sessions itself")
        self.router.hold(start.session_id)
        try:
            async for response in serve_local(start, requests, context):
                yield response
        finally:
            await self.router.release(start.session_id)


async def _until_client_fails(upstream: Responses, replay: RequestReplay) -> Responses:
    """The owner's responses until the client's own stream fails; then the client's error
    (see RequestReplay.client_failure), and the forwarded call is cancelled."""
    failure = asyncio.ensure_future(replay.client_failure())
    try:
        while True:
            response = asyncio.ensure_future(anext(upstream))
            await asyncio.wait({response, failure}, return_when=asyncio.FIRST_COMPLETED)
            if not response.done():
                response.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await response
                raise failure.result()
            try:
                item = response.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        failure.cancel()
        await upstream.aclose()
