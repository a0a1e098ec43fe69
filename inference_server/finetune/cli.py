"""`orpheus-finetune`: a folder of clips -> a LoRA voice in `--voices-dir`, ready to serve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from peft import PeftModel

from ..codec.snac_model import load_snac
from ..engine.model_loading import NOISE_WARNING, TINY_RANDOM, load_causal_lm, load_tokenizer
from ..voices.names import VOICE_NAME_RULE, InvalidVoiceNameError, validate_voice_name
from .dataset import DatasetError, find_clips, load_trimmed
from .encode import encode_rows
from .train import TrainConfig, train_lora

log = logging.getLogger("orpheus-finetune")

REPORT = "finetune_report.json"


class UsageError(ValueError):
    """A bad flag combination; reported like an argparse error."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orpheus-finetune",
        description="Train a LoRA voice from WAV/FLAC clips + transcripts and install it.",
    )
    p.add_argument("--data", type=Path, required=True, help="clips + metadata.csv or clip.txt")
    p.add_argument("--name", required=True, help="voice name: " + VOICE_NAME_RULE)
    p.add_argument("--voices-dir", type=Path, required=True, help="where the server finds voices")
    p.add_argument("--model", default=TINY_RANDOM, help="tiny-random or a local checkpoint dir")
    p.add_argument("--snac", default="random", help="random or a local SNAC 24 kHz dir")
    p.add_argument(
        "--output-dir", type=Path, help="checkpoints and report (default ./finetune-NAME)"
    )
    p.add_argument(
        "--silence-threshold-db",
        type=float,
        default=-40.0,
        help="trim clip ends quieter than this, relative to the loudest 10 ms",
    )
    p.add_argument("--max-row-tokens", type=int, default=4096, help="skip longer clips")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing voice")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> dict:
    """The whole pipeline; returns the report also written to the output dir."""
    name = validate_voice_name(args.name)
    target = _target_dir(args.voices_dir, name, args.overwrite)
    output = args.output_dir or Path(f"finetune-{name}")
    config = TrainConfig(
        rank=args.rank,
        alpha=args.alpha,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    clips = load_trimmed(find_clips(args.data), args.silence_threshold_db)
    lead = sum(c.lead_ms for c in clips)
    tail = sum(c.tail_ms for c in clips)
    log.info(
        "trimmed %.0f ms leading + %.0f ms trailing silence over %d clips", lead, tail, len(clips)
    )

    if args.model == TINY_RANDOM or args.snac == "random":
        print(NOISE_WARNING.format(what="this fine-tune"), file=sys.stderr)
    rows = encode_rows(
        clips, load_snac(args.snac), load_tokenizer(args.model), name, args.max_row_tokens
    )
    if not rows:
        raise DatasetError(f"no clip fits --max-row-tokens {args.max_row_tokens}")
    model = train_lora(
        load_causal_lm(args.model, seed=args.seed),
        rows,
        config,
        output / "checkpoints",
        args.resume,
    )
    model.peft_config["default"].base_model_name_or_path = args.model
    _install_adapter(model, target)
    report = {
        "voice": name,
        "adapter_dir": str(target),
        "clips": [
            {
                "id": c.clip.clip_id,
                "lead_trimmed_ms": round(c.lead_ms, 1),
                "tail_trimmed_ms": round(c.tail_ms, 1),
                "seconds": len(c.samples) / 24000,
            }
            for c in clips
        ],
        "lead_trimmed_ms_total": round(lead, 1),
        "tail_trimmed_ms_total": round(tail, 1),
        "rows": len(rows),
        "steps": config.total_steps(len(rows)),
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / REPORT).write_text(json.dumps(report, indent=2))
    log.info("voice %r installed in %s (report: %s)", name, target, output / REPORT)
    return report


def _target_dir(voices_dir: Path, name: str, overwrite: bool) -> Path:
    if not voices_dir.is_dir():
        raise UsageError(f"--voices-dir {voices_dir}: not a directory")
    target = voices_dir / name
    if target.exists() and not overwrite:
        raise UsageError(f"voice {name!r} already exists in {voices_dir}; pass --overwrite")
    return target


def _install_adapter(model: PeftModel, target: Path) -> None:
    """Write to a hidden temp dir the registry ignores, then rename it into place."""
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), save_embedding_layers=False)
    old = target.parent / f".old-{target.name}-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except (DatasetError, InvalidVoiceNameError, UsageError, FileNotFoundError) as exc:
        parser.exit(2, f"orpheus-finetune: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
