"""Does a LoRA adapter fit the model? Decided from its config and weight shapes alone.

The safetensors header holds every shape, so this runs before any weight is read: at
scan time (the voice registry) and again when an engine loads the adapter, so a voice
that cannot load is refused before it ever joins a batch. The shapes say the rank
(`lora_A` is r x in, `lora_B` is out x r), the layer sizes the adapter was trained for,
and which modules it targets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

PEFT_PREFIX = "base_model.model."  # PEFT's key prefix in front of the causal LM's module path
_LORA_PARTS = (".lora_A.weight", ".lora_B.weight")
RANK_FLAG = "--max-lora-rank"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True, slots=True)
class AdapterFit:
    """What an adapter must match: the model's linear layers and the node's rank limit."""

    layers: Mapping[str, tuple[int, int]]  # module path -> (in_features, out_features)
    max_rank: int
    module_names: frozenset[str] = frozenset()  # last name part of every module (any kind)

    @classmethod
    def of_model(cls, model: torch.nn.Module, max_rank: int) -> AdapterFit:
        """The fit for `model` (real weights or a meta-device skeleton)."""
        layers = {  # a PeftModel's wrapped layers keep theirs in `base_layer`
            name.removesuffix(".base_layer"): (module.in_features, module.out_features)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".lora_" not in name
        }
        names = frozenset(name.rsplit(".", 1)[-1] for name, _ in model.named_modules())
        return cls(layers, max_rank, names)

    @classmethod
    def of_checkpoint(cls, spec: str, max_rank: int, *, head_dim: int | None = None) -> AdapterFit:
        """The fit for `--model spec` without loading its weights (a meta-device skeleton)."""
        from .model_loading import model_skeleton

        return cls.of_model(model_skeleton(spec, head_dim), max_rank)


def node_fit(model: str, engine: str, max_rank: int) -> AdapterFit:
    """What `orpheus-server --model model --engine engine` accepts of a LoRA voice."""
    from .model_loading import VLLM_TINY_HEAD_DIM

    head_dim = VLLM_TINY_HEAD_DIM if engine == "vllm" else None  # vLLM's tiny-random variant
    return AdapterFit.of_checkpoint(model, max_rank, head_dim=head_dim)


def weight_shapes(file: Path) -> dict[str, list[int]]:
    """Every tensor's shape, from the safetensors header alone (no weight is read)."""
    with safe_open(str(file), framework="pt") as weights:
        keys = weights.keys()
        return {key: list(weights.get_slice(key).get_shape()) for key in keys}


def adapter_dir_problem(directory: Path, fit: AdapterFit | None) -> str | None:
    """`adapter_problem` for a PEFT adapter directory, reading only its config and header."""
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        shapes = weight_shapes(directory / ADAPTER_WEIGHTS)
    except Exception as exc:  # missing, half-written, not JSON, not safetensors
        return f"its adapter files are unreadable ({type(exc).__name__})"
    if not isinstance(config, dict):
        return "its adapter config is not a JSON object"
    return adapter_problem(config, shapes, fit)


def adapter_problem(
    config: Mapping[str, Any], shapes: Mapping[str, Sequence[int]], fit: AdapterFit | None
) -> str | None:
    """Why this adapter cannot be served (without paths: clients may read it), or None.

    Without `fit` only the adapter's own consistency is checked (config rank = weights).
    """
    modules = _lora_modules(shapes)
    if not modules:
        return "its weights hold no LoRA layers"
    for check in (_rank_problem, _target_problem, _layer_problem):
        problem = check(config, modules, fit)
        if problem:
            return problem
    return None


def _lora_modules(shapes: Mapping[str, Sequence[int]]) -> dict[str, dict[str, Sequence[int]]]:
    """module path -> {"A": shape, "B": shape}, from PEFT's saved keys."""
    modules: dict[str, dict[str, Sequence[int]]] = {}
    for key, shape in shapes.items():
        for part in _LORA_PARTS:
            if key.endswith(part):
                module = key[: -len(part)].removeprefix(PEFT_PREFIX)
                modules.setdefault(module, {})[part[6]] = shape
    return modules


def _rank_problem(config: Mapping[str, Any], modules: dict, fit: AdapterFit | None) -> str | None:
    declared = _declared_ranks(config)
    if declared is None:
        return f"adapter config has no valid rank (r={config.get('r')!r})"
    ranks = {_rank(ab) for ab in modules.values()} - {-1}  # -1: malformed, see _layer_problem
    wrong = sorted(ranks - declared)
    if wrong:
        return (
            f"adapter config says r={config.get('r')} but its weights have rank {wrong[0]} "
            "(config and weights are from different trainings)"
        )
    top = max(ranks | declared)
    if fit is not None and top > fit.max_rank:
        return f"LoRA rank {top} is greater than {RANK_FLAG} {fit.max_rank}"
    return None


def _declared_ranks(config: Mapping[str, Any]) -> set[int] | None:
    r = config.get("r")
    pattern = config.get("rank_pattern") or {}
    values = [r, *pattern.values()] if isinstance(pattern, dict) else [r]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    return set(values)


def _rank(ab: Mapping[str, Sequence[int]]) -> int:
    a, b = ab.get("A"), ab.get("B")
    return int(a[0]) if a is not None and len(a) == 2 else int(b[-1]) if b else -1


def _target_problem(config: Mapping[str, Any], modules: dict, fit: AdapterFit | None) -> str | None:
    if fit is None:
        return None
    targets = config.get("target_modules")
    # A regex or "all-linear" names no module: the weights' keys are checked instead.
    names = targets if isinstance(targets, list | set | tuple) else []
    unknown = sorted({str(n).rsplit(".", 1)[-1] for n in names} - fit.module_names)
    absent = sorted(m for m in modules if m not in fit.layers)
    if unknown or absent:
        what = unknown or [absent[0]]
        return (
            f"it targets {', '.join(what)}, which the model does not have "
            "(trained for another architecture?)"
        )
    return None


def _layer_problem(config: Mapping[str, Any], modules: dict, fit: AdapterFit | None) -> str | None:
    if fit is None:
        return None
    for module, ab in sorted(modules.items()):
        a, b = ab.get("A"), ab.get("B")
        if a is None or b is None or len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            return f"{module} needs a lora_A (r x in) and a lora_B (out x r) of the same rank"
        want, got = fit.layers[module], (int(a[1]), int(b[0]))
        if want != got:
            return (
                f"{module} weights are for a {got[0]}->{got[1]} layer, the model's is "
                f"{want[0]}->{want[1]} (trained for another model size?)"
            )
    return None
