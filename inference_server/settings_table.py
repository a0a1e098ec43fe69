"""A markdown table of a settings model's environment variables, for the READMEs.

Generic over pydantic-settings models (the server's ServerConfig, the agent's AgentConfig):
one row per field with its variable, type, default and description. A field's variable is
its `validation_alias` when that is a string, else the env prefix + the field's name,
upper-cased. `json_schema_extra` may carry `secret: True` (the default is not shown) and
`default_text` (the default as the README should print it, e.g. a path relative to the
repository instead of this machine's). The table sits between two markers in a markdown
file, `<!-- NAME:start -->` and `<!-- NAME:end -->`, and a test compares it with the model:

    python -m inference_server.settings_table agent.config:AgentConfig agent/README.md agent-env
"""

from __future__ import annotations

import argparse
import enum
import importlib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings


def env_name(settings: type[BaseSettings], field: str, env_prefix: str | None = None) -> str:
    """The environment variable that sets `field`."""
    alias = settings.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    prefix = settings.model_config.get("env_prefix", "") if env_prefix is None else env_prefix
    return (prefix + field).upper()


def env_names(settings: type[BaseSettings], env_prefix: str | None = None) -> dict[str, str]:
    """Field -> environment variable, in field order."""
    return {f: env_name(settings, f, env_prefix) for f in settings.model_fields}


def type_text(annotation: Any) -> str:
    """A reader's name for a field's type: `float`, `path`, `torch \\| vllm`, `list`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return type_text(typing.get_args(annotation)[0])
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(type_text(a) for a in args)
    if origin in (tuple, list, set, frozenset):
        return "list (comma-separated)"
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return " | ".join(str(m.value) for m in annotation)
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, SecretStr):
            return "secret"
        return annotation.__name__
    return str(annotation)


def default_text(info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "default_text" in extra:
        return str(extra["default_text"])
    default = info.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return "(required)"
    if extra.get("secret"):
        return "(secret)" if default else ""
    if default is None or default == "" or default == ():
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, tuple | list):
        default = ",".join(map(str, default))
    return str(default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_env_table(settings: type[BaseSettings], env_prefix: str | None = None) -> str:
    """The markdown table: variable, type, default, description (one row per field)."""
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for field, info in settings.model_fields.items():
        default = default_text(info)
        rows.append(
            "| "
            + " | ".join(
                [
                    f"`{env_name(settings, field, env_prefix)}`",
                    _cell(type_text(info.annotation)),
                    f"`{_cell(default)}`" if default else "",
                    _cell(info.description or ""),
                ]
            )
            + " |"
        )
    return "\n".join(rows) + "\n"


def _markers(name: str) -> re.Pattern[str]:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return re.compile(rf"({re.escape(start)}\n)(.*?)(^{re.escape(end)})", re.S | re.M)


def table_in(text: str, name: str) -> str:
    """The text between the markers `name` (ValueError when they are missing)."""
    match = _markers(name).search(text)
    if match is None:
        raise ValueError(f"no <!-- {name}:start --> ... <!-- {name}:end --> markers")
    return match[2]


def replace_table(text: str, name: str, table: str) -> str:
    """`text` with the part between the markers `name` replaced by `table`."""
    table_in(text, name)
    return _markers(name).sub(lambda m: m[1] + table + m[3], text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference_server.settings_table",
        description="Write a settings model's env table between markers in a markdown file.",
    )
    parser.add_argument("settings", help="module:Class of a pydantic-settings model")
    parser.add_argument("file", type=Path, help="markdown file holding the markers")
    parser.add_argument("marker", help="marker name: <!-- NAME:start --> / <!-- NAME:end -->")
    parser.add_argument("--env-prefix", default=None, help="default: the model's env_prefix")
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    module, _, name = args.settings.partition(":")
    settings = getattr(importlib.import_module(module), name)
    text = args.file.read_text()
    updated = replace_table(text, args.marker, render_env_table(settings, args.env_prefix))
    if args.check:
        if updated != text:
            print(f"{args.file}: the {args.marker} table is stale; run without --check")
            return 1
        return 0
    if updated != text:
        args.file.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
