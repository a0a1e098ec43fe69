"""SessionStart.resume on one real node: UTF-8 byte offsets, and bad fields refused by name.

The resuming client here counts like a Go, Rust or JS client would: on the UTF-8 bytes
of the text it sent (emoji, CJK, combining marks), never on Python characters.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from support_fleet import collect
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb

# Several chunks at --max-chunk-chars 20: a 4-byte emoji, 3-byte CJK, a ZWJ family (7
# code points, 25 bytes) and a combining diaeresis (1 character on screen, 2 code points).
TEXT = "Ça va? 🙂 Très bien. 東京へ行く。 Noe\u0308l arrive, 👩\u200d👩\u200d👧 aussi! Fin."
SAMPLING = pb.SamplingOptions(seed=11, max_tokens=28)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = Path(tmp_path_factory.mktemp("resume")) / "node.log"
    server = ServerProcess(log, ("--max-chunk-chars", "20")).start()
    yield server
    server.stop()


def start(resume: pb.ResumeFrom | None = None) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(
        start=pb.SessionStart(voice="tara", sampling=SAMPLING, resume=resume)
    )


def text(data: bytes) -> list[pb.SynthesizeRequest]:
    """The text as raw UTF-8 bytes (what a Go or Rust client slices), then end of input."""
    return [
        pb.SynthesizeRequest(text=pb.TextChunk(text=data.decode(), segment_id="s")),
        pb.SynthesizeRequest(end_input=pb.EndInput()),
    ]


def pcm(responses: list[pb.SynthesizeResponse]) -> np.ndarray:
    data = b"".join(r.audio.pcm for r in responses if r.WhichOneof("kind") == "audio")
    return np.frombuffer(data, np.int16).astype(np.float64)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Same audio up to SNAC window-edge rounding (same tokens, other decode windows)."""
    return len(a) == len(b) and np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)) < 1e-3


@pytest.fixture(scope="module")
def whole(node: ServerProcess) -> list[pb.SynthesizeResponse]:
    return asyncio.run(collect(node.address, [start(), *text(TEXT.encode())]))


def test_marks_and_chunks_are_utf8_byte_offsets(whole: list[pb.SynthesizeResponse]) -> None:
    data = TEXT.encode()
    marks = [r.progress.chars_done for r in whole if r.WhichOneof("kind") == "progress"]
    assert len(marks) >= 4 and marks[-1] == len(data) != len(TEXT)
    for mark in marks:
        data[:mark].decode()  # every mark falls on a character boundary
    spans = {(r.audio.chunk_start, r.audio.chunk_end) for r in whole if r.HasField("audio")}
    assert sorted(spans) == list(zip([0, *marks[:-1]], marks, strict=True))


@pytest.mark.parametrize("mark_index", [1, 2])
async def test_resume_at_a_byte_offset_loses_and_repeats_nothing(
    node: ServerProcess, whole: list[pb.SynthesizeResponse], mark_index: int
) -> None:
    data = TEXT.encode()
    marks = [r.progress.chars_done for r in whole if r.WhichOneof("kind") == "progress"]
    mark = marks[mark_index]
    assert mark != len(data[:mark].decode())  # bytes and Python characters disagree here
    before = whole[: next(i for i, r in enumerate(whole) if r.progress.chars_done == mark)]
    sent = sum(r.WhichOneof("kind") == "audio" for r in before)
    resume = pb.ResumeFrom(segment_id="s", chars_done=mark, next_sequence=sent)
    again = await collect(node.address, [start(resume), *text(data[mark:])])
    resumed_marks = [r.progress.chars_done for r in again if r.WhichOneof("kind") == "progress"]
    assert resumed_marks == marks[mark_index + 1 :]
    assert next(r.audio.sequence for r in again if r.HasField("audio")) == sent
    assert close(pcm(again), pcm(whole)[len(pcm(before)) :])


