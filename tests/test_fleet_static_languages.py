"""Two models in two languages as a static fleet (`--peers`, no Redis): each node asks its
peers what they serve, so language routing and ListModels see the whole fleet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
from livekit.agents import APIConnectOptions
from livekit.agents.metrics import TTSMetrics
from livekit.plugins import orpheus
from support_server import ServerProcess, free_port

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

KO_VOICES = ("유나", "준서")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    workdir = tmp_path_factory.mktemp("static-languages")
    ports = {"n-en": free_port(), "n-ko": free_port()}
    peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in ports.items())
    ko = ("--model-name", "tiny-ko", "--language", "ko", "--base-voices", ",".join(KO_VOICES))
    started = {}
    for node_id, port in ports.items():
        args = ("--peers", peers, "--node-id", node_id, "--cluster-secret", "static-test")
        args += ko if node_id == "n-ko" else ()
        started[node_id] = ServerProcess(workdir / f"{node_id}.log", args, port=port)
    try:
        for node in started.values():
            node.start(wait=False)
        for node in started.values():
            node.wait_ready()
        yield started
    finally:
        for node in started.values():
            node.kill()


async def models_of(address: str) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.TTSStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
    return [(m.name, m.language, tuple(m.node_ids), tuple(m.base_voices)) for m in reply.models]


async def until_learned(address: str, timeout_s: float = 20) -> list:
    """A static node asks its peers once they answer (every second until then)."""
    deadline = time.monotonic() + timeout_s
    while len(models := await models_of(address)) < 2:
        assert time.monotonic() < deadline, f"{address} never learned its peer: {models}"
        await asyncio.sleep(0.1)
    return models


async def test_static_peers_list_each_others_models(nodes: dict[str, ServerProcess]) -> None:
    for node in nodes.values():
        models = await until_learned(node.address)
        assert [m[:3] for m in models] == [
            ("tiny-ko", "ko", ("n-ko",)),
            ("tiny-random", "en", ("n-en",)),
        ]
        assert models[0][3] == KO_VOICES


async def test_language_routes_across_a_static_fleet(nodes: dict[str, ServerProcess]) -> None:
    await until_learned(nodes["n-en"].address)
    arrived: asyncio.Queue[TTSMetrics] = asyncio.Queue()
    async with orpheus.TTS(
        base_url=nodes["n-en"].address, voice="유나", language="ko", max_tokens=28
    ) as t:
        t.on("metrics_collected", arrived.put_nowait)
        audio = [ev async for ev in t.synthesize("안녕하세요.", conn_options=APIConnectOptions())]
        metrics = await asyncio.wait_for(arrived.get(), 10)
    assert audio
    assert (metrics.metadata.node_id, metrics.metadata.model_name) == ("n-ko", "tiny-ko")
