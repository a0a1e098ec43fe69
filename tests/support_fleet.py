"""A real fleet on 127.0.0.1: one redis-server and N orpheus-server processes sharing it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis
from support_calls import CLIENT_RACE, CLIENT_RACE_ATTEMPTS
from support_redis import RedisServer
from support_server import ServerProcess, free_port

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

# Greedy and seeded: every node (same seeded tiny-random weights) speaks the same audio.
GREEDY = pb.SamplingOptions(temperature=1e-6, seed=7, max_tokens=56)
HEARTBEAT_S = 1.0  # RedisMembership's default heartbeat
MAX_CHUNK_CHARS = 40  # one short sentence per generation chunk: a TextProgress per sentence


@dataclass
class Fleet:
    workdir: Path
    size: int = 3
    extra_args: tuple[str, ...] = ()
    http: bool = False  # each node also serves its HTTP API (--http-port) on a free port
    redis: RedisServer = field(init=False)
    nodes: list[ServerProcess] = field(default_factory=list, init=False)
    http_ports: list[int] = field(default_factory=list, init=False)

    def start(self) -> Fleet:
        self.redis = RedisServer(self.workdir).start()
        for i in range(self.size):
            port = free_port()
            if self.http:
                self.http_ports.append(free_port())
            http_args = ("--http-port", str(self.http_ports[i])) if self.http else ()
            args = (
                "--redis-url", self.redis.url, "--node-id", f"n{i}",
                "--advertise", f"127.0.0.1:{port}", "--max-chunk-chars", str(MAX_CHUNK_CHARS),
                "--drain-grace", "60", *http_args, *self.extra_args,
            )  # fmt: skip
            self.nodes.append(ServerProcess(self.workdir / f"n{i}.log", args, port=port))
        self.ensure_running()
        return self

    def ensure_running(self) -> None:
        """(Re)start dead nodes in parallel on their own ports; wait until all are registered."""
        dead = [n for n in self.nodes if not n.alive()]
        for node in dead:
            node.start(wait=False)
        for node in dead:
            node.wait_ready()
        self.wait_registered()
        if dead:
            time.sleep(2 * HEARTBEAT_S)  # every peer has polled the newcomers in

    def wait_registered(self, timeout_s: float = 10.0) -> float:
        """Seconds until every live node's registration is in Redis."""
        t0 = time.monotonic()
        ids = {self.node_id(n) for n in self.nodes if n.alive()}
        while time.monotonic() - t0 < timeout_s:
            if ids <= self.registered():
                return time.monotonic() - t0
            time.sleep(0.05)
        raise TimeoutError(f"nodes {sorted(ids - self.registered())} not registered in Redis")

    def registered(self) -> set[str]:
        client = redis.Redis(port=self.redis.port, socket_timeout=1)
        try:
            return {k.decode().rsplit(":", 1)[1] for k in client.keys("orpheus:node:*")}
        except redis.ConnectionError:
            return set()
        finally:
            client.close()

    def pin(self, session_id: str, node: ServerProcess) -> None:
        """Record `node` as the session's sticky owner, as a router would have."""
        client = redis.Redis(port=self.redis.port)
        client.set(f"orpheus:session:{session_id}", self.node_id(node), px=60_000)
        client.close()

    def http_url(self, node: ServerProcess) -> str:
        return f"http://127.0.0.1:{self.http_ports[self.nodes.index(node)]}"

    def node_id(self, node: ServerProcess) -> str:
        return f"n{self.nodes.index(node)}"

    def by_id(self, node_id: str) -> ServerProcess:
        return self.nodes[int(node_id.removeprefix("n"))]

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        self.redis.stop()


def start_request(session_id: str, voice: str = "tara", **kw: object) -> pb.SynthesizeRequest:
    kw.setdefault("sampling", GREEDY)
    return pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, voice=voice, **kw))


def text_requests(text: str) -> list[pb.SynthesizeRequest]:
    return [
        pb.SynthesizeRequest(text=pb.TextChunk(text=text)),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]


async def _requests(msgs: Sequence[pb.SynthesizeRequest]) -> AsyncIterator[pb.SynthesizeRequest]:
    for msg in msgs:
        yield msg


async def collect(
    address: str, msgs: Sequence[pb.SynthesizeRequest], metadata: Sequence = ()
) -> list[pb.SynthesizeResponse]:
    """All responses of one session (raises grpc.aio.AioRpcError on a failed call).

    A run that ends in grpc/grpc#36066's client-side "Internal error from Core" (a write
    racing the end of the call; never a status our server sends) is repeated.
    """
    for attempt in range(1, CLIENT_RACE_ATTEMPTS + 1):
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.TTSStub(channel)
                call = stub.Synthesize(_requests(msgs), metadata=tuple(metadata))
                return [response async for response in call]
        except grpc.aio.AioRpcError as err:
            if err.details() != CLIENT_RACE or attempt == CLIENT_RACE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def owner_of(address: str, session_id: str, voice: str) -> str:
    """Open a session at `address`, read SessionStarted.node_id (who serves it), cancel."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize()
        await call.write(start_request(session_id, voice))
        first = await asyncio.wait_for(call.read(), 10)
        call.cancel()
        return first.started.node_id


async def open_session(
    address: str, session_id: str, voice: str, *, text: str = "", deadline_s: float = 30
) -> tuple[grpc.aio.StreamStreamCall, pb.SessionStarted]:
    """A live session at `address` (the caller cancels the call) and its SessionStarted,
    which must arrive within the call's deadline."""
    channel = grpc.aio.insecure_channel(address)
    call = pb_grpc.TTSStub(channel).Synthesize(timeout=deadline_s)
    call.add_done_callback(lambda _: asyncio.ensure_future(channel.close()))
    await call.write(start_request(session_id, voice))
    if text:
        await call.write(pb.SynthesizeRequest(text=pb.TextChunk(text=text)))
    first = await call.read()
    return call, first.started


def audio_of(responses: Sequence[pb.SynthesizeResponse]) -> bytes:
    return b"".join(r.audio.pcm for r in responses if r.WhichOneof("kind") == "audio")


async def refusal(address: str, request: pb.SynthesizeRequest) -> grpc.aio.AioRpcError:
    """The error a node answers `request` with (the session must be refused at start)."""
    try:
        await collect(address, [request])
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError(f"{address} accepted {request}")
