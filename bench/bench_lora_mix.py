"""Multi-LoRA batching on the CPU torch engine: 8 sessions with 8 different voices vs 1 voice.

Every run is 8 concurrent generations on one `TorchEngine` (continuous batching, one
forward pass per step over all of them) with a `LoraAdapterCache` holding every adapter
(rank 16, all attention + MLP projections, like `orpheus-finetune` makes). Modes:
`base` (no LoRA), `single` (8 sessions, one LoRA voice), `mixed` (8 sessions, 8 LoRA voices).
Rounds are interleaved and the median tokens/s is kept; results are ratios inside one run.
The model is `tiny-random`, where LoRA's per-adapter dispatch is a larger share of a step
than on the 3B model, so the mixed/single ratio here is a pessimistic bound.
Writes bench/results/lora_mix.json. Run: python -m bench.bench_lora_mix [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model

from inference_server.engine.base import GenerationRequest, SamplingConfig
from inference_server.engine.lora_cache import LoraAdapterCache
from inference_server.engine.model_loading import load_causal_lm, load_tokenizer
from inference_server.engine.torch_engine import TorchEngine
from inference_server.finetune.train import TrainConfig, lora_config
from inference_server.orpheus.prompt import build_prompt

RESULTS = Path(__file__).parent / "results" / "lora_mix.json"
SESSIONS = 8
TEXT = "Hey, it is good to hear from you again."


def make_adapters(root: Path, count: int, rank: int) -> dict[str, Path]:
    """`count` random voice LoRAs (non-zero lora_B so they really run)."""
    paths = {}
    for i in range(count):
        model = get_peft_model(load_causal_lm("tiny-random"), lora_config(TrainConfig(rank=rank)))
        gen = torch.Generator().manual_seed(i + 1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
        paths[f"voice{i}"] = root / f"voice{i}"
        model.save_pretrained(str(paths[f"voice{i}"]), save_embedding_layers=False)
    return paths


async def run_round(engine: TorchEngine, voices: list[str | None], prompt: list[int], tokens: int):
    """Generate `tokens` tokens for each session concurrently; return (tokens, seconds)."""

    async def one(i: int, voice: str | None) -> int:
        request = GenerationRequest(
            request_id=f"r{time.monotonic_ns()}-{i}",
            prompt_ids=prompt,
            sampling=SamplingConfig(seed=i, max_tokens=tokens),
            max_new_tokens=tokens,
            adapter=voice,
        )
        return sum([len(chunk) async for chunk in engine.generate(request)])

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(i, v) for i, v in enumerate(voices)))
    return sum(counts), time.perf_counter() - start


async def bench(rounds: int, tokens: int, rank: int) -> dict:
    tokenizer = load_tokenizer("tiny-random")
    prompt = build_prompt(tokenizer, "tara", TEXT)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_adapters(Path(tmp), SESSIONS, rank)
        cache = LoraAdapterCache(load_causal_lm("tiny-random"), SESSIONS, locate=paths.get)
        engine = TorchEngine(cache.model, max_batch=SESSIONS, lora=cache)
        await engine.start()
        names = sorted(paths)
        modes: dict[str, list[str | None]] = {
            "base": [None] * SESSIONS,
            "single": [names[0]] * SESSIONS,
            "mixed": list(names),
        }
        await run_round(engine, modes["mixed"], prompt, 14)  # warm-up: attaches every adapter
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(rounds):
            for mode, voices in modes.items():
                count, seconds = await run_round(engine, voices, prompt, tokens)
                rates[mode].append(count / seconds)
        stats = engine.stats()
        await engine.close()
    median = {mode: statistics.median(r) for mode, r in rates.items()}
    return {
        "model": "tiny-random",
        "sessions": SESSIONS,
        "lora_rank": rank,
        "tokens_per_session": tokens,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "tokens_per_s_median": median,
        "tokens_per_s_rounds": rates,
        "mixed_vs_single_ratio": median["mixed"] / median["single"],
        "single_lora_vs_base_ratio": median["single"] / median["base"],
        "mixed_vs_base_ratio": median["mixed"] / median["base"],
        "mean_batch_size": stats.batch_size_sum / max(1, stats.steps),
        "lora_cache": stats.adapters,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds, tokens = (2, 70) if args.quick else (5, 210)
    result = asyncio.run(bench(rounds, tokens, args.rank))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({k: v for k, v in result.items() if "ratio" in k or k == "tokens_per_s_median"})
    )


if __name__ == "__main__":
    main()
