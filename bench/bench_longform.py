"""Long-form: a story of many sentence groups per session, spoken without a gap?

Each session sends a ~500-character story at once; the server splits it into sentence
groups (chunks) and generates them one after the other, so every chunk boundary is a
chance for a gap (the next chunk's prefill and first frames must land before the
listener's buffer runs dry). Reports streaming viability and the worst gap per session
at 1, 2 and 3 concurrent stories, tiny-random + random SNAC on this CPU; the most
concurrent level runs `--repeats` times (10: "0 gaps over 10 runs" is a claim about
rare gaps, which one run cannot make).
Writes bench/results/longform.json. Run: python -m bench.bench_longform [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.load import ADMIT_ALL, LoadResult, run_load
from bench.results_io import write_json
from inference_server.local_server import ServerProcess

STORY = (
    "Once upon a time, a lighthouse keeper lived alone on a rock in the sea. Every evening "
    "he climbed the stairs and lit the lamp. The ships came home one by one, and he counted "
    "every light. One night a storm rolled in from the west, and the lamp went dark. He "
    "climbed the stairs again with a candle in his hand. The wind howled, but he did not "
    "stop. At last the flame caught, and the beam swept the water. In the morning a small "
    "boat rowed to the rock. A girl stepped out and thanked him for the light."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,3")
    parser.add_argument("--quick", action="store_true", help="levels 1,2 only, one run")
    parser.add_argument("--repeats", type=int, default=10, help="runs of the top level")
    args = parser.parse_args(argv)
    levels = [1, 2] if args.quick else [int(x) for x in args.levels.split(",")]
    repeats = 1 if args.quick else args.repeats
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        node = ServerProcess(Path(tmp) / "server.log", ADMIT_ALL).start()
        try:
            for level in levels:
                runs = repeats if level == max(levels) else 1
                summary = stories(node.address, level, runs)
                rows.append(summary)
                print(
                    f"{level} stories x {runs} runs: {summary['audio_s_per_session']:.1f} s "
                    f"of audio each, {summary['gap_free_stories']} of "
                    f"{summary['utterances']} gap-free, worst gaps "
                    f"{summary['worst_gap_ms_per_session']} ms",
                    flush=True,
                )
        finally:
            node.stop()
    path = write_json("longform", {"story_chars": len(STORY), "rows": rows})
    print(f"wrote {path}")
    return 0


def stories(address: str, level: int, runs: int) -> dict:
    """`level` stories at once, `runs` times over: one summary of every story told."""
    told = [
        asyncio.run(run_load(address, level, utterances=1, text=STORY, max_tokens=100_000))
        for _ in range(runs)
    ]
    result = LoadResult(level, sum(r.wall_s for r in told), [u for r in told for u in r.utterances])
    summary = result.summary()
    summary["runs"] = runs
    summary["gap_free_stories"] = sum(u.viable for u in result.utterances)
    summary["worst_gap_ms_per_session"] = [round(u.worst_deficit_ms, 1) for u in result.utterances]
    summary["audio_s_per_session"] = summary["audio_s"] / len(result.utterances)
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
