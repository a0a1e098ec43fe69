"""The agent's settings model: every field's variable, value checks, renamed variables,
no name shared with the server, and the generated env table in agent/README.md."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from agent.config import RENAMED, AgentConfig, SettingsError
from inference_server.settings_table import env_name, render_env_table, table_in

ROOT = Path(__file__).resolve().parents[2]
# Variables owned by the libraries the agent configures, read under their own names.
LIBRARY = {"ORPHEUS_BASE_URL", "ORPHEUS_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"}
NAMES = {field: AgentConfig.env_name(field) for field in AgentConfig.model_fields}

# field -> (env value, the value the model holds): every field has one
GOOD = {
    "tts_url": ("router:50051,grpcs://b:443", "router:50051,grpcs://b:443"),
    "tts_api_key": ("k-123", SecretStr("k-123")),
    "tts_model": ("orpheus-3b-ft", "orpheus-3b-ft"),
    "llm_base_url": ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
    "llm_api_key": ("llm-key", SecretStr("llm-key")),
    "stt_base_url": ("https://speaches.lan/v1", "https://speaches.lan/v1"),
    "stt_api_key": ("stt-key", SecretStr("stt-key")),
    "openai_base_url": ("http://gpu:8000/v1", "http://gpu:8000/v1"),
    "openai_api_key": ("sk-x", SecretStr("sk-x")),
    "stt_model": ("Systran/faster-whisper-small", "Systran/faster-whisper-small"),
    "stt_language": ("de", "de"),
    "llm_model": ("llama-3.1-8b-instruct", "llama-3.1-8b-instruct"),
    "persona": ("tutor", "tutor"),
    "personas_dir": ("/srv/personas", Path("/srv/personas")),
    "wav_dir": ("/tmp/turns", Path("/tmp/turns")),
    "min_endpointing_delay": ("0.5", 0.5),
    "max_endpointing_delay": ("3", 3.0),
    "vad_min_silence": ("0.2", 0.2),
    "preemptive_tts": ("off", False),
    "first_audio_budget": ("1.2", 1.2),
    "agent_name": ("persona-agent", "persona-agent"),
}
# field -> values refused: every field that is not free text has some
BAD = {
    "min_endpointing_delay": ["-1", "abc", "nan"],
    "max_endpointing_delay": ["-0.1", "2s"],
    "vad_min_silence": ["-1", "inf"],
    "first_audio_budget": ["-1", "fast"],
    "preemptive_tts": ["maybe", "2"],
    # free text, but an endpoint needs its scheme: the openai client would fail on the first turn
    "llm_base_url": ["localhost:8000/v1", "127.0.0.1:11434"],
    "stt_base_url": ["speaches:8000"],
    "openai_base_url": ["ftp://gpu/v1"],
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without any agent variable, old or new."""
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name in LIBRARY or name in RENAMED:
            monkeypatch.delenv(name)
    return monkeypatch


def test_every_variable_is_agent_prefixed_or_a_library_name() -> None:
    assert GOOD.keys() == AgentConfig.model_fields.keys()
    for field, name in NAMES.items():
        assert name.startswith("AGENT_") or name in LIBRARY, name
        assert env_name(AgentConfig, field) == name  # the README table names the same variable
    assert len(set(NAMES.values())) == len(NAMES)
    assert set(RENAMED.values()) <= set(NAMES.values())
    assert not set(RENAMED) & set(NAMES.values())


def test_defaults_keep_their_meaning(env: pytest.MonkeyPatch) -> None:
    config = AgentConfig.from_env()
    assert config.tts_url == "localhost:50051" and config.tts_model == ""
    assert config.tts_api_key is None and config.openai_base_url is None
    assert (config.min_endpointing_delay, config.max_endpointing_delay) == (0.4, 2.0)
    assert (config.vad_min_silence, config.first_audio_budget) == (0.35, 1.5)
    assert config.preemptive_tts is True and config.persona == "companion"
    assert config.personas_dir == ROOT / "agent" / "personas"
    assert config.wav_dir == Path("agent-turns") and config.agent_name == ""
    for name in NAMES.values():  # an empty or blank value means the default, as before
        env.setenv(name, " ")
    assert AgentConfig.from_env() == config