async def test_resume_mid_chunk_continues_after_the_frames_already_heard(
    node: ServerProcess, whole: list[pb.SynthesizeResponse]
) -> None:
    data = TEXT.encode()
    marks = [r.progress.chars_done for r in whole if r.WhichOneof("kind") == "progress"]
    mark, chunk_end = marks[1], marks[2]
    first = next(r.audio for r in whole if r.HasField("audio") and r.audio.chunk_end == chunk_end)
    assert first.first_frame == 0 and len(first.frame_codes) >= 7  # the chunk's first frames
    heard = list(first.frame_codes[:7])  # the chunk's first frame was heard
    resume = pb.ResumeFrom(
        segment_id="s", chars_done=mark, chunk_end=chunk_end, heard_frame_codes=heard
    )
    again = await collect(node.address, [start(resume), *text(data[mark:])])
    audio = [r.audio for r in again if r.HasField("audio")]
    resumed = [a for a in audio if a.chunk_end == chunk_end]
    # the new node's frames start right after the heard ones, each with its 2048 samples
    assert resumed and resumed[0].first_frame == len(heard) // 7
    for a, b in itertools.pairwise(resumed):
        assert b.first_frame == a.first_frame + len(a.frame_codes) // 7
    assert all(len(a.pcm) == 2 * 2048 * len(a.frame_codes) // 7 for a in audio)
    marks_again = [r.progress.chars_done for r in again if r.WhichOneof("kind") == "progress"]
    assert marks_again[0] == chunk_end and marks_again[-1] == len(data)


async def test_resume_after_a_chunk_heard_whole_adds_no_audio_to_it(
    node: ServerProcess, whole: list[pb.SynthesizeResponse]
) -> None:
    data = TEXT.encode()
    marks = [r.progress.chars_done for r in whole if r.WhichOneof("kind") == "progress"]
    mark, chunk_end = marks[1], marks[2]
    audio = [r.audio for r in whole if r.HasField("audio") and r.audio.chunk_end == chunk_end]
    heard = [c for a in audio for c in a.frame_codes]
    assert len(heard) == SAMPLING.max_tokens  # the chunk used its whole budget
    resume = pb.ResumeFrom(
        segment_id="s", chars_done=mark, chunk_end=chunk_end, heard_frame_codes=heard
    )
    again = await collect(node.address, [start(resume), *text(data[mark:])])
    assert not [r for r in again if r.HasField("audio") and r.audio.chunk_end == chunk_end]
    marks_again = [r.progress.chars_done for r in again if r.WhichOneof("kind") == "progress"]
    assert marks_again == marks[2:]


R = pb.ResumeFrom
END = len(TEXT.encode())
CODES = "resume.heard_frame_codes"
BAD = [
    ("no-segment", R(chars_done=3), "resume.segment_id"),
    ("codes-no-segment", R(heard_frame_codes=[1] * 7), "resume.segment_id"),
    ("end-before-done", R(segment_id="s", chars_done=9, chunk_end=9), "resume.chunk_end"),
    ("codes-no-chunk", R(segment_id="s", heard_frame_codes=[1] * 7), CODES),
    ("codes-not-whole-frames", R(segment_id="s", chunk_end=8, heard_frame_codes=[1] * 6), CODES),
    ("code-out-of-range", R(segment_id="s", chunk_end=8, heard_frame_codes=[4096] * 7), CODES),
    ("frames-over-budget", R(segment_id="s", chunk_end=8, heard_frame_codes=[1] * 35), CODES),
    ("mid-character", R(segment_id="s", chunk_end=len("Ça va? ".encode()) + 1), "resume.chunk_end"),
    ("past-the-text", R(segment_id="s", chunk_end=END + 1), "resume.chunk_end"),
    ("longer-than-a-chunk", R(segment_id="s", chunk_end=END), "resume.chunk_end"),
]  # fmt: skip


@pytest.mark.parametrize(("resume", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_resume_fields_are_invalid_argument_naming_the_field(
    node: ServerProcess, resume: pb.ResumeFrom, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(node.address, [start(resume), *text(TEXT.encode())])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()
