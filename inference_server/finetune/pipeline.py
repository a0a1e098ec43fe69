"""The fine-tuning run: settings -> data -> SNAC codes -> LoRA training -> checked install."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine.model_loading import NOISE_WARNING, TINY_RANDOM, load_causal_lm
from ..engine.model_loading import load_tokenizer as _load_tokenizer
from ..orpheus.tokens import SAMPLE_RATE
from ..voices.names import InvalidVoiceNameError, validate_voice_name
from .dataset import DataOptions, DatasetError, Dropped, TrimmedClip, find_clips, load_trimmed
from .encode import CodeCache, TrainingRow, codec_id, encode_rows, estimate_tokens
from .recipe import TrainConfig, default_output_dir, latest_checkpoint, lora_settings
from .servable import engine_fits, planned_problem, saved_problem
from .summary import loss_points, plot_loss, summary_lines

log = logging.getLogger("orpheus-finetune")

REPORT = "finetune_report.json"
LOSS_CURVE = "loss_curve.png"
RECIPE_MINUTES = 10.0  # the talk's minimum; 30+ is better
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# A tokenizer is stateless and slow to parse (~1 s for Llama-3's): runs in one process share it.
load_tokenizer = functools.lru_cache(maxsize=4)(_load_tokenizer)


class UsageError(ValueError):
    """A bad flag or flag combination; reported like an argparse error (exit 2)."""


class NotServable(RuntimeError):
    """The trained adapter failed the engines' checks; it is not installed (exit 1)."""


class Interrupted(Exception):
    """Ctrl-C during training; the message says how to resume."""


USAGE_ERRORS = (DatasetError, InvalidVoiceNameError, UsageError, FileNotFoundError)


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    target: Path
    output: Path
    config: TrainConfig
    data: DataOptions


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run (or, with `--dry-run`, its checks and plan); returns the report."""
    started = time.monotonic()
    plan = make_plan(args)
    fits = engine_fits(args.model, args.max_lora_rank)
    problem = planned_problem(args.model, lora_settings(plan.config), fits)
    if problem:
        raise UsageError(f"--rank {args.rank}: the adapter would not be servable: {problem}")
    clips, dropped = load_trimmed(find_clips(args.data), plan.data)
    if args.dry_run:
        return dry_run(args, plan, clips, dropped, sorted(fits))
    if args.model == TINY_RANDOM or args.snac == "random":
        print(NOISE_WARNING.format(what="this fine-tune"), file=sys.stderr)
    rows, stats = encode(args, plan, clips)
    train_rows, eval_rows = split_eval(rows, args.eval_fraction, args.seed)
    result, timings = train(args, plan, train_rows, eval_rows)
    report = {
        "voice": plan.name,
        "adapter_dir": str(plan.target),
        "adapter_bytes": install_adapter(result.model, plan.target, fits),
        "servable_by": sorted(fits),
        "max_lora_rank": args.max_lora_rank,
        "rank": args.rank,
        "alpha": args.alpha,
        "device": plan.config.device,
        "dtype": plan.config.dtype,
        "steps": result.steps,
        "epochs": args.epochs,
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "data": data_report(clips, dropped + stats.dropped, train_rows, eval_rows)
        | {"snac_encoded": stats.encoded, "snac_cached": stats.cached},
        "loss": loss_points(result.log_history),
        **timings,
    }
    return finish(report, plan.output, started)


def train(
    args: argparse.Namespace,
    plan: Plan,
    train_rows: Sequence[TrainingRow],
    eval_rows: Sequence[TrainingRow],
) -> tuple[Any, dict[str, float]]:
    """Load the base model and train; Ctrl-C becomes `Interrupted` naming the checkpoint."""
    from .train import train_lora  # PEFT and the Trainer: only for a real run

    base = load_causal_lm(
        args.model, dtype=TORCH_DTYPES[plan.config.dtype], device=plan.config.device, seed=args.seed
    )
    wall, cpu = time.monotonic(), time.process_time()
    checkpoints = plan.output / "checkpoints"
    try:
        result = train_lora(base, train_rows, eval_rows, plan.config, checkpoints, args.resume)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(checkpoints)) from None
    result.model.peft_config["default"].base_model_name_or_path = args.model
    return result, {
        "train_seconds": round(time.monotonic() - wall, 2),
        "train_cpu_seconds": round(time.process_time() - cpu, 2),  # steadier on a busy host
    }


def make_plan(args: argparse.Namespace) -> Plan:
    name = validate_voice_name(args.name)
    check_sources(args.model, args.snac)
    config = train_config(args)
    return Plan(
        name=name,
        target=_target_dir(args.voices_dir, name, args.overwrite),
        output=args.output_dir or default_output_dir(name),
        config=config,
        data=DataOptions(
            silence_threshold_db=args.silence_threshold_db,
            max_clip_s=args.max_clip_seconds,
            min_pause_ms=args.min_pause_ms,
            tolerance=args.split_tolerance,
        ),
    )


def check_sources(model: str, snac: str) -> None:
    """Local weights only (never a hub download): say so before any work starts."""
    if model != TINY_RANDOM and not (Path(model) / "config.json").is_file():
        raise UsageError(
            f"--model {model}: expected 'tiny-random' or a local checkpoint directory "
            "with config.json"
        )
    files = ("config.json", "pytorch_model.bin")
    if snac != "random" and not all((Path(snac) / f).is_file() for f in files):
        raise UsageError(
            f"--snac {snac}: expected 'random' or a local SNAC 24 kHz directory with "
            "config.json and pytorch_model.bin"
        )


def train_config(args: argparse.Namespace) -> TrainConfig:
    device, dtype = placement(args.device, args.dtype)
    checkpointing = args.gradient_checkpointing
    return TrainConfig(
        rank=args.rank,
        alpha=args.alpha,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup=args.warmup,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        epochs=args.epochs,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        gradient_checkpointing=device == "cuda" if checkpointing is None else checkpointing,
        device=device,
        dtype=dtype,
        seed=args.seed,
    )


def placement(device: str, dtype: str | None) -> tuple[str, str]:
    """`--device` and `--dtype` resolved: cuda when asked for or visible, bf16 on cuda."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UsageError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU")
    resolved = "cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu"
    dtype = dtype or ("bf16" if resolved == "cuda" else "fp32")
    if dtype == "fp16" and resolved == "cpu":
        raise UsageError("--dtype fp16 needs a CUDA GPU (on cpu use bf16 or fp32)")
    if dtype == "bf16" and resolved == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--dtype bf16: this GPU has no bf16 support; use --dtype fp16")
    return resolved, dtype