@pytest.mark.parametrize("field", list(GOOD))
def test_a_good_value_round_trips(env: pytest.MonkeyPatch, field: str) -> None:
    raw, expected = GOOD[field]
    env.setenv(NAMES[field], raw)
    assert getattr(AgentConfig.from_env(), field) == expected
    env.setenv(NAMES[field], f"  {raw} ")  # surrounding blanks are not part of the value
    assert getattr(AgentConfig.from_env(), field) == expected


def test_every_typed_field_has_bad_values() -> None:
    for field, info in AgentConfig.model_fields.items():
        types = {a for a in typing.get_args(info.annotation)} or {info.annotation}
        if types - {str, Path, SecretStr, type(None)}:
            assert field in BAD, field


@pytest.mark.parametrize("field,raw", [(f, v) for f, values in BAD.items() for v in values])
def test_a_bad_value_is_refused_naming_the_variable(
    env: pytest.MonkeyPatch, field: str, raw: str
) -> None:
    env.setenv(NAMES[field], raw)
    with pytest.raises(SettingsError) as e:
        AgentConfig.from_env()
    assert str(e.value).startswith(f"{NAMES[field]}={raw!r}: "), str(e.value)


def test_every_problem_is_reported_at_once(env: pytest.MonkeyPatch) -> None:
    env.setenv("AGENT_MIN_ENDPOINTING_DELAY", "-1")
    env.setenv("AGENT_PREEMPTIVE_TTS", "maybe")
    env.setenv("PERSONA", "tutor")
    with pytest.raises(SettingsError) as e:
        AgentConfig.from_env()
    lines = str(e.value).splitlines()
    assert [line.split(" ")[0].split("=")[0] for line in lines] == [
        "PERSONA",
        "AGENT_MIN_ENDPOINTING_DELAY",
        "AGENT_PREEMPTIVE_TTS",
    ]


def test_endpointing_delays_in_order(env: pytest.MonkeyPatch) -> None:
    env.setenv("AGENT_MIN_ENDPOINTING_DELAY", "2.5")
    with pytest.raises(SettingsError, match=r"AGENT_MAX_ENDPOINTING_DELAY .* below AGENT_MIN_"):
        AgentConfig.from_env()
    env.setenv("AGENT_MAX_ENDPOINTING_DELAY", "2.5")
    assert AgentConfig.from_env().max_endpointing_delay == 2.5


def test_secrets_are_not_echoed(env: pytest.MonkeyPatch) -> None:
    env.setenv("OPENAI_API_KEY", "sk-very-secret")
    env.setenv("ORPHEUS_API_KEY", "node-secret")
    text = repr(AgentConfig.from_env())
    assert "sk-very-secret" not in text and "node-secret" not in text


@pytest.mark.parametrize("old", list(RENAMED))
def test_a_renamed_variable_alone_stops_the_agent(env: pytest.MonkeyPatch, old: str) -> None:
    new = RENAMED[old]
    env.setenv(old, "1")
    with pytest.raises(SettingsError, match=f"^{old} was renamed {new}: set {new} instead"):
        AgentConfig.from_env()
    env.setenv(old, "")  # empty was "not set" before the rename too
    AgentConfig.from_env()


