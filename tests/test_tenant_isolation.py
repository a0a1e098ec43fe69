"""One tenant's poison never reaches the batch: 8 sessions at once on a real node, some of
them poisoned, and every other one finishes with its audio."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import grpc
import pytest
from livekit.plugins import orpheus
from support_calls import final_status
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

TEXT = "Hello there, my good friend."
POISONS = {  # session index -> (sampling, the field its status must name)
    2: (pb.SamplingOptions(temperature=math.nan, max_tokens=70), "temperature"),
    4: (pb.SamplingOptions(repetition_penalty=math.inf, max_tokens=70), "repetition_penalty"),
    6: (pb.SamplingOptions(top_p=-math.inf, max_tokens=70), "top_p"),
}


def messages(i: int, sampling: pb.SamplingOptions) -> list[pb.SynthesizeRequest]:
    start = pb.SessionStart(session_id=f"tenant-{i}", voice="tara", sampling=sampling)
    return [
        pb.SynthesizeRequest(start=start),
        pb.SynthesizeRequest(text=pb.TextChunk(text=TEXT)),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]


async def test_non_finite_sampling_fails_only_its_own_session(
    orpheus_server: ServerProcess,
) -> None:
    def channel() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(orpheus_server.address)

    good = pb.SamplingOptions(max_tokens=70)
    ends = await asyncio.gather(
        *(final_status(channel, messages(i, POISONS.get(i, (good, ""))[0])) for i in range(8))
    )
    for i, end in enumerate(ends):
        if i in POISONS:
            assert end.code == grpc.StatusCode.INVALID_ARGUMENT, (i, end)
            assert POISONS[i][1] in end.details and "finite" in end.details
        else:
            assert end.code == grpc.StatusCode.OK, (i, end)
            assert end.audio_bytes > 0


@pytest.mark.parametrize("field", ["temperature", "top_p", "repetition_penalty"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_the_plugin_refuses_non_finite_sampling_naming_the_option(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a finite number"):
        orpheus.TTS(base_url="127.0.0.1:1", **{field: value})


async def test_sessions_that_never_send_text_are_ended_and_free_their_slots(
    server_factory,
) -> None:
    node = server_factory("--first-text-timeout", "0.5", "--capacity", "4")

    async def idle(i: int) -> tuple[grpc.StatusCode, str]:
        async with grpc.aio.insecure_channel(node.address) as channel:
            call = pb_grpc.TTSStub(channel).Synthesize(timeout=30)
            await call.write(messages(i, pb.SamplingOptions())[0])  # start, then silence
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in call:
                    pass
            return await call.code(), await call.details()

    ends = await asyncio.gather(*(idle(i) for i in range(4)))  # the node's whole capacity
    for code, details in ends:
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "--first-text-timeout" in details
    # the status reaches the client just before the node's handler closes the session
    deadline = time.monotonic() + 5
    while node.metric("orpheus_live_sessions") and time.monotonic() < deadline:  # noqa: ASYNC110 (polls another process)
        await asyncio.sleep(0.02)
    assert node.metric("orpheus_live_sessions") == 0
    end = await final_status(
        lambda: grpc.aio.insecure_channel(node.address),
        messages(9, pb.SamplingOptions(max_tokens=70)),
    )
    assert end.code == grpc.StatusCode.OK and end.audio_bytes > 0
