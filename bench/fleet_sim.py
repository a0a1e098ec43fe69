"""Fleet simulator: the product's ring, router, popularity replication and admission over
modelled GPU nodes, for 10, 100 and 1,000 nodes (`python -m bench.fleet_sim`).

Each fleet runs one simulated hour around the daily peak at 80% of its modelled capacity,
with a node joining, two node failures and a Redis outage. Writes
bench/results/fleet_sim.json and fleet_sim_*.png. `--quick`: a few simulated minutes.
Figures are a model's (bench/fleet_sim_gpu.py states its assumptions), not measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.fleet_sim_core import VIABLE, FleetSim, SimConfig, percentile
from bench.fleet_sim_gpu import real_time_step_s
from bench.results_io import RESULTS, write_json

GPU_PRICE_PER_HOUR = {"L40S": 0.80, "H100-SXM": 2.50}  # assumed on-demand $/GPU-hour
TALK_STREAMS_PER_L40S = 10
H100_MAX_LORAS = 128  # an H100 batch holds ~85 streams: give each its own adapter slot
CHANGE_SHADOW_S = 120.0  # how long after a fleet change calls count as "during the change"


def simulate(cfg: SimConfig) -> dict[str, Any]:
    """Run one fleet; its summary (and the series the plots need)."""
    started = time.perf_counter()
    sim = FleetSim(cfg)
    sim.run()
    summary = summarise(sim)
    sim.close()
    summary["runtime_s"] = round(time.perf_counter() - started, 1)
    return summary


def summarise(sim: FleetSim) -> dict[str, Any]:
    cfg, out = sim.cfg, sim.out
    done = out.viable + out.underrun + out.rejected
    lora_total = sum(out.lora[k] for k in ("gpu", "cpu", "disk", "disk_again")) or 1
    samples = np.array([s[:3] for s in out.load_samples]) if out.load_samples else np.zeros((1, 3))
    ratio = samples[:, 2] / np.maximum(samples[:, 1], 1e-9)
    sessions = len(sim.audio_s)
    ops = sim.seam.redis.ops
    route_ops = sum(v for k, v in ops.items() if k != "failed")
    background = sum(out.background_rtt.values())
    alive_node_s = sum(
        (sim.dead_since.get(i, cfg.duration_s) - n_start) for i, n_start in _node_starts(sim)
    )
    busy = sum(n.busy_stream_s for n in sim.nodes.values())
    streams_per_gpu = busy / alive_node_s if alive_node_s else 0.0
    price = GPU_PRICE_PER_HOUR.get(cfg.gpu, float("nan"))
    moved = [c for c in out.changes if c["kind"] in ("fail", "join")]
    return {
        "config": _config_dict(cfg),
        "model": {
            "gpu": cfg.gpu,
            "fixed_step_ms": 1000 * sim.gpu.fixed_s,
            "step_ms_batch_1": 1000 * sim.gpu.step_s(1, sim.mean_context, 1),
            "step_ms_at_capacity": 1000
            * sim.gpu.step_s(
                sim.capacity, sim.capacity * sim.mean_context, min(sim.capacity, cfg.max_loras)
            ),
            "max_step_ms": 1000 * real_time_step_s(cfg.headroom),
            "time_mean_context_tokens": sim.mean_context,
            "first_window_tokens": sim.first_window,
            "peak_arrivals_per_s": sim.peak_per_s,
        },
        "sessions": sessions,
        "sessions_counted": done,
        "steady": steady_state(sim),
        "ttfa_p50_ms": 1000 * percentile(out.ttfa_s, 50),
        "ttfa_p99_ms": 1000 * percentile(out.ttfa_s, 99),
        "ttfa_p99_warm_adapter_ms": 1000
        * percentile(
            [t for t, cold in zip(out.ttfa_s, out.ttfa_cold, strict=True) if not cold], 99
        ),
        "viability": out.viable / done if done else float("nan"),
        "underrun": out.underrun,
        "rejected": out.rejected,
        "admission_refusals": out.refusals,
        "client_retries": out.client_retries,
        "dead_owner_retries": out.dead_owner_retries,
        "lora_gpu_hit_rate": out.lora["gpu"] / lora_total,
        "lora_cpu_hit_rate": out.lora["cpu"] / lora_total,
        "lora_disk_loads": out.lora["disk"] + out.lora["disk_again"],
        "lora_disk_first_loads": out.lora["disk"],  # the voice's first load on that node
        "lora_disk_first_loads_off_home_set": out.lora["disk_off_home_set"],
        "lora_disk_reloads": out.lora["disk_again"],  # evicted from host memory since
        "lora_disk_reads_before_text": out.lora["disk_read_before_text"],  # session lead
        "lora_slot_waits": out.lora_waits,
        "load_mean_streams_per_node": float(samples[:, 1].mean()),
        "load_max_over_mean": float(ratio.mean()),
        "load_max_over_mean_worst": float(ratio.max()),
        "membership_changes": out.changes,
        "sessions_moved_per_change": float(np.mean([c["sessions_moved"] for c in moved]))
        if moved
        else 0.0,
        "redis_ops": dict(ops),
        "redis_route_ops_per_session": route_ops / max(sessions, 1),
        "redis_background_ops_per_session": background / max(sessions, 1),
        "redis_background_ops": dict(out.background_rtt),
        "streams_per_gpu_capacity": sim.capacity,
        "streams_per_gpu_mean": streams_per_gpu,
        "gpu_price_per_hour": price,
        "cost_per_stream_hour_at_capacity": price / sim.capacity if sim.capacity else None,
        "cost_per_stream_hour_at_load": price / streams_per_gpu if streams_per_gpu else None,
        "load_series": [list(s) for s in out.load_samples],
        "ttfa_ms_sample": sorted(1000 * np.asarray(out.ttfa_s[:: max(1, len(out.ttfa_s) // 2000)])),
    }


def steady_state(sim: FleetSim) -> dict[str, Any]:
    """TTFA and viability of the calls that arrived away from any fleet change (more than
    `CHANGE_SHADOW_S` after a join, a failure or the end of the Redis outage)."""
    out = sim.out
    shadows = []
    for change in out.changes:
        if change["kind"] == "redis_down":
            continue
        start = change["t"]
        if change["kind"] == "redis_up":
            start -= sim.cfg.redis_outage_s
        shadows.append((start, change["t"] + CHANGE_SHADOW_S))

    def calm(t: float) -> bool:
        return not any(a <= t < b for a, b in shadows)

    ttfa = [x for x, t in zip(out.ttfa_s, out.ttfa_arrival, strict=True) if calm(t)]
    codes = [code for t, code in out.outcomes if calm(t)]
    return {
        "calls": len(codes),
        "ttfa_p50_ms": 1000 * percentile(ttfa, 50),
        "ttfa_p99_ms": 1000 * percentile(ttfa, 99),
        "viability": codes.count(VIABLE) / len(codes) if codes else float("nan"),
        "excluded_windows_s": shadows,
    }


def _node_starts(sim: FleetSim) -> list[tuple[str, float]]:
    joins = {c["node"]: c["t"] for c in sim.out.changes if c["kind"] == "join"}
    return [(i, joins.get(i, 0.0)) for i in sim.nodes]


def _config_dict(cfg: SimConfig) -> dict[str, Any]:
    raw = dataclasses.asdict(cfg)
    raw["mix"] = {"kinds": [list(k) for k in cfg.mix.kinds], "prompt_tokens": cfg.mix.prompt_tokens,
                  "chunk_audio_s": cfg.mix.chunk_audio_s}  # fmt: skip
    return raw


def run_all(quick: bool, fleets: list[int], seed: int) -> dict[str, Any]:
    minutes = 6.0 if quick else 60.0
    warmup = 60.0 if quick else 180.0
    base = SimConfig(minutes=minutes, warmup_s=warmup, seed=seed)
    result: dict[str, Any] = {"quick": quick, "fleets": {}, "load_sweep": {}, "h100": {}}
    for n in fleets:
        print(f"fleet of {n} L40S nodes, {minutes:.0f} simulated minutes", flush=True)
        result["fleets"][str(n)] = simulate(dataclasses.replace(base, nodes=n))
    for load in (0.6, 0.8, 1.0, 1.2):
        print(f"10 L40S nodes at {load:.0%} of capacity", flush=True)
        cfg = dataclasses.replace(base, nodes=10, load=load, events=False)
        result["load_sweep"][f"{load:.2f}"] = _slim(simulate(cfg))
    print("10 H100 nodes at 80%", flush=True)
    h100 = dataclasses.replace(base, nodes=10, gpu="H100-SXM", max_loras=H100_MAX_LORAS)
    result["h100"] = _slim(simulate(h100))
    result["talk_streams_per_l40s"] = TALK_STREAMS_PER_L40S
    return result


def _slim(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("load_series", "ttfa_ms_sample")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 simulated minutes per fleet")
    parser.add_argument(
        "--fleets", default="", help="fleet sizes (default 10,100,1000; quick 10,100)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "fleet_sim.json")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("inference_server.fleet").setLevel(logging.ERROR)  # one line per router
    sizes = args.fleets or ("10,100" if args.quick else "10,100,1000")
    fleets = [int(n) for n in sizes.split(",") if n.strip()]
    result = run_all(args.quick, fleets, args.seed)
    path = write_json("fleet_sim", result, args.out)
    if not args.no_plot:
        from bench.fleet_sim_plots import plot_all

        plot_all(result, path.parent)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
