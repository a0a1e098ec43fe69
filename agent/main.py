"""The reference persona agent: `python agent/main.py MODE` (`--help` lists the modes).

python agent/main.py start      # production worker for a LiveKit server
python agent/main.py dev        # development worker
python agent/main.py console    # this machine's microphone and speaker, no LiveKit
python agent/main.py text       # typed turns, no LiveKit and no audio device

Settings, personas and the model endpoints are checked before anything heavy is
imported, so a mistake costs a second and one line. `start` and `dev` hand over to
livekit-agents' own entry with the worker in agent/worker.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make `agent` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.personas import Persona

WORKER = Path(__file__).resolve().with_name("worker.py")
# which models each mode talks to: checked before anything starts
NEEDS = {
    "start": ("llm", "stt"),
    "dev": ("llm", "stt"),
    "console": ("llm", "stt"),
    "text": ("llm",),
}


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python agent/main.py",
        description="The Orpheus persona agent. Settings come from the environment and "
        "agent/.env (agent/README.md lists them).",
    )
    modes = cli.add_subparsers(dest="mode", required=True, metavar="MODE")
    start = modes.add_parser("start", help="production worker: joins rooms of a LiveKit server")
    dev = modes.add_parser("dev", help="development worker: colored logs, no drain on exit")
    for worker in (start, dev):
        worker.add_argument("--log-level", default="INFO", help="default: %(default)s")
        worker.add_argument("--url", help="LiveKit server URL (default: LIVEKIT_URL)")
        worker.add_argument("--api-key", help="default: LIVEKIT_API_KEY")
        worker.add_argument("--api-secret", help="default: LIVEKIT_API_SECRET")
    start.add_argument("--log-format", choices=["json", "colored"], default="json")
    console = modes.add_parser(
        "console", help="talk with this machine's microphone and speaker, no LiveKit (records)"
    )
    console.add_argument("--text", action="store_true", help="type instead: the same as `text`")
    modes.add_parser("text", help="type turns, no LiveKit or audio device (records the WAVs)")
    modes.add_parser("download-files", help="fetch the plugins' model files (container builds)")
    return cli


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The livekit-agents entry's arguments for `start`/`dev`."""
    argv = ["start", str(WORKER), "--log-level", args.log_level]
    argv += ["--dev"] if args.mode == "dev" else ["--log-format", args.log_format]
    for flag in ("url", "api_key", "api_secret"):
        if value := getattr(args, flag):
            argv += [f"--{flag.replace('_', '-')}", value]
    return argv


def load(mode: str) -> tuple[AgentConfig, Persona]:
    """Settings, personas and endpoints, checked; exits with one line per problem."""
    # imported here: validating personas loads livekit, and `--help` should not wait for it
    from agent.config import AgentConfig, SettingsError
    from agent.endpoints import (
        EndpointMissing,
        EndpointUnreachable,
        check_answers,
        check_node_answers,
        endpoint,
    )
    from agent.personas import PersonaError, load_personas, select_persona

    try:
        config = AgentConfig.from_env()
    except SettingsError as e:
        sys.exit(f"agent: bad environment (see agent/.env.example):\n{e}")
    try:
        personas = load_personas(config.personas_dir)  # fail fast, before any worker starts
        persona = select_persona(personas, None, config.persona)
        for model in NEEDS[mode]:
            target = endpoint(config, model)
            if mode in ("text", "console"):  # a worker may start before its servers do
                check_answers(target, model)
        if mode in ("text", "console"):
            check_node_answers(config.tts_url)
    except (PersonaError, KeyError, EndpointMissing, EndpointUnreachable) as e:
        sys.exit(f"agent: {e.args[0] if isinstance(e, KeyError) else e}")
    return config, persona


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.mode == "download-files":
        sys.exit(livekit_entry().main(["download-files"]))
    _load_dotenv()
    mode = "text" if args.mode == "console" and args.text else args.mode
    config, persona = load(mode)
    if mode in ("start", "dev"):
        sys.exit(livekit_entry().main(worker_argv(args)))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sys.exit(run_local(mode, config, persona))


def livekit_entry() -> ModuleType:
    """livekit-agents' own command line (imported only for the modes that use it)."""
    from livekit.agents import __main__ as entry

    return entry


def run_local(mode: str, config: AgentConfig, persona: Persona) -> int:
    from agent.console_audio import AudioDeviceError
    from agent.local_session import ModelFailed, run_console, run_text

    run = run_text if mode == "text" else run_console
    try:
        asyncio.run(run(config, persona))
    except (ModelFailed, AudioDeviceError) as e:
        print(f"agent: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:
        return
    load_dotenv(Path(__file__).resolve().parent / ".env")


if __name__ == "__main__":
    main()
