"""Translation between orpheus.v1 messages and session/engine types (validation included)."""

from __future__ import annotations

import re
import secrets

import numpy as np

from ..engine.base import SamplingConfig
from ..errors import ClientError
from ..fleet.catalog import ServedModel
from ..orpheus import tokens as T
from ..proto import tts_pb2 as pb
from ..session.events import AudioOut, ProgressOut, SegmentOut, SessionEvent
from ..session.resume import ResumePoint
from ..voices.model_card import normalize_language

_SESSION_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")


def sampling_from_proto(options: pb.SamplingOptions, defaults: SamplingConfig) -> SamplingConfig:
    """Zero fields mean "server default"; out-of-range values are INVALID_ARGUMENT.

    Every session gets a seed (SessionStarted.seed), so a session can be reproduced."""
    seed = options.seed if options.HasField("seed") else defaults.seed
    try:
        return SamplingConfig(
            temperature=options.temperature or defaults.temperature,
            top_p=options.top_p or defaults.top_p,
            repetition_penalty=options.repetition_penalty or defaults.repetition_penalty,
            max_tokens=min(options.max_tokens or defaults.max_tokens, defaults.max_tokens),
            seed=secrets.randbits(63) if seed is None else seed,
        )
    except ValueError as exc:
        raise ClientError(f"sampling: {exc}") from exc


def check_language(language: str, field: str = "SessionStart.language") -> str:
    """A request's language normalised ("" = any); a malformed one is INVALID_ARGUMENT."""
    if not language:
        return ""
    try:
        return normalize_language(language)
    except ValueError as exc:
        raise ClientError(f"{field}: {exc}") from None


def model_to_proto(model: ServedModel) -> pb.Model:
    return pb.Model(
        name=model.name,
        language=model.language,
        base_voices=model.base_voices,
        node_ids=model.node_ids,
    )


def resume_from_proto(resume: pb.ResumeFrom, sampling: SamplingConfig) -> ResumePoint | None:
    """The segment to pick up (None: nothing was in flight); bad fields are INVALID_ARGUMENT."""
    if not resume.segment_id:
        if resume.chars_done or resume.chunk_end or resume.heard_frame_codes:
            raise ClientError(
                "resume.segment_id is required with resume.chars_done, resume.chunk_end "
                "or resume.heard_frame_codes"
            )
        return None
    if resume.chunk_end and resume.chunk_end <= resume.chars_done:
        raise ClientError(
            f"resume.chunk_end={resume.chunk_end} must be past "
            f"resume.chars_done={resume.chars_done} (or 0: no chunk in flight)"
        )
    frames = _heard_frames(resume, sampling)
    return ResumePoint(resume.segment_id, resume.chars_done, resume.chunk_end, frames)


def _heard_frames(resume: pb.ResumeFrom, sampling: SamplingConfig) -> np.ndarray:
    """resume.heard_frame_codes as frames (n, 7): whole frames of valid codes, of a chunk."""
    codes = np.asarray(resume.heard_frame_codes, dtype=np.int64)
    field = "resume.heard_frame_codes"
    if len(codes) and not resume.chunk_end:
        raise ClientError(f"{field} needs resume.chunk_end (the chunk they belong to)")
    if len(codes) % T.FRAME_TOKENS:
        raise ClientError(f"{field} has {len(codes)} codes: not whole frames of 7")
    if len(codes) and int(codes.max()) >= T.CODEBOOK_SIZE:
        raise ClientError(f"{field}: codes must lie in [0, {T.CODEBOOK_SIZE})")
    most = sampling.max_tokens // T.FRAME_TOKENS
    if len(codes) // T.FRAME_TOKENS > most:
        raise ClientError(
            f"{field} holds {len(codes) // T.FRAME_TOKENS} frames, more than one chunk "
            f"can hold ({most} at max_tokens={sampling.max_tokens})"
        )
    return codes.reshape(-1, T.FRAME_TOKENS)


def check_audio_format(fmt: pb.AudioFormat) -> None:
    if fmt.encoding not in (pb.AUDIO_ENCODING_UNSPECIFIED, pb.AUDIO_ENCODING_PCM16LE):
        raise ClientError("audio_format: only PCM16LE is supported")
    if fmt.sample_rate not in (0, T.SAMPLE_RATE):
        raise ClientError(
            f"audio_format.sample_rate={fmt.sample_rate}: only {T.SAMPLE_RATE} Hz is supported",
        )
    if fmt.num_channels not in (0, 1):
        raise ClientError(
            f"audio_format.num_channels={fmt.num_channels}: only mono is supported",
        )


def check_session_id(session_id: str) -> None:
    if not _SESSION_ID.fullmatch(session_id):
        raise ClientError(
            "session_id must be 1-128 chars of letters, digits and . _ : @ / -",
        )


class ResponseEncoder:
    """Session events -> SynthesizeResponse messages with a session-wide sequence number."""

    def __init__(self, first_sequence: int = 0) -> None:
        self.sequence = first_sequence

    def encode(self, event: SessionEvent) -> pb.SynthesizeResponse:
        if isinstance(event, AudioOut):
            chunk = pb.AudioChunk(
                pcm=event.pcm,
                segment_id=event.segment_id,
                sequence=self.sequence,
                sample_rate=T.SAMPLE_RATE,
                chunk_start=event.chunk_start,
                chunk_end=event.chunk_end,
                frame_codes=event.frame_codes,
                first_frame=event.first_frame,
            )
            self.sequence += 1
            return pb.SynthesizeResponse(audio=chunk)
        if isinstance(event, ProgressOut):
            return pb.SynthesizeResponse(
                progress=pb.TextProgress(segment_id=event.segment_id, chars_done=event.chars_done)
            )
        if isinstance(event, SegmentOut):
            m = event.metrics
            metrics = pb.SegmentMetrics(
                ttfa_ms=m.ttfa_ms,
                tokens_generated=m.tokens_generated,
                audio_ms=m.audio_ms,
                head_silence_trimmed_ms=m.head_silence_trimmed_ms,
                generation_rtf=m.generation_rtf,
                invalid_tokens_dropped=m.invalid_tokens_dropped,
                text_chunks=m.text_chunks,
                tags_removed=m.tags_removed,
                chunks_overrun=m.chunks_overrun,
                chunks_budget_capped=m.chunks_budget_capped,
                gap_silence_trimmed_ms=m.gap_silence_trimmed_ms,
            )
            return pb.SynthesizeResponse(
                segment_done=pb.SegmentDone(segment_id=event.segment_id, metrics=metrics)
            )
        raise TypeError(f"unknown session event {event!r}")
