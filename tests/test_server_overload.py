"""A full node: fast RESOURCE_EXHAUSTED, health NOT_SERVING, logs tagged with the session."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc
from inference_server.server import SERVICE_NAME


async def health_of(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    return reply.status


async def wait_health(channel: grpc.aio.Channel, status: int) -> None:
    deadline = time.monotonic() + 5
    while await health_of(channel) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        await asyncio.sleep(0.02)


def start(session_id: str) -> pb.SynthesizeRequest:
    sampling = pb.SamplingOptions(max_tokens=2800)
    return pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, sampling=sampling))


async def test_full_node_refuses_fast_and_reports_not_serving(server_factory) -> None:
    server: ServerProcess = server_factory("--capacity", "1")
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.TTSStub(channel)
        await wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
        busy = stub.Synthesize()
        await busy.write(start("long-story"))
        await busy.write(pb.SynthesizeRequest(text=pb.TextChunk(text="Once upon a time. " * 5)))
        async for resp in busy:
            if resp.WhichOneof("kind") == "audio":
                break
        await wait_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)

        refused_at = time.perf_counter()
        extra = stub.Synthesize()
        await extra.write(start("one-too-many"))
        assert await extra.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        refusal_ms = 1000 * (time.perf_counter() - refused_at)
        print(f"\nrefused in {refusal_ms:.1f} ms")
        assert "capacity" in await extra.details()

        busy.cancel()
        await wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
    log = server.log()
    assert "session=long-story voice=tara" in log
    assert "session=one-too-many voice=tara" in log