def _target_dir(voices_dir: Path, name: str, overwrite: bool) -> Path:
    if not voices_dir.is_dir():
        raise UsageError(f"--voices-dir {voices_dir}: not a directory")
    target = voices_dir / name
    if target.exists() and not overwrite:
        raise UsageError(f"voice {name!r} already exists in {voices_dir}; pass --overwrite")
    return target


def encode(args: argparse.Namespace, plan: Plan, clips: Sequence[TrimmedClip]) -> tuple:
    """Training rows from the clips; SNAC loads only if some clip is not in the cache yet."""
    cache = CodeCache(plan.output / "snac-codes", codec_id(args.snac, args.seed))
    snac = None

    def snac_encode(samples: Any) -> Any:
        from ..codec.snac_model import encode_audio, load_snac

        nonlocal snac
        if snac is None:
            snac = load_snac(args.snac, device=plan.config.device, seed=args.seed)
        return encode_audio(snac, samples)

    rows, stats = encode_rows(
        clips, snac_encode, cache, load_tokenizer(args.model), plan.name, args.max_row_tokens
    )
    if not rows:
        raise DatasetError(f"no clip fits --max-row-tokens {args.max_row_tokens}")
    return rows, stats


def split_eval(
    rows: Sequence[TrainingRow], fraction: float, seed: int
) -> tuple[list[TrainingRow], list[TrainingRow]]:
    """Hold out `fraction` of the rows (at least one, never all) for the eval loss."""
    if fraction == 0 or len(rows) < 2:
        if fraction:
            log.warning("--eval-fraction %g: one clip only, no eval split", fraction)
        return list(rows), []
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    held = set(random.Random(seed).sample(range(len(rows)), n_eval))
    return (
        [r for i, r in enumerate(rows) if i not in held],
        [r for i, r in enumerate(rows) if i in held],
    )


def install_adapter(model: Any, target: Path, fits: dict) -> int:
    """Save to a hidden dir the registry ignores, check it as a node would, rename it in."""
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), save_embedding_layers=False)
    problem = saved_problem(tmp, fits)
    if problem:
        shutil.rmtree(tmp, ignore_errors=True)
        raise NotServable(f"trained adapter is not servable, not installed: {problem}")
    size = (tmp / "adapter_model.safetensors").stat().st_size
    old = target.parent / f".old-{target.name}-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return size


