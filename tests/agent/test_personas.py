"""Persona files: the bundled ones load; broken ones fail naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.personas import PERSONAS_DIR, PersonaError, load_persona, load_personas
from agent.worker import persona_for_room

VALID = (
    "name: Maya\nvoice: tara\ngreeting: Hi! <laugh>\ninstructions: Be warm.\n"
    "emotion_guidance: Use <sigh> for sympathy.\n"
)


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_personas_load_and_use_emotion_tags() -> None:
    personas = load_personas(PERSONAS_DIR)
    assert {"companion", "npc_blacksmith", "tutor"} <= personas.keys()
    for persona in personas.values():
        assert "<" in persona.greeting + persona.emotion_guidance
        assert "<laugh>" in persona.system_prompt  # the tag list reaches the LLM
        assert persona.voice in {"tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"}


def test_missing_voice_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("voice: tara\n", ""))
    with pytest.raises(PersonaError) as e:
        load_persona(path)
    assert e.value.field == "voice" and str(path) in str(e.value)
    assert "'voice'" in str(e.value) and "missing" in str(e.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: Maya\nvoice: [tara\ngreeting: hi\n")
    with pytest.raises(PersonaError, match="malformed YAML at line") as e:
        load_persona(path)
    assert str(path) in str(e.value)


def test_unknown_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "voise: leo\n")
    with pytest.raises(PersonaError, match="field 'voise': unknown field") as e:
        load_persona(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (VALID.replace("voice: tara", "voice: Tara Smith"), "voice", "not a voice name"),
        (VALID.replace("voice: tara", "voice: ''"), "voice", "empty"),
        (VALID.replace("greeting: Hi! <laugh>", "greeting: Hi! <wink>"), "greeting", "<wink>"),
        (VALID.replace("name: Maya", "name: 42"), "name", "must be a string"),
        (VALID + "llm_model: [a, b]\n", "llm_model", "must be a string"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, field: str, problem: str) -> None:
    with pytest.raises(PersonaError, match=problem) as e:
        load_persona(write(tmp_path, text))
    assert e.value.field == field


def test_not_a_mapping_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="expected a mapping"):
        load_persona(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(PersonaError, match="no persona files"):
        load_personas(tmp_path / "nothing-here")


def test_room_metadata_picks_the_persona(tmp_path: Path) -> None:
    write(tmp_path, VALID, "companion.yaml")
    write(tmp_path, VALID.replace("Maya", "Leo").replace("tara", "leo"), "tutor.yaml")
    personas = load_personas(tmp_path)
    config = AgentConfig(persona="companion")
    assert persona_for_room(config, personas, json.dumps({"persona": "tutor"})).voice == "leo"
    assert persona_for_room(config, personas, None).name == "Maya"
    assert persona_for_room(config, personas, "not json").name == "Maya"
    assert persona_for_room(config, personas, '{"persona": "nobody"}').name == "Maya"
