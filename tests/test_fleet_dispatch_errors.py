"""What a client learns when the fleet cannot serve it: a precise status naming node ids, never
a peer's address (those go to the node log). A real `--role router` node in-process, real
gRPC on 127.0.0.1, peers that are closed ports."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from support_fleet import start_request
from support_server import free_port

from inference_server.config import ServerConfig
from inference_server.proto import tts_pb2_grpc as pb_grpc
from inference_server.server import InferenceNode


@pytest.fixture
async def router_to_dead_peers() -> AsyncIterator[tuple[str, list[str]]]:
    """A router node whose every peer is down: (its address, the peers' addresses)."""
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    port = free_port()
    node = InferenceNode(
        ServerConfig(
            port=port,
            role="router",
            node_id="front",
            peers=tuple(f"ghost{i}={a}" for i, a in enumerate(dead)),
        )
    )
    await node.start()
    try:
        yield f"127.0.0.1:{port}", dead
    finally:
        await node.stop(0)


async def test_unreachable_owners_are_named_by_id_and_logged_by_address(
    router_to_dead_peers: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    address, dead = router_to_dead_peers
    caplog.set_level(logging.WARNING, "inference_server.fleet.dispatch")
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(iter([start_request("s-dead")]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in call]
    details = err.value.details()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, details
    assert "ghost" in details and "unreachable" in details
    assert not any(a in details or a.split(":")[1] in details for a in dead), details
    logged = caplog.text
    assert all(a in logged for a in dead)  # the operator still sees where it tried
