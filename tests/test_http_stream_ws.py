"""WS /v1/audio/stream with a raw WebSocket client (the `websockets` library): text streamed
in pieces as an LLM would, audio and per-sentence marks back, errors as JSON then a close.

The node has API keys and TLS on its gRPC port: the front door still reaches it (over its
private unix socket), serves wss:// with the node's certificate, and the key travels in
session.start as a browser must send it (a browser WebSocket cannot set headers).
"""

from __future__ import annotations

import itertools
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support_server import ServerProcess, free_port
from tls_support import make_pki
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedError

KEY = "ws-test-key"
# Only a flush or `end` opens the gate early: no timer fires within a test.
START = {"type": "session.start", "voice": "tara", "api_key": KEY, "max_tokens": 28,
         "seed": 7, "max_buffer_delay_ms": 60_000}  # fmt: skip
BYTES_PER_MS = 48  # 24 kHz s16le mono


@dataclass(frozen=True)
class Node:
    https: str
    tls: ssl.SSLContext


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("ws")
    (tmp / "keys").write_text(f"{KEY}\n")
    pki = make_pki(tmp)
    port = free_port()
    args = ("--http-port", str(port), "--api-keys-file", str(tmp / "keys"),
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))  # fmt: skip
    server = ServerProcess(tmp / "server.log", args).start(wait=False)
    _wait_ready(server)
    yield Node(f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=pki.ca_cert))
    server.stop()


def _wait_ready(server: ServerProcess, timeout_s: float = 180.0) -> None:
    """Until /readyz on the metrics port says 200 (the gRPC port speaks only TLS)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.alive(), server.log()
        try:
            url = f"http://127.0.0.1:{server.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(server.log())


def connect(node: Node) -> ws_connect:
    url = node.https.replace("https://", "wss://") + "/v1/audio/stream"
    return ws_connect(url, ssl=node.tls)


async def send(ws: ClientConnection, *messages: dict) -> None:
    for message in messages:
        await ws.send(json.dumps(message))


async def receive_all(ws: ClientConnection) -> tuple[list[dict | int], int]:
    """Everything until the server closes: JSON messages, and each binary message's size
    (in order); and the close code."""
    received: list[dict | int] = []
    try:
        async for message in ws:
            received.append(len(message) if isinstance(message, bytes) else json.loads(message))
    except ConnectionClosedError:
        pass
    return received, ws.close_code


def texts(*pieces: str) -> list[dict]:
    return [{"type": "text", "text": piece} for piece in pieces]


async def test_text_in_pieces_is_spoken_in_order_with_sentence_marks(node: Node) -> None:
    async with connect(node) as ws:
        await send(ws, START)
        started = json.loads(await ws.recv())
        assert started["type"] == "session.started" and started["sample_rate"] == 24000
        # two segments: a flush ends the first, `end` the second
        await send(ws, *texts("Hel", "lo there", ". How are", " you?", " Fine", "."))
        await send(ws, {"type": "flush"}, *texts("Bye", " now."), {"type": "end"})
        received, code = await receive_all(ws)
    assert code == 1000
    audio_bytes = sum(m for m in received if isinstance(m, int))
    events = [m for m in received if isinstance(m, dict)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "segment.start" and isinstance(received[1], int)  # then its audio
    assert kinds[-1] == "session.done"
    assert events[-1]["audio_ms"] == pytest.approx(audio_bytes / BYTES_PER_MS, abs=0.1)

    done = [e for e in events if e["type"] == "segment.done"]
    assert [d["segment_id"] for d in done] == ["seg-0", "seg-1"]
    marks = [e for e in events if e["type"] == "mark"]
    assert [(m["segment_id"], m["text"]) for m in marks] == [
        ("seg-0", "Hello there."),
        ("seg-0", "How are you?"),
        ("seg-0", "Fine."),
        ("seg-1", "Bye now."),
    ]
    segment_text = {"seg-0": "Hello there. How are you? Fine.", "seg-1": "Bye now."}
    for m in marks:  # offsets are UTF-8 bytes of the segment's text as sent
        text = segment_text[m["segment_id"]].encode()
        assert text[m["text_start"] : m["text_end"]].decode() == m["text"]
    # marks tile each segment's audio in order, from its start to its end
    assert marks[0]["audio_start_ms"] == 0.0
    for before, after in itertools.pairwise(marks):
        assert before["audio_start_ms"] < before["audio_end_ms"] <= after["audio_start_ms"]
    assert marks[2]["audio_end_ms"] == done[0]["audio_ms"]
    assert marks[3]["audio_start_ms"] == done[0]["audio_ms"]
    assert marks[3]["audio_end_ms"] == done[1]["audio_ms"] == events[-1]["audio_ms"]
    seg0_audio = done[0]["audio_ms"]
    assert done[0]["metrics"]["audio_ms"] == pytest.approx(seg0_audio, abs=0.2)


async def test_flush_releases_an_unfinished_sentence_at_once(node: Node) -> None:
    """The gate holds "Hello" (no sentence is complete, the delay is a minute away); only
    the flush lets it through, and its audio arrives with the socket still open."""
    async with connect(node) as ws:
        await send(ws, START, *texts("Hello"), {"type": "flush"})
        assert json.loads(await ws.recv())["type"] == "session.started"
        assert json.loads(await ws.recv())["type"] == "segment.start"
        assert isinstance(await ws.recv(), bytes)
        await send(ws, {"type": "end"})
        received, code = await receive_all(ws)
    assert code == 1000
    assert [m["text"] for m in received if isinstance(m, dict) and m["type"] == "mark"] == ["Hello"]


async def test_unknown_voice_is_an_error_message_then_close_4404(node: Node) -> None:
    async with connect(node) as ws:
        await send(ws, {**START, "voice": "alloy"})
        received, code = await receive_all(ws)
    assert code == 4404
    [error] = received
    assert error["type"] == "error" and error["error"]["code"] == "voice_not_found"
    assert "tara" in error["error"]["voices"]


async def test_a_message_of_unknown_type_is_a_400_close(node: Node) -> None:
    async with connect(node) as ws:
        await send(ws, START, {"type": "speak"})
        received, code = await receive_all(ws)
    assert code == 4400
    assert received[0]["type"] == "session.started"
    assert received[-1]["error"]["param"] == "type"


async def test_a_wrong_key_is_an_error_message_then_close_4401(node: Node) -> None:
    async with connect(node) as ws:
        await send(ws, {**START, "api_key": "wrong"})
        received, code = await receive_all(ws)
    assert code == 4401
    assert received[0]["error"]["type"] == "authentication_error"


def test_https_with_the_nodes_certificate_and_bearer_key(node: Node) -> None:
    request = urllib.request.Request(
        f"{node.https}/v1/models", headers={"Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, context=node.tls, timeout=10) as reply:
        assert json.loads(reply.read())["data"][0]["id"] == "tiny-random"


def test_input_over_the_nodes_text_limit_is_400_before_any_audio(node: Node) -> None:
    """--max-segment-chars refuses the text after the session has started; the response
    has not begun (it starts with the first audio), so the client gets a 400."""
    body = json.dumps({"input": "a" * 20_001, "voice": "tara"}).encode()
    request = urllib.request.Request(
        f"{node.https}/v1/audio/speech",
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=node.tls, timeout=30)
    assert caught.value.code == 400
    error = json.loads(caught.value.read())["error"]
    assert "max_segment_chars=20000" in error["message"]
