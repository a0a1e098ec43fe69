"""orpheus-finetune on tiny-random, CPU: fp32 vs bf16 timings, the loss curves, and how
fast `--help` and `--dry-run` answer.

Each run is the real console script in a subprocess on espeak-ng speech (8 sentences,
leading silence padded, as a user's raw clips would be), 3 epochs, 1 clip held out for
eval, 2 clips per optimizer step. The first run encodes with SNAC and fills the code
cache; the others reuse it, so the training timings compare like with like. Wall times
on a shared machine move with its load: the CPU seconds (user + sys of the child) are
the steadier figure.
Writes bench/results/finetune.json and bench/results/finetune_loss.png.
Run: python -m bench.bench_finetune
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .results_io import RESULTS, write_json

SENTENCES = (
    "Hello there, how are you today?",
    "The sun is bright and the sky is clear.",
    "I like green tea.",
    "We walked down to the old harbour.",
    "See you soon.",
    "Good night, my friend.",
    "Numbers like forty two are fun.",
    "Thank you for listening.",
)
TRAINING = ["--epochs", "3", "--grad-accum", "2", "--eval-fraction", "0.125", "--seed", "0"]
TRAINING += ["--device", "cpu", "--checkpoint-every", "100", "--lr", "1e-3"]


def command() -> list[str]:
    script = Path(sys.executable).parent / "orpheus-finetune"
    return (
        [str(script)]
        if script.exists()
        else [sys.executable, "-m", "inference_server.finetune.cli"]
    )


def timed(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run the command; its wall seconds and its CPU seconds (user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*command(), *args], capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"orpheus-finetune {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done, wall, cpu


def speak(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for i, text in enumerate(SENTENCES):
        wav = directory / f"clip{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        samples, rate = sf.read(wav, dtype="float32")
        sf.write(wav, np.concatenate([np.zeros(rate // 2, dtype=np.float32), samples]), rate)
        wav.with_suffix(".txt").write_text(text)
    return directory


def train(data: Path, root: Path, dtype: str, cache_from: Path | None) -> dict[str, Any]:
    voices, work = root / f"voices-{dtype}", root / f"work-{dtype}"
    voices.mkdir()
    if cache_from is not None:
        shutil.copytree(cache_from / "snac-codes", work / "snac-codes")
    args = ["--data", str(data), "--name", "bench", "--voices-dir", str(voices)]
    _, wall, cpu = timed([*args, "--output-dir", str(work), "--dtype", dtype, *TRAINING])
    report = json.loads((work / "finetune_report.json").read_text())
    return {
        "dtype": dtype,
        "steps": report["steps"],
        "train_s": report["train_seconds"],
        "train_s_per_step": round(report["train_seconds"] / report["steps"], 3),
        "train_cpu_s": report["train_cpu_seconds"],
        "train_cpu_s_per_step": round(report["train_cpu_seconds"] / report["steps"], 3),
        "process_wall_s": round(wall, 2),
        "process_cpu_s": round(cpu, 2),
        "snac_encoded": report["data"]["snac_encoded"],
        "train_loss_first_last": [report["loss"]["train"][0][1], report["loss"]["train"][-1][1]],
        "eval_loss_per_epoch": [e[1] for e in report["loss"]["eval"]],
        "adapter_bytes": report["adapter_bytes"],
        "loss": report["loss"],
        "work": work,
    }


def answer_times(args: list[str], repeats: int) -> dict[str, float]:
    runs = [timed(args)[1:] for _ in range(repeats)]
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    return {
        "median_s": round(statistics.median(walls), 3),
        "max_s": round(max(walls), 3),
        "median_cpu_s": round(statistics.median(cpus), 3),
    }


def loss_gap(a: dict[str, Any], b: dict[str, Any]) -> float:
    pairs = zip(a["loss"]["train"], b["loss"]["train"], strict=True)
    return round(max(abs(x[1] - y[1]) for x, y in pairs), 6)


def plot(runs: list[dict[str, Any]], file: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for run, colour, width in zip(runs, ("tab:blue", "tab:orange"), (4, 1.5), strict=False):
        steps, losses = zip(*run["loss"]["train"], strict=True)
        ax.plot(steps, losses, color=colour, lw=width, label=f"train loss, {run['dtype']}")
        if run["loss"]["eval"]:
            steps, losses = zip(*run["loss"]["eval"], strict=True)
            ax.plot(
                steps, losses, "o--", color=colour, label=f"eval loss per epoch, {run['dtype']}"
            )
    ax.set(
        xlabel="optimizer step",
        ylabel="cross-entropy (audio tokens)",
        title="orpheus-finetune, tiny-random on CPU: bf16 tracks fp32 (the lines overlap)\n"
        "random weights: the curve's shape is the point, not its level",
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file)
    plt.close(fig)
    return file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "finetune.json", help="JSON path")
    parser.add_argument("--help-repeats", type=int, default=5, help="timed --help runs")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is required (make system-deps installs it)")
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        root = Path(tmp)
        data = speak(root / "speech")
        fp32 = train(data, root, "fp32", None)
        bf16 = train(data, root, "bf16", fp32["work"])
        voices = root / "voices-dry"
        voices.mkdir()
        dry = ["--data", str(data), "--name", "bench", "--voices-dir", str(voices), "--dry-run"]
        timings = {
            "help": answer_times(["--help"], args.help_repeats),
            "dry_run": answer_times([*dry, "--output-dir", str(root / "dry"), *TRAINING], 1),
        }
        png = plot([fp32, bf16], args.out.with_name("finetune_loss.png"))
    for run in (fp32, bf16):
        run.pop("work")
    payload = {
        "setup": {
            "model": "tiny-random",
            "snac": "random",
            "clips": len(SENTENCES),
            "flags": TRAINING,
            "threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
        },
        "runs": [fp32, bf16],
        "bf16_vs_fp32_train_time": round(bf16["train_s"] / fp32["train_s"], 2),
        "bf16_vs_fp32_train_cpu": round(bf16["train_cpu_s"] / fp32["train_cpu_s"], 2),
        "max_train_loss_gap_bf16_vs_fp32": max(
            abs(a[1] - b[1])
            for a, b in zip(fp32["loss"]["train"], bf16["loss"]["train"], strict=True)
        ),
        "answer_times": timings,
        "loss_curve_png": png.name,
    }
    path = write_json("finetune", payload, args.out)
    for run in (fp32, bf16):
        print(
            f"{run['dtype']}: {run['steps']} steps, {run['train_s']:.1f} s training "
            f"({run['train_s_per_step']:.2f} s/step; {run['train_cpu_s']:.1f} s CPU), "
            f"process {run['process_wall_s']:.1f} s wall "
            f"/ {run['process_cpu_s']:.1f} s CPU, loss {run['train_loss_first_last']}"
        )
    for what, t in timings.items():
        print(f"{what}: {t['median_s']} s wall, {t['median_cpu_s']} s CPU (median)")
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
