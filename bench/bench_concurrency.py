"""TTFA and streaming viability vs concurrency, ours vs the naive reference path, one run.

Both servers run tiny-random + random SNAC on this machine, one after the other for each
concurrency level, driven by the same client (bench/load.py). Ratios inside one run are
the figures to read: absolute times on shared CPUs are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.load import ADMIT_ALL, run_load
from bench.results_io import RESULTS, write_json
from inference_server.local_server import ROOT, ServerProcess, free_port, wait_healthy


class NaiveServer:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "bench.naive_server", "--port", str(self.port)]
        self._proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_healthy(self.address, 180, self._proc)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(15)


def measure(address: str, level: int, args: argparse.Namespace) -> dict[str, float]:
    # At least `min_samples` utterances per level, so a low level's p50 is not one of two.
    utterances = max(args.utterances, math.ceil(args.min_samples / level))
    result = asyncio.run(
        run_load(address, level, utterances=utterances, max_tokens=args.max_tokens)
    )
    return result.summary()


def plot(rows: list[dict], naive: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for data, label in ((rows, "ours"), (naive, "naive reference")):
        xs = [r["concurrency"] for r in data]
        ax1.plot(xs, [r["ttfa_p50_ms"] for r in data], "o-", label=f"{label} p50")
        ax1.plot(xs, [r["ttfa_p99_ms"] for r in data], "x--", label=f"{label} p99")
        ax2.plot(xs, [r["audio_s_per_wall_s"] for r in data], "o-", label=label)
    ax1.set(
        xlabel="concurrent sessions", ylabel="TTFA (ms)", xscale="log", title="Time to first audio"
    )
    ax2.set(
        xlabel="concurrent sessions", ylabel="audio s / wall s", xscale="log", title="Throughput"
    )
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--naive-levels", default="1,8")
    parser.add_argument("--utterances", type=int, default=2)
    parser.add_argument(
        "--min-samples", type=int, default=16, help="utterances per level, at least"
    )
    parser.add_argument("--max-tokens", type=int, default=140)
    parser.add_argument("--quick", action="store_true", help="levels 1,8 only, 1 utterance")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.naive_levels, args.utterances, args.min_samples = "1,8", "1,8", 1, 8
    levels = [int(x) for x in args.levels.split(",")]
    naive_levels = [int(x) for x in args.naive_levels.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    ours = ServerProcess(logs / "ours.log", extra_args=ADMIT_ALL).start()
    naive = NaiveServer(logs / "naive.log")
    rows, naive_rows = [], []
    try:
        for level in sorted(set(levels) | set(naive_levels)):
            if level in levels:
                rows.append(measure(ours.address, level, args))
                print("ours ", rows[-1], flush=True)
            if level in naive_levels:
                naive_rows.append(measure(naive.address, level, args))
                print("naive", naive_rows[-1], flush=True)
    finally:
        ours.stop()
        naive.stop()
    ratios = _ratios(rows, naive_rows)
    print("ratios", ratios)
    write_json("concurrency", {"ours": rows, "naive": naive_rows, "ratios": ratios})
    plot(rows, naive_rows, RESULTS / "concurrency.png")
    return 0


def _ratios(rows: list[dict], naive_rows: list[dict]) -> dict[str, float]:
    ours = {r["concurrency"]: r for r in rows}
    naive = {r["concurrency"]: r for r in naive_rows}
    out: dict[str, float] = {}
    if 1 in ours and 8 in ours:
        out["ours_ttfa_p50_8_over_1"] = ours[8]["ttfa_p50_ms"] / ours[1]["ttfa_p50_ms"]
    for level in sorted(set(ours) & set(naive)):
        out[f"throughput_ours_over_naive_at_{level}"] = (
            ours[level]["audio_s_per_wall_s"] / naive[level]["audio_s_per_wall_s"]
        )
        out[f"ttfa_p50_ours_over_naive_at_{level}"] = (
            ours[level]["ttfa_p50_ms"] / naive[level]["ttfa_p50_ms"]
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
