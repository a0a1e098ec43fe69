"""The reference persona agent: a LiveKit Agents worker speaking through orpheus.TTS.

python agent/main.py dev        # worker for a LiveKit server, reloads on edits
python agent/main.py start      # production worker
python agent/main.py console    # talk to it from this machine (`--text` for typing)
python agent/main.py text       # no LiveKit at all: typed turns, each reply saved as WAV
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `agent` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livekit.agents import AgentSession, JobContext, JobProcess, WorkerOptions, cli
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.plugins import silero

from agent.config import AgentConfig, SettingsError
from agent.latency import TurnLatencyTracker
from agent.personas import Persona, PersonaError, load_personas, select_persona
from agent.pipeline import PersonaAgent, build_session, build_stt, turn_handling
from agent.turn_audio import TurnAudioSink

logger = logging.getLogger("orpheus-agent")


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:
        return
    load_dotenv(Path(__file__).resolve().parent / ".env")


def persona_for_room(
    config: AgentConfig, personas: dict[str, Persona], metadata: str | None
) -> Persona:
    """Room (or job) metadata `{"persona": "tutor"}` picks the persona; else AGENT_PERSONA."""
    requested = None
    if metadata:
        try:
            requested = json.loads(metadata).get("persona")
        except (json.JSONDecodeError, AttributeError):
            logger.warning("room metadata is not a JSON object, using persona %r", config.persona)
    try:
        return select_persona(personas, requested, config.persona)
    except KeyError as e:
        logger.error("%s; using persona %r", e.args[0], config.persona)
        return select_persona(personas, None, config.persona)


def prewarm(proc: JobProcess) -> None:
    """Per job process: load Silero once and validate the personas before any room."""
    config = AgentConfig.from_env()
    proc.userdata["config"] = config
    proc.userdata["personas"] = load_personas(config.personas_dir)
    proc.userdata["vad"] = silero.VAD.load(min_silence_duration=config.vad_min_silence)


async def entrypoint(ctx: JobContext) -> None:
    config: AgentConfig = ctx.proc.userdata["config"]
    personas: dict[str, Persona] = ctx.proc.userdata["personas"]
    persona = persona_for_room(config, personas, ctx.job.metadata or ctx.job.room.metadata)
    logger.info("persona %r (voice %s) for room %s", persona.name, persona.voice, ctx.room.name)

    vad_model = ctx.proc.userdata["vad"]
    session = build_session(config, persona, vad_model=vad_model, stt_model=build_stt(config))
    session.tts.prewarm()
    tracker = TurnLatencyTracker(budget_s=config.first_audio_budget)
    tracker.attach(session)

    await session.start(agent=PersonaAgent(persona), room=ctx.room)
    if _console_text_mode():
        # the framework's text mode drops audio output; keep the TTS running into WAVs
        wav_dir = config.wav_dir
        session.output.audio = TurnAudioSink(wav_dir=wav_dir, realtime=False)
        logger.info("text mode: each agent turn is written to %s/turn-NNN.wav", wav_dir)


def _console_text_mode() -> bool:
    from livekit.agents.cli.cli import AgentsConsole

    console = AgentsConsole.get_instance()
    return console.enabled and console.console_mode == "text"


async def run_text_mode(config: AgentConfig, persona: Persona) -> None:
    """A session with no room, microphone or VAD: stdin lines are the user's turns."""
    wav_dir = config.wav_dir
    options = turn_handling(config)
    options["turn_detection"] = "manual"  # typed turns: nothing to detect
    session = build_session(config, persona, vad_model=None, stt_model=None, turn_options=options)
    sink = TurnAudioSink(wav_dir=wav_dir, realtime=False)
    session.output.audio = sink
    tracker = TurnLatencyTracker(budget_s=config.first_audio_budget)
    tracker.attach(session)
    speech = SpeechTracker(session)
    print(f"{persona.name} ({persona.voice}); audio of each turn goes to {wav_dir}/")
    await session.start(agent=PersonaAgent(persona))
    loop = asyncio.get_running_loop()
    try:
        while True:
            await speech.wait_all()
            if sink.turns and sink.turns[-1].path:
                print(f"  [{sink.turns[-1].path}]")
            line = await loop.run_in_executor(None, _prompt)
            if line is None:
                break
            if line.strip():
                result = session.run(user_input=line.strip())
                await result
                for ev in result.events:
                    if ev.type == "message" and ev.item.role == "assistant":
                        print(f"{persona.name}: {ev.item.text_content}")
        await speech.wait_all()
    finally:
        await session.aclose()


class SpeechTracker:
    """Collects the session's speech handles so callers can wait until all have played."""

    def __init__(self, session: AgentSession) -> None:
        self.handles: list[SpeechHandle] = []
        session.on("speech_created", lambda ev: self.handles.append(ev.speech_handle))

    async def wait_all(self) -> None:
        while pending := [h for h in self.handles if not h.done()]:
            await asyncio.gather(*pending, return_exceptions=True)


def _prompt() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None


def main() -> None:
    _load_dotenv()
    try:
        config = AgentConfig.from_env()
    except SettingsError as e:
        sys.exit(f"agent: bad environment (see agent/.env.example):\n{e}")
    try:
        personas = load_personas(config.personas_dir)  # fail fast, before any worker starts
        select_persona(personas, None, config.persona)
    except (PersonaError, KeyError) as e:
        sys.exit(f"agent: {e.args[0] if isinstance(e, KeyError) else e}")
    if sys.argv[1:2] == ["text"]:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        asyncio.run(run_text_mode(config, select_persona(personas, None, config.persona)))
        return
    cli.run_app(
        WorkerOptions(entrypoint_fnc=entrypoint, prewarm_fnc=prewarm, agent_name=config.agent_name)
    )


if __name__ == "__main__":
    main()
