"""The LiveKit worker: one persona conversation per room.

livekit-agents' own entry finds `server` here: `python agent/main.py start` runs
`python -m livekit.agents start agent/worker.py` (so does `lk agent dev`). The Python CLI
of `cli.run_app` is deprecated in livekit-agents 1.8.9 and not used.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # imported by path (livekit's discovery): make `agent` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livekit.agents import AgentServer, JobContext, JobProcess
from livekit.plugins import silero

from agent.config import AgentConfig
from agent.latency import TurnLatencyTracker
from agent.personas import Persona, load_personas, select_persona
from agent.pipeline import PersonaAgent, build_session, build_stt

logger = logging.getLogger("orpheus-agent")


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
    TurnLatencyTracker(budget_s=config.first_audio_budget).attach(session)
    await session.start(agent=PersonaAgent(persona), room=ctx.room)


# found by livekit-agents' entry (`python -m livekit.agents start agent/main.py`, `lk agent`)
server = AgentServer(setup_fnc=prewarm)
server.rtc_session(entrypoint, agent_name=os.environ.get("AGENT_NAME", "").strip())
