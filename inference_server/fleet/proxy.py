"""One-hop forwarding of a Synthesize stream to the node that owns the session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc

from inference_server.proto import tts_pb2, tts_pb2_grpc

HOP_HEADER = "x-orpheus-hop"
CLUSTER_SECRET_HEADER = "x-orpheus-cluster-secret"  # proves to the owner that a peer forwards
# Transport headers gRPC sets itself on the upstream call.
_NOT_FORWARDED = ("user-agent", "content-type", "te", "host")

Metadata = Sequence[tuple[str, str | bytes]]


def hop_of(metadata: Metadata | None) -> str | None:
    """The node that forwarded this call, or None if it came straight from a client."""
    for key, value in metadata or ():
        if key == HOP_HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return None


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
        context: grpc.aio.ServicerContext | None = None,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        """Yield the owner's responses to the request stream (first request already read).

        With `context`, the client's metadata and deadline go upstream and an upstream error
        aborts the client's call with the same code and details; without it, the upstream
        `grpc.aio.AioRpcError` is raised. Cancelling the iteration cancels the upstream call.
        """
        incoming = context.invocation_metadata() if context is not None else metadata
        if (hop := hop_of(incoming)) is not None:
            message = f"already forwarded by node {hop!r}: a session is proxied one hop at most"
            if context is not None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, message)
            raise ValueError(message)
        timeout = context.time_remaining() if context is not None else None
        call = tts_pb2_grpc.TTSStub(self.channel(address)).Synthesize(
            _prepend(first_request, request_iterator),
            metadata=forwarded_metadata(incoming, self.self_id, self.cluster_secret),
            timeout=timeout,
        )
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            if context is None:
                raise
            await context.abort(err.code(), err.details() or "")
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
