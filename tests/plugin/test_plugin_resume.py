"""The resume ledger: what a client re-sends to a new node after the old one died."""

from __future__ import annotations

from livekit.plugins.orpheus.proto import tts_pb2 as pb
from livekit.plugins.orpheus.resume import ResumeLedger


def text(t: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(text=pb.TextChunk(text=t))


def flush(segment_id: str) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(flush=pb.Flush(segment_id=segment_id))


def audio(sequence: int, codes: list[int] | None = None, chunk_end: int = 0) -> pb.AudioChunk:
    codes = codes or []
    pcm = b"\0" * (len(codes) // 7 * 4096)  # 2048 samples per frame
    return pb.AudioChunk(sequence=sequence, pcm=pcm, chunk_end=chunk_end, frame_codes=codes)


def kinds(requests: list[pb.SynthesizeRequest]) -> list[tuple[str, str]]:
    out = []
    for r in requests:
        kind = r.WhichOneof("kind")
        out.append((kind, r.text.text if kind == "text" else r.flush.segment_id))
    return out


def test_replays_unspoken_tail_and_later_segments() -> None:
    ledger = ResumeLedger()
    ledger.record(text("One two. "), "a")
    ledger.record(text("Three four."), "a")
    ledger.record(flush("a"), "a")
    ledger.record(text("Five six."), "b")
    for seq in range(3):
        assert ledger.accept_audio(audio(seq))
    ledger.on_progress(9)  # "One two. " fully spoken
    resume = ledger.resume_from()
    assert (resume.segment_id, resume.chars_done, resume.next_sequence) == ("a", 9, 3)
    expected = [("text", "Three four."), ("flush", "a"), ("text", "Five six.")]
    assert kinds(ledger.replay()) == expected


def test_done_segments_are_not_replayed_and_end_input_is() -> None:
    ledger = ResumeLedger()
    ledger.record(text("Done sentence."), "a")
    ledger.record(flush("a"), "a")
    ledger.record(text("Pending."), "b")
    ledger.record(flush("b"), "b")
    ledger.record(pb.SynthesizeRequest(end_input=pb.EndInput()), "")
    ledger.accept_audio(audio(0))
    ledger.on_segment_done()
    assert ledger.resume_from().segment_id == "b"
    assert kinds(ledger.replay()) == [("text", "Pending."), ("flush", "b"), ("end_input", "")]


def test_duplicate_audio_is_dropped() -> None:
    ledger = ResumeLedger()
    assert ledger.accept_audio(audio(0)) and ledger.accept_audio(audio(1))
    assert not ledger.accept_audio(audio(1))
    assert not ledger.accept_audio(audio(0))
    assert ledger.accept_audio(audio(2))


def test_progress_never_goes_backwards_or_past_the_text() -> None:
    ledger = ResumeLedger()
    ledger.record(text("Short."), "a")
    ledger.on_progress(4)
    ledger.on_progress(2)
    assert ledger.resume_from().chars_done == 4
    ledger.on_progress(99)
    assert ledger.resume_from().chars_done == len("Short.")


def test_frames_of_the_chunk_in_flight_are_kept_until_its_progress_mark() -> None:
    ledger = ResumeLedger()
    ledger.record(text("One two. Three four. Five."), "a")
    first, second = list(range(14)), list(range(4000, 4007))
    ledger.accept_audio(audio(0, first, chunk_end=9))
    ledger.accept_audio(audio(1, [], chunk_end=9))  # trimmed head: audio without frames
    ledger.accept_audio(audio(2, second, chunk_end=9))
    resume = ledger.resume_from()
    assert (resume.chars_done, resume.chunk_end) == (0, 9)
    assert list(resume.heard_frame_codes) == first + second  # in the order heard
    ledger.on_progress(9)  # that chunk is all out: the next one starts from nothing
    resume = ledger.resume_from()
    assert (resume.chars_done, resume.chunk_end, list(resume.heard_frame_codes)) == (9, 0, [])
    ledger.accept_audio(audio(3, second, chunk_end=20))
    assert ledger.accept_audio(audio(3, first, chunk_end=20)) is False  # a repeat
    resume = ledger.resume_from()
    assert (resume.chars_done, resume.chunk_end, list(resume.heard_frame_codes)) == (9, 20, second)


def test_positions_are_utf8_bytes_of_the_text_sent() -> None:
    sent = "Ça va? 🙂 東京へ行く. Noe\u0308l!"
    ledger = ResumeLedger()
    ledger.record(text(sent), "a")
    mark = len("Ça va? 🙂 ".encode())  # 13 bytes, 9 code points, 10 UTF-16 units
    ledger.on_progress(mark)
    assert ledger.resume_from().chars_done == mark
    assert kinds(ledger.replay()) == [("text", "東京へ行く. Noe\u0308l!")]
    ledger.on_progress(10**6)  # never past the text
    assert ledger.resume_from().chars_done == len(sent.encode())
