"""`orpheus-finetune`: a folder of recordings -> a LoRA voice in `--voices-dir`, ready to serve.

Only the standard library and the settings model are imported here, so `--help` and
usage errors answer at once; torch, PEFT and transformers load in `pipeline.run`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..voices.names import VOICE_NAME_RULE

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a run ended by SIGINT

DESCRIPTION = """\
Train a LoRA voice from recordings + transcripts, check that both engines can serve it,
and install it in --voices-dir (the server lists it on its next registry scan).

Data (--data): an LJSpeech folder (metadata.csv with id|text[|normalized] and the audio),
or clip.wav/clip.flac files each beside a clip.txt. Audio longer than --max-clip-seconds
is a long recording whose text is the whole transcript: it is cut at pauses and matched
to its sentences by duration (no aligner). Leading/trailing silence is trimmed from every
clip: it is what the voice learns to start with (600 ms -> ~100 ms P50 time to first audio).

Recipe that works: 10+ minutes of clean speech from one speaker (30+ is better), rank 16,
alpha 32 on all projections, 5 epochs (the defaults).
"""
EPILOG = """\
Ctrl-C stops a run; the next run with --resume continues from the last checkpoint and
ends with the same adapter as an uninterrupted run. SNAC codes are cached in the output
directory, so runs after the first skip encoding.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orpheus-finetune",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _voice_flags(p.add_argument_group("voice and data"))
    _model_flags(p.add_argument_group("model and device"))
    _training_flags(p.add_argument_group("training"))
    _run_flags(p.add_argument_group("checkpoints and output"))
    return p


def _voice_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--data", type=Path, required=True, help="folder of recordings and transcripts (above)"
    )
    g.add_argument("--name", required=True, help="the voice's name: " + VOICE_NAME_RULE)
    g.add_argument(
        "--voices-dir",
        type=Path,
        required=True,
        help="the server's voices directory (installs NAME/ there)",
    )
    g.add_argument(
        "--silence-threshold-db",
        type=float,
        default=-40.0,
        help="audio quieter than this, relative to a clip's loudest 10 ms, is silence"
        " (default: %(default)s)",
    )
    g.add_argument(
        "--max-clip-seconds",
        type=_positive(float),
        default=20.0,
        help="longer audio is a long recording, split at pauses; no clip is kept longer"
        " (default: %(default)s)",
    )
    g.add_argument(
        "--min-pause-ms",
        type=_positive(float),
        default=300.0,
        help="in long recordings, a silence this long may end a sentence (default: %(default)s)",
    )
    g.add_argument(
        "--split-tolerance",
        type=_above_one,
        default=1.3,
        help="in long recordings, drop a clip whose speech time is off by more than this "
        "factor (+0.3 s) from what its text predicts (default: %(default)s)",
    )
    g.add_argument(
        "--max-row-tokens",
        type=_positive(int),
        default=4096,
        help="clips longer than this many tokens (prompt + 7 per SNAC frame) are dropped"
        " (default: %(default)s)",
    )
    g.add_argument(
        "--eval-fraction",
        type=_fraction,
        default=0.1,
        help="share of clips held out for the per-epoch eval loss, at least one when > 0"
        " (default: %(default)s)",
    )


def _model_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--model",
        default="tiny-random",
        help="local Orpheus checkpoint dir, or tiny-random for tests (default: %(default)s)",
    )
    g.add_argument(
        "--snac",
        default="random",
        help="local SNAC 24 kHz dir, or random for tests (default: %(default)s)",
    )
    g.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="where to train: auto picks cuda when a GPU is visible (default: %(default)s)",
    )
    g.add_argument(
        "--dtype",
        choices=("bf16", "fp16", "fp32"),
        help="weights and autocast precision; LoRA weights stay fp32"
        " (default: bf16 on cuda, fp32 on cpu)",
    )
    g.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        help="recompute activations in backward: less GPU memory, ~30%% slower"
        " (default: on for cuda)",
    )
    g.add_argument(
        "--max-lora-rank",
        type=_positive(int),
        default=_server_default("max_lora_rank"),
        help="the serving nodes' --max-lora-rank; a voice of higher rank is refused before training"
        " (default: %(default)s)",
    )


def _training_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--rank", type=_positive(int), default=16, help="LoRA rank (default: %(default)s)"
    )
    g.add_argument(
        "--alpha", type=_positive(int), default=32, help="LoRA alpha (default: %(default)s)"
    )
    g.add_argument(
        "--lr",
        type=_positive(float),
        default=2e-4,
        help="peak learning rate (default: %(default)s)",
    )
    g.add_argument(
        "--lr-schedule",
        choices=("cosine", "linear", "constant_with_warmup"),
        default="cosine",
        help="decay after warmup (default: %(default)s)",
    )
    g.add_argument(
        "--warmup",
        type=_non_negative(float),
        default=0.05,
        help="warmup steps, or a fraction of all steps when < 1 (default: %(default)s)",
    )
    g.add_argument(
        "--epochs",
        type=_positive(int),
        default=5,
        help="passes over the training clips (default: %(default)s)",
    )
    g.add_argument(
        "--batch-size",
        type=_positive(int),
        default=1,
        help="clips per forward pass (default: %(default)s)",
    )
    g.add_argument(
        "--grad-accum",
        type=_positive(int),
        default=1,
        help="forward passes per optimizer step; effective batch = batch size x this"
        " (default: %(default)s)",
    )
    g.add_argument(
        "--max-steps",
        type=_positive(int),
        help="stop after this many optimizer steps (default: all epochs)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds LoRA init, data order and eval split (default: %(default)s)",
    )


def _run_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--output-dir",
        type=Path,
        help="checkpoints, SNAC code cache, report and loss curve "
        "(default: $XDG_CACHE_HOME or ~/.cache, then orpheus-serving/finetune/NAME)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=_positive(int),
        default=50,
        help="save a checkpoint every N optimizer steps (default: %(default)s)",
    )
    g.add_argument(
        "--keep-checkpoints",
        type=_positive(int),
        default=2,
        help="checkpoints kept on disk, newest first (default: %(default)s)",
    )
    g.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --output-dir"
    )
    g.add_argument(
        "--overwrite", action="store_true", help="replace an installed voice of the same name"
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="check the data and settings, print the plan, train nothing (no weights loaded)",
    )


def _positive(kind: type) -> object:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(kind: type) -> object:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _above_one(text: str) -> float:
    value = float(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(f"must be > 1, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _server_default(field: str) -> object:
    """A default shared with `orpheus-server` (one source: the settings model)."""
    from ..config import ServerConfig

    return ServerConfig.model_fields[field].default


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    from .pipeline import USAGE_ERRORS, Interrupted, NotServable, run

    try:
        run(args)
    except USAGE_ERRORS as exc:
        parser.exit(EXIT_USAGE, f"orpheus-finetune: error: {exc}\n")
    except NotServable as exc:
        parser.exit(1, f"orpheus-finetune: error: {exc}\n")
    except Interrupted as exc:
        parser.exit(EXIT_INTERRUPTED, f"orpheus-finetune: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
