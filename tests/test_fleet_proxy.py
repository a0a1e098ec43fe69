"""StreamProxy over real grpc.aio servers on 127.0.0.1.

The owner here is a minimal echo servicer: the proxy is the component under test.
"""

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from inference_server.errors import OrpheusError
from inference_server.fleet.proxy import (
    CLUSTER_SECRET_HEADER,
    HOP_HEADER,
    StreamProxy,
    forwarded_metadata,
    hop_of,
    trusted_hop,
)
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc
from inference_server.service.client_writes import IDLE_S, read_in_flight
from inference_server.service.errors import to_status


class EchoOwner(tts_pb2_grpc.TTSServicer):
    """Answers SessionStarted, then one AudioChunk per TextChunk (its text as bytes)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.metadata: list[tuple[str, str]] = []
        self.cancelled = asyncio.Event()
        self.entered = asyncio.Event()

    async def Synthesize(self, request_iterator, context):
        self.metadata = list(context.invocation_metadata())
        sequence = 0
        try:
            async for request in request_iterator:
                kind = request.WhichOneof("kind")
                if kind == "start":
                    yield pb.SynthesizeResponse(
                        started=pb.SessionStarted(
                            session_id=request.start.session_id, node_id=self.node_id
                        )
                    )
                elif kind == "text":
                    if request.text.text == "fail":
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "owner is full")
                    if request.text.text == "hang":
                        self.entered.set()
                        await asyncio.Event().wait()
                    chunk = pb.AudioChunk(pcm=request.text.text.encode(), sequence=sequence)
                    sequence += 1
                    yield pb.SynthesizeResponse(audio=chunk)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class ProxyFront(tts_pb2_grpc.TTSServicer):
    """Forwards every session to `owner_address`; ends the call with the status it gets."""

    def __init__(self, proxy: StreamProxy, owner_address: str) -> None:
        self.proxy = proxy
        self.owner_address = owner_address
        self.cancelled = asyncio.Event()

    async def Synthesize(self, request_iterator, context):
        first = await anext(aiter(request_iterator))
        try:
            async for response in self.proxy.forward(
                self.owner_address,
                first,
                request_iterator,
                metadata=context.invocation_metadata(),
                timeout=context.time_remaining(),
            ):
                yield response
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "")
        except OrpheusError as err:  # refused before forwarding: read what the client sent
            status = to_status(err)  # first, as the node does (grpc/grpc#36066)
            await read_in_flight(request_iterator, first_idle_s=IDLE_S)
            await context.abort(status.code, status.details)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def serve(servicer: tts_pb2_grpc.TTSServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    tts_pb2_grpc.add_TTSServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[EchoOwner, ProxyFront, str]]:
    owner = EchoOwner("owner")
    owner_server, owner_address = await serve(owner)
    proxy = StreamProxy("front")
    front = ProxyFront(proxy, owner_address)
    front_server, front_address = await serve(front)
    yield owner, front, front_address
    await proxy.close()
    await front_server.stop(None)
    await owner_server.stop(None)


def session(*texts: str) -> list[pb.SynthesizeRequest]:
    start = pb.SynthesizeRequest(start=pb.SessionStart(session_id="s-1", voice="tara"))
    return [start, *(pb.SynthesizeRequest(text=pb.TextChunk(text=t)) for t in texts)]


async def test_forwards_stream_with_hop_and_client_metadata(pair) -> None:
    owner, _, address = pair
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TTSStub(channel).Synthesize(
            iter(session("hello", "world")), metadata=[("authorization", "Bearer k")]
        )
        responses = [r async for r in call]
    assert responses[0].started.node_id == "owner"
    assert [r.audio.pcm for r in responses[1:]] == [b"hello", b"world"]
    assert [r.audio.sequence for r in responses[1:]] == [0, 1]
    assert hop_of(owner.metadata) == "front"
    assert ("authorization", "Bearer k") in owner.metadata


async def test_channel_per_peer_is_reused(pair) -> None:
    _, front, address = pair
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tts_pb2_grpc.TTSStub(channel)
        for _ in range(3):
            assert len([r async for r in stub.Synthesize(iter(session("x")))]) == 2
    assert list(front.proxy._channels) == [front.owner_address]
    assert front.proxy.channel(front.owner_address) is front.proxy.channel(front.owner_address)


async def test_call_a_peer_already_forwarded_is_refused(pair) -> None:
    owner, front, address = pair
    front.proxy.cluster_secret = "s3cret"
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TTSStub(channel).Synthesize(
            iter(session("x")),
            metadata=[(HOP_HEADER, "elsewhere"), (CLUSTER_SECRET_HEADER, "s3cret")],
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in call]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "one hop" in err.value.details() and "elsewhere" in err.value.details()
    assert owner.metadata == []  # never reached the owner


async def test_hop_claimed_without_the_cluster_secret_is_not_trusted(pair) -> None:
    """Any client can send a hop header: without the secret it is replaced, not obeyed."""
    owner, _, address = pair
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TTSStub(channel).Synthesize(
            iter(session("x")), metadata=[(HOP_HEADER, "forged")]
        )
        responses = [r async for r in call]
    assert responses[0].started.node_id == "owner"
    assert hop_of(owner.metadata) == "front"


def test_trusted_hop_needs_the_configured_secret() -> None:
    claimed = [(HOP_HEADER, "n1")]
    proven = [*claimed, (CLUSTER_SECRET_HEADER, "s3cret")]
    assert trusted_hop(claimed, "") is None and trusted_hop(proven, "") is None
    assert trusted_hop(claimed, "s3cret") is None
    assert trusted_hop([*claimed, (CLUSTER_SECRET_HEADER, "guess")], "s3cret") is None
    assert trusted_hop(proven, "s3cret") == "n1"


async def test_owner_error_reaches_client_with_same_status(pair) -> None:
    _, _, address = pair
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TTSStub(channel).Synthesize(iter(session("ok", "fail")))
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for response in call:
                received.append(response)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details() == "owner is full"
    assert received[-1].audio.pcm == b"ok"


async def test_client_cancel_cancels_owner_call(pair) -> None:
    owner, front, address = pair
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TTSStub(channel).Synthesize(iter(session("hang")))
        assert (await call.read()).started.node_id == "owner"
        await asyncio.wait_for(owner.entered.wait(), 5)
        call.cancel()
        await asyncio.wait_for(front.cancelled.wait(), 5)
        await asyncio.wait_for(owner.cancelled.wait(), 5)


async def test_unreachable_owner_is_unavailable() -> None:
    proxy = StreamProxy("front")
    front_server, address = await serve(ProxyFront(proxy, "127.0.0.1:1"))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = tts_pb2_grpc.TTSStub(channel).Synthesize(iter(session("x")))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                _ = [r async for r in call]
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await proxy.close()
        await front_server.stop(None)


async def test_forward_raises_upstream_error() -> None:
    owner = EchoOwner("owner")
    server, address = await serve(owner)
    proxy = StreamProxy("front")

    async def rest():
        yield pb.SynthesizeRequest(text=pb.TextChunk(text="fail"))

    first, *_ = session()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in proxy.forward(address, first, rest(), metadata=[("k", "v")])]
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("k", "v") in owner.metadata and hop_of(owner.metadata) == "front"
    finally:
        await proxy.close()
        await server.stop(None)


def test_forwarded_metadata_drops_transport_headers_and_old_hop() -> None:
    incoming = [("user-agent", "grpc-python"), ("authorization", "k"), (HOP_HEADER, "x")]
    assert forwarded_metadata(incoming, "me") == [("authorization", "k"), (HOP_HEADER, "me")]
    assert hop_of(None) is None
