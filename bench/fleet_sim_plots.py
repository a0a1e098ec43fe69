"""PNG plots of bench/results/fleet_sim.json (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_all(result: dict[str, Any], out_dir: Path) -> list[Path]:
    return [
        _ttfa_cdf(result, out_dir / "fleet_sim_ttfa.png"),
        _load(result, out_dir / "fleet_sim_load.png"),
        _sweep(result, out_dir / "fleet_sim_sweep.png"),
    ]


def _ttfa_cdf(result: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, fleet in result["fleets"].items():
        values = fleet["ttfa_ms_sample"]
        if values:
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.plot(values, ys, label=f"{n} nodes (p99 {fleet['ttfa_p99_ms']:.0f} ms)")
    ax.axvline(300, color="grey", linestyle="--", label="300 ms target")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("TTFA (ms): routing + LoRA + queueing + prefill + first window")
    ax.set_ylabel("share of calls")
    ax.set_title("Fleet simulator: TTFA at 80% of modelled capacity (L40S)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _load(result: dict[str, Any], path: Path) -> Path:
    fleets = result["fleets"]
    fig, axes = plt.subplots(len(fleets), 1, figsize=(8, 2.4 * len(fleets)), squeeze=False)
    for ax, (n, fleet) in zip(axes[:, 0], fleets.items(), strict=True):
        series = fleet["load_series"]
        t = [row[0] / 60 for row in series]
        ax.plot(t, [row[1] for row in series], label="mean streams per node")
        ax.plot(t, [row[2] for row in series], label="busiest node")
        ax.axhline(fleet["streams_per_gpu_capacity"], color="grey", linestyle="--", label="cap")
        for change in fleet["membership_changes"]:
            ax.axvline(change["t"] / 60, color="red", alpha=0.3)
            ax.text(change["t"] / 60, 0.2, change["kind"], fontsize=6, rotation=90)
        ax.set_ylabel(f"{n} nodes")
        ax.legend(fontsize=6, loc="lower right")
    axes[-1, 0].set_xlabel("simulated minutes (red: fleet changes)")
    return _save(fig, path)


def _sweep(result: dict[str, Any], path: Path) -> Path:
    sweep = result["load_sweep"]
    loads = [float(k) * 100 for k in sweep]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(loads, [r["viability"] for r in sweep.values()], "o-", label="viability")
    ax1.axhline(0.99, color="grey", linestyle=":")
    ax1.set_xlabel("offered load (% of modelled capacity), 10 L40S nodes")
    ax1.set_ylabel("viability")
    ax2 = ax1.twinx()
    ax2.plot(loads, [r["ttfa_p99_ms"] for r in sweep.values()], "s--", color="C1")
    ax2.set_ylabel("TTFA p99 (ms)", color="C1")
    ax2.set_yscale("log")
    ax1.set_title("Load sweep (no fleet changes)")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
