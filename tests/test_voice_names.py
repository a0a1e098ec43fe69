"""Voice names in any script: the server's rule, the plugin's copy, and the registry on disk."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.plugins import orpheus

from inference_server.proto import tts_pb2 as pb
from inference_server.service.tts_service import _with_session_id
from inference_server.voices.names import (
    MAX_VOICE_NAME_BYTES,
    InvalidVoiceNameError,
    validate_voice_name,
)

VALID = ["tara", "유나", "준서", "长乐", "白芷", "ऋतिका", "анна", "nova-2", "a_b", "x", "9lives"]
INVALID = {
    "": "it is empty",
    "Tara": "upper-case",
    "Анна": "upper-case",
    "-x": "first character '-'",
    "_x": "first character '_'",
    "a/b": "'/'",
    "a\\b": "REVERSE SOLIDUS",
    ".": "first character '.'",
    "..": "first character '.'",
    "a.b": "'.'",
    "a b": "' '",
    "a\x00b": "U\\+0000",
    "a\nb": "U\\+000A",
    "a\u200db": "ZERO WIDTH JOINER",  # a format character
    "\u0301a": "first character",  # a combining mark cannot start a name
    "가" * 22: "66 bytes",  # 21 Hangul syllables fit in 64 bytes, 22 do not
    "a" * 65: "65 bytes",
}


def _plugin_answer(name: str) -> str | None:
    try:
        return orpheus.validate_voice_name(name)
    except ValueError as exc:
        return f"error: {exc}"


def _server_answer(name: str) -> str | None:
    try:
        return validate_voice_name(name)
    except InvalidVoiceNameError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("name", VALID)
def test_names_in_any_script_are_valid(name: str) -> None:
    assert validate_voice_name(name) == name
    assert orpheus.validate_voice_name(name) == name


@pytest.mark.parametrize(("name", "problem"), INVALID.items())
def test_invalid_names_name_the_voice_and_the_rule(name: str, problem: str) -> None:
    with pytest.raises(InvalidVoiceNameError, match=problem) as err:
        validate_voice_name(name)
    assert "a voice name is 1-64 bytes of UTF-8 (NFC)" in str(err.value)
    assert _plugin_answer(name) == _server_answer(name)  # one rule, two copies


def test_nfd_is_the_same_voice_and_the_limit_counts_bytes() -> None:
    for name in ("유나", "café"):  # Hangul syllables and é decompose
        nfd = unicodedata.normalize("NFD", name)
        assert nfd != name and validate_voice_name(nfd) == name
        assert orpheus.validate_voice_name(nfd) == name
    assert validate_voice_name("가" * 21) == "가" * 21  # 63 bytes
    assert len(("a" * MAX_VOICE_NAME_BYTES).encode()) == 64
    validate_voice_name("a" * MAX_VOICE_NAME_BYTES)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=24))
def test_the_plugin_copy_agrees_with_the_server(name: str) -> None:
    answer = _server_answer(name)
    assert _plugin_answer(name) == answer
    if answer is not None and not answer.startswith("error"):  # a valid name is a safe path
        assert "/" not in answer and "\\" not in answer and answer not in (".", "..")
        assert not answer.startswith(("-", ".")) and len(answer.encode()) <= 64


def test_the_entry_node_routes_on_the_nfc_name() -> None:
    """SessionStart.voice is normalised before any ring lookup (fleet/ring.voice_key)."""
    start = _with_session_id(
        pb.SessionStart(session_id="s", voice=unicodedata.normalize("NFD", "유나"))
    )
    assert start.voice == "유나" and start.session_id == "s"
    with pytest.raises(InvalidVoiceNameError, match="'a/b'"):
        _with_session_id(pb.SessionStart(voice="a/b"))