def data_report(
    clips: Sequence[TrimmedClip],
    dropped: Sequence[Dropped],
    train_rows: Sequence[TrainingRow],
    eval_rows: Sequence[TrainingRow],
) -> dict[str, Any]:
    """Kept clips (with the silence trimmed), dropped clips and why, the split."""
    held = {r.clip_id for r in eval_rows}
    kept_ids = {r.clip_id for r in train_rows} | held
    kept = [c for c in clips if c.clip.clip_id in kept_ids]
    return {
        "clips": [
            {
                "id": c.clip.clip_id,
                "text": c.clip.text,
                "seconds": round(len(c.samples) / SAMPLE_RATE, 2),
                "lead_trimmed_ms": round(c.lead_ms, 1),
                "tail_trimmed_ms": round(c.tail_ms, 1),
                "split": "eval" if c.clip.clip_id in held else "train",
            }
            | ({"from_s": c.span_s[0], "to_s": c.span_s[1]} if c.span_s else {})
            for c in kept
        ],
        "dropped": [{"id": d.clip_id, "reason": d.reason} for d in dropped],
        "train_clips": len(train_rows),
        "eval_clips": len(eval_rows),
        "speech_minutes": round(speech_minutes(kept), 3),
        "lead_trimmed_ms_total": round(sum(c.lead_ms for c in kept), 1),
        "tail_trimmed_ms_total": round(sum(c.tail_ms for c in kept), 1),
    }


def finish(report: dict[str, Any], output: Path, started: float) -> dict[str, Any]:
    output.mkdir(parents=True, exist_ok=True)
    report["loss_curve"] = str(
        plot_loss(report["loss"], output / LOSS_CURVE, f"LoRA voice {report['voice']!r}")
    )
    report["report"] = str(output / REPORT)
    report["total_seconds"] = round(time.monotonic() - started, 2)
    (output / REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print("\n".join(summary_lines(report)))
    return report


def dry_run(
    args: argparse.Namespace,
    plan: Plan,
    clips: Sequence[TrimmedClip],
    dropped: list[Dropped],
    engines: list[str],
) -> dict[str, Any]:
    """The plan from the data and settings alone: no model weights, no SNAC, no training."""
    tokenizer = load_tokenizer(args.model)
    fits = []
    for clip in clips:
        tokens = estimate_tokens(tokenizer, plan.name, clip)
        if tokens <= args.max_row_tokens:
            fits.append(clip)
        else:
            reason = f"about {tokens} tokens > --max-row-tokens {args.max_row_tokens}"
            dropped.append(Dropped(clip.clip.clip_id, reason))
    if not fits:
        raise DatasetError(f"no clip fits --max-row-tokens {args.max_row_tokens}")
    rows = [TrainingRow(c.clip.clip_id, [], 0) for c in fits]
    n_eval = len(split_eval(rows, args.eval_fraction, args.seed)[1])
    report = {
        "voice": plan.name,
        "dry_run": True,
        "would_install": str(plan.target),
        "output_dir": str(plan.output),
        "device": plan.config.device,
        "dtype": plan.config.dtype,
        "gradient_checkpointing": plan.config.gradient_checkpointing,
        "servable_by": engines,
        "clips_kept": len(fits),
        "train_clips": len(fits) - n_eval,
        "eval_clips": n_eval,
        "dropped": [{"id": d.clip_id, "reason": d.reason} for d in dropped],
        "speech_minutes": round(speech_minutes(fits), 3),
        "steps": plan.config.total_steps(len(fits) - n_eval),
        "resume_from": str(latest_checkpoint(plan.output / "checkpoints") or "") or None,
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def speech_minutes(clips: Sequence[TrimmedClip]) -> float:
    """Minutes of trimmed speech; warns below the recipe's minimum."""
    minutes = sum(len(c.samples) for c in clips) / SAMPLE_RATE / 60
    if minutes < RECIPE_MINUTES:
        log.warning(
            "%.1f min of speech: the recipe wants %.0f+ (30+ is better)", minutes, RECIPE_MINUTES
        )
    return minutes


def _interrupted(checkpoints: Path) -> str:
    last = latest_checkpoint(checkpoints)
    if last is None:
        return "interrupted before the first checkpoint; nothing to resume"
    return f"interrupted; newest checkpoint {last}: run the same command with --resume"
