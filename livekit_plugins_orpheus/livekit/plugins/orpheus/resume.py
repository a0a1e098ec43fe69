"""What one utterance sent and what the server confirmed, so it can resume on another node.

Text positions are UTF-8 bytes of a segment's text, the wire unit (see tts.proto). For the
chunk in flight the ledger keeps the SNAC frames whose audio was received
(AudioChunk.frame_codes): the new node continues after them, so nothing is heard twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .proto import tts_pb2 as pb


@dataclass
class _SentSegment:
    segment_id: str
    text: bytes = b""  # UTF-8
    flushed: bool = False
    chars_done: int = 0  # bytes spoken: the last TextProgress
    chunk_end: int = 0  # the chunk whose audio came since then (AudioChunk.chunk_end)
    heard_codes: list[int] = field(default_factory=list)  # its frames received, 7 codes each
    done: bool = False


class ResumeLedger:
    """Segments in the order sent; the server answers them in the same order.

    Progress marks are applied to the oldest unfinished segment: the server speaks
    segments strictly in order, so the order is all the ledger needs.
    """

    def __init__(self) -> None:
        self._segments: list[_SentSegment] = []
        self.next_sequence = 0
        self.input_ended = False

    @property
    def audio_received(self) -> bool:
        return self.next_sequence > 0

    def record(self, request: pb.SynthesizeRequest, segment_id: str) -> None:
        """Note a request written to the server as part of segment `segment_id`."""
        kind = request.WhichOneof("kind")
        if kind == "end_input":
            self.input_ended = True
            return
        if kind not in ("text", "flush"):
            return
        if not self._segments or self._segments[-1].segment_id != segment_id:
            self._segments.append(_SentSegment(segment_id))
        segment = self._segments[-1]
        if kind == "text":
            segment.text += request.text.text.encode()
        else:
            segment.flushed = True

    def accept_audio(self, audio: pb.AudioChunk) -> bool:
        """False for audio already delivered (a resumed node repeating a chunk)."""
        if audio.sequence < self.next_sequence:
            return False
        self.next_sequence = audio.sequence + 1
        segment = self._in_flight()
        if segment and audio.chunk_end > segment.chars_done:
            if audio.chunk_end != segment.chunk_end:
                segment.chunk_end, segment.heard_codes = audio.chunk_end, []
            segment.heard_codes += audio.frame_codes
        return True

    def on_progress(self, chars_done: int) -> None:
        segment = self._in_flight()
        if segment and min(chars_done, len(segment.text)) > segment.chars_done:
            segment.chars_done = min(chars_done, len(segment.text))
            segment.chunk_end, segment.heard_codes = 0, []

    def on_segment_done(self) -> None:
        if segment := self._in_flight():
            segment.done = True
            segment.chars_done = len(segment.text)

    def resume_from(self) -> pb.ResumeFrom:
        """The new node continues the chunk in flight after the frames we heard of it."""
        if (segment := self._in_flight()) is None:
            return pb.ResumeFrom(next_sequence=self.next_sequence)
        return pb.ResumeFrom(
            segment_id=segment.segment_id,
            chars_done=segment.chars_done,
            next_sequence=self.next_sequence,
            chunk_end=segment.chunk_end,
            heard_frame_codes=segment.heard_codes,
        )

    def replay(self) -> list[pb.SynthesizeRequest]:
        """Requests that re-send everything not yet spoken, after a resuming SessionStart."""
        requests: list[pb.SynthesizeRequest] = []
        first = True
        for segment in self._segments:
            if segment.done:
                continue
            text = segment.text[segment.chars_done :] if first else segment.text
            first = False
            if text:
                chunk = pb.TextChunk(text=text.decode(), segment_id=segment.segment_id)
                requests.append(pb.SynthesizeRequest(text=chunk))
            if segment.flushed:
                requests.append(pb.SynthesizeRequest(flush=pb.Flush(segment_id=segment.segment_id)))
        if self.input_ended:
            requests.append(pb.SynthesizeRequest(end_input=pb.EndInput()))
        return requests

    @property
    def awaiting_audio(self) -> bool:
        """The server owes audio now: a flushed segment is unfinished (without a flush it may
        be waiting for the rest of a sentence from the LLM, which can take any time)."""
        return any(s.flushed and not s.done for s in self._segments)

    def _in_flight(self) -> _SentSegment | None:
        return next((s for s in self._segments if not s.done), None)
