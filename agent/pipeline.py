"""The voice pipeline of one conversation: persona agent, AgentSession and its models."""

from __future__ import annotations

from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, stt, tts, vad
from livekit.agents.voice.turn import TurnHandlingOptions
from livekit.plugins import openai, orpheus
from pydantic import SecretStr

from .config import MIN_INTERRUPTION_S, AgentConfig
from .endpoints import endpoint
from .personas import Persona


class PersonaAgent(Agent):
    """An agent speaking as `persona`; it opens the conversation with the persona's greeting."""

    def __init__(self, persona: Persona) -> None:
        super().__init__(instructions=persona.system_prompt)
        self.persona = persona

    async def on_enter(self) -> None:
        # the fixed greeting goes straight to the TTS: no LLM round trip before first audio
        self.session.say(self.persona.greeting)


def turn_handling(config: AgentConfig) -> TurnHandlingOptions:
    """Endpointing for the snooze window, preemptive LLM+TTS, VAD-based interruptions."""
    return {
        "turn_detection": "vad",
        "endpointing": {
            "mode": "fixed",
            "min_delay": config.min_endpointing_delay,
            "max_delay": config.max_endpointing_delay,
        },
        "interruption": {
            "enabled": True,
            "mode": "vad",
            "min_duration": MIN_INTERRUPTION_S,
            "resume_false_interruption": True,
            "false_interruption_timeout": 1.5,
        },
        "preemptive_generation": {"enabled": True, "preemptive_tts": config.preemptive_tts},
    }


def build_tts(config: AgentConfig, persona: Persona) -> orpheus.TTS:
    """Orpheus with the persona's voice; the plugin buffers two sentences before speaking."""
    return orpheus.TTS(
        base_url=config.tts_url,
        voice=persona.voice,
        model=config.tts_model,
        api_key=_secret(config.tts_api_key),
    )


def build_llm(config: AgentConfig, persona: Persona) -> openai.LLM:
    """The persona's LLM on its endpoint; EndpointMissing when none is configured."""
    target = endpoint(config, "llm")
    return openai.LLM(
        model=persona.llm_model or config.llm_model,
        base_url=target.base_url,
        api_key=target.api_key,
    )


def build_stt(config: AgentConfig) -> openai.STT:
    """The STT on its endpoint; EndpointMissing when none is configured."""
    # non-realtime transcription works with any OpenAI-compatible server (vLLM, Speaches,
    # faster-whisper-server); the session's VAD cuts the audio into utterances for it
    target = endpoint(config, "stt")
    return openai.STT(
        model=config.stt_model,
        language=config.stt_language,
        base_url=target.base_url,
        api_key=target.api_key,
        use_realtime=False,
    )


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def build_session(
    config: AgentConfig,
    persona: Persona,
    *,
    vad_model: vad.VAD | None,
    stt_model: stt.STT | None,
    llm_model: llm.LLM | None = None,
    tts_model: tts.TTS | None = None,
    turn_options: TurnHandlingOptions | None = None,
) -> AgentSession:
    """An AgentSession wired for `persona`; LLM and TTS default to the configured ones.

    `vad_model=None` and `stt_model=None` give a text-only session (typed input).
    """
    return AgentSession(
        vad=vad_model,
        stt=stt_model if stt_model is not None else NOT_GIVEN,
        llm=llm_model if llm_model is not None else build_llm(config, persona),
        tts=tts_model if tts_model is not None else build_tts(config, persona),
        turn_handling=turn_options if turn_options is not None else turn_handling(config),
    )
