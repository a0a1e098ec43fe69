"""Two models in two languages behind one entry node: real node processes, real Redis, the
real plugin.

n-en serves `tiny-random` in English with the stock voices; n-ko serves a second
`tiny-random` as the Korean model `tiny-ko` with the voices 유나 and 준서 (from flags: a
checkpoint would carry them in orpheus.json); `entry` is a router that serves nothing
itself. A session names a language (or a model) and the fleet finds the node for it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

import grpc
import pytest
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents.metrics import TTSMetrics
from livekit.plugins import orpheus
from support_redis import RedisServer
from support_server import ServerProcess, free_port

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

EN_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
KO_VOICES = ("유나", "준서")
SERVED = "served: en (tiny-random), ko (tiny-ko)"
MAX_TOKENS = 28  # 4 frames per chunk: the audio of random weights is noise anyway
ONCE = APIConnectOptions(max_retry=0, timeout=20)


@dataclass
class LanguageFleet:
    redis: RedisServer
    nodes: dict[str, ServerProcess]
    http_port: int

    def address(self, node_id: str) -> str:
        return self.nodes[node_id].address


def _node(workdir, redis: RedisServer, node_id: str, *args: str) -> ServerProcess:
    port = free_port()
    common = (
        "--redis-url", redis.url, "--node-id", node_id, "--advertise", f"127.0.0.1:{port}",
        "--cluster-secret", "languages-test",
    )  # fmt: skip
    return ServerProcess(workdir / f"{node_id}.log", (*common, *args), port=port)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanguageFleet]:
    workdir = tmp_path_factory.mktemp("languages")
    redis = RedisServer(workdir).start()
    http_port = free_port()
    nodes = {
        "n-en": _node(workdir, redis, "n-en"),
        "n-ko": _node(
            workdir, redis, "n-ko",
            "--model-name", "tiny-ko", "--language", "ko", "--base-voices", ",".join(KO_VOICES),
        ),
        "entry": _node(workdir, redis, "entry", "--role", "router", "--http-port", str(http_port)),
    }  # fmt: skip
    try:
        for node in nodes.values():
            node.start(wait=False)
        for node in nodes.values():
            node.wait_ready()
        f = LanguageFleet(redis, nodes, http_port)
        asyncio.run(_until_every_node_sees_both_models(f))
        yield f
    finally:
        for node in nodes.values():
            node.kill()  # no session is live: nothing to drain
        redis.stop()


async def list_models(address: str, language: str = "") -> list[pb.Model]:
    async with grpc.aio.insecure_channel(address) as channel:
        request = pb.ListModelsRequest(language=language)
        return list((await pb_grpc.TTSStub(channel).ListModels(request, timeout=10)).models)


async def _until_every_node_sees_both_models(fleet: LanguageFleet, timeout_s: float = 30) -> None:
    """Membership is polled each heartbeat: wait until every node lists both models."""
    deadline = time.monotonic() + timeout_s
    for node_id in fleet.nodes:
        while {m.name for m in await list_models(fleet.address(node_id))} != {
            "tiny-random",
            "tiny-ko",
        }:
            assert time.monotonic() < deadline, f"{node_id} never saw both models"
            await asyncio.sleep(0.1)


class SegmentFigures:
    """The server's figures of a TTS's segments, as the plugin reports them."""

    def __init__(self, t: orpheus.TTS) -> None:
        self.metadata: list[orpheus.OrpheusSegmentMetadata] = []
        self._arrived = asyncio.Event()
        t.on("metrics_collected", self._on_metrics)

    def _on_metrics(self, metrics: TTSMetrics) -> None:
        if isinstance(metrics.metadata, orpheus.OrpheusSegmentMetadata):
            self.metadata.append(metrics.metadata)
            self._arrived.set()

    async def first(self) -> orpheus.OrpheusSegmentMetadata:
        await asyncio.wait_for(self._arrived.wait(), 10)
        return self.metadata[0]


async def speak(address: str, text: str, **options: object) -> orpheus.OrpheusSegmentMetadata:
    """One utterance through the plugin's streaming API; the server's figures of it."""
    async with orpheus.TTS(base_url=address, max_tokens=MAX_TOKENS, **options) as t:
        figures = SegmentFigures(t)
        stream = t.stream(conn_options=ONCE)
        stream.push_text(text)
        stream.end_input()
        audio = [ev async for ev in stream]
        await stream.aclose()
        assert audio and audio[-1].is_final
        return await figures.first()


async def refused(address: str, **options: object) -> APIStatusError:
    async with orpheus.TTS(base_url=address, **options) as t:
        stream = t.stream(conn_options=ONCE)
        stream.push_text("안녕하세요.")
        stream.end_input()
        with pytest.raises(APIStatusError) as caught:
            _ = [ev async for ev in stream]
        await stream.aclose()
    return caught.value


@pytest.mark.parametrize("entry", ["entry", "n-en"])
async def test_korean_voice_by_language_is_spoken_by_the_korean_node(
    fleet: LanguageFleet, entry: str
) -> None:
    figures = await speak(
        fleet.address(entry), "안녕하세요 <whisper> 반가워요. <laugh> 좋아요.", voice="유나",
        language="ko",
    )  # fmt: skip
    assert figures.node_id == "n-ko"
    assert figures.model_name == "tiny-ko"  # picked by the language: no model was named
    assert figures.tags_removed == 1  # <whisper> is not the model's; <laugh> is kept
    assert figures.tokens_generated > 0


async def test_a_model_named_without_language_routes_to_its_node(fleet: LanguageFleet) -> None:
    figures = await speak(fleet.address("entry"), "반가워요.", voice="준서", model="tiny-ko")
    assert (figures.node_id, figures.model_name) == ("n-ko", "tiny-ko")
    english = await speak(fleet.address("n-ko"), "Hello there.", voice="tara", language="EN")
    assert (english.node_id, english.model_name) == ("n-en", "tiny-random")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"language": "fr"}, "language 'fr' is not served by any node of the fleet; "),
        ({"model": "orpheus-3b-0.1-ft"}, "model 'orpheus-3b-0.1-ft' is not served by any node "),
        ({"model": "tiny-random", "language": "ko"}, "model 'tiny-random' speaks 'en', not 'ko'"),
    ],
)
@pytest.mark.parametrize("entry", ["entry", "n-ko"])
async def test_what_no_node_serves_is_not_found_naming_what_is_served(
    fleet: LanguageFleet, entry: str, options: dict, message: str
) -> None:
    error = await refused(fleet.address(entry), voice="유나", **options)
    assert error.status_code == 404 and not error.retryable
    assert message in error.message and SERVED in error.message, error.message


async def test_a_voice_the_language_model_lacks_is_not_found_listing_its_voices(
    fleet: LanguageFleet,
) -> None:
    error = await refused(fleet.address("entry"), voice="tara", language="ko")
    assert error.status_code == 404
    assert "unknown voice 'tara'; valid voices: 유나, 준서" in error.message


@pytest.mark.parametrize("node_id", ["n-en", "n-ko", "entry"])
async def test_every_node_lists_the_fleets_models_with_language_voices_and_nodes(
    fleet: LanguageFleet, node_id: str
) -> None:
    models = await list_models(fleet.address(node_id))
    assert [(m.name, m.language, tuple(m.base_voices), tuple(m.node_ids)) for m in models] == [
        ("tiny-ko", "ko", KO_VOICES, ("n-ko",)),
        ("tiny-random", "en", EN_VOICES, ("n-en",)),
    ]
    assert [m.name for m in await list_models(fleet.address(node_id), "KO")] == ["tiny-ko"]


async def list_voices(address: str, model: str = "") -> list[tuple[str, str, str]]:
    async with grpc.aio.insecure_channel(address) as channel:
        request = pb.ListVoicesRequest(model=model)
        reply = await pb_grpc.TTSStub(channel).ListVoices(request, timeout=10)
    return [(v.name, v.model, v.language) for v in reply.voices]


async def test_voices_carry_their_models_language(fleet: LanguageFleet) -> None:
    korean = [(name, "tiny-ko", "ko") for name in KO_VOICES]
    english = [(name, "tiny-random", "en") for name in EN_VOICES]
    assert await list_voices(fleet.address("n-ko")) == korean  # a node: its own model's
    assert await list_voices(fleet.address("entry")) == korean + english  # a router: all
    assert await list_voices(fleet.address("entry"), "tiny-random") == english


async def test_a_malformed_language_is_invalid_argument(fleet: LanguageFleet) -> None:
    error = await refused(fleet.address("entry"), voice="유나", language="korean!")
    assert error.status_code == 400
    assert "SessionStart.language: 'korean!' is not a language tag" in error.message
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await list_models(fleet.address("entry"), "korean!")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("ListModelsRequest.language: 'korean!' is not")


def test_http_models_lists_the_fleets_models_with_their_language(fleet: LanguageFleet) -> None:
    url = f"http://127.0.0.1:{fleet.http_port}/v1/models"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert [(m["id"], m["language"], tuple(m["voices"])) for m in body["data"]] == [
        ("tiny-ko", "ko", KO_VOICES),
        ("tiny-random", "en", EN_VOICES),
    ]


def post_speech(fleet: LanguageFleet, body: dict) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{fleet.http_port}/v1/audio/speech",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_http_speech_takes_the_language_too(fleet: LanguageFleet) -> None:
    speech = {"input": "안녕하세요.", "voice": "유나", "response_format": "pcm", "max_tokens": 28}
    status, headers, audio = post_speech(fleet, {**speech, "language": "ko"})
    assert status == 200 and headers["X-Orpheus-Node"] == "n-ko" and len(audio) > 0
    assert urllib.parse.unquote(headers["X-Orpheus-Voice"]) == "유나"  # headers are Latin-1
    status, _, body = post_speech(fleet, {**speech, "language": "fr"})
    error = json.loads(body)["error"]
    assert status == 404
    assert (error["param"], error["code"]) == ("language", "language_not_found")
    assert SERVED in error["message"]


async def test_update_options_changes_the_language_of_the_next_utterance(
    fleet: LanguageFleet,
) -> None:
    async with orpheus.TTS(base_url=fleet.address("entry"), max_tokens=MAX_TOKENS) as t:
        t.update_options(voice="준서", language="ko")
        assert t.language == "ko"
        figures = SegmentFigures(t)
        audio = [ev async for ev in t.synthesize("반가워요.", conn_options=ONCE)]
        assert audio
        assert (await figures.first()).node_id == "n-ko"
