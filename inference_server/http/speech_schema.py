"""OpenAI's `POST /v1/audio/speech` request body, checked field by field.

https://platform.openai.com/docs/api-reference/audio/createSpeech. What Orpheus cannot do is
refused with a 400 naming the field (`speed` other than 1.0, `instructions`), never ignored.
Orpheus extensions (OpenAI SDK: `extra_body={...}`): `seed`, `temperature`, `top_p`,
`repetition_penalty`, `max_tokens` (per text chunk), `trim_head_silence`, `session_id`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ParamError

FORMATS = ("mp3", "opus", "flac", "wav", "pcm")
STREAM_FORMATS = ("audio", "sse")
# OpenAI's model names mean "this node's model", so drop-in clients (Open WebUI, SDK
# examples) work unchanged; any other name must be a model the fleet serves.
OPENAI_MODELS = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
_SAMPLING = ("temperature", "top_p", "repetition_penalty")


@dataclass(frozen=True)
class SpeechRequest:
    input: str
    voice: str
    model: str = ""  # "" = the node's default model
    language: str = ""  # "" = any; else picks the fleet's model for it (SessionStart.language)
    response_format: str = "mp3"  # OpenAI's default
    stream_format: str = "audio"
    session_id: str = ""
    trim_head_silence: bool = True
    sampling: dict[str, float | int] = field(default_factory=dict)  # SamplingOptions fields


def parse_speech_request(body: Any) -> SpeechRequest:
    """The request in `body` (decoded JSON); raises ParamError naming the first bad field."""
    if not isinstance(body, dict):
        raise ParamError("body", "request body must be a JSON object")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ParamError("input", "input is required: the text to speak")
    fmt = _choice(body, "response_format", FORMATS, "mp3")
    stream_format = _choice(body, "stream_format", STREAM_FORMATS, "audio")
    speed = body.get("speed")
    if speed is not None and (not isinstance(speed, int | float) or speed != 1.0):
        raise ParamError(
            "speed", f"speed={speed!r} is not supported: Orpheus speaks at its own pace (1.0)"
        )
    if body.get("instructions"):
        raise ParamError(
            "instructions",
            "instructions are not supported by Orpheus; put emotion tags such as <laugh> or "
            "<sigh> in the input instead",
        )
    return SpeechRequest(
        input=text,
        voice=parse_voice(body.get("voice")),
        model=model_name(body.get("model")),
        language=language_field(body),
        response_format=fmt,
        stream_format=stream_format,
        session_id=_string(body, "session_id"),
        trim_head_silence=_flag(body, "trim_head_silence", True),
        sampling=sampling_fields(body),
    )


def parse_voice(voice: Any) -> str:
    """A voice name, or OpenAI's custom-voice object `{"id": name}`."""
    if isinstance(voice, dict):
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise ParamError("voice", "voice is required: a base voice (tara, ...) or a LoRA voice")
    return voice


def model_name(model: Any) -> str:
    """The model to ask the fleet for ("" = the node's default)."""
    if model is None or model == "":
        return ""
    if not isinstance(model, str):
        raise ParamError("model", "model must be a string")
    return "" if model in OPENAI_MODELS else model


def language_field(body: dict) -> str:
    """The voice's language asked for ("" = any); the node checks and matches it."""
    return _string(body, "language")


def sampling_fields(body: dict) -> dict[str, float | int]:
    """The Orpheus sampling extensions present in `body` (the node checks their ranges)."""
    out: dict[str, float | int] = {}
    for name in _SAMPLING:
        if body.get(name) is not None:
            value = body[name]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ParamError(name, f"{name} must be a number")
            if not math.isfinite(value) or value <= 0:
                raise ParamError(name, f"{name} must be a positive number")
            out[name] = float(value)
    for name in ("max_tokens", "seed"):
        if body.get(name) is not None:
            value = body[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ParamError(name, f"{name} must be a non-negative integer")
            out[name] = value
    return out


def _choice(body: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise ParamError(name, f"{name}={value!r} is not supported; use one of {list(allowed)}")
    return value


def _string(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParamError(name, f"{name} must be a string")
    return value


def _flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ParamError(name, f"{name} must be true or false")
    return value
