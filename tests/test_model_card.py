"""The model card: orpheus.json beside the weights, the flags over it, the defaults under it."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from support_server import free_port

from inference_server.engine import model_loading
from inference_server.orpheus.tokens import BASE_VOICES
from inference_server.voices import model_card
from inference_server.voices.model_card import (
    CARD_FILE,
    ModelCard,
    ModelCardError,
    load_model_card,
    normalize_language,
)


def checkpoint(tmp_path: Path, card: object | None = None, raw: str | None = None) -> Path:
    """A checkpoint directory (the card reader never opens the weights) with `card`."""
    directory = tmp_path / "orpheus-ko-ft"
    directory.mkdir()
    if card is not None or raw is not None:
        text = raw if raw is not None else json.dumps(card, ensure_ascii=False)
        (directory / CARD_FILE).write_text(text, encoding="utf-8")
    return directory


def load(model: Path | str, **flags: object) -> ModelCard:
    served = model if isinstance(model, str) else model.name
    return load_model_card(str(model), served, **flags)


def test_good_file_gives_name_language_and_voices_in_order(tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "준서")  # as a macOS editor may have saved it
    model = checkpoint(tmp_path, {"name": "orpheus-ko", "language": "KO", "voices": ["유나", nfd]})
    assert load(model) == ModelCard("orpheus-ko", "ko", ("유나", "준서"))


def test_name_is_optional_and_defaults_to_the_served_name(tmp_path: Path) -> None:
    model = checkpoint(tmp_path, {"language": "ko", "voices": ["유나"]})
    assert load(model).name == "orpheus-ko-ft"


def test_flags_override_the_file(tmp_path: Path) -> None:
    model = checkpoint(tmp_path, {"name": "orpheus-ko", "language": "ko", "voices": ["유나"]})
    card = load(model, model_name="ko-v2", language="ko-KR", base_voices=["민준", "서연"])
    assert card == ModelCard("ko-v2", "ko-kr", ("민준", "서연"))


def test_tiny_random_and_a_checkpoint_without_a_card_speak_english_with_stock_voices(
    tmp_path: Path,
) -> None:
    assert load("tiny-random") == ModelCard("tiny-random", "en", BASE_VOICES)
    assert load(checkpoint(tmp_path)) == ModelCard("orpheus-ko-ft", "en", BASE_VOICES)


def test_tiny_random_is_spelt_as_the_engine_spells_it() -> None:
    assert model_card.TINY_RANDOM == model_loading.TINY_RANDOM


def test_no_model_directory_reads_no_card_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / CARD_FILE).write_text('{"language": "ko", "voices": ["유나"]}')
    monkeypatch.chdir(tmp_path)  # a router has no --model directory: "" is not "."
    assert load_model_card("", "tiny-random") == ModelCard("tiny-random", "en", BASE_VOICES)


def test_flags_alone_make_a_korean_tiny_random(tmp_path: Path) -> None:
    card = load("tiny-random", model_name="tiny-ko", language="ko", base_voices=["유나", "준서"])
    assert card == ModelCard("tiny-ko", "ko", ("유나", "준서"))


@pytest.mark.parametrize(
    ("card", "field"),
    [
        ({"voices": ["유나"]}, "missing field 'language'"),
        ({"language": "ko"}, "missing field 'voices'"),
        ({"language": "ko", "voices": ["유나"], "voice": "x"}, "unknown field 'voice'"),
        ({"language": "k o", "voices": ["유나"]}, "field 'language': 'k o' is not a language"),
        ({"language": 3, "voices": ["유나"]}, "field 'language' must be a non-empty string"),
        ({"language": "ko", "voices": "유나"}, "field 'voices' must be a list of voice names"),
        ({"language": "ko", "voices": []}, "field 'voices': lists no voice"),
        ({"language": "ko", "voices": ["유나", "유나"]}, "field 'voices': voice '유나' is listed"),
        ({"language": "ko", "voices": ["Yuna"]}, "field 'voices': invalid voice name 'Yuna'"),
        ({"language": "ko", "voices": ["../x"]}, "field 'voices': invalid voice name '../x'"),
        ({"name": "a b", "language": "ko", "voices": ["유나"]}, "field 'name' must not"),
        (["ko"], "must be a JSON object, got list"),
    ],
)
def test_bad_card_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, card: object, field: str
) -> None:
    model = checkpoint(tmp_path, card)
    with pytest.raises(ModelCardError) as caught:
        load(model)
    message = str(caught.value)
    assert message.startswith(f"{model / CARD_FILE}: ")
    assert field in message


def test_bad_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    model = checkpoint(tmp_path, raw='{"language": "ko", "voices": ["유나"]')
    with pytest.raises(ModelCardError, match=r"orpheus\.json: not a readable JSON file"):
        load(model)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"language": "english!"}, "--language: 'english!' is not a language tag"),
        ({"base_voices": ["tara", "Leo"]}, "--base-voices: invalid voice name 'Leo'"),
        ({"base_voices": ["tara", "tara"]}, "--base-voices: voice 'tara' is listed twice"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(flags: dict, message: str) -> None:
    with pytest.raises(ModelCardError) as caught:
        load("tiny-random", **flags)
    assert str(caught.value).startswith(message)


def test_language_tags_are_matched_lower_case() -> None:
    assert normalize_language(" pt-BR ") == "pt-br"
    for bad in ("", "e", "english", "en_US", "한국어"):
        with pytest.raises(ValueError, match="is not a language tag"):
            normalize_language(bad)


def test_the_server_refuses_to_start_naming_the_file_and_the_field(tmp_path: Path) -> None:
    model = checkpoint(tmp_path, {"language": "ko", "voices": ["유나", "Junseo"]})
    args = ["--model", str(model), "--snac", "random", "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "inference_server", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert (
        f"orpheus-server: error: {model / CARD_FILE}: field 'voices': invalid voice name "
        "'Junseo': it has upper-case letters"
    ) in done.stderr
