"""Cheap validation of a LoRA voice directory: config, weights header, no path escapes.

Messages name files relative to the voices directory: a client asking for a broken
voice is told why, and never learns the node's paths.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..engine.adapter_fit import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterFit,
    adapter_problem,
    weight_shapes,
)
from ..errors import Unusable

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "BrokenAdapterError", "check_adapter_dir"]


class BrokenAdapterError(Unusable):
    """A voice directory that is not a usable LoRA adapter; the message says why."""


def check_adapter_dir(path: Path, root: Path, fit: AdapterFit | None = None) -> Path:
    """Validate the adapter directory `path` inside `root`; return its resolved path.

    Reads only the JSON config and the safetensors header, never the weights. With
    `fit`, the weight shapes must also fit the model and the rank limit.
    """
    real = path.resolve()
    if not real.is_relative_to(root):
        raise BrokenAdapterError(f"{path.name} resolves outside the voices directory")
    if not real.is_dir():
        raise BrokenAdapterError(f"{path.name} is not a directory")
    config_file, weights_file = (
        _inside(real / ADAPTER_CONFIG, root),
        _inside(real / ADAPTER_WEIGHTS, root),
    )
    config = _read_config(config_file, root)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise BrokenAdapterError(
            f"{_rel(config_file, root)}: peft_type is {config.get('peft_type')!r}, not LORA"
        )
    if config.get("modules_to_save"):
        raise BrokenAdapterError(
            f"{_rel(config_file, root)}: modules_to_save={config['modules_to_save']} is not "
            "servable (vLLM cannot load it); retrain without it"
        )
    problem = adapter_problem(config, _weight_shapes(weights_file, root), fit)
    if problem:
        raise BrokenAdapterError(problem)
    return real


def _rel(file: Path, root: Path) -> str:
    return str(file.relative_to(root)) if file.is_relative_to(root) else file.name


def _inside(file: Path, root: Path) -> Path:
    if not file.is_file():
        raise BrokenAdapterError(f"missing {file.name} in {_rel(file.parent, root)}")
    real = file.resolve()
    if not real.is_relative_to(root):
        raise BrokenAdapterError(f"{_rel(file, root)} resolves outside the voices directory")
    return real


def _read_config(file: Path, root: Path) -> dict:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BrokenAdapterError(f"{_rel(file, root)}: unreadable adapter config ({exc})") from exc
    if not isinstance(config, dict):
        raise BrokenAdapterError(f"{_rel(file, root)}: adapter config is not a JSON object")
    return config


def _weight_shapes(file: Path, root: Path) -> dict[str, list[int]]:
    try:
        return weight_shapes(file)
    except Exception as exc:
        raise BrokenAdapterError(f"{_rel(file, root)}: unreadable safetensors ({exc})") from exc
