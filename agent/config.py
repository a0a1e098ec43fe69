"""The agent's settings: one typed model read from the environment (see agent/.env.example).

Every variable the agent owns is `AGENT_*`, so it cannot collide with the server's
`ORPHEUS_*` flags in a shared environment (compose, one shell). Variables owned by the
libraries keep their names: the plugin's ORPHEUS_BASE_URL and ORPHEUS_API_KEY, OpenAI's
OPENAI_BASE_URL and OPENAI_API_KEY (LiveKit's LIVEKIT_URL/API_KEY/API_SECRET are read by
livekit-agents itself). The env table in agent/README.md is generated from this model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .personas import PERSONAS_DIR

logger = logging.getLogger("orpheus-agent")

ENV_PREFIX = "AGENT_"

# The latency budget: the user stops talking, and the first agent audio should be
# playing within this many seconds.
FIRST_AUDIO_BUDGET_S = 1.5

# Endpointing ("snooze window"). Silero reports end of speech after
# VAD_MIN_SILENCE_S of silence, but the framework back-dates the turn's end to the last
# voiced frame; the turn is then committed MIN_ENDPOINTING_DELAY_S after that. So the
# decision lands ~0.4 s after the user stopped, and 1.1 s of the 1.5 s budget remains
# for what cannot overlap with listening: the tail of the LLM's second sentence and the
# TTS's time to first audio (~0.2-0.3 s on a GPU node). Preemptive generation starts the
# LLM and the TTS on the final transcript, inside the window, so the sentence gate's two
# sentences are usually buffered by the time the turn is confirmed. Shorter delays cut
# people off mid-thought (0.3 s is below a normal between-clause pause); longer ones
# spend the budget on silence.
VAD_MIN_SILENCE_S = 0.35
MIN_ENDPOINTING_DELAY_S = 0.4
# Only used with a turn-detector model: an "unlikely end of turn" may wait this long.
MAX_ENDPOINTING_DELAY_S = 2.0
# A cough or "mm-hm" shorter than this does not interrupt the agent.
MIN_INTERRUPTION_S = 0.4

# The plugin's fallback when ORPHEUS_BASE_URL is unset (livekit.plugins.orpheus.tts).
DEFAULT_TTS_URL = "localhost:50051"

# Variables the agent read before it had its own prefix -> the name that replaced each.
# Set alone, an old name stops the agent (silently ignoring it would change the persona,
# the models or the node it talks to); set beside its new name, it is ignored with a
# warning. ORPHEUS_MODEL matters most: it is the server's checkpoint path.
RENAMED = {
    "ORPHEUS_URL": "ORPHEUS_BASE_URL",
    "ORPHEUS_MODEL": "AGENT_TTS_MODEL",
    "STT_MODEL": "AGENT_STT_MODEL",
    "STT_LANGUAGE": "AGENT_STT_LANGUAGE",
    "LLM_MODEL": "AGENT_LLM_MODEL",
    "PERSONA": "AGENT_PERSONA",
    "PERSONAS_DIR": "AGENT_PERSONAS_DIR",
    "MIN_ENDPOINTING_DELAY": "AGENT_MIN_ENDPOINTING_DELAY",
    "MAX_ENDPOINTING_DELAY": "AGENT_MAX_ENDPOINTING_DELAY",
    "VAD_MIN_SILENCE": "AGENT_VAD_MIN_SILENCE",
    "PREEMPTIVE_TTS": "AGENT_PREEMPTIVE_TTS",
    "FIRST_AUDIO_BUDGET": "AGENT_FIRST_AUDIO_BUDGET",
}


class SettingsError(ValueError):
    """The environment holds a bad or renamed agent variable; the message names each one."""


def _seconds(default: float, description: str) -> float:
    return Field(default, ge=0, allow_inf_nan=False, description=description)


class AgentConfig(BaseSettings):
    """Everything the worker needs besides LiveKit's own LIVEKIT_URL/API_KEY/API_SECRET."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # `AGENT_PERSONA=` means "the default", as before
        frozen=True,
        extra="forbid",
        populate_by_name=True,  # AgentConfig(tts_url=...) in code and tests
    )

    tts_url: str = Field(
        DEFAULT_TTS_URL,
        min_length=1,
        validation_alias="ORPHEUS_BASE_URL",
        description="Orpheus inference node(s): host:port, comma-separated for failover "
        "(grpcs:// for TLS); the plugin's variable",
    )
    tts_api_key: SecretStr | None = Field(
        None,
        validation_alias="ORPHEUS_API_KEY",
        description="API key for the node (server started with API keys); the plugin's variable",
    )
    tts_model: str = Field(
        "", description="model name sent to the node (empty: the node's default model)"
    )
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible chat-completions endpoint for the LLM (vLLM, llama.cpp, "
        "Ollama: `http://host:8000/v1`); unset: OPENAI_BASE_URL, else OpenAI",
    )
    llm_api_key: SecretStr | None = Field(
        None, description="key of the LLM endpoint; unset: OPENAI_API_KEY (none needed locally)"
    )
    stt_base_url: str | None = Field(
        None,
        description="OpenAI-compatible transcription endpoint for the STT (Speaches, vLLM); "
        "unset: OPENAI_BASE_URL, else OpenAI. Text mode needs no STT",
    )
    stt_api_key: SecretStr | None = Field(
        None, description="key of the STT endpoint; unset: OPENAI_API_KEY (none needed locally)"
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias="OPENAI_BASE_URL",
        description="endpoint for both LLM and STT when their own is unset; unset: OpenAI",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias="OPENAI_API_KEY",
        description="OpenAI's key (or OPENAI_BASE_URL's): the LLM's and STT's when theirs is unset",
    )
    stt_model: str = Field("gpt-4o-mini-transcribe", min_length=1, description="STT model")
    stt_language: str = Field("en", min_length=1, description="language the STT listens for")
    llm_model: str = Field(
        "gpt-4o-mini", min_length=1, description="LLM model (a persona's llm_model overrides it)"
    )
    persona: str = Field(
        "companion",
        min_length=1,
        description='default persona (file stem in the personas dir); room metadata {"persona": '
        '"tutor"} overrides it',
    )
    personas_dir: Path = Field(
        PERSONAS_DIR,
        description="directory of persona YAML files",
        json_schema_extra={"default_text": "agent/personas"},
    )
    wav_dir: Path = Field(
        Path("agent-turns"),
        description="`text` and `console`: each conversation's recordings go to a new "
        "directory in it (turn-NNN.wav per agent turn, conversation.wav, latency.jsonl)",
    )
    min_endpointing_delay: float = _seconds(
        MIN_ENDPOINTING_DELAY_S,
        "seconds after the user's last voiced frame before the turn is committed",
    )
    max_endpointing_delay: float = _seconds(
        MAX_ENDPOINTING_DELAY_S,
        "with a turn-detector model: the longest wait on an unlikely end of turn (seconds)",
    )
    vad_min_silence: float = _seconds(
        VAD_MIN_SILENCE_S, "seconds of silence before Silero reports end of speech"
    )
    preemptive_tts: bool = Field(
        True,
        description="start the LLM and the TTS on the final transcript, inside the "
        "endpointing window (true/false, 1/0, yes/no, on/off)",
    )
    first_audio_budget: float = _seconds(
        FIRST_AUDIO_BUDGET_S,
        "latency budget from end of speech to first audio (seconds): the latency log's "
        "within_budget",
    )
    agent_name: str = Field(
        "",
        validation_alias="AGENT_NAME",
        description="set for explicit dispatch instead of joining every room",
    )

    @model_validator(mode="before")
    @classmethod
    def _strip(cls, data: object) -> object:
        """Blanks around a value are not part of it; a blank value means the default."""
        if not isinstance(data, dict):
            return data
        return {
            k: v.strip() if isinstance(v, str) else v
            for k, v in data.items()
            if not (isinstance(v, str) and not v.strip())
        }

    @field_validator("llm_base_url", "stt_base_url", "openai_base_url")
    @classmethod
    def _endpoint_url(cls, url: str | None) -> str | None:
        # the openai client would take `localhost:8000/v1` and fail on the first turn
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
        return url

    @model_validator(mode="after")
    def _endpointing_order(self) -> AgentConfig:
        if self.max_endpointing_delay < self.min_endpointing_delay:
            raise ValueError(
                f"AGENT_MAX_ENDPOINTING_DELAY ({self.max_endpointing_delay}) is below "
                f"AGENT_MIN_ENDPOINTING_DELAY ({self.min_endpointing_delay})"
            )
        return self

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of `field`."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else (ENV_PREFIX + field).upper()

    @classmethod
    def from_env(cls) -> AgentConfig:
        """Read the environment; raises SettingsError naming each bad or renamed variable.

        One start reports every problem: renamed variables and invalid values together."""
        problems = renamed_variables(os.environ)
        known = {cls.env_name(f).upper() for f in cls.model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIX))
        if unknown := [k for k in unknown if k.upper() not in known]:
            logger.warning("not agent settings, ignored: %s", ", ".join(unknown))
        config = None
        try:
            config = cls()
        except ValidationError as e:
            problems += [_describe(cls, err) for err in e.errors()]
        if problems or config is None:
            raise SettingsError("\n".join(problems))
        return config


