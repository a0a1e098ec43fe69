"""A LoRA voice fine-tuned while orpheus-server runs is listed and spoken without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from livekit.agents.metrics import TTSMetrics
from livekit.plugins import orpheus
from support_adapters import write_voice
from support_server import ServerProcess
from test_finetune_cli import finetune
from test_finetune_cli import speak as espeak

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

SHORT = pb.SamplingOptions(max_tokens=28)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voices")
    broken = root / "broken"  # a corrupt adapter must not stop the server
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (broken / "adapter_model.safetensors").write_bytes(b"\x00corrupt")
    return root


@pytest.fixture(scope="module")
def server(voices: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("server") / "server.log", ("--voices-dir", str(voices))
    )
    proc.start()
    yield proc
    proc.stop()


async def list_voices(address: str) -> dict[str, pb.Voice]:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.TTSStub(channel).ListVoices(pb.ListVoicesRequest())
    return {v.name: v for v in reply.voices}


async def speak(address: str, voice: str, text: str) -> list[pb.SynthesizeResponse]:
    async def requests() -> AsyncIterator[pb.SynthesizeRequest]:
        start = pb.SessionStart(session_id=f"s-{voice.encode().hex()}", voice=voice, sampling=SHORT)
        yield pb.SynthesizeRequest(start=start)
        yield pb.SynthesizeRequest(text=pb.TextChunk(text=text))
        yield pb.SynthesizeRequest(end_input=pb.EndInput())

    async with grpc.aio.insecure_channel(address) as channel:
        return [r async for r in pb_grpc.TTSStub(channel).Synthesize(requests())]


def pcm_bytes(responses: list[pb.SynthesizeResponse]) -> int:
    return sum(len(r.audio.pcm) for r in responses if r.WhichOneof("kind") == "audio")


async def test_finetuned_voice_is_listed_and_spoken_without_restart(
    server: ServerProcess, voices: Path, tmp_path: Path
) -> None:
    before = await list_voices(server.address)
    assert "broken" not in before and before["tara"].kind == pb.Voice.KIND_BASE
    assert "skipping voice directory" in server.log() and "broken" in server.log()

    data = espeak(tmp_path / "speech", ("Hello there.", "See you soon."))
    run = finetune(
        "--data", str(data), "--name", "nova", "--voices-dir", str(voices),
        "--max-steps", "2", "--output-dir", str(tmp_path / "work"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    installed = time.monotonic()
    while "nova" not in (listed := await list_voices(server.address)):
        assert time.monotonic() - installed < 5, "fine-tuned voice not listed within 5 s"
        await asyncio.sleep(0.2)
    assert listed["nova"].kind == pb.Voice.KIND_LORA and not listed["nova"].loaded

    # The LoRA voice and a base voice speak at the same time (one mixed batch).
    lora, base = await asyncio.gather(
        speak(server.address, "nova", "Hi from the clone."),
        speak(server.address, "tara", "Hi from the base voice."),
    )
    for resp in (lora, base):
        kinds = [r.WhichOneof("kind") for r in resp]
        assert kinds[0] == "started" and kinds[-1] == "segment_done", kinds
        assert pcm_bytes(resp) > 0
    assert (await list_voices(server.address))["nova"].loaded


@pytest.mark.parametrize(
    ("voice", "code", "message"),
    [
        ("../evil", grpc.StatusCode.INVALID_ARGUMENT, "invalid voice name"),
        ("a" * 65, grpc.StatusCode.INVALID_ARGUMENT, "65 bytes"),
        ("유나/x", grpc.StatusCode.INVALID_ARGUMENT, "'/' (U+002F, SOLIDUS) is not allowed"),
        ("Yuna", grpc.StatusCode.INVALID_ARGUMENT, "a voice name is 1-64 bytes of UTF-8 (NFC)"),
        ("ghost", grpc.StatusCode.NOT_FOUND, "valid voices: tara"),
        # Not listed, but it exists: the session is told why it cannot be used.
        ("broken", grpc.StatusCode.FAILED_PRECONDITION, "voice 'broken' cannot be used: broken/"),
    ],
)
async def test_bad_voices_get_precise_statuses(
    server: ServerProcess, voice: str, code: grpc.StatusCode, message: str
) -> None:
    start = pb.SessionStart(session_id="bad", voice=voice, sampling=SHORT)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = pb_grpc.TTSStub(channel).Synthesize()
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            await call.write(pb.SynthesizeRequest(start=start))
            await call.done_writing()  # the server may already have ended the call
        assert await call.code() == code
        assert message in (await call.details() or "")


KOREAN = "유나"
# unknown, near-miss, malformed and known tags in one short text
TAGGED = "Hi <whisper> there. <laugh> Ok <laughs> <<sigh>> <sigh."
TAGS_REMOVED = 4  # <whisper>, <laughs>, <<sigh>>, <sigh


async def test_korean_named_lora_voice_through_the_plugin_with_tags_removed(
    server: ServerProcess, voices: Path
) -> None:
    # written decomposed (NFD), as a macOS copy leaves it: served under its NFC name
    write_voice(voices / unicodedata.normalize("NFD", KOREAN), seed=7)
    written = time.monotonic()
    while KOREAN not in (listed := await list_voices(server.address)):
        assert time.monotonic() - written < 5, f"{KOREAN} not listed within 5 s"
        await asyncio.sleep(0.2)
    assert listed[KOREAN].kind == pb.Voice.KIND_LORA

    metrics: list[TTSMetrics] = []
    async with orpheus.TTS(base_url=server.address, voice=KOREAN, max_tokens=28, seed=1) as t:
        assert "<laugh>" in t.emotion_tags and "<whisper>" not in t.emotion_tags
        t.on("metrics_collected", metrics.append)
        events = [ev async for ev in t.synthesize(TAGGED)]
        for _ in range(50):
            if metrics:
                break
            await asyncio.sleep(0.02)
    assert sum(ev.frame.samples_per_channel for ev in events) > 0
    meta = metrics[0].metadata
    assert isinstance(meta, orpheus.OrpheusSegmentMetadata)
    assert meta.tags_removed == TAGS_REMOVED and meta.tokens_generated > 0
    assert f"voice={KOREAN}" in server.log()

    # the same voice asked for in NFD on the raw wire is the same voice
    nfd = await speak(server.address, unicodedata.normalize("NFD", KOREAN), "Hi <yawn>.")
    assert nfd[0].started.voice == KOREAN and pcm_bytes(nfd) > 0
    assert nfd[-1].segment_done.metrics.tags_removed == 0
