"""`make bench`: every CPU benchmark, one after the other, JSON (+ PNG) in bench/results/.

`--quick` runs each in its short form (minutes instead of tens of minutes). The GPU
benchmark (bench/gpu_vllm.py) needs CUDA + vLLM and is run separately (bench/GPU.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHMARKS = (
    ("bench.bench_engine", True),  # (module, accepts --quick)
    ("bench.bench_snac_decode", True),
    ("bench.bench_concurrency", True),
    ("bench.bench_longform", True),
    ("bench.bench_plugin", True),
    ("bench.bench_proxy", True),
    ("bench.bench_http", True),
    ("bench.bench_lora_mix", True),
    ("bench.bench_admission", True),
    ("bench.bench_capacity", True),
    ("bench.bench_slow_reader", True),
    ("bench.bench_ring", False),
    ("bench.fleet_sim", True),
    ("bench.bench_finetune", False),
    ("bench.bench_speech_length", False),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated module names")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    failed = []
    for module, has_quick in BENCHMARKS:
        if only and module.rsplit(".", 1)[-1] not in only and module not in only:
            continue
        cmd = [sys.executable, "-m", module, *(["--quick"] if args.quick and has_quick else [])]
        print(f"== {' '.join(cmd[2:])}", flush=True)
        started = time.perf_counter()
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(module)
        print(f"== {module}: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
