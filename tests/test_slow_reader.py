"""A real gRPC client on 127.0.0.1 that stops reading, beside one that reads, on one node.

The stalled client turns off BDP probing, so its HTTP/2 window stays at 64 KiB (under
1.5 s of audio) and its buffers fill at once; a default grpc-aio client grants
megabytes first (bench/bench_slow_reader.py measures that case).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

SMALL_WINDOW = (("grpc.http2.bdp_probe", 0),)
STORY = "Once upon a time, a lighthouse keeper lived alone on a rock in the sea. " * 12
WAIT_S = 120.0  # a bound so a broken build fails instead of hanging; not a timing claim


def opening(session_id: str, text: str) -> list[pb.SynthesizeRequest]:
    return [
        pb.SynthesizeRequest(start=pb.SessionStart(session_id=session_id, voice="tara")),
        pb.SynthesizeRequest(text=pb.TextChunk(text=text)),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def read_all(call) -> tuple[grpc.StatusCode, str, int, list[pb.SegmentDone]]:
    audio, done = 0, []
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for resp in call:
            audio += len(resp.audio.pcm)
            if resp.WhichOneof("kind") == "segment_done":
                done.append(resp.segment_done)
    return await call.code(), await call.details() or "", audio, done


async def test_a_client_that_stops_reading_is_ended_and_the_batch_finishes_intact(
    server_factory,
) -> None:
    node = server_factory("--max-stalled-read", "1", "--max-audio-ahead", "5")
    async with (
        grpc.aio.insecure_channel(node.address, options=SMALL_WINDOW) as stalled_channel,
        grpc.aio.insecure_channel(node.address) as reader_channel,
    ):
        stalled = pb_grpc.TTSStub(stalled_channel).Synthesize()
        for msg in opening("stops-reading", STORY):
            await stalled.write(msg)
        reader = pb_grpc.TTSStub(reader_channel).Synthesize()
        for msg in opening("reads", "The ships came home one by one."):
            await reader.write(msg)
        reading = asyncio.create_task(read_all(reader))
        await until(lambda: node.metric("orpheus_engine_live_requests") >= 2, "both generating")

        await until(
            lambda: node.metric('orpheus_sessions_total{code="DEADLINE_EXCEEDED"}') == 1,
            "the stalled session ended",
        )
        code, _, audio, done = await reading  # the other session of the batch
        assert code == grpc.StatusCode.OK
        assert len(done) == 1 and audio == round(done[0].metrics.audio_ms * 48)
        await until(lambda: node.metric("orpheus_live_sessions") == 0, "capacity freed")
        assert node.metric("orpheus_engine_live_requests") == 0  # its request was aborted

        code, details, audio, done = await read_all(stalled)  # it reads again, at last
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "--max-stalled-read" in details
        assert audio > 0 and not done  # what gRPC held for it, then the status
