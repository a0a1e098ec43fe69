"""The server's one settings model: every field is a flag and an env var that agree."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from inference_server.cli import (
    SettingsError,
    build_parser,
    env_var,
    flag,
    parse_settings,
    unknown_env,
)
from inference_server.config import ServerConfig
from inference_server.settings_table import render_env_table, table_in

ROOT = Path(__file__).resolve().parents[1]
FIELDS = list(ServerConfig.model_fields)


def good_value(name: str) -> tuple[str, object]:
    """A value other than the default, as typed on a command line, and as it parses."""
    field = ServerConfig.model_fields[name]
    annotation, default = field.annotation, field.default
    if typing.get_origin(annotation) is typing.Literal:
        choice = next(c for c in typing.get_args(annotation) if c != default)
        return str(choice), choice
    if annotation is bool:
        return "true", True
    if annotation is int:
        value = (default or 0) + 1 if name not in ("port", "http_port", "metrics_port") else 8123
        return str(value), value
    if annotation is float:
        return str(default / 2 or 0.5), default / 2 or 0.5
    if annotation == Path | None:
        return "/srv/orpheus/x", Path("/srv/orpheus/x")
    if name == "peers":
        return "a=10.0.0.1:50051, b=10.0.0.2:50051", ("a=10.0.0.1:50051", "b=10.0.0.2:50051")
    if name == "device":
        return "cuda:1", "cuda:1"
    if name == "base_voices":
        return "유나, 준서", ("유나", "준서")
    if name == "language":
        return "ko-KR", "ko-kr"
    return "some-value", "some-value"


def bad_value(name: str) -> str | None:
    """A value the field refuses, or None when any text is valid (free-form strings)."""
    annotation = ServerConfig.model_fields[name].annotation
    if typing.get_origin(annotation) is typing.Literal:
        return "bogus"
    if annotation is bool:
        return "maybe"
    if annotation in (int, float):
        for bound in ServerConfig.model_fields[name].metadata:  # just past a limit
            for attr, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
                if getattr(bound, attr, None) is not None:
                    return str(getattr(bound, attr) + step)
        return "abc"
    return {"device": "gpu", "language": "english!", "base_voices": "tara,Leo"}.get(name)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FIELDS:
        monkeypatch.delenv(env_var(name), raising=False)


@pytest.mark.parametrize("name", FIELDS)
def test_flag_and_env_set_the_same_field(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    typed, parsed = good_value(name)
    argv = [flag(name)] if typed == "true" else [flag(name), typed]
    from_flag = getattr(parse_settings(argv), name)
    monkeypatch.setenv(env_var(name), typed)
    from_env = getattr(parse_settings([]), name)
    assert from_flag == from_env == parsed != ServerConfig.model_fields[name].default


@pytest.mark.parametrize("name", [n for n in FIELDS if bad_value(n) is not None])
def test_a_bad_value_names_the_flag_or_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = bad_value(name)
    if bad == "maybe":  # a switch takes no value: argparse itself refuses, naming the flag
        with pytest.raises(SystemExit):
            parse_settings([flag(name) + "=" + bad])
    else:
        with pytest.raises(SettingsError, match=f"^{flag(name)} "):
            parse_settings([flag(name), bad])
    monkeypatch.setenv(env_var(name), bad)
    with pytest.raises(SettingsError, match=f"^{env_var(name)}="):
        parse_settings([])


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORPHEUS_CAPACITY", "7")
    assert parse_settings(["--capacity", "9"]).capacity == 9
    monkeypatch.setenv("ORPHEUS_CAPACITY", "")  # empty = unset (compose files write these)
    assert parse_settings([]).capacity == ServerConfig.model_fields["capacity"].default


def test_help_lists_every_flag_with_its_variable() -> None:
    text = build_parser().format_help()
    for name in FIELDS:
        assert flag(name) in text and env_var(name) in text


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hunter2" not in build_parser().format_help()
    monkeypatch.setenv("ORPHEUS_CLUSTER_SECRET", "hunter2")
    assert "hunter2" not in build_parser().format_help()


def test_unknown_variables_are_named_with_a_suggestion() -> None:
    env = {"ORPHEUS_CAPACTY": "3", "ORPHEUS_API_KEY": "client", "ORPHEUS_PORT": "1"}
    assert unknown_env(env) == ["ORPHEUS_CAPACTY is not a setting (did you mean ORPHEUS_CAPACITY?)"]


def test_the_readme_table_is_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    assert table_in(readme, "server-env") == render_env_table(ServerConfig), (
        "README.md is stale: python -m inference_server.settings_table "
        "inference_server.config:ServerConfig README.md server-env"
    )


def test_bad_environment_stops_the_real_command_naming_each_variable() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "ORPHEUS_ENGINE": "vlm",
        "ORPHEUS_CAPACITY": "-1",
        "ORPHEUS_ALLOW_UNAUTHENTICATED": "maybe",
    }
    result = subprocess.run(
        [sys.executable, "-m", "inference_server"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    for variable in ("ORPHEUS_ENGINE='vlm'", "ORPHEUS_CAPACITY='-1'", "ORPHEUS_ALLOW_UNAUTH"):
        assert variable in result.stderr
