"""The agent's settings, read from the environment (see agent/.env.example)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .personas import PERSONAS_DIR

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


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip() or default


@dataclass(frozen=True)
class AgentConfig:
    """Everything the worker needs besides LiveKit's own LIVEKIT_URL/API_KEY/API_SECRET."""

    orpheus_url: str = "localhost:50051"
    orpheus_model: str = ""
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    stt_model: str = "gpt-4o-mini-transcribe"
    stt_language: str = "en"
    llm_model: str = "gpt-4o-mini"
    persona: str = "companion"
    personas_dir: Path = field(default=PERSONAS_DIR)
    wav_dir: Path | None = None
    min_endpointing_delay: float = MIN_ENDPOINTING_DELAY_S
    max_endpointing_delay: float = MAX_ENDPOINTING_DELAY_S
    vad_min_silence: float = VAD_MIN_SILENCE_S
    preemptive_tts: bool = True
    budget_s: float = FIRST_AUDIO_BUDGET_S
    agent_name: str = ""  # set for explicit dispatch only

    @classmethod
    def from_env(cls) -> AgentConfig:
        """Read the environment; bad numbers are a clear error naming the variable."""
        d = cls()
        wav_dir = _env("AGENT_WAV_DIR")
        return cls(
            orpheus_url=_env("ORPHEUS_URL", d.orpheus_url),
            orpheus_model=_env("ORPHEUS_MODEL", d.orpheus_model),
            openai_base_url=_env("OPENAI_BASE_URL") or None,
            openai_api_key=_env("OPENAI_API_KEY") or None,
            stt_model=_env("STT_MODEL", d.stt_model),
            stt_language=_env("STT_LANGUAGE", d.stt_language),
            llm_model=_env("LLM_MODEL", d.llm_model),
            persona=_env("PERSONA", d.persona),
            personas_dir=Path(_env("PERSONAS_DIR", str(d.personas_dir))),
            wav_dir=Path(wav_dir) if wav_dir else None,
            min_endpointing_delay=_float("MIN_ENDPOINTING_DELAY", d.min_endpointing_delay),
            max_endpointing_delay=_float("MAX_ENDPOINTING_DELAY", d.max_endpointing_delay),
            vad_min_silence=_float("VAD_MIN_SILENCE", d.vad_min_silence),
            preemptive_tts=_env("PREEMPTIVE_TTS", "1").lower() not in ("0", "false", "no"),
            budget_s=_float("FIRST_AUDIO_BUDGET", d.budget_s),
            agent_name=_env("AGENT_NAME"),
        )


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r} must be >= 0 seconds")
    return value
