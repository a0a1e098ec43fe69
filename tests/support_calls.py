"""Drive one Synthesize call to its end and report how it ended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from inference_server.proto import tts_pb2 as pb
from inference_server.proto import tts_pb2_grpc as pb_grpc

# grpc/grpc#36066: a client write that fails because the server already ended the call
# replaces the server's status with this one, which our server never sends.
CLIENT_RACE = "Internal error from Core"
# Refusals read what the client sent first, which makes the race rare; after that many
# repeats it is not the race any more.
CLIENT_RACE_ATTEMPTS = 12


@dataclass(frozen=True, slots=True)
class CallEnd:
    code: grpc.StatusCode
    details: str
    audio_bytes: int


async def final_status(
    open_channel: Callable[[], grpc.aio.Channel],
    msgs: Sequence[pb.SynthesizeRequest],
    metadata: Sequence[tuple[str, str]] = (),
) -> CallEnd:
    """Write `msgs` (stopping once the server ends the call), read to the end; a run lost
    to the client race above is repeated."""
    for _ in range(CLIENT_RACE_ATTEMPTS):
        end = await call_once(open_channel, msgs, metadata)
        if end.details != CLIENT_RACE:
            break
    return end


async def call_once(
    open_channel: Callable[[], grpc.aio.Channel],
    msgs: Sequence[pb.SynthesizeRequest],
    metadata: Sequence[tuple[str, str]],
) -> CallEnd:
    async with open_channel() as channel:
        call = pb_grpc.TTSStub(channel).Synthesize(metadata=tuple(metadata), timeout=60)

        async def write() -> None:
            with contextlib.suppress(
                grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError
            ):
                for msg in msgs:
                    await call.write(msg)
                await call.done_writing()

        writer = asyncio.create_task(write())
        audio = 0
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for resp in call:
                audio += len(resp.audio.pcm)
        await writer
        return CallEnd(await call.code(), await call.details() or "", audio)
