"""Auth, TLS and per-call limits on a real orpheus-server process over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.plugins import orpheus
from support_calls import call_once, final_status
from support_server import ServerProcess
from tls_support import SelfSignedPki, make_pki

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

SECRET = "cluster-s3cret"
SESSION_SECONDS = 8.0
SHORT = pb.SamplingOptions(max_tokens=28)
END = pb.SynthesizeRequest(end_input=pb.EndInput())
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class Node:
    def __init__(self, proc: ServerProcess, pki: SelfSignedPki, keys_file: Path) -> None:
        self.proc, self.pki, self.keys_file = proc, pki, keys_file

    def channel(self) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(root_certificates=self.pki.ca_pem)
        return grpc.aio.secure_channel(self.proc.address, creds)


def wait_tls_healthy(node: Node, timeout: float = 180.0) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=node.pki.ca_pem)
    deadline = time.monotonic() + timeout
    with grpc.secure_channel(node.proc.address, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert node.proc.alive(), node.proc.log()
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status == 1:
                    return
            time.sleep(0.3)
    raise TimeoutError(node.proc.log())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("secure")
    keys_file = tmp / "api_keys"
    keys_file.write_text("# agents\nkey-a\nkey-b  second agent\nkey-revoked\n")
    pki = make_pki(tmp)
    args = (
        "--api-keys-file", str(keys_file), "--cluster-secret", SECRET,
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--max-sessions-per-key", "1", "--max-segment-chars", "200",
        "--max-session-seconds", str(SESSION_SECONDS),
    )  # fmt: skip
    proc = ServerProcess(tmp / "server.log", extra_args=args).start(wait=False)
    n = Node(proc, pki, keys_file)
    wait_tls_healthy(n)
    yield n
    proc.stop()


def start(session_id: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, sampling=SHORT))


def text(t: str, segment_id: str = "") -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(text=pb.TextChunk(text=t, segment_id=segment_id))


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def status_of(
    node: Node, metadata: tuple, *msgs: pb.SynthesizeRequest
) -> tuple[grpc.StatusCode, str, int]:
    """(code, details, audio bytes) of one call over the node's TLS channel."""
    end = await final_status(node.channel, msgs, metadata)
    return end.code, end.details, end.audio_bytes


async def test_right_key_over_tls_gets_audio(node: Node) -> None:
    code, _, audio = await status_of(node, bearer("key-a"), start("ok"), text("Hello."), END)
    assert code == grpc.StatusCode.OK and audio > 0


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing API key"),
        (bearer("key-wrong"), "invalid or revoked API key"),
        ((("authorization", "key-a"),), "malformed authorization"),
        ((*bearer("key-a"), ("x-orpheus-hop", "n9")), "cluster secret"),
        ((("x-orpheus-hop", "n9"), ("x-orpheus-cluster-secret", "guess")), "cluster secret"),
    ],
)
async def test_refused_calls_are_unauthenticated(node: Node, metadata: tuple, message: str) -> None:
    code, details, audio = await status_of(node, metadata, start("x"), text("Hi."), END)
    assert code == UNAUTHENTICATED and message in details and audio == 0


async def test_refusal_status_survives_a_client_that_writes_ahead(node: Node) -> None:
    """grpc/grpc#36066: an aio client still writing when the call ends used to see INTERNAL
    in about 40% of calls; the refusal reads what was sent first, so no call loses it."""
    msgs = (start("x"), text("Hi."), END)
    ends = [await call_once(node.channel, msgs, bearer("key-wrong")) for _ in range(40)]
    assert {end.code for end in ends} == {UNAUTHENTICATED}


async def test_list_voices_needs_a_key_but_health_does_not(node: Node) -> None:
    async with node.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.TTSStub(channel).ListVoices(pb.ListVoicesRequest(), timeout=10)
        assert err.value.code() == UNAUTHENTICATED
        reply = await pb_grpc.TTSStub(channel).ListVoices(
            pb.ListVoicesRequest(), metadata=bearer("key-b"), timeout=10
        )
        assert "tara" in {v.name for v in reply.voices}
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_peer_with_the_cluster_secret_needs_no_api_key(node: Node) -> None:
    hop = (("x-orpheus-hop", "peer-1"), ("x-orpheus-cluster-secret", SECRET))
    code, _, audio = await status_of(node, hop, start("hop"), text("Hi."), END)
    assert code == grpc.StatusCode.OK and audio > 0


async def test_revoked_key_is_refused_after_the_file_reloads(node: Node) -> None:
    code, _, _ = await status_of(node, bearer("key-revoked"), start("r1"), text("Hi."), END)
    assert code == grpc.StatusCode.OK
    node.keys_file.write_text("key-a\nkey-b\n")
    os.utime(node.keys_file, ns=(time.time_ns() + 10**9,) * 2)
    for _ in range(40):
        code, details, _ = await status_of(node, bearer("key-revoked"), start("r2"), END)
        if code == UNAUTHENTICATED:
            break
        await asyncio.sleep(0.25)
    assert code == UNAUTHENTICATED and "revoked" in details


