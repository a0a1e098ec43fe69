"""Per-sentence timing marks from the node's text positions.

Each AudioChunk names the text chunk it speaks (bytes [chunk_start, chunk_end) of its
segment) and TextProgress says when a chunk's audio is complete, so every text chunk has an
exact audio span in the stream: from its first audio to the end of its last. A text chunk
is a group of sentences (--max-chunk-chars); inside it, each sentence's span is placed by
its share of the chunk's non-space characters (`exact` says whether both ends of a mark
fell on chunk edges). A sentence's mark is sent once all of its audio has been sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .gate import punctuation_sentence_ends

SAMPLE_RATE = 24000


@dataclass
class _Chunk:
    start: int  # bytes of the segment's text
    end: int
    audio_start: int  # samples into the stream
    audio_end: int | None = None


@dataclass
class _Segment:
    text: bytes = b""
    chunks: list[_Chunk] = field(default_factory=list)
    marked: int = 0  # bytes of text already covered by marks
    started: bool = False


class SentenceMarks:
    """Feed it what was sent and what came back; it returns the marks that became known."""

    def __init__(self) -> None:
        self._segments: dict[str, _Segment] = {}

    def text_sent(self, segment_id: str, text: str) -> None:
        self._segment(segment_id).text += text.encode()

    def audio(self, segment_id: str, chunk_start: int, chunk_end: int, at: int) -> list[dict]:
        """Audio of a text chunk begins or continues at sample `at` of the stream; returns
        the segment.start mark before a segment's first audio."""
        seg = self._segment(segment_id)
        out = []
        if not seg.started:
            seg.started = True
            out.append({"type": "segment.start", "segment_id": segment_id, "audio_ms": _ms(at)})
        last = seg.chunks[-1] if seg.chunks else None
        if last is None or (last.start, last.end) != (chunk_start, chunk_end):
            if last is not None and last.audio_end is None:
                last.audio_end = at
            seg.chunks.append(_Chunk(chunk_start, chunk_end, at))
        return out

    def progress(self, segment_id: str, chars_done: int, at: int) -> list[dict]:
        """All audio for bytes [0, chars_done) of the segment ends at sample `at`."""
        seg = self._segment(segment_id)
        for chunk in seg.chunks:
            if chunk.end <= chars_done and chunk.audio_end is None:
                chunk.audio_end = at
        return self._marks(segment_id, seg, chars_done, final=False)

    def segment_done(self, segment_id: str, at: int) -> list[dict]:
        seg = self._segments.pop(segment_id, None) or _Segment()
        for chunk in seg.chunks:
            if chunk.audio_end is None:
                chunk.audio_end = at
        return self._marks(segment_id, seg, len(seg.text), final=True)

    def _segment(self, segment_id: str) -> _Segment:
        return self._segments.setdefault(segment_id, _Segment())

    def _marks(self, segment_id: str, seg: _Segment, upto: int, *, final: bool) -> list[dict]:
        """Marks of the sentences ending by byte `upto` whose audio is all known."""
        text = seg.text.decode(errors="replace")
        ends = [len(text[:e].encode()) for e in punctuation_sentence_ends(text)]
        if final:
            ends.append(len(seg.text))
        out = []
        for end in ends:
            if end <= seg.marked or end > upto:
                continue
            mark = self._mark(segment_id, seg, seg.marked, end)
            if mark is not None:
                out.append(mark)
            seg.marked = end
        return out

    def _mark(self, segment_id: str, seg: _Segment, start: int, end: int) -> dict | None:
        sentence = seg.text[start:end].decode(errors="replace")
        if not sentence.strip():
            return None
        lead = len(sentence) - len(sentence.lstrip())
        start += len(sentence[:lead].encode())  # the mark begins at the first word
        begin, begin_exact = self._audio_at(seg, start)
        finish, finish_exact = self._audio_at(seg, end)
        if begin is None or finish is None:
            return None  # no audio was generated for it
        return {
            "type": "mark",
            "segment_id": segment_id,
            "text": sentence.strip(),
            "text_start": start,
            "text_end": end,
            "audio_start_ms": _ms(begin),
            "audio_end_ms": _ms(max(begin, finish)),
            "exact": begin_exact and finish_exact,
        }

    def _audio_at(self, seg: _Segment, pos: int) -> tuple[float | None, bool]:
        """Stream sample at which the audio for byte `pos` of the text is spoken."""
        for chunk in seg.chunks:
            if chunk.start <= pos <= chunk.end and chunk.audio_end is not None:
                if pos == chunk.start or _blank(seg.text[chunk.start : pos]):
                    return chunk.audio_start, True
                if pos == chunk.end or _blank(seg.text[pos : chunk.end]):
                    return chunk.audio_end, True
                done = _letters(seg.text[chunk.start : pos])
                share = done / max(1, done + _letters(seg.text[pos : chunk.end]))
                return chunk.audio_start + share * (chunk.audio_end - chunk.audio_start), False
        return None, False


def _letters(data: bytes) -> int:
    return sum(not c.isspace() for c in data.decode(errors="replace"))


def _blank(data: bytes) -> bool:
    return not data.decode(errors="replace").strip()


def _ms(samples: float) -> float:
    return round(samples * 1000.0 / SAMPLE_RATE, 1)
