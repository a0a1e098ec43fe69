"""Voice names: one rule for the registry, the fine-tuning CLI and the wire."""

from __future__ import annotations

import re

from ..errors import ClientError

VOICE_NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
_VOICE_NAME = re.compile(VOICE_NAME_PATTERN)


class InvalidVoiceNameError(ClientError):
    """A voice name that does not match `VOICE_NAME_PATTERN`."""


def validate_voice_name(name: str) -> str:
    """Return `name` if it is a valid voice name, else raise `InvalidVoiceNameError`."""
    if not name:
        raise InvalidVoiceNameError("voice name is empty")
    if _VOICE_NAME.fullmatch(name) is None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidVoiceNameError(
            f"invalid voice name {shown!r} ({len(name)} chars): must be 1-64 characters of "
            "lowercase a-z, 0-9, '_' or '-', starting with a letter or digit"
        )
    return name
