"""`orpheus-server`: run one inference (or routing) node.

The parser is generated from the fields of ServerConfig (config.py): a flag per field,
its help and section from the field, its env var named in the help. Only the flags given
reach the model, so the environment still fills the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import sys
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from .config import ENV_PREFIX, ServerConfig
from .log_context import configure_logging
from .security.bind_policy import bind_refusal
from .settings_table import default_text, env_name

# Client-side variables of the plugin and the agent: a shared environment carries them.
CLIENT_ENV = frozenset({"ORPHEUS_API_KEY", "ORPHEUS_BASE_URL"})

GROUPS = {
    "node": "node",
    "fleet": "fleet (membership, routing)",
    "security": "security",
    "http": "HTTP ports",
    "limits": "admission and limits",
    "audio": "generation and audio",
    "vllm": "vLLM engine",
    "logs": "logs",
}


class SettingsError(ValueError):
    """A flag or env var with a value the settings refuse; the message names it."""


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_var(field: str) -> str:
    return env_name(ServerConfig, field)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orpheus-server",
        description="Orpheus TTS inference node (gRPC orpheus.v1.TTS). Every flag also "
        "reads the env var named in its help; the command line wins over the environment.",
        argument_default=argparse.SUPPRESS,  # absent flags leave the env and defaults be
    )
    sections = {g: p.add_argument_group(title) for g, title in GROUPS.items()}
    for name, field in ServerConfig.model_fields.items():
        default = default_text(field)
        help = f"{field.description} [{env_var(name)}" + (
            f", default {default}]" if default else "]"
        )
        group = sections[field.json_schema_extra["group"]]
        if field.annotation is bool:
            group.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=help)
        else:
            choices = getattr(field.annotation, "__args__", None)
            group.add_argument(flag(name), help=help, metavar=_metavar(name, choices))
    return p


def parse_settings(argv: Sequence[str] | None = None) -> ServerConfig:
    """Flags over env over defaults, validated; SettingsError names the flag or variable."""
    given = vars(build_parser().parse_args(argv))
    try:
        return ServerConfig(**given)
    except ValidationError as exc:
        raise SettingsError(describe(exc, given)) from None


def describe(exc: ValidationError, given: Mapping[str, object]) -> str:
    """One line per refused value, each naming where it came from."""
    lines = []
    secret = {
        n for n, f in ServerConfig.model_fields.items() if (f.json_schema_extra or {})["secret"]
    }
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        shown = "<hidden>" if name in secret else repr(error.get("input"))
        where = f"{flag(name)} {shown}" if name in given else f"{env_var(name)}={shown}"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def unknown_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """ORPHEUS_* variables no setting reads (a typo is otherwise silently ignored)."""
    known = {env_var(n) for n in ServerConfig.model_fields} | CLIENT_ENV
    notes = []
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            near = difflib.get_close_matches(name.upper(), known, n=1)
            notes.append(
                f"{name} is not a setting" + (f" (did you mean {near[0]}?)" if near else "")
            )
    return notes


def _metavar(name: str, choices: tuple | None) -> str:
    if choices and all(isinstance(c, str) for c in choices):
        return "{" + ",".join(choices) + "}"
    return name.upper()


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_settings(argv)
    except SettingsError as exc:
        print(f"orpheus-server: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    for note in unknown_env():
        print(f"orpheus-server: warning: {note}", file=sys.stderr)
    refusal = bind_refusal(config.host, config.keys_configured, config.allow_unauthenticated)
    if refusal is not None:
        print(f"orpheus-server: error: {refusal}", file=sys.stderr)
        return 2
    from .server import serve  # heavy imports (torch) after argument errors are reported

    try:
        return asyncio.run(serve(config))
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"orpheus-server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
