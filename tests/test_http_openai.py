"""The official `openai` SDK against a real two-node fleet's HTTP front door.

Every request enters the node that does NOT own its session, so each one also crosses the
fleet's one proxy hop; the audio is decoded with real decoders (PyAV = FFmpeg) and its
length compared with the owner's own count of audio seconds sent (its /metrics).
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterator

import av
import grpc
import openai
import pytest
from support_adapters import write_voice
from support_fleet import Fleet, start_request

from inference_server.proto import tts_pb2_grpc as pb_grpc

KEY = "http-test-key"
AUTH = (("authorization", f"Bearer {KEY}"),)
VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
LORA_VOICE = "ada"
# 4 frames (341 ms) per request: tiny-random never says stop, so this bounds each generation
SHORT = {"max_tokens": 28, "seed": 7}
AUDIO_SECONDS = "orpheus_audio_seconds_total"
HOPS = "orpheus_proxy_hops_total"
RATE = 24000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("http-fleet")
    (root / "keys").write_text(f"{KEY}\n")
    write_voice(root / "voices" / LORA_VOICE, seed=3)
    extra = ("--api-keys-file", str(root / "keys"), "--voices-dir", str(root / "voices"))
    f = Fleet(root, size=2, extra_args=extra, http=True).start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def foreign(fleet: Fleet) -> tuple[str, str]:
    """(voice, owner id) of a probe session that node n1 forwards to n0."""
    return _foreign_voice(fleet)


def _foreign_voice(fleet: Fleet) -> tuple[str, str]:
    entry = fleet.nodes[1]
    with grpc.insecure_channel(entry.address) as channel:
        stub = pb_grpc.TTSStub(channel)
        for i in range(40):
            voice = VOICES[i % len(VOICES)]
            call = stub.Synthesize(iter([start_request(f"probe-{i}", voice)]), metadata=AUTH)
            owner = next(call).started.node_id
            call.cancel()
            if owner == "n0":
                return voice, owner
    raise AssertionError("n1 owned all 40 probe sessions: routing never forwards")


def client(fleet: Fleet, key: str = KEY) -> openai.AsyncOpenAI:
    """The SDK pointed at n1, the non-owner."""
    return openai.AsyncOpenAI(
        base_url=f"{fleet.http_url(fleet.nodes[1])}/v1", api_key=key, max_retries=0
    )


async def speak(fleet: Fleet, voice: str, session_id: str, **kw: object) -> tuple[bytes, dict]:
    """Bytes of one streamed speech request through n1 and its response headers."""
    fleet.pin(session_id, fleet.nodes[0])
    chunks = []
    async with client(fleet).audio.speech.with_streaming_response.create(
        model="tts-1",
        input="Hi.",
        voice=voice,
        extra_body={**SHORT, "session_id": session_id},
        **kw,
    ) as response:
        assert response.status_code == 200
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
        return b"".join(chunks), dict(response.headers)


def decode(data: bytes) -> tuple[int, int, str]:
    """(samples, sample rate, codec) decoded by FFmpeg."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples, stream.rate, stream.codec_context.name


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "opus", "flac"])
async def test_sdk_gets_each_format_from_the_owner_through_the_non_owner(
    fleet: Fleet, foreign: tuple[str, str], fmt: str
) -> None:
    voice, owner_id = foreign
    owner, entry = fleet.by_id(owner_id), fleet.nodes[1]
    audio_before, hops_before = owner.metric(AUDIO_SECONDS), entry.metric(HOPS)

    data, headers = await speak(fleet, voice, f"http-{fmt}", response_format=fmt)

    assert headers["x-orpheus-node"] == owner_id  # served by the owner...
    assert entry.metric(HOPS) == hops_before + 1  # ...one hop from the node it entered
    assert headers["x-orpheus-session"] == f"http-{fmt}"
    assert headers["transfer-encoding"] == "chunked"
    server_s = owner.metric(AUDIO_SECONDS) - audio_before
    assert server_s > 0
    if fmt == "pcm":
        assert headers["content-type"] == "audio/pcm" and len(data) % 2 == 0
        assert len(data) // 2 == round(server_s * RATE)
        return
    samples, rate, codec = decode(data)
    seconds = samples / rate
    if fmt == "opus":  # Opus always decodes at 48 kHz; the stream says it was 24 kHz audio
        assert data[:4] == b"OggS" and rate == 48000
        head = data.index(b"OpusHead")
        assert struct.unpack_from("<I", data, head + 12)[0] == RATE
        assert abs(seconds - server_s) <= 0.02  # one Opus frame
    elif fmt == "mp3":  # LAME's encoder delay and padding, unmarked in a streamed file
        assert rate == RATE and codec.startswith("mp3")
        assert 0 <= seconds - server_s <= 0.1
    else:
        assert rate == RATE and codec == {"wav": "pcm_s16le", "flac": "flac"}[fmt]
        assert samples == round(server_s * RATE)


async def test_sse_stream_carries_the_audio_and_the_servers_figures(
    fleet: Fleet, foreign: tuple[str, str]
) -> None:
    voice, owner_id = foreign
    data, headers = await speak(
        fleet, voice, "http-sse", response_format="pcm", stream_format="sse"
    )
    assert headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in data.decode().split("\n\n") if line]
    *deltas, done = events
    assert {e["type"] for e in deltas} == {"speech.audio.delta"}
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["output_tokens"] == SHORT["max_tokens"]
    figures = done["orpheus"]
    assert figures["node_id"] == owner_id and figures["session_id"] == "http-sse"
    assert figures["audio_seconds"] == len(pcm) / 2 / RATE > 0
    assert figures["ttfa_ms"] > 0 and figures["node_ttfa_ms"] > 0
    assert figures["head_silence_trimmed_ms"] >= 0 and figures["sample_rate"] == RATE
    assert figures["tags_removed"] == 0
    assert figures["chunks_overrun"] == 0  # stopped by its own max_tokens, not counted here


async def test_wrong_key_is_401_in_openais_shape(fleet: Fleet) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        await client(fleet, key="wrong").audio.speech.create(
            model="tts-1", input="Hi.", voice="tara"
        )
    assert caught.value.status_code == 401
    error = caught.value.body
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    assert "invalid or revoked API key" in error["message"] and "param" in error


async def test_unknown_voice_is_404_with_the_list_of_voices(fleet: Fleet) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client(fleet).audio.speech.create(model="tts-1", input="Hi.", voice="alloy")
    error = caught.value.body
    assert error["param"] == "voice" and error["code"] == "voice_not_found"
    assert set(VOICES) | {LORA_VOICE} <= set(error["voices"])
    assert "alloy" in error["message"] and "tara" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("speed", 2.0), ("instructions", "Speak cheerfully"), ("response_format", "aac")],
)
async def test_what_orpheus_cannot_do_is_refused_naming_the_field(
    fleet: Fleet, field: str, value: object
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client(fleet).audio.speech.create(
            model="tts-1", input="Hi.", voice="tara", **{field: value}
        )
    assert caught.value.body["param"] == field


async def test_models_and_voices_list_the_model_and_base_and_lora_voices(fleet: Fleet) -> None:
    sdk = client(fleet)
    assert [m.id async for m in sdk.models.list()] == ["tiny-random"]
    voices = (await sdk.get("/audio/voices", cast_to=object))["voices"]
    kinds = {v["id"]: (v["kind"], v["model"]) for v in voices}
    assert kinds[LORA_VOICE] == ("lora", "tiny-random")
    assert all(kinds[name] == ("base", "tiny-random") for name in VOICES)
    assert {v["loaded"] for v in voices if v["kind"] == "base"} == {True}
