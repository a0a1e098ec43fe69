"""Personas as data: one YAML file per persona, validated strictly when the worker starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml
from livekit.plugins.orpheus import EMOTION_TAGS, VOICE_NAME_RULE, validate_voice_name

PERSONAS_DIR = Path(__file__).resolve().parent / "personas"

_TAG = re.compile(r"<([a-z_]+)>")
_KNOWN_TAGS = frozenset(tag.strip("<>") for tag in EMOTION_TAGS)


class PersonaError(ValueError):
    """A persona file that cannot be used; the message names the file and the field."""

    def __init__(self, path: Path | str, field: str | None, problem: str) -> None:
        self.path = Path(path)
        self.field = field
        where = f"{self.path}: field {field!r}" if field else str(self.path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Persona:
    """Who the agent is: its prompt, its Orpheus voice and how it opens the conversation."""

    name: str
    instructions: str
    voice: str
    greeting: str
    emotion_guidance: str = ""
    llm_model: str | None = None
    description: str = ""

    @property
    def system_prompt(self) -> str:
        """Instructions plus the emotion-tag guidance and the spoken-output rules."""
        tags = " ".join(EMOTION_TAGS)
        parts = [self.instructions.strip()]
        if self.emotion_guidance:
            parts.append(
                f"Your words are spoken by a voice that performs these tags: {tags}. "
                "Write a tag inline where the sound happens, at most one or two per reply, "
                "never any other angle-bracket tag. " + self.emotion_guidance.strip()
            )
        parts.append(
            "You are speaking, not writing: no markdown, lists or emoji. Keep replies to "
            "two to four short sentences unless asked for more."
        )
        return "\n\n".join(parts)


_REQUIRED = ("name", "instructions", "voice", "greeting")
_FIELDS = {f.name for f in fields(Persona)}


def load_persona(path: Path | str) -> Persona:
    """Read and validate one persona file; raises `PersonaError` naming the file and field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PersonaError(path, None, f"cannot read persona file ({e.strerror})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PersonaError(path, None, f"malformed YAML{at}: {e}") from e
    if not isinstance(data, dict):
        raise PersonaError(path, None, f"expected a mapping of fields, got {type(data).__name__}")
    return _persona_from_mapping(path, data)


def _persona_from_mapping(path: Path, data: dict[Any, Any]) -> Persona:
    for key in data:
        if key not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise PersonaError(path, str(key), f"unknown field (known fields: {known})")
    for key in _REQUIRED:
        if data.get(key) is None:
            raise PersonaError(path, key, "missing (required)")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise PersonaError(path, key, f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise PersonaError(path, key, "is empty")
        values[key] = value.strip() if key != "instructions" else value
    try:  # the plugin's copy of the server's voice-name rule
        values["voice"] = validate_voice_name(values["voice"])
    except ValueError:
        raise PersonaError(
            path,
            "voice",
            f"{values['voice']!r} is not a voice name ({VOICE_NAME_RULE}; "
            "a base voice such as 'tara' or the name of a LoRA clone on the server)",
        ) from None
    for key in ("greeting", "emotion_guidance"):
        for tag in _TAG.findall(values.get(key, "")):
            if tag not in _KNOWN_TAGS:
                raise PersonaError(
                    path, key, f"<{tag}> is not an Orpheus emotion tag ({' '.join(EMOTION_TAGS)})"
                )
    return Persona(**values)


def load_personas(directory: Path | str = PERSONAS_DIR) -> dict[str, Persona]:
    """Every `*.yaml` persona in `directory`, keyed by file stem; all are validated."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise PersonaError(directory, None, "no persona files (*.yaml) found")
    return {path.stem: load_persona(path) for path in paths}


def select_persona(personas: dict[str, Persona], requested: str | None, default: str) -> Persona:
    """The persona named by the room (or the default); unknown names are an error."""
    key = requested or default
    if key not in personas:
        raise KeyError(f"unknown persona {key!r}: available are {', '.join(sorted(personas))}")
    return personas[key]
