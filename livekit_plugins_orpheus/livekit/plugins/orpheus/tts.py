# Copyright 2025 The orpheus-serving authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0

from __future__ import annotations

import asyncio
import math
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from livekit.agents import APIConnectOptions, tokenize, tts
from livekit.agents.metrics import TTSMetrics
from livekit.agents.metrics.base import Metadata
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.utils import aio, is_given, shortuuid

from .endpoints import ServerEndpoints
from .gate import SentenceGate
from .models import EMOTION_TAGS, TTSModels, TTSVoices
from .proto import tts_pb2 as pb
from .session import SynthesisSession
from .transcript import SpeakingRate, TranscriptAligner
from .voice_names import validate_voice_name

SAMPLE_RATE = 24000
NUM_CHANNELS = 1
DEFAULT_BASE_URL = "localhost:50051"
DEFAULT_VOICE = "tara"
API_KEY_ENV = "ORPHEUS_API_KEY"
BASE_URL_ENV = "ORPHEUS_BASE_URL"
_MAX_PENDING_METADATA = 256


class OrpheusSegmentMetadata(Metadata):
    """`TTSMetrics.metadata` of an Orpheus segment: the server's own figures for it.

    Read them as attributes in a `metrics_collected` handler; LiveKit's JSON dumps of
    `TTSMetrics` keep only the base `Metadata` fields.
    """

    node_id: str = ""
    server_ttfa_ms: float = 0.0
    tokens_generated: int = 0
    server_audio_ms: float = 0.0
    head_silence_trimmed_ms: float = 0.0
    generation_rtf: float = 0.0
    invalid_tokens_dropped: int = 0
    text_chunks: int = 0
    tags_removed: int = 0  # unknown or malformed <tags> the server did not speak
    chunks_overrun: int = 0  # text chunks stopped: looping, or far past their text's length
    chunks_budget_capped: int = 0  # text chunks stopped by this TTS's max_tokens
    gap_silence_trimmed_ms: float = 0.0  # later chunks' head silence cut to the node's gap


@dataclass
class _TTSOptions:
    voice: TTSVoices | str
    model: TTSModels | str
    language: str
    temperature: float
    top_p: float
    repetition_penalty: float
    max_tokens: int
    seed: int | None
    trim_head_silence: bool
    min_sentences: int
    max_buffer_delay: float
    tokenizer: tokenize.SentenceTokenizer

    def start_request(
        self, session_id: str, resume: pb.ResumeFrom | None = None
    ) -> pb.SynthesizeRequest:
        return pb.SynthesizeRequest(
            start=pb.SessionStart(
                session_id=session_id,
                voice=self.voice,
                model=self.model,
                language=self.language,
                sampling=pb.SamplingOptions(
                    temperature=self.temperature,
                    top_p=self.top_p,
                    repetition_penalty=self.repetition_penalty,
                    max_tokens=self.max_tokens,
                    seed=self.seed,
                ),
                audio_format=pb.AudioFormat(
                    encoding=pb.AUDIO_ENCODING_PCM16LE,
                    sample_rate=SAMPLE_RATE,
                    num_channels=NUM_CHANNELS,
                ),
                trim_head_silence=self.trim_head_silence,
                resume=resume,
            )
        )


