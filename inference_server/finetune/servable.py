"""Will both engines serve this voice? Asked before training and again before installing.

The policy is the server's own: `engine.adapter_fit` (rank within `--max-lora-rank`,
targets and layer shapes of the node's model) and `voices.adapters.check_adapter_dir`
(what the registry lists: a LoRA, no `modules_to_save`, which vLLM cannot load). Before
training, the adapter the settings would produce is checked from the model's skeleton
(meta device, no weights); after training, the saved files are checked as the registry
will check them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..engine.adapter_fit import PEFT_PREFIX, AdapterFit, adapter_problem, node_fit
from ..engine.model_loading import TINY_RANDOM, model_skeleton
from ..voices.adapters import BrokenAdapterError, check_adapter_dir

ENGINES = ("torch", "vllm")


def engine_fits(model: str, max_rank: int) -> dict[str, AdapterFit]:
    """What each engine's node would accept with `--model model --max-lora-rank max_rank`.

    vLLM's `tiny-random` is a wider variant (its CPU attention needs head_dim 32), so an
    adapter trained on the torch `tiny-random` is checked for the torch engine only; a
    real checkpoint is the same model under both engines and is checked for both.
    """
    engines = ("torch",) if model == TINY_RANDOM else ENGINES
    return {engine: node_fit(model, engine, max_rank) for engine in engines}


def planned_shapes(model: str, lora: Mapping[str, Any]) -> dict[str, list[int]]:
    """The tensor shapes PEFT will save for the `lora` settings on `model` (its skeleton)."""
    targets, rank = set(lora["target_modules"]), lora["r"]
    shapes: dict[str, list[int]] = {}
    for name, module in model_skeleton(model).named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            key = f"{PEFT_PREFIX}{name}"
            shapes[f"{key}.lora_A.weight"] = [rank, module.in_features]
            shapes[f"{key}.lora_B.weight"] = [module.out_features, rank]
    return shapes


def planned_problem(
    model: str, lora: Mapping[str, Any], fits: Mapping[str, AdapterFit]
) -> str | None:
    """Why the adapter the `lora` settings (`recipe.lora_settings`) would train cannot be
    served, or None."""
    shapes = planned_shapes(model, lora)
    return _first({engine: adapter_problem(lora, shapes, fit) for engine, fit in fits.items()})


def saved_problem(adapter_dir: Path, fits: Mapping[str, AdapterFit]) -> str | None:
    """Why the trained adapter in `adapter_dir` cannot be served, or None."""
    problems = {}
    for engine, fit in fits.items():
        try:
            check_adapter_dir(adapter_dir, adapter_dir.parent.resolve(), fit)
            problems[engine] = None
        except BrokenAdapterError as exc:  # the registry's own wording
            problems[engine] = str(exc)
    return _first(problems)


def _first(problems: Mapping[str, str | None]) -> str | None:
    found = [f"{engine} engine: {p}" for engine, p in problems.items() if p]
    return "; ".join(found) or None
