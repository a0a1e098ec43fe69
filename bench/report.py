"""Render bench/results/*.json as the README's performance table (`python -m bench.report`).

`--write` replaces the block between the README's performance markers; without it the
table is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.results_io import RESULTS

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- performance-table -->", "<!-- /performance-table -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _rows() -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if engine := _load("engine"):
        by = {r["concurrency"]: r["tokens_per_s"] for r in engine["rows"]}
        rows.append(
            (
                "engine tokens/s, 8 vs 1 concurrent (tiny-random)",
                f"{by.get(8, 0):.0f} vs {by.get(1, 0):.0f}",
                f"{engine['ratios'].get('tokens_per_s_8_over_1', 0):.2f}x",
            )
        )
    if snac := _load("snac_decode"):
        ratio = snac["cpu_ratio_vs_reference"]
        err = snac["ours"]["one_at_a_time"]["rel_rms_error"]
        rows.append(
            (
                "SNAC decode CPU per audio s vs reference 4-frame window",
                f"error {err:.1e} vs {snac['reference']['rel_rms_error']:.1e}",
                f"{ratio['one_at_a_time']:.2f}x (frames one by one), "
                f"{ratio['bursts']:.2f}x (bursts); "
                f"{ratio.get('one_at_a_time_stock_kernels', float('nan')):.2f}x with SNAC's "
                "own layer code; "
                f"{ratio.get('one_at_a_time_windowed', float('nan')):.2f}x windowed "
                "(context decoded again per window)",
            )
        )
    if conc := _load("concurrency"):
        r = conc["ratios"]
        ours = {x["concurrency"]: x for x in conc["ours"]}
        rows.append(
            (
                "aggregate audio s / wall s at 8 sessions, ours vs naive",
                f"{ours[8]['audio_s_per_wall_s']:.2f}" if 8 in ours else "-",
                f"{r.get('throughput_ours_over_naive_at_8', 0):.2f}x",
            )
        )
        rows.append(
            (
                "TTFA p50 at 8 sessions vs 1 session (ours)",
                f"{ours[8]['ttfa_p50_ms']:.0f} vs {ours[1]['ttfa_p50_ms']:.0f} ms"
                if 8 in ours and 1 in ours
                else "-",
                f"{r.get('ours_ttfa_p50_8_over_1', 0):.2f}x",
            )
        )
        rows.append(
            (
                "TTFA p50 at 8 sessions, ours vs naive",
                "",
                f"{r.get('ttfa_p50_ours_over_naive_at_8', 0):.2f}x",
            )
        )
        rows.append(
            (
                "streaming viability (ours) at " + "/".join(str(n) for n in ours) + " sessions",
                " / ".join(f"{x['streaming_viability']:.2f}" for x in ours.values()),
                "",
            )
        )
    if longform := _load("longform"):
        by = longform["rows"]
        rows.append(
            (
                f"long-form story ({by[0]['audio_s_per_session']:.0f} s of audio each): "
                "viability at " + "/".join(_stories(x) for x in by) + " at once",
                " / ".join(f"{x['streaming_viability']:.2f}" for x in by),
                "worst gap "
                + " / ".join(f"{max(x['worst_gap_ms_per_session']):.0f}" for x in by)
                + " ms",
            )
        )
    if plugin := _load("plugin"):
        rows.append(
            (
                "plugin overhead on TTFA (p50, vs raw gRPC)",
                f"{plugin['plugin_overhead_p50_ms']:+.1f} ms",
                f"{plugin['plugin_over_raw']:.2f}x",
            )
        )
    if proxy := _load("proxy"):
        rows.append(
            (
                "proxy hop, added per audio chunk (p50)",
                f"{proxy['added_ms_per_chunk_p50']:+.2f} ms",
                f"TTFA {proxy['real_owner']['ttfa_ratio']:.3f}x",
            )
        )
    if http := _load("http_vs_grpc"):
        by = {lv["concurrency"]: lv for lv in http["levels"]}
        rows.append(
            (
                "HTTP front door (OpenAI API) vs gRPC: TTFA p50 at 1 / 8 concurrent",
                f"{by[1]['http']['ttfa_p50_ms']:.0f} / {by[8]['http']['ttfa_p50_ms']:.0f} ms",
                f"{by[1]['ttfa_p50_ratio_http_to_grpc']:.2f}x / "
                f"{by[8]['ttfa_p50_ratio_http_to_grpc']:.2f}x",
            )
        )
    if mix := _load("lora_mix"):
        rows.append(
            (
                "8 sessions, 8 LoRA voices vs 1 LoRA voice (tokens/s)",
                "",
                f"{mix['mixed_vs_single_ratio']:.2f}x",
            )
        )
    if adm := _load("admission"):
        two = adm["loads"]["2x"]
        rows.append(
            (
                "admission at 2x capacity: refusal p99 / viability 2x vs 1x",
                f"{two['refusal_ms_p99']:.1f} ms",
                f"{adm['viability_ratio_2x_over_1x']:.2f}x",
            )
        )
    if cap := _load("capacity"):
        rows += _capacity_rows(cap)
    if slow := _load("slow_reader"):
        by = {(r["mode"], r["client"]): r for r in slow["rows"]}
        new, old = by[("new", "never_reads")], by[("old", "never_reads")]
        rows.append(
            (
                "client that never reads a long utterance: ended by the node; CPU vs a reader",
                f"{new['status']} after {new['ended_after_s']:.0f} s (old: never), "
                f"{new['audio_buffered_for_client_s']:.0f} s of audio in its own buffers",
                f"{new['cpu_s'] / by[('new', 'reads')]['cpu_s']:.2f}x "
                f"(old {old['cpu_s'] / by[('old', 'reads')]['cpu_s']:.2f}x)",
            )
        )
    if ring := _load("ring"):
        ours = ring["voice_ring_bounded_load"]
        rows.append(
            (
                "ring: max/mean sessions per node; distinct voices per node vs uhashring",
                f"{ours['max_over_mean_sessions']:.3f}",
                f"{ring['distinct_voices_ratio_uhashring_over_ours']:.2f}x fewer",
            )
        )
    rows += _fleet_sim_rows()
    return rows


def _fleet_sim_rows() -> list[tuple[str, str, str]]:
    """The fleet simulator (a model of GPU nodes running the real router): bench/fleet_sim.py."""
    sim = _load("fleet_sim")
    if not sim or not sim.get("fleets"):
        return []
    fleets = sim["fleets"]
    sizes = "/".join(fleets)
    first = next(iter(fleets.values()))

    def each(fmt: str, key: str, source: str = "") -> str:
        return " / ".join(fmt.format((f[source] if source else f)[key]) for f in fleets.values())

    moved = " / ".join(
        "+".join(str(c["sessions_moved"]) for c in f["membership_changes"] if c["kind"] == "fail")
        for f in fleets.values()
    )
    price = first["gpu_price_per_hour"]
    return [
        (
            f"fleet sim (model, L40S, 80% load, {sizes} nodes, "
            f"{first['config']['minutes']:.0f} simulated min with joins, failures, "
            "a Redis outage): TTFA p50 / p99 away from changes",
            each("{:.0f}", "ttfa_p50_ms", "steady") + " ms",
            each("{:.0f}", "ttfa_p99_ms", "steady") + " ms",
        ),
        (
            f"fleet sim: viability away from changes / whole hour ({sizes} nodes)",
            each("{:.3f}", "viability", "steady"),
            each("{:.3f}", "viability"),
        ),
        (
            "fleet sim: LoRA GPU-cache hits; busiest / mean node load",
            each("{:.2f}", "lora_gpu_hit_rate"),
            each("{:.2f}", "load_max_over_mean"),
        ),
        (
            "fleet sim: sessions moved per node failure (only the failed node's); "
            "Redis round trips per call (routing) / background per call",
            moved,
            each("{:.2f}", "redis_route_ops_per_session")
            + " / "
            + each("{:.1f}", "redis_background_ops_per_session"),
        ),
        (
            f"fleet sim: real-time streams per L40S (model) and $/stream-hour at ${price:.2f}/h",
            f"{first['streams_per_gpu_capacity']} streams (talk: "
            f"~{sim.get('talk_streams_per_l40s', 10)})",
            f"${first['cost_per_stream_hour_at_capacity']:.3f} at capacity, "
            f"${first['cost_per_stream_hour_at_load']:.3f} at the simulated load",
        ),
        *_fleet_sim_h100(sim),
    ]


def _fleet_sim_h100(sim: dict[str, Any]) -> list[tuple[str, str, str]]:
    h100 = sim.get("h100")
    if not h100:
        return []
    return [
        (
            f"fleet sim: H100 (model, {h100['config']['nodes']} nodes, 80%): streams per GPU, "
            f"$/stream-hour at ${h100['gpu_price_per_hour']:.2f}/h; TTFA p99; viability",
            f"{h100['streams_per_gpu_capacity']} streams, "
            f"${h100['cost_per_stream_hour_at_capacity']:.3f}",
            f"{h100['ttfa_p99_ms']:.0f} ms; {h100['viability']:.3f}",
        )
    ]


def _capacity_rows(cap: dict) -> list[tuple[str, str, str]]:
    """The load sweep: admitting every session (what scheduling keeps real time), then as
    deployed with the --realtime-streams that sweep measured."""
    rows = []
    sweeps = [("admitting every session", cap.get("admitting_all"))]
    streams = cap.get("realtime_streams", 0)
    share = f" ({cap['realtime_fraction_of_capacity']:.2f} of capacity)" if streams else ""
    sweeps.append((f"as deployed, --realtime-streams {streams}{share}", cap["offered"]))
    for label, sweep in sweeps:
        if not sweep:
            continue
        offered = [r for r in sweep if r["fraction_of_capacity"] > 0]
        rows.append(
            (
                f"offered load at {_offered(offered)} of capacity "
                f"({cap['capacity_audio_s_per_wall_s']:.2f} audio s / wall s), {label}: "
                "viability",
                " / ".join(_viability(r) for r in offered),
                "TTFA p50 vs 1 session "
                + " / ".join(f"{r['ttfa_p50_over_one_session']:.2f}x" for r in offered),
            )
        )
    return rows


def _offered(rows: list[dict]) -> str:
    """The fractions of capacity the sessions asked for ("0.17/0.34 (1/2 sessions)"), or
    the nominal fractions where a result predates `sessions_over_capacity`."""
    if not all("sessions_over_capacity" in r for r in rows):
        return "/".join(f"{r['fraction_of_capacity']:g}" for r in rows)
    fractions = "/".join(f"{r['sessions_over_capacity']:.2f}" for r in rows)
    return f"{fractions} ({'/'.join(str(r['sessions']) for r in rows)} sessions)"


def _stories(row: dict) -> str:
    """How many stories at once: "3", or "3 (30 of 30 gap-free, 10 runs)" for repeats."""
    runs = row.get("runs", 1)
    if runs == 1:
        return str(row["concurrency"])
    told = row["utterances"]
    return f"{row['concurrency']} ({row['gap_free_stories']} of {told} gap-free, {runs} runs)"


def _viability(row: dict) -> str:
    refused = f" ({row['refused']} refused, p99 {row['refusal_p99_ms']:.0f} ms)"
    return f"{row['streaming_viability']:.2f}" + (refused if row["refused"] else "")


def _when() -> str:
    """The results' dates: one `make bench` run writes them all on one day; a benchmark
    rerun on its own since then shows as a range."""
    dates = sorted(
        data["date"]
        for path in RESULTS.glob("*.json")
        if isinstance(data := json.loads(path.read_text()), dict) and "date" in data
    )
    if not dates:
        return "?"
    if dates[0][:10] == dates[-1][:10]:
        return f"{dates[-1]}, one run"
    return f"from {dates[0]} to {dates[-1]} (benchmarks rerun on their own since)"


def render() -> str:
    engine = _load("engine") or _load("concurrency") or {}
    machine = engine.get("machine", {})
    lines = [
        BEGIN,
        f"Measured {_when()} on {machine.get('cpus', '?')} CPUs "
        f"({machine.get('processor', '?')}, {machine.get('platform', '?')}), tiny-random + random "
        "SNAC; shared machine, so read the ratios.",
        "",
        "| measurement | figure | ratio |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in _rows()),
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args(argv)
    table = render()
    if not args.write:
        print(table)
        return 0
    text = README.read_text()
    start = text.index(BEGIN)
    end = text.index(END) + len(END) if END in text else start + len(BEGIN)
    README.write_text(text[:start] + table + text[end:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
