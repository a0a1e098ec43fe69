"""The HTTP front door's gRPC client of its own node, over a private unix socket.

Every HTTP request becomes an ordinary orpheus.v1.TTS call carrying the caller's
`Authorization` header as metadata, so the node's interceptors and servicer apply exactly
as to any gRPC client: API keys, per-key limits, admission, draining, ring routing to the
session's owner (one hop) and the error taxonomy. There is no second copy of any policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from ..proto import tts_pb2 as pb
from ..proto import tts_pb2_grpc as pb_grpc

AUTH_METADATA = "authorization"  # = security.auth_interceptor.AUTH_HEADER
# grpc/grpc#36066: a write racing the server's refusal can replace the refusal's status
# with this one on the client side. Before any response nothing happened: call again.
CLIENT_RACE = "Internal error from Core"
_RACE_ATTEMPTS = 5
_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", -1),)
_END = None  # closes the request stream


@dataclass
class NodeSession:
    """A live Synthesize call: its SessionStarted, then `responses()`; `send` more text."""

    started: pb.SessionStarted
    call: grpc.aio.StreamStreamCall
    _input: asyncio.Queue[pb.SynthesizeRequest | None]
    _responses: AsyncIterator[pb.SynthesizeResponse]

    def send(self, request: pb.SynthesizeRequest) -> None:
        self._input.put_nowait(request)

    def end_input(self) -> None:
        self._input.put_nowait(pb.SynthesizeRequest(end_input=pb.EndInput()))
        self._input.put_nowait(_END)

    def responses(self) -> AsyncIterator[pb.SynthesizeResponse]:
        return self._responses

    def cancel(self) -> None:
        self.call.cancel()


class NodeClient:
    def __init__(self, target: str) -> None:
        """`target`: the node's gRPC address as grpc spells it (e.g. unix:/path)."""
        self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.TTSStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def open(
        self,
        messages: Sequence[pb.SynthesizeRequest],
        authorization: str | None,
        *,
        more_input: bool = False,
    ) -> NodeSession:
        """Start a session with `messages` (SessionStart first) and wait for SessionStarted.

        Raises grpc.aio.AioRpcError when the node refuses the session. Without
        `more_input` the request stream ends after `messages`."""
        for attempt in range(1, _RACE_ATTEMPTS + 1):
            requests: asyncio.Queue[pb.SynthesizeRequest | None] = asyncio.Queue()
            for message in messages:
                requests.put_nowait(message)
            if not more_input:
                requests.put_nowait(_END)
            call = self._stub.Synthesize(_stream(requests), metadata=_metadata(authorization))
            responses = aiter(call)
            try:
                first = await anext(responses)
            except grpc.aio.AioRpcError as err:
                if err.details() != CLIENT_RACE or attempt == _RACE_ATTEMPTS:
                    raise
                continue
            return NodeSession(first.started, call, requests, responses)
        raise AssertionError("unreachable")

    async def list_voices(self, authorization: str | None, model: str = "") -> list[pb.Voice]:
        reply = await self._stub.ListVoices(
            pb.ListVoicesRequest(model=model), metadata=_metadata(authorization), timeout=10
        )
        return list(reply.voices)

    async def list_models(self, authorization: str | None) -> list[pb.Model]:
        reply = await self._stub.ListModels(
            pb.ListModelsRequest(), metadata=_metadata(authorization), timeout=10
        )
        return list(reply.models)

    async def voice_names(self, authorization: str | None) -> list[str]:
        return [voice.name for voice in await self.list_voices(authorization)]


def _metadata(authorization: str | None) -> tuple[tuple[str, str], ...]:
    return ((AUTH_METADATA, authorization),) if authorization else ()


async def _stream(
    queue: asyncio.Queue[pb.SynthesizeRequest | None],
) -> AsyncIterator[pb.SynthesizeRequest]:
    while (message := await queue.get()) is not _END:
        yield message