class TTS(tts.TTS):
    def __init__(
        self,
        *,
        base_url: NotGivenOr[str] = NOT_GIVEN,
        voice: TTSVoices | str = DEFAULT_VOICE,
        model: TTSModels | str = "",
        language: str = "",
        api_key: NotGivenOr[str] = NOT_GIVEN,
        temperature: float = 0.6,
        top_p: float = 0.8,
        repetition_penalty: float = 1.1,
        max_tokens: int = 0,
        seed: int | None = None,
        trim_head_silence: bool = True,
        min_sentences: int = 2,
        max_buffer_delay: float = 0.8,
        tokenizer: NotGivenOr[tokenize.SentenceTokenizer] = NOT_GIVEN,
        use_tls: bool = False,
        root_certificates: bytes | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Create a TTS that speaks through self-hosted Orpheus inference nodes.

        ``base_url`` is ``host:port`` (``grpcs://`` for TLS), or a comma-separated list
        whose first address is primary and the others take over when it is lost; it
        falls back to the ``ORPHEUS_BASE_URL`` environment variable, then localhost:50051.
        ``model`` is a served model name (the server's ListModels); ``language`` (e.g.
        ``"ko"``) picks the fleet's model for that language when no model is named, and
        must be the model's language when one is. A model or language no node serves
        fails with the server's NOT_FOUND naming what is served.
        ``api_key`` falls back to the ``ORPHEUS_API_KEY`` environment variable.
        Sampling values of 0 let the server pick its default. Streaming text is held
        until ``min_sentences`` complete sentences exist (or a flush, or
        ``max_buffer_delay`` seconds since the oldest held text) for better prosody.
        """
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=True),
            sample_rate=SAMPLE_RATE,
            num_channels=NUM_CHANNELS,
        )
        if not is_given(base_url):
            base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        if not is_given(api_key):
            api_key = os.environ.get(API_KEY_ENV, "")
        self._opts = _TTSOptions(
            voice=voice,
            model=model,
            language=language,
            temperature=temperature,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            max_tokens=max_tokens,
            seed=seed,
            trim_head_silence=trim_head_silence,
            min_sentences=min_sentences,
            max_buffer_delay=max_buffer_delay,
            tokenizer=tokenizer if is_given(tokenizer) else tokenize.blingfire.SentenceTokenizer(),
        )
        _validate(self._opts)
        self._endpoints = ServerEndpoints(
            base_url,
            api_key=api_key or None,
            use_tls=use_tls,
            root_certificates=root_certificates,
            channel_options=channel_options,
        )
        self._streams: weakref.WeakSet[SynthesizeStream] = weakref.WeakSet()
        self._segment_metadata: dict[tuple[str, str], OrpheusSegmentMetadata] = {}
        self._speaking_rates: dict[str, SpeakingRate] = {}

    @property
    def model(self) -> str:
        return self._opts.model or "orpheus"

    @property
    def language(self) -> str:
        """The language asked for ("" = the model's, whichever the server picks)."""
        return self._opts.language

    @property
    def provider(self) -> str:
        return "orpheus"

    @property
    def emotion_tags(self) -> tuple[str, ...]:
        """The tags the model performs (e.g. ``<laugh>``), for the LLM's instructions; the
        server removes any other ``<tag>`` unspoken (SegmentMetrics.tags_removed)."""
        return EMOTION_TAGS

    def update_options(
        self,
        *,
        voice: NotGivenOr[TTSVoices | str] = NOT_GIVEN,
        model: NotGivenOr[TTSModels | str] = NOT_GIVEN,
        language: NotGivenOr[str] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        top_p: NotGivenOr[float] = NOT_GIVEN,
        repetition_penalty: NotGivenOr[float] = NOT_GIVEN,
        max_tokens: NotGivenOr[int] = NOT_GIVEN,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        trim_head_silence: NotGivenOr[bool] = NOT_GIVEN,
        min_sentences: NotGivenOr[int] = NOT_GIVEN,
        max_buffer_delay: NotGivenOr[float] = NOT_GIVEN,
        tokenizer: NotGivenOr[tokenize.SentenceTokenizer] = NOT_GIVEN,
    ) -> None:
        """Change options for the next utterances (streams already open keep theirs)."""
        changes = {
            name: value
            for name, value in {
                "voice": voice,
                "model": model,
                "language": language,
                "temperature": temperature,
                "top_p": top_p,
                "repetition_penalty": repetition_penalty,
                "max_tokens": max_tokens,
                "seed": seed,
                "trim_head_silence": trim_head_silence,
                "min_sentences": min_sentences,
                "max_buffer_delay": max_buffer_delay,
                "tokenizer": tokenizer,
            }.items()
            if is_given(value)
        }
        opts = replace(self._opts, **changes)
        _validate(opts)
        self._opts = opts

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    def speaking_rate(self, voice: NotGivenOr[str] = NOT_GIVEN) -> SpeakingRate:
        """What aligned transcripts estimate word times with, per voice (default: the
        current one): seconds per character heard so far and the estimate's errors."""
        voice = voice if is_given(voice) else self._opts.voice
        return self._speaking_rates.setdefault(voice, SpeakingRate())

    def prewarm(self) -> None:
        """Open the channel to the primary node now, so the first utterance skips the connect."""
        self._endpoints.connect()

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        await self._endpoints.aclose()

    def emit(self, event: Any, *args: Any) -> None:
        # attach the server's figures for the segment to LiveKit's metrics for it
        if event == "metrics_collected" and args and isinstance(args[0], TTSMetrics):
            key = (args[0].request_id, args[0].segment_id or "")
            if metadata := self._segment_metadata.pop(key, None):
                args = (args[0].model_copy(update={"metadata": metadata}), *args[1:])
        super().emit(event, *args)

    def _new_session(self, opts: _TTSOptions, conn_options: APIConnectOptions) -> SynthesisSession:
        session_id = shortuuid("orpheus_")
        return SynthesisSession(
            endpoints=self._endpoints,
            session_id=session_id,
            start_request=lambda resume: opts.start_request(session_id, resume),
            connect_timeout=conn_options.timeout,
        )

    def _note_segment_done(
        self, session: SynthesisSession, segment_key: str, done: pb.SegmentDone
    ) -> OrpheusSegmentMetadata:
        m = done.metrics
        started = session.started
        metadata = OrpheusSegmentMetadata(
            model_name=started.model if started and started.model else self.model,
            model_provider=self.provider,
            node_id=started.node_id if started else "",
            server_ttfa_ms=m.ttfa_ms,
            tokens_generated=m.tokens_generated,
            server_audio_ms=m.audio_ms,
            head_silence_trimmed_ms=m.head_silence_trimmed_ms,
            generation_rtf=m.generation_rtf,
            invalid_tokens_dropped=m.invalid_tokens_dropped,
            text_chunks=m.text_chunks,
            tags_removed=m.tags_removed,
            chunks_overrun=m.chunks_overrun,
            chunks_budget_capped=m.chunks_budget_capped,
            gap_silence_trimmed_ms=m.gap_silence_trimmed_ms,
        )
        self._segment_metadata[(session.session_id, segment_key)] = metadata
        while len(self._segment_metadata) > _MAX_PENDING_METADATA:  # metrics never emitted
            self._segment_metadata.pop(next(iter(self._segment_metadata)))
        return metadata


def _validate(opts: _TTSOptions) -> None:
    for name in ("temperature", "top_p", "repetition_penalty", "max_buffer_delay"):
        if not math.isfinite(getattr(opts, name)):
            raise ValueError(f"{name} must be a finite number, got {getattr(opts, name)}")
    if opts.min_sentences < 1:
        raise ValueError(f"min_sentences must be >= 1, got {opts.min_sentences}")
    if opts.max_buffer_delay <= 0:
        raise ValueError(f"max_buffer_delay must be > 0 seconds, got {opts.max_buffer_delay}")
    if opts.repetition_penalty and opts.repetition_penalty < 1.0:
        raise ValueError(f"repetition_penalty must be >= 1.0, got {opts.repetition_penalty}")
    if not 0 <= opts.top_p <= 1:
        raise ValueError(f"top_p must be in [0, 1], got {opts.top_p}")
    if opts.temperature < 0 or opts.max_tokens < 0:
        raise ValueError("temperature and max_tokens must be >= 0")
    opts.voice = validate_voice_name(opts.voice)  # the server's rule; NFC as the server keys it
    opts.language = opts.language.strip().lower()  # the server matches tags case-insensitively


class ChunkedStream(tts.ChunkedStream):
    """One-shot synthesis of a whole text over one Synthesize call."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = replace(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        session = self._tts._new_session(self._opts, self._conn_options)
        output_emitter.initialize(
            request_id=session.session_id,
            sample_rate=SAMPLE_RATE,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
        )
        aligner = TranscriptAligner(output_emitter, self._tts.speaking_rate(self._opts.voice))
        try:
            await session.open()
            segment_id = shortuuid("seg_")
            aligner.add_text(segment_id, self.input_text)
            aligner.start_segment(segment_id)
            session.send_text(self.input_text, segment_id)
            session.send_flush(segment_id)
            session.send_end_input()
            async for response in session.responses():
                kind = response.WhichOneof("kind")
                if kind == "audio" and response.audio.pcm:
                    aligner.on_audio(response.audio)
                    output_emitter.push(response.audio.pcm)
                elif kind == "segment_done":
                    aligner.end_segment()
                    meta = self._tts._note_segment_done(session, "", response.segment_done)
                    self._set_token_usage(output_tokens=meta.tokens_generated)
            # no flush(): the base ends the segment and marks the real last frame final
        finally:
            await session.aclose()


class SynthesizeStream(tts.SynthesizeStream):
    """Streaming synthesis: one Synthesize call per utterance, text released by the gate."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = replace(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        session = self._tts._new_session(self._opts, self._conn_options)
        output_emitter.initialize(
            request_id=session.session_id,
            sample_rate=SAMPLE_RATE,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
            stream=True,
        )
        # segments with text, in the order the server will answer them
        segment_order: asyncio.Queue[str] = asyncio.Queue()
        segment_id = shortuuid("seg_")
        segment_has_text = False
        aligner = TranscriptAligner(output_emitter, self._tts.speaking_rate(self._opts.voice))

        def release(text: str) -> None:
            nonlocal segment_has_text
            if not segment_has_text:
                segment_has_text = True
                segment_order.put_nowait(segment_id)
            self._mark_started()
            aligner.add_text(segment_id, text)
            session.send_text(text, segment_id)

        gate = SentenceGate(
            tokenizer=self._opts.tokenizer,
            min_sentences=self._opts.min_sentences,
            max_buffer_delay=self._opts.max_buffer_delay,
            release=release,
        )

        async def input_task() -> None:
            nonlocal segment_id, segment_has_text
            async for data in self._input_ch:
                if isinstance(data, str):
                    gate.push(data)
                    continue
                gate.flush()
                if segment_has_text:
                    session.send_flush(segment_id)
                    segment_id, segment_has_text = shortuuid("seg_"), False
            gate.flush()
            if segment_has_text:
                session.send_flush(segment_id)
            session.send_end_input()

        async def output_task() -> None:
            current: str | None = None
            async for response in session.responses():
                kind = response.WhichOneof("kind")
                if kind == "audio" and response.audio.pcm:
                    if current is None:
                        current = segment_order.get_nowait()
                        output_emitter.start_segment(segment_id=current)
                        aligner.start_segment(current)
                    aligner.on_audio(response.audio)
                    output_emitter.push(response.audio.pcm)
                elif kind == "segment_done":
                    if current is None:  # a segment the server found nothing to say for
                        current = segment_order.get_nowait()
                        output_emitter.start_segment(segment_id=current)
                        aligner.start_segment(current)
                    aligner.end_segment()
                    meta = self._tts._note_segment_done(session, current, response.segment_done)
                    self._set_token_usage(output_tokens=meta.tokens_generated)
                    output_emitter.end_segment()
                    current = None

        tasks: list[asyncio.Task[None]] = []
        try:
            await session.open()
            tasks = [
                asyncio.create_task(input_task(), name="orpheus.stream.input"),
                asyncio.create_task(output_task(), name="orpheus.stream.output"),
            ]
            await asyncio.gather(*tasks)
        finally:
            gate.close()
            await aio.gracefully_cancel(*tasks)
            await session.aclose()
