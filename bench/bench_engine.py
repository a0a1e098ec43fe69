"""Torch engine throughput: aggregate tokens/s with 1, 8 and 16 concurrent requests.

Continuous batching advances every live request in one forward pass per step, so
aggregate tokens/s should grow with concurrency until the step becomes compute-bound.
Runs are interleaved (1, 8, 16, 1, 8, 16, ...) and the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.results_io import write_json
from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.orpheus.prompt import build_prompt


async def tokens_per_second(model, tokenizer, concurrency: int, tokens: int) -> dict:
    engine = TorchEngine(model)
    await engine.start()
    sampling = SamplingConfig(max_tokens=tokens)

    async def one(i: int) -> int:
        prompt = build_prompt(tokenizer, "tara", f"Stream number {i} is speaking now.")
        request = GenerationRequest(f"r{i}", prompt, sampling, tokens)
        return sum([len(ids) async for ids in engine.generate(request)])

    started = time.perf_counter()
    counts = await asyncio.gather(*[one(i) for i in range(concurrency)])
    wall = time.perf_counter() - started
    stats = engine.stats()
    await engine.close()
    return {"tokens_per_s": sum(counts) / wall, "mean_batch": stats.batch_size_sum / stats.steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8,16")
    parser.add_argument("--tokens", type=int, default=280)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.tokens = 1, 140
    levels = [int(x) for x in args.levels.split(",")]
    model, tokenizer = load_causal_lm("tiny-random"), load_tokenizer("tiny-random")
    runs: dict[int, list[dict]] = {level: [] for level in levels}
    for _ in range(args.rounds):
        for level in levels:
            runs[level].append(asyncio.run(tokens_per_second(model, tokenizer, level, args.tokens)))
    rows = [
        {
            "concurrency": level,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs[level]),
            "mean_batch": statistics.median(r["mean_batch"] for r in runs[level]),
            "rounds": [round(r["tokens_per_s"], 1) for r in runs[level]],
        }
        for level in levels
    ]
    base = rows[0]["tokens_per_s"]
    ratios = {
        f"tokens_per_s_{r['concurrency']}_over_{levels[0]}": r["tokens_per_s"] / base for r in rows
    }
    for row in rows:
        print(f"{row['concurrency']:>3} concurrent: {row['tokens_per_s']:7.0f} tokens/s")
    print(ratios)
    write_json(
        "engine",
        {"model": "tiny-random", "tokens_per_request": args.tokens, "rows": rows, "ratios": ratios},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
