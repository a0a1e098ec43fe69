# Generated from proto/orpheus/v1/tts.proto by proto/generate.py. Do not edit.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM16LE: _ClassVar[AudioEncoding]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM16LE: AudioEncoding

class SamplingOptions(_message.Message):
    __slots__ = ("temperature", "top_p", "repetition_penalty", "max_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    repetition_penalty: float
    max_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., repetition_penalty: _Optional[float] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate", "num_channels")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate: int
    num_channels: int
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate: _Optional[int] = ..., num_channels: _Optional[int] = ...) -> None: ...

class ResumeFrom(_message.Message):
    __slots__ = ("segment_id", "chars_done", "next_sequence", "chunk_end", "heard_frame_codes")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARS_DONE_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_END_FIELD_NUMBER: _ClassVar[int]
    HEARD_FRAME_CODES_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    chars_done: int
    next_sequence: int
    chunk_end: int
    heard_frame_codes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, segment_id: _Optional[str] = ..., chars_done: _Optional[int] = ..., next_sequence: _Optional[int] = ..., chunk_end: _Optional[int] = ..., heard_frame_codes: _Optional[_Iterable[int]] = ...) -> None: ...

class SessionStart(_message.Message):
    __slots__ = ("session_id", "voice", "model", "sampling", "audio_format", "trim_head_silence", "resume", "language")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TRIM_HEAD_SILENCE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    voice: str
    model: str
    sampling: SamplingOptions
    audio_format: AudioFormat
    trim_head_silence: bool
    resume: ResumeFrom
    language: str
    def __init__(self, session_id: _Optional[str] = ..., voice: _Optional[str] = ..., model: _Optional[str] = ..., sampling: _Optional[_Union[SamplingOptions, _Mapping]] = ..., audio_format: _Optional[_Union[AudioFormat, _Mapping]] = ..., trim_head_silence: _Optional[bool] = ..., resume: _Optional[_Union[ResumeFrom, _Mapping]] = ..., language: _Optional[str] = ...) -> None: ...

