"""/healthz and /readyz on a real node's metrics port: full, draining (real SIGTERM), exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable

import grpc
from support_server import ServerProcess

from inference_server.node_state import NodeState
from inference_server.probes import Probes
from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

FLIP_DEADLINE_S = 1.0  # acceptance: /readyz turns within 1 s of SIGTERM / of filling up


def probe(node: ServerProcess, path: str) -> tuple[int | None, str]:
    """(HTTP status, body), or (None, why) when nothing answers."""
    url = f"http://127.0.0.1:{node.metrics_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode().strip()
    except OSError as err:
        return None, str(err)


async def until(check: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Poll `check` until true; seconds it took. Fails past the deadline."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if await asyncio.to_thread(check):
            return time.monotonic() - t0
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {deadline_s}s: {what}")


class HeldSession:
    """A Synthesize stream that stays open (a live session) until `release()`."""

    def __init__(self, address: str, session_id: str) -> None:
        self._release = asyncio.Event()
        self._channel = grpc.aio.insecure_channel(address)
        self.call = pb_grpc.TTSStub(self._channel).Synthesize(self._requests(session_id))
        self.done = asyncio.ensure_future(self._drain())

    async def _requests(self, session_id: str) -> AsyncIterator[pb.SynthesizeRequest]:
        sampling = pb.SamplingOptions(max_tokens=28)
        yield pb.SynthesizeRequest(
            start=pb.SessionStart(session_id=session_id, voice="tara", sampling=sampling)
        )
        yield pb.SynthesizeRequest(text=pb.TextChunk(text="Hello there."))
        await self._release.wait()
        yield pb.SynthesizeRequest(end_input=pb.EndInput())

    async def _drain(self) -> grpc.StatusCode:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in self.call:
                pass
        return await self.call.code()

    async def release(self) -> grpc.StatusCode:
        self._release.set()
        code = await asyncio.wait_for(self.done, 60)
        await self._channel.close()
        return code


def test_probes_logic_loading_full_draining() -> None:
    state = NodeState()
    probes = Probes(state, capacity=1)
    assert probes.ready() == (False, "loading") and probes.alive() == (True, "ok")
    probes.loading = False
    assert probes.ready() == (True, "ready")
    state.session_opened("s", object())
    assert probes.ready() == (False, "full")
    state.session_closed("s")
    state.start_draining()
    assert probes.ready() == (False, "draining") and probes.alive() == (True, "draining")


async def test_readyz_full_then_draining_on_sigterm_healthz_until_exit(server_factory) -> None:
    node = server_factory("--capacity", "1", "--drain-grace", "25")
    assert probe(node, "/healthz") == (200, "ok")
    await until(lambda: probe(node, "/readyz") == (200, "ready"), 5, "ready after start")
    status, body = probe(node, "/metrics")
    assert status == 200 and "orpheus_live_sessions" in body
    assert probe(node, "/nope")[0] == 404

    # Full: one live session at --capacity 1.
    held = HeldSession(node.address, "full-1")
    took = await until(lambda: probe(node, "/readyz") == (503, "full"), 5, "/readyz full")
    assert probe(node, "/healthz") == (200, "ok")
    assert await held.release() == grpc.StatusCode.OK
    await until(lambda: probe(node, "/readyz") == (200, "ready"), FLIP_DEADLINE_S, "ready again")
    print(f"full seen after {took * 1000:.0f} ms")

    # Draining: SIGTERM while a session is live, so the drain lasts until it ends.
    held = HeldSession(node.address, "drain-1")
    await until(lambda: probe(node, "/readyz") == (503, "full"), 5, "session live")
    node.signal(signal.SIGTERM)
    took = await until(
        lambda: probe(node, "/readyz") == (503, "draining"), FLIP_DEADLINE_S, "draining"
    )
    print(f"/readyz draining {took * 1000:.0f} ms after SIGTERM")
    for _ in range(5):  # alive all through the drain
        assert probe(node, "/healthz") == (200, "draining")
        assert node.alive()
        await asyncio.sleep(0.05)
    assert await held.release() == grpc.StatusCode.OK  # the drain lets it finish
    await asyncio.to_thread(node.proc.wait, 30)
    assert node.proc.returncode == 0
    assert probe(node, "/healthz")[0] is None  # gone only with the process