def test_an_old_name_beside_its_new_name_is_ignored_with_a_warning(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a server sharing the environment: ORPHEUS_MODEL is its checkpoint path
    env.setenv("ORPHEUS_MODEL", "/models/orpheus-3b")
    env.setenv("AGENT_TTS_MODEL", "")
    env.setenv("PERSONA", "tutor")
    env.setenv("AGENT_PERSONA", "npc_blacksmith")
    with caplog.at_level(logging.WARNING, logger="orpheus-agent"):
        config = AgentConfig.from_env()
    assert config.tts_model == "" and config.persona == "npc_blacksmith"
    assert "ORPHEUS_MODEL is ignored: the agent reads AGENT_TTS_MODEL" in caplog.text
    assert "PERSONA is ignored: the agent reads AGENT_PERSONA" in caplog.text


def test_an_unknown_agent_variable_is_warned_about(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("AGENT_PERSONNA", "tutor")
    with caplog.at_level(logging.WARNING, logger="orpheus-agent"):
        AgentConfig.from_env()
    assert "not agent settings, ignored: AGENT_PERSONNA" in caplog.text


def server_env_names() -> set[str]:
    from inference_server.config import ServerConfig  # lazily: the agent never imports it

    fields = getattr(ServerConfig, "model_fields", None)
    if fields is None:  # the dataclass before the settings model
        fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    return {f"ORPHEUS_{name.upper()}" for name in fields}


def test_no_agent_variable_is_a_server_variable() -> None:
    server = server_env_names()
    assert {"ORPHEUS_MODEL", "ORPHEUS_HOST", "ORPHEUS_PORT"} <= server
    assert not set(NAMES.values()) & server, set(NAMES.values()) & server
    assert "ORPHEUS_MODEL" in server  # why the agent's ORPHEUS_MODEL had to go


def compose_agent_env() -> dict[str, str]:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = spec["services"]["agent"]["environment"]
    default = re.compile(r"\$\{\w+(?::-([^}]*))?\}")  # compose's ${VAR:-default}, unset VAR
    return {k: default.sub(lambda m: m[1] or "", str(v)) for k, v in env.items()}


def test_compose_dockerfile_and_env_example_set_only_agent_variables(
    env: pytest.MonkeyPatch,
) -> None:
    known = set(NAMES.values())
    lives = {"LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"}
    compose = compose_agent_env()
    assert set(compose) <= known and not set(compose) & server_env_names()
    for name, value in compose.items():
        env.setenv(name, value)
    config = AgentConfig.from_env()
    assert config.tts_url == "router:50051" and config.wav_dir == Path("/tmp/agent-turns")

    dockerfile = (ROOT / "docker" / "agent.Dockerfile").read_text()
    env_block = re.search(r"^ENV (.*?)(?=^\S)", dockerfile, re.S | re.M)[1]
    docker_names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", env_block))
    assert docker_names - {"PYTHONUNBUFFERED"} <= known, docker_names

    example = (ROOT / "agent" / ".env.example").read_text()
    example_names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.M))
    assert example_names - lives <= known, example_names - lives - known
    assert known - example_names <= LIBRARY  # every agent-owned variable is shown


def test_readme_env_table_is_generated_from_the_model() -> None:
    readme = (ROOT / "agent" / "README.md").read_text()
    table = render_env_table(AgentConfig)
    assert table_in(readme, "agent-env") == table, (
        "agent/README.md's env table is stale: python -m inference_server.settings_table "
        "agent.config:AgentConfig agent/README.md agent-env"
    )
    for name in NAMES.values():
        assert f"| `{name}` |" in table
    assert "| `AGENT_PERSONAS_DIR` | path | `agent/personas` |" in table  # not this machine's
    assert "| `AGENT_PREEMPTIVE_TTS` | bool | `true` |" in table


def test_the_agent_exits_nonzero_naming_a_bad_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("AGENT_MIN_ENDPOINTING_DELAY", "abc")
    env.setenv("ORPHEUS_MODEL", "orpheus-3b-ft")
    done = subprocess.run(
        [sys.executable, str(ROOT / "agent" / "main.py"), "text"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "AGENT_MIN_ENDPOINTING_DELAY='abc': Input should be a valid number" in done.stderr
    assert "ORPHEUS_MODEL was renamed AGENT_TTS_MODEL" in done.stderr