def renamed_variables(env: Mapping[str, str]) -> list[str]:
    """Errors for old names set without their new name; warns about old names beside new."""
    errors = []
    for old, new in RENAMED.items():
        if not env.get(old, "").strip():
            continue
        if new in env:
            logger.warning("%s is ignored: the agent reads %s (set here too)", old, new)
            continue
        message = f"{old} was renamed {new}: set {new} instead"
        if old == "ORPHEUS_MODEL":
            message += (
                " (ORPHEUS_MODEL is the server's checkpoint path; if this one is meant for an "
                "orpheus-server sharing this environment, set AGENT_TTS_MODEL, empty for the "
                "node's default model, and the agent ignores ORPHEUS_MODEL)"
            )
        errors.append(message)
    return errors


def _describe(cls: type[AgentConfig], err: dict) -> str:
    loc = err["loc"][0] if err["loc"] else None
    if isinstance(loc, str) and loc in cls.model_fields:
        name = cls.env_name(loc)
    elif isinstance(loc, str):
        name = loc  # an alias is the variable itself
    else:
        return f"agent settings: {err['msg'].removeprefix('Value error, ')}"
    raw = next((v for k, v in os.environ.items() if k.upper() == name.upper()), None)
    shown = "" if raw is None or "KEY" in name else f"={raw!r}"
    return f"{name}{shown}: {err['msg'].removeprefix('Value error, ')}"
