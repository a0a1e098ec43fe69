"""One real orpheus-server process on 127.0.0.1, exercised over real gRPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from support_calls import call_once, final_status
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

SHORT = pb.SamplingOptions(max_tokens=28)  # 4 frames per chunk keeps CPU tests quick


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("server") / "server.log")
    proc.start()
    yield proc
    proc.stop()


def start(session_id: str, voice: str = "tara", **kw) -> pb.SynthesizeRequest:
    kw.setdefault("sampling", SHORT)
    return pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, voice=voice, **kw))


def text(t: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(text=pb.TextChunk(text=t))


INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
OTHER_SEGMENT = pb.SynthesizeRequest(text=pb.TextChunk(text="b", segment_id="other"))
FLUSH = pb.SynthesizeRequest(flush=pb.Flush())
END = pb.SynthesizeRequest(end_input=pb.EndInput())


async def requests(*msgs: pb.SynthesizeRequest) -> AsyncIterator[pb.SynthesizeRequest]:
    for msg in msgs:
        yield msg


async def collect(address: str, *msgs: pb.SynthesizeRequest) -> list[pb.SynthesizeResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(requests(*msgs))
        return [resp async for resp in call]


async def status_of(address: str, *msgs: pb.SynthesizeRequest) -> tuple[grpc.StatusCode, str]:
    """Write `msgs` (stopping once the server ends the call), read to the end: its status."""
    end = await final_status(lambda: grpc.aio.insecure_channel(address), msgs)
    return end.code, end.details


def audio_bytes(responses: list[pb.SynthesizeResponse]) -> int:
    return sum(len(r.audio.pcm) for r in responses if r.WhichOneof("kind") == "audio")


async def test_session_streams_audio_then_segment_done(server: ServerProcess) -> None:
    resp = await collect(server.address, start("basic"), text("Hello there. How are you?"), END)
    kinds = [r.WhichOneof("kind") for r in resp]
    assert kinds[0] == "started" and kinds[-1] == "segment_done"
    audio = [r.audio for r in resp if r.WhichOneof("kind") == "audio"]
    assert [a.sequence for a in audio] == list(range(len(audio)))
    assert all(a.sample_rate == 24000 and len(a.pcm) % 2 == 0 for a in audio)
    done = resp[-1].segment_done
    assert done.metrics.tokens_generated > 0
    assert done.metrics.audio_ms == pytest.approx(audio_bytes(resp) / 2 / 24, rel=1e-3)
    assert done.metrics.ttfa_ms > 0 and done.metrics.generation_rtf > 0


async def test_eight_concurrent_sessions_all_receive_audio(server: ServerProcess) -> None:
    results = await asyncio.gather(
        *[
            collect(server.address, start(f"c{i}"), text(f"Session {i} speaks."), END)
            for i in range(8)
        ]
    )
    assert all(audio_bytes(r) > 0 for r in results)
    assert all(r[-1].WhichOneof("kind") == "segment_done" for r in results)


async def test_long_text_is_spoken_as_ordered_segments(server: ServerProcess) -> None:
    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    paragraph = (sentence * 32)[:2000]
    half = len(paragraph) // 2
    msgs = [start("long"), text(paragraph[:half]), FLUSH, text(paragraph[half:]), END]
    resp = await collect(server.address, *msgs)
    done = [r.segment_done for r in resp if r.WhichOneof("kind") == "segment_done"]
    assert [d.segment_id for d in done] == ["seg-0", "seg-1"]
    assert sum(d.metrics.text_chunks for d in done) >= 7  # 300-char sentence groups
    progress = [r.progress for r in resp if r.WhichOneof("kind") == "progress"]
    seg0 = [p.chars_done for p in progress if p.segment_id == "seg-0"]
    assert seg0 == sorted(seg0) and seg0[-1] == half
    segments_in_audio = [r.audio.segment_id for r in resp if r.WhichOneof("kind") == "audio"]
    assert segments_in_audio == sorted(segments_in_audio)  # all of seg-0 before seg-1


async def test_cancel_stops_generation_promptly(server: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize()
        await call.write(start("cancel-me", sampling=pb.SamplingOptions(max_tokens=2800)))
        await call.write(text("A long story that would take a long time to tell. " * 4))
        async for resp in call:
            if resp.WhichOneof("kind") == "audio":
                break
        assert server.metric("orpheus_engine_live_requests") >= 1
        cancelled_at = time.perf_counter()
        call.cancel()
    while server.metric("orpheus_engine_live_requests") > 0:
        assert time.perf_counter() - cancelled_at < 1.0, "generation still live 1 s after cancel"
        await asyncio.sleep(0.01)
    elapsed_ms = 1000 * (time.perf_counter() - cancelled_at)
    print(f"\ncancel -> engine idle: {elapsed_ms:.0f} ms")
    assert server.metric("orpheus_live_sessions") == 0


async def test_unknown_voice_is_not_found_naming_valid_voices(server: ServerProcess) -> None:
    code, details = await status_of(server.address, start("v", voice="nobody"), END)
    assert code == grpc.StatusCode.NOT_FOUND
    assert "nobody" in details and "tara" in details and "zoe" in details


async def test_a_refusal_at_open_survives_a_client_that_writes_ahead(
    server: ServerProcess,
) -> None:
    """grpc/grpc#36066: each call writes its text and EndInput behind the refused start; the
    node reads them before it ends the call, so no client sees INTERNAL instead."""
    msgs = (start("v", voice="nobody"), text("Hello there."), END)
    ends = [
        await call_once(lambda: grpc.aio.insecure_channel(server.address), msgs, ())
        for _ in range(30)
    ]
    assert {end.code for end in ends} == {grpc.StatusCode.NOT_FOUND}


async def test_stream_closed_before_start_is_invalid_argument(server: ServerProcess) -> None:
    code, details = await status_of(server.address)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SessionStart" in details


async def test_text_before_session_start_is_failed_precondition(server: ServerProcess) -> None:
    code, details = await status_of(server.address, text("hi."), END)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "SessionStart" in details


async def test_oversized_message_is_refused(server: ServerProcess) -> None:
    code, _ = await status_of(server.address, start("big"), text("x" * 200_000), END)
    assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("msgs", "code"),
    [
        ((start("twice"), start("twice")), PRECONDITION),
        ((start("empty"), pb.SynthesizeRequest()), INVALID),
        ((start("bad-voice", voice="../evil"),), INVALID),
        ((start("bad rate", audio_format=pb.AudioFormat(sample_rate=8000)),), INVALID),
        ((start("temp", sampling=pb.SamplingOptions(repetition_penalty=0.5)),), INVALID),
        ((start("model", model="llama-70b"),), grpc.StatusCode.NOT_FOUND),
        ((start("seg"), text("a."), OTHER_SEGMENT), INVALID),
        ((start("after-end"), text("Still speaking."), END, text("late.")), INVALID),
        ((END,), PRECONDITION),
    ],
)  # fmt: skip
async def test_bad_streams_end_with_precise_status(
    server: ServerProcess, msgs: tuple[pb.SynthesizeRequest, ...], code: grpc.StatusCode
) -> None:
    got, details = await status_of(server.address, *msgs, END)
    assert got == code, details
    assert details


async def test_server_keeps_serving_after_errors(server: ServerProcess) -> None:
    await status_of(server.address, start("x", voice="nobody"), END)
    await status_of(server.address, start("y"), text("x" * 200_000), END)
    resp = await collect(server.address, start("after-errors"), text("Still here."), END)
    assert audio_bytes(resp) > 0
    assert server.alive()


async def test_list_voices_and_health(server: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        reply = await pb_grpc.TTSStub(channel).ListVoices(pb.ListVoicesRequest())
    names = {v.name for v in reply.voices}
    assert {"tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"} <= names
    assert all(v.model == "tiny-random" and v.kind == pb.Voice.KIND_BASE for v in reply.voices)


def test_random_weights_warn_loudly(server: ServerProcess) -> None:
    log = server.log(tail=None)
    assert "--model tiny-random uses RANDOM weights" in log and "NOISE" in log
    assert "--snac random uses RANDOM weights" in log


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "drain.log").start()
    proc.signal(__import__("signal").SIGTERM)
    assert proc.proc is not None and proc.proc.wait(30) == 0


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
async def test_server_reflection_answers_under_v1_and_v1alpha(
    server: ServerProcess, package: str
) -> None:
    """grpcurl and Postman ask v1; older tools ask v1alpha. Both get the real services."""
    from grpc_reflection.v1alpha import reflection_pb2 as rpb

    async with grpc.aio.insecure_channel(server.address) as channel:
        info = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=rpb.ServerReflectionRequest.SerializeToString,
            response_deserializer=rpb.ServerReflectionResponse.FromString,
        )
        replies = [
            r async for r in info(
                iter([
                    rpb.ServerReflectionRequest(list_services=""),
                    rpb.ServerReflectionRequest(file_containing_symbol="orpheus.v1.TTS"),
                ])
            )
        ]  # fmt: skip
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"orpheus.v1.TTS", "grpc.health.v1.Health", f"{package}.ServerReflection"} <= names
    assert replies[1].file_descriptor_response.file_descriptor_proto
