"""What a node serves: its model's served name, language and base voices (the model card).

A checkpoint directory may carry `orpheus.json` beside its weights:

    {"name": "orpheus-ko", "language": "ko", "voices": ["유나", "준서"]}

`language` and `voices` are required, `name` is optional. Flags override the file:
`--model-name`, `--language`, `--base-voices`. `tiny-random` (no directory) and a
checkpoint without the file speak English with the stock Orpheus voices (`BASE_VOICES`).
Voice names follow the one rule of `voices/names.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..orpheus.tokens import BASE_VOICES
from .names import InvalidVoiceNameError, validate_voice_name

CARD_FILE = "orpheus.json"
TINY_RANDOM = "tiny-random"  # = engine.model_loading.TINY_RANDOM: no directory, no card
DEFAULT_LANGUAGE = "en"
_FIELDS = ("name", "language", "voices")
_REQUIRED = ("language", "voices")
# A BCP 47 language tag, lower-cased: "en", "ko", "pt-br", "zh-hans".
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*")
LANGUAGE_RULE = "a language tag such as en, ko or pt-br (letters, then '-' parts)"


class ModelCardError(ValueError):
    """A model card (file or flags) that cannot be served; the message names where."""


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str  # the served name clients send as SessionStart.model
    language: str  # normalised: see `normalize_language`
    voices: tuple[str, ...]  # base voices, NFC, in the card's order


def normalize_language(language: str) -> str:
    """`language` trimmed and lower-cased; raises ValueError naming the rule if malformed."""
    normal = language.strip().lower()
    if not _LANGUAGE.fullmatch(normal):
        raise ValueError(f"{language!r} is not {LANGUAGE_RULE}")
    return normal


def load_model_card(
    model: str,
    served_name: str,
    *,
    model_name: str = "",
    language: str = "",
    base_voices: Sequence[str] = (),
) -> ModelCard:
    """The card of `--model`: flags first, then `orpheus.json` beside the weights, then the
    defaults. `served_name` is the name without a card (`ServerConfig.served_model_name`)."""
    directory = Path(model) if model and model != TINY_RANDOM else None  # "": a router
    card = read_card_file(directory / CARD_FILE) if directory and directory.is_dir() else {}
    try:
        lang = normalize_language(language) if language else card.get("language", "")
    except ValueError as exc:
        raise ModelCardError(f"--language: {exc}") from None
    try:
        voices = check_voices(base_voices) if base_voices else card.get("voices", ())
    except ValueError as exc:
        raise ModelCardError(f"--base-voices: {exc}") from None
    return ModelCard(
        name=model_name or card.get("name") or served_name,
        language=lang or DEFAULT_LANGUAGE,
        voices=voices or BASE_VOICES,
    )


def read_card_file(path: Path) -> dict[str, Any]:
    """The validated fields of the card file at `path` ({} if there is none)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"{path}: not a readable JSON file: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelCardError(f"{path}: must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ModelCardError(f"{path}: unknown field {unknown[0]!r}; fields: {', '.join(_FIELDS)}")
    missing = [f for f in _REQUIRED if f not in raw]
    if missing:
        raise ModelCardError(f"{path}: missing field {missing[0]!r}")
    return {name: _field(path, name, raw[name]) for name in _FIELDS if name in raw}


def _field(path: Path, name: str, value: Any) -> Any:
    where = f"{path}: field {name!r}"
    if name == "voices":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModelCardError(f"{where} must be a list of voice names")
        try:
            return check_voices(value)
        except ValueError as exc:
            raise ModelCardError(f"{where}: {exc}") from None
    if not isinstance(value, str) or not value.strip():
        raise ModelCardError(f"{where} must be a non-empty string")
    if name == "language":
        try:
            return normalize_language(value)
        except ValueError as exc:
            raise ModelCardError(f"{where}: {exc}") from None
    if value != value.strip() or any(c.isspace() for c in value):
        raise ModelCardError(f"{where} must not contain whitespace, got {value!r}")
    return value


def check_voices(names: Sequence[str]) -> tuple[str, ...]:
    """A model's base voices: the names NFC-normalised, each valid (voices/names.py) and
    listed once, at least one; else ValueError saying which."""
    voices: list[str] = []
    for name in names:
        try:
            voice = validate_voice_name(name)
        except InvalidVoiceNameError as exc:
            raise ValueError(str(exc)) from None
        if voice in voices:
            raise ValueError(f"voice {voice!r} is listed twice")
        voices.append(voice)
    if not voices:
        raise ValueError("lists no voice")
    return tuple(voices)
