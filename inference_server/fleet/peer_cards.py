"""Static peers (`--peers`) come as addresses only: ask each what it serves.

A Redis fleet learns every node's model, language and base voices from its registration.
A static peer is asked once it answers (ListModels, as a peer: the cluster secret), so
routing by model or language and ListModels see the whole static fleet too. Until then the
peer is one that "may serve any model" (NodeInfo.serves). A peer is matched by the node id
`--peers` gives it (`id=host:port`; the address when no id is given), which must be the
peer's own `--node-id` (its default is its address too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from ..proto import tts_pb2 as pb
from ..proto import tts_pb2_grpc as pb_grpc
from .membership import StaticMembership
from .nodes import NodeInfo
from .proxy import forwarded_metadata

log = logging.getLogger(__name__)

Channel = Callable[[str], grpc.aio.Channel]


class PeerCards:
    """Asks every static peer whose model is unknown what it serves, until all answered."""

    def __init__(
        self,
        membership: StaticMembership,
        channel: Channel,
        *,
        cluster_secret: str = "",
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._membership = membership
        self._channel = channel
        self._metadata = forwarded_metadata((), membership.self_id, cluster_secret)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._answered: set[str] = set()  # peers asked that serve no model (routers) too

    async def start(self) -> None:
        if self._task is None and self._pending():
            self._task = asyncio.create_task(self._run(), name="peer-cards")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def learn_once(self) -> None:
        """Ask each peer of unknown model once; record what those that answer serve."""
        for peer in self._pending():
            stub = pb_grpc.TTSStub(self._channel(peer.address))
            try:
                reply = await stub.ListModels(
                    pb.ListModelsRequest(), metadata=self._metadata, timeout=self._timeout_s
                )
            except grpc.aio.AioRpcError:
                continue  # not up yet: asked again next round
            self._answered.add(peer.node_id)
            own = [m for m in reply.models if peer.node_id in m.node_ids]
            if not own:
                log.warning(
                    "static peer %s at %s serves no model under that id (a router, or "
                    "--peers names it by another id than its --node-id: use id=host:port)",
                    peer.node_id, peer.address,
                )  # fmt: skip
                continue
            model = own[0]
            self._membership.learn(
                peer.node_id,
                models=(model.name,),
                language=model.language,
                base_voices=tuple(model.base_voices),
            )
            log.info("static peer %s serves %s (%s)", peer.node_id, model.name, model.language)

    def _pending(self) -> list[NodeInfo]:
        return [p for p in self._membership.unlearned() if p.node_id not in self._answered]

    async def _run(self) -> None:
        while self._pending():
            await self.learn_once()
            await asyncio.sleep(self._interval_s)
