"""One-hop forwarding of a Synthesize stream to the node that owns the session.

A hop header is only a claim: without the cluster secret any client can send one. So a node
trusts it (serves the call itself, never forwards it again) only when the call also carries
the cluster secret this node is configured with.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Sequence

import grpc

from inference_server.errors import ProtocolOrderError
from inference_server.proto import tts_pb2, tts_pb2_grpc

HOP_HEADER = "x-orpheus-hop"
CLUSTER_SECRET_HEADER = "x-orpheus-cluster-secret"  # proves to the owner that a peer forwards
# Transport headers gRPC sets itself on the upstream call.
_NOT_FORWARDED = ("user-agent", "content-type", "te", "host")

Metadata = Sequence[tuple[str, str | bytes]]


def _value(metadata: Metadata | None, header: str) -> str | None:
    for key, value in metadata or ():
        if key == header:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def hop_of(metadata: Metadata | None) -> str | None:
    """The node this call claims forwarded it (untrusted: see `trusted_hop`), or None."""
    return _value(metadata, HOP_HEADER)


def trusted_hop(metadata: Metadata | None, cluster_secret: str) -> str | None:
    """The forwarding node, when the call proves it is a peer with the cluster secret; None
    for a client's call, whatever hop header it claims."""
    hop, secret = hop_of(metadata), _value(metadata, CLUSTER_SECRET_HEADER)
    if hop is None or not cluster_secret or secret is None:
        return None
    return hop if hmac.compare_digest(secret.encode(), cluster_secret.encode()) else None


def forwarded_metadata(
    metadata: Metadata | None, self_id: str, cluster_secret: str = ""
) -> list[tuple[str, str | bytes]]:
    """The client's metadata (API key, ...) plus our hop header (and the cluster secret when
    set), minus transport headers and whatever a client claimed for those two."""
    ours = (HOP_HEADER, CLUSTER_SECRET_HEADER)
    kept = [
        (key, value)
        for key, value in metadata or ()
        if key not in ours and not key.startswith((":", "grpc-")) and key not in _NOT_FORWARDED
    ]
    secret = [(CLUSTER_SECRET_HEADER, cluster_secret)] if cluster_secret else []
    return [*kept, (HOP_HEADER, self_id), *secret]


class StreamProxy:
    """Forwards bidi Synthesize streams to peers over one cached channel per peer address."""

    def __init__(
        self,
        self_id: str,
        channel_options: Sequence[tuple[str, object]] = (),
        cluster_secret: str = "",
    ) -> None:
        self.self_id = self_id
        self.cluster_secret = cluster_secret
        self._options = list(channel_options)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        """The shared channel to `address` (created on first use)."""
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    async def forward(
        self,
        address: str,
        first_request: tts_pb2.SynthesizeRequest,
        request_iterator: AsyncIterator[tts_pb2.SynthesizeRequest],
        metadata: Metadata | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        """Yield the owner's responses to the request stream (first request already read).

        `metadata` (the client's) goes upstream with our hop header; an upstream error is
        raised as `grpc.aio.AioRpcError`. Cancelling the iteration cancels the upstream call.
        """
        if (hop := trusted_hop(metadata, self.cluster_secret)) is not None:
            raise ProtocolOrderError(
                f"already forwarded by node {hop!r}: a session is proxied one hop at most"
            )
        call = tts_pb2_grpc.TTSStub(self.channel(address)).Synthesize(
            _prepend(first_request, request_iterator),
            metadata=forwarded_metadata(metadata, self.self_id, self.cluster_secret),
            timeout=timeout,
        )
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()  # no-op once the call has finished; stops the owner if we were cancelled

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.close() for channel in channels))


async def _prepend(
    first: tts_pb2.SynthesizeRequest, rest: AsyncIterator[tts_pb2.SynthesizeRequest]
) -> AsyncIterator[tts_pb2.SynthesizeRequest]:
    yield first
    async for request in rest:
        yield request