class TextChunk(_message.Message):
    __slots__ = ("text", "segment_id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    segment_id: str
    def __init__(self, text: _Optional[str] = ..., segment_id: _Optional[str] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ("segment_id",)
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    def __init__(self, segment_id: _Optional[str] = ...) -> None: ...

class EndInput(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("start", "text", "flush", "end_input")
    START_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    END_INPUT_FIELD_NUMBER: _ClassVar[int]
    start: SessionStart
    text: TextChunk
    flush: Flush
    end_input: EndInput
    def __init__(self, start: _Optional[_Union[SessionStart, _Mapping]] = ..., text: _Optional[_Union[TextChunk, _Mapping]] = ..., flush: _Optional[_Union[Flush, _Mapping]] = ..., end_input: _Optional[_Union[EndInput, _Mapping]] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("session_id", "node_id", "voice", "sample_rate", "num_channels", "seed", "model", "language")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    node_id: str
    voice: str
    sample_rate: int
    num_channels: int
    seed: int
    model: str
    language: str
    def __init__(self, session_id: _Optional[str] = ..., node_id: _Optional[str] = ..., voice: _Optional[str] = ..., sample_rate: _Optional[int] = ..., num_channels: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("pcm", "segment_id", "sequence", "sample_rate", "chunk_start", "chunk_end", "frame_codes", "first_frame")
    PCM_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_END_FIELD_NUMBER: _ClassVar[int]
    FRAME_CODES_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    pcm: bytes
    segment_id: str
    sequence: int
    sample_rate: int
    chunk_start: int
    chunk_end: int
    frame_codes: _containers.RepeatedScalarFieldContainer[int]
    first_frame: int
    def __init__(self, pcm: _Optional[bytes] = ..., segment_id: _Optional[str] = ..., sequence: _Optional[int] = ..., sample_rate: _Optional[int] = ..., chunk_start: _Optional[int] = ..., chunk_end: _Optional[int] = ..., frame_codes: _Optional[_Iterable[int]] = ..., first_frame: _Optional[int] = ...) -> None: ...

class TextProgress(_message.Message):
    __slots__ = ("segment_id", "chars_done")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARS_DONE_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    chars_done: int
    def __init__(self, segment_id: _Optional[str] = ..., chars_done: _Optional[int] = ...) -> None: ...

class SegmentMetrics(_message.Message):
    __slots__ = ("ttfa_ms", "tokens_generated", "audio_ms", "head_silence_trimmed_ms", "generation_rtf", "invalid_tokens_dropped", "text_chunks", "tags_removed", "chunks_overrun", "chunks_budget_capped", "gap_silence_trimmed_ms")
    TTFA_MS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_GENERATED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    HEAD_SILENCE_TRIMMED_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_RTF_FIELD_NUMBER: _ClassVar[int]
    INVALID_TOKENS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    TEXT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    TAGS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_OVERRUN_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_BUDGET_CAPPED_FIELD_NUMBER: _ClassVar[int]
    GAP_SILENCE_TRIMMED_MS_FIELD_NUMBER: _ClassVar[int]
    ttfa_ms: float
    tokens_generated: int
    audio_ms: float
    head_silence_trimmed_ms: float
    generation_rtf: float
    invalid_tokens_dropped: int
    text_chunks: int
    tags_removed: int
    chunks_overrun: int
    chunks_budget_capped: int
    gap_silence_trimmed_ms: float
    def __init__(self, ttfa_ms: _Optional[float] = ..., tokens_generated: _Optional[int] = ..., audio_ms: _Optional[float] = ..., head_silence_trimmed_ms: _Optional[float] = ..., generation_rtf: _Optional[float] = ..., invalid_tokens_dropped: _Optional[int] = ..., text_chunks: _Optional[int] = ..., tags_removed: _Optional[int] = ..., chunks_overrun: _Optional[int] = ..., chunks_budget_capped: _Optional[int] = ..., gap_silence_trimmed_ms: _Optional[float] = ...) -> None: ...

class SegmentDone(_message.Message):
    __slots__ = ("segment_id", "metrics")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    metrics: SegmentMetrics
    def __init__(self, segment_id: _Optional[str] = ..., metrics: _Optional[_Union[SegmentMetrics, _Mapping]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("started", "audio", "segment_done", "progress")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_DONE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    started: SessionStarted
    audio: AudioChunk
    segment_done: SegmentDone
    progress: TextProgress
    def __init__(self, started: _Optional[_Union[SessionStarted, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., segment_done: _Optional[_Union[SegmentDone, _Mapping]] = ..., progress: _Optional[_Union[TextProgress, _Mapping]] = ...) -> None: ...

class ListVoicesRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class Voice(_message.Message):
    __slots__ = ("name", "model", "kind", "loaded", "language")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Voice.Kind]
        KIND_BASE: _ClassVar[Voice.Kind]
        KIND_LORA: _ClassVar[Voice.Kind]
    KIND_UNSPECIFIED: Voice.Kind
    KIND_BASE: Voice.Kind
    KIND_LORA: Voice.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    kind: Voice.Kind
    loaded: bool
    language: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., kind: _Optional[_Union[Voice.Kind, str]] = ..., loaded: _Optional[bool] = ..., language: _Optional[str] = ...) -> None: ...

class ListVoicesResponse(_message.Message):
    __slots__ = ("voices",)
    VOICES_FIELD_NUMBER: _ClassVar[int]
    voices: _containers.RepeatedCompositeFieldContainer[Voice]
    def __init__(self, voices: _Optional[_Iterable[_Union[Voice, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("language",)
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    language: str
    def __init__(self, language: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "language", "base_voices", "node_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    BASE_VOICES_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    base_voices: _containers.RepeatedScalarFieldContainer[str]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ..., base_voices: _Optional[_Iterable[str]] = ..., node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...
