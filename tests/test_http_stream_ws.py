"""WS /v1/audio/stream with a raw WebSocket client (the `websockets` library): text streamed
in pieces as an LLM would, audio and per-sentence marks back, errors as JSON then a close."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from support_server import ServerProcess, free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

# Only a flush or `end` opens the gate early: no timer fires within a test.
START = {"type": "session.start", "voice": "tara", "max_tokens": 28, "seed": 7,
         "max_buffer_delay_ms": 60_000}  # fmt: skip
BYTES_PER_MS = 48  # 24 kHz s16le mono


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("ws") / "server.log"
    server = ServerProcess(log, ("--http-port", str(port))).start()
    yield f"ws://127.0.0.1:{port}/v1/audio/stream"
    server.stop()


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


async def test_text_in_pieces_is_spoken_in_order_with_sentence_marks(url: str) -> None:
    async with connect(url) as ws:
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


async def test_flush_releases_an_unfinished_sentence_at_once(url: str) -> None:
    """The gate holds "Hello" (no sentence is complete, the delay is a minute away); only
    the flush lets it through, and its audio arrives with the socket still open."""
    async with connect(url) as ws:
        await send(ws, START, *texts("Hello"), {"type": "flush"})
        assert json.loads(await ws.recv())["type"] == "session.started"
        assert json.loads(await ws.recv())["type"] == "segment.start"
        assert isinstance(await ws.recv(), bytes)
        await send(ws, {"type": "end"})
        received, code = await receive_all(ws)
    assert code == 1000
    assert [m["text"] for m in received if isinstance(m, dict) and m["type"] == "mark"] == ["Hello"]


async def test_unknown_voice_is_an_error_message_then_close_4404(url: str) -> None:
    async with connect(url) as ws:
        await send(ws, {**START, "voice": "alloy"})
        received, code = await receive_all(ws)
    assert code == 4404
    [error] = received
    assert error["type"] == "error" and error["error"]["code"] == "voice_not_found"
    assert "tara" in error["error"]["voices"]


async def test_a_message_of_unknown_type_is_a_400_close(url: str) -> None:
    async with connect(url) as ws:
        await send(ws, START, {"type": "speak"})
        received, code = await receive_all(ws)
    assert code == 4400
    assert received[0]["type"] == "session.started"
    assert received[-1]["error"]["param"] == "type"
