"""The end of a run: the loss curve as a PNG and a few lines that say what was done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def loss_points(log_history: Sequence[Mapping[str, float]]) -> dict[str, list[list[float]]]:
    """[step, loss] pairs for training (every logged step) and eval (every epoch)."""
    train = [[h["step"], h["loss"]] for h in log_history if "loss" in h]
    evals = [[h["step"], h["eval_loss"]] for h in log_history if "eval_loss" in h]
    return {"train": train, "eval": evals}


def plot_loss(points: Mapping[str, Sequence[Sequence[float]]], file: Path, title: str) -> Path:
    """Train loss per step and eval loss per epoch, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if points["train"]:
        steps, losses = zip(*points["train"], strict=True)
        ax.plot(steps, losses, label="train loss", linewidth=1.2)
    if points["eval"]:
        steps, losses = zip(*points["eval"], strict=True)
        ax.plot(steps, losses, "o-", label="eval loss (per epoch)")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (audio tokens)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(file)
    plt.close(fig)
    return file


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """What a user reads when the run ends."""
    points = report["loss"]
    train, evals = points["train"], points["eval"]
    data = report["data"]
    lines = [
        f"voice {report['voice']!r} installed in {report['adapter_dir']}",
        f"  steps        {report['steps']} ({_epochs(report['epochs'])}; "
        f"{data['train_clips']} train + {data['eval_clips']} eval clips, "
        f"{data['speech_minutes']:.1f} min of speech; {report['device']} {report['dtype']})",
        f"  data         {len(data['clips'])} clips kept, {len(data['dropped'])} dropped "
        f"(each with its reason in the report); SNAC codes: {data['snac_encoded']} encoded, "
        f"{data['snac_cached']} cached",
    ]
    if train:
        lines.append(f"  train loss   {train[0][1]:.3f} -> {train[-1][1]:.3f} (first -> last step)")
    if evals:
        lines.append("  eval loss    " + ", ".join(f"{e[1]:.3f}" for e in evals) + " (per epoch)")
    lines += [
        f"  adapter      {report['adapter_bytes'] / 1024:.0f} KiB "
        f"(rank {report['rank']}, alpha {report['alpha']})",
        f"  servable by  {', '.join(report['servable_by'])} engine "
        f"(--max-lora-rank {report['max_lora_rank']})",
        f"  loss curve   {report['loss_curve']}",
        f"  report       {report['report']}",
        f"  time         {report['train_seconds']:.1f} s training, "
        f"{report['total_seconds']:.1f} s in all",
    ]
    return lines


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
