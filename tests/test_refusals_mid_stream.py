"""Every refusal in the middle of a stream reaches a grpc-aio client that writes ahead as
its real status, never as grpc/grpc#36066's INTERNAL (no retries here: 50 calls a kind)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from support_calls import call_once
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb

CALLS = 50
AT_ONCE = 10


def start(i: int) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(start=pb.SessionStart(session_id=f"ahead-{i}", voice="tara"))


def text(t: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(text=pb.TextChunk(text=t))


FLUSH = pb.SynthesizeRequest(flush=pb.Flush())
END_INPUT = pb.SynthesizeRequest(end_input=pb.EndInput())
TRAILING = [text("ok") for _ in range(6)]  # written ahead, under every limit
KINDS = {  # refusal -> (messages before the trailing writes, status, words in its details)
    "max_segment_chars": ([text("x" * 50)], grpc.StatusCode.INVALID_ARGUMENT,
                          "max_segment_chars"),
    "max_session_chars": ([text("y" * 30), FLUSH] * 4, grpc.StatusCode.INVALID_ARGUMENT,
                          "max_session_chars"),
    "start_twice": ([text("hello"), None], grpc.StatusCode.FAILED_PRECONDITION,
                    "SessionStart sent twice"),
    "empty_message": ([text("hello"), pb.SynthesizeRequest()], grpc.StatusCode.INVALID_ARGUMENT,
                      "empty SynthesizeRequest"),
    "text_after_end_input": ([text("hello"), END_INPUT], grpc.StatusCode.INVALID_ARGUMENT,
                             "input already ended"),
}  # fmt: skip


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("node") / "server.log",
        ("--max-segment-chars", "40", "--max-session-chars", "100"),
    ).start()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_refusal_mid_stream_reaches_the_client_as_its_status(
    node: ServerProcess, kind: str
) -> None:
    before, code, words = KINDS[kind]
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(i: int) -> tuple[grpc.StatusCode, str]:
        messages = [start(i), *(start(i) if m is None else m for m in before), *TRAILING]
        async with gate:
            end = await call_once(lambda: grpc.aio.insecure_channel(node.address), messages, ())
        return end.code, end.details

    ends = await asyncio.gather(*(one(i) for i in range(CALLS)))
    assert Counter(c for c, _ in ends) == {code: CALLS}, Counter(d for _, d in ends)
    assert all(words in details for _, details in ends)