async def test_plaintext_client_fails_cleanly_against_tls(node: Node) -> None:
    async with grpc.aio.insecure_channel(node.proc.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.TTSStub(channel).ListVoices(
                pb.ListVoicesRequest(), metadata=bearer("key-a"), timeout=10
            )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert node.proc.alive()


async def test_segment_over_max_segment_chars_is_invalid_argument(node: Node) -> None:
    long_text = [text("word " * 30) for _ in range(2)]  # 300 chars in one segment
    code, details, _ = await status_of(node, bearer("key-a"), start("big"), *long_text, END)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max_segment_chars=200" in details


async def test_flush_starts_a_new_segment_budget(node: Node) -> None:
    flush = pb.SynthesizeRequest(flush=pb.Flush())
    msgs = (text("x " * 80 + "."), flush, text("y " * 80 + "."))
    code, _, _ = await status_of(node, bearer("key-a"), start("two"), *msgs, END)
    assert code == grpc.StatusCode.OK


async def test_second_concurrent_session_of_a_key_is_resource_exhausted(node: Node) -> None:
    async with node.channel() as channel:
        held = pb_grpc.TTSStub(channel).Synthesize(metadata=bearer("key-b"), timeout=60)
        await held.write(start("held"))
        assert (await held.read()).WhichOneof("kind") == "started"
        code, details, _ = await status_of(node, bearer("key-b"), start("second"), END)
        assert code == EXHAUSTED and "max_sessions_per_key=1" in details
        other_key, _, _ = await status_of(node, bearer("key-a"), start("other"), END)
        assert other_key == grpc.StatusCode.OK
        await held.done_writing()
        while await held.read() is not grpc.aio.EOF:
            pass
    again, _, _ = await status_of(node, bearer("key-b"), start("again"), END)
    assert again == grpc.StatusCode.OK


async def test_session_longer_than_max_session_seconds_is_ended(node: Node) -> None:
    async with node.channel() as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(metadata=bearer("key-a"), timeout=60)
        await call.write(start("slow"))
        t0 = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
        elapsed = time.monotonic() - t0
    assert err.value.code() == EXHAUSTED
    assert f"max_session_seconds={SESSION_SECONDS:g}" in err.value.details()
    assert SESSION_SECONDS - 1 < elapsed < SESSION_SECONDS + 10
    for _ in range(20):  # the servicer cleaned the session up
        if node.proc.metric("orpheus_live_sessions") == 0:
            break
        await asyncio.sleep(0.1)
    assert node.proc.metric("orpheus_live_sessions") == 0


async def test_plugin_with_key_and_root_certificates(node: Node) -> None:
    async with orpheus.TTS(
        base_url=f"grpcs://{node.proc.address}",
        api_key="key-a",
        root_certificates=node.pki.ca_pem,
        max_tokens=28,
    ) as tts:
        frames = await tts.synthesize("Hello there.").collect()
    assert frames.duration > 0


async def test_plugin_wrong_key_is_a_non_retryable_status_error(node: Node) -> None:
    async with orpheus.TTS(
        base_url=node.proc.address,
        api_key="key-wrong",
        use_tls=True,
        root_certificates=node.pki.ca_pem,
        max_tokens=28,
    ) as tts:
        with pytest.raises(APIStatusError) as err:
            await tts.synthesize("Hi.", conn_options=APIConnectOptions(max_retry=2)).collect()
    assert err.value.status_code == 401 and not err.value.retryable
    assert "invalid or revoked API key" in err.value.message


def test_refusals_are_counted_on_metrics(node: Node) -> None:
    metrics = node.proc.metrics()
    assert metrics.get('orpheus_refused_calls_total{reason="auth"}', 0) >= 5
    assert metrics.get('orpheus_refused_calls_total{reason="max_sessions_per_key"}', 0) >= 1
    assert metrics.get('orpheus_refused_calls_total{reason="max_segment_chars"}', 0) >= 1


async def health_over(node: Node, ca_pem: bytes) -> int:
    """The health status over a fresh TLS connection trusting only `ca_pem`."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    async with grpc.aio.secure_channel(node.proc.address, creds) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return reply.status


async def test_a_rotated_certificate_is_served_to_new_connections(
    node: Node, tmp_path: Path
) -> None:
    """Last in the module: the node serves the new certificate from here on."""
    old = node.pki
    live = node.channel()  # shakes hands before the rotation and keeps its certificate
    await pb_grpc.TTSStub(live).ListVoices(pb.ListVoicesRequest(), metadata=bearer("key-a"))
    new = make_pki(tmp_path)
    for source, target in ((new.server_key, old.server_key), (new.server_cert, old.server_cert)):
        staged = target.with_suffix(".next")
        staged.write_bytes(source.read_bytes())
        os.replace(staged, target)  # what a Kubernetes secret volume's symlink swap amounts to
    node.pki = SelfSignedPki(new.ca_cert, old.server_cert, old.server_key)

    assert await health_over(node, new.ca_pem) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await health_over(node, old.ca_pem)  # the old CA no longer vouches for the node
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    voices = await pb_grpc.TTSStub(live).ListVoices(
        pb.ListVoicesRequest(), metadata=bearer("key-a")
    )
    assert voices.voices and node.proc.alive()
    await live.close()
    assert "TLS certificate reloaded" in node.proc.log()
