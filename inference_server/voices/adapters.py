"""Cheap validation of a LoRA voice directory: config, weights header, no path escapes."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from ..errors import Unusable

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class BrokenAdapterError(Unusable):
    """A voice directory that is not a usable LoRA adapter; the message says why."""


def check_adapter_dir(path: Path, root: Path) -> Path:
    """Validate the adapter directory `path` inside `root`; return its resolved path.

    Reads only the JSON config and the safetensors header, never the weights.
    """
    real = path.resolve()
    if not real.is_relative_to(root):
        raise BrokenAdapterError(f"{path} resolves outside the voices directory ({real})")
    if not real.is_dir():
        raise BrokenAdapterError(f"{path} is not a directory")
    config_file, weights_file = (
        _inside(real / ADAPTER_CONFIG, root),
        _inside(real / ADAPTER_WEIGHTS, root),
    )
    config = _read_config(config_file)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise BrokenAdapterError(
            f"{config_file}: peft_type is {config.get('peft_type')!r}, not LORA"
        )
    if config.get("modules_to_save"):
        raise BrokenAdapterError(
            f"{config_file}: modules_to_save={config['modules_to_save']} is not servable "
            "(vLLM cannot load it); retrain without it"
        )
    _check_weights(weights_file)
    return real


def _inside(file: Path, root: Path) -> Path:
    if not file.is_file():
        raise BrokenAdapterError(f"missing {file.name} in {file.parent}")
    real = file.resolve()
    if not real.is_relative_to(root):
        raise BrokenAdapterError(f"{file} resolves outside the voices directory ({real})")
    return real


def _read_config(file: Path) -> dict:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BrokenAdapterError(f"{file}: unreadable adapter config ({exc})") from exc
    if not isinstance(config, dict):
        raise BrokenAdapterError(f"{file}: adapter config is not a JSON object")
    return config


def _check_weights(file: Path) -> None:
    try:
        with safe_open(str(file), framework="pt") as weights:
            keys = list(weights.keys())
    except Exception as exc:
        raise BrokenAdapterError(f"{file}: unreadable safetensors ({exc})") from exc
    if not any("lora_" in key for key in keys):
        raise BrokenAdapterError(f"{file}: holds no LoRA weights")
