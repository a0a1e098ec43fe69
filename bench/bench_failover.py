"""Failover seam: SIGKILL the node speaking an utterance mid-chunk; what does the listener hear?

Three real tiny-random nodes. Each run speaks TEXT through the plugin's own
`SynthesisSession` (primary + backup addresses, no seed: the node draws one) and SIGKILLs
the primary after the Nth audio chunk reached the client, N spread over the utterance.
The plugin resumes on the backup, which continues the chunk in flight after the frames
the listener heard (ResumeFrom.heard_frame_codes). `bench.seam` judges the seam from what
the listener got, with no second run to compare with (sampling is not reproducible across
nodes and batches): overlap (post-seam audio found in the pre-seam audio), missing (the
new node's first frame index vs the frames heard; samples short of 2048 per frame), the
gap in wall time, and whether every TextProgress mark came, once. Scenarios:
- resume: the protocol as shipped;
- busy_backup: the same while the backup also speaks another session (batch of 2 there);
- legacy_resume: a client that sends no chunk_end / heard_frame_codes (the new node
  speaks the chunk in flight again from its start).
Writes bench/results/failover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.agents import APIError
from livekit.plugins.orpheus.endpoints import ServerEndpoints
from livekit.plugins.orpheus.proto import tts_pb2 as pb
from livekit.plugins.orpheus.session import SynthesisSession

from bench.results_io import write_json
from bench.seam import FRAME_MS, AudioRecord, Seam, find_seam
from inference_server.local_server import ServerProcess

# Non-ASCII on purpose: every text position on the wire is a UTF-8 byte offset.
TEXT = (
    "The first sentence starts the story here. Über den Fluß fährt ein Boot. "
    "Then a third sentence keeps it going for a while. 東京の空は青いです。 "
    "A fifth sentence brings the tale close to its end. And the last one closes it now."
)
NODE_ARGS = ("--max-chunk-chars", "60")  # several generation chunks: kills land mid-chunk
SAMPLING = pb.SamplingOptions(max_tokens=140)  # production sampling; 20 frames per chunk


KillWhen = Callable[["Heard", str], bool]  # after each response (its kind), kill now?


def after_audio_chunks(n: int) -> KillWhen:
    return lambda heard, kind: kind == "audio" and heard.audio_chunks == n


def at_text_chunk(k: int, audio_chunk: int = 1) -> KillWhen:
    """Once the `audio_chunk`-th audio chunk of text chunk `k` (from 0) has been heard."""
    return lambda heard, kind: (
        kind == "audio" and len(heard.chunk_starts) == k + 1 and heard.audio_of_chunk == audio_chunk
    )


def after_marks(n: int) -> KillWhen:
    """Right after the `n`-th TextProgress: no audio of the next chunk heard yet."""
    return lambda heard, kind: kind == "progress" and len(heard.marks) == n


@dataclass
class Heard:
    """What the listener got from one session, and when the serving node changed."""

    seed: int = 0
    text_bytes: int = 0
    pcm: bytearray = field(default_factory=bytearray)
    audio: list[AudioRecord] = field(default_factory=list)
    victim_bytes: int = 0  # PCM bytes received from the first node
    gap_ms: float | None = None  # wall time from its last audio to the new node's first
    audio_chunks: int = 0
    chunk_starts: list[int] = field(default_factory=list)  # text chunks heard, in order
    audio_of_chunk: int = 0  # audio chunks heard of the last of them
    marks: list[int] = field(default_factory=list)
    resume: dict[str, int] = field(default_factory=dict)  # its fields; codes as a frame count
    resume_codes: list[int] = field(default_factory=list)  # ResumeFrom.heard_frame_codes
    nodes: list[str] = field(default_factory=list)

    @property
    def text_lost(self) -> bool:
        """Every TextProgress mark once, in order, up to the end of the text: else lost."""
        marks = self.marks
        ordered = all(a < b for a, b in itertools.pairwise(marks))
        return not (ordered and marks and marks[-1] == self.text_bytes)

    def seam(self) -> Seam:
        chunk_end = self.resume.get("chunk_end", 0)
        return find_seam(
            bytes(self.pcm), self.victim_bytes, self.audio, self.resume_codes, chunk_end
        )


def record(node: int, audio: pb.AudioChunk) -> AudioRecord:
    return AudioRecord(
        node, audio.chunk_start, audio.chunk_end, audio.first_frame,
        tuple(audio.frame_codes), len(audio.pcm) // 2,
    )  # fmt: skip


async def speak(
    addresses: Sequence[str],
    session_id: str,
    *,
    text: str = TEXT,
    max_tokens: int = SAMPLING.max_tokens,
    seed: int | None = None,
    kill_when: KillWhen | None = None,
    victim: ServerProcess | None = None,
    legacy: bool = False,
) -> Heard:
    """One utterance; SIGKILL `victim` (once) as soon as `kill_when` says so."""
    heard = Heard(text_bytes=len(text.encode()))

    def start(resume: pb.ResumeFrom | None) -> pb.SynthesizeRequest:
        sampling = pb.SamplingOptions(max_tokens=max_tokens, seed=seed)
        request = pb.SynthesizeRequest(
            start=pb.SessionStart(session_id=session_id, voice="tara", sampling=sampling)
        )
        if resume is not None:
            request.start.resume.CopyFrom(resume)
            if legacy:  # what a client of the old protocol sent
                request.start.resume.ClearField("chunk_end")
                request.start.resume.ClearField("heard_frame_codes")
            resume = request.start.resume
            heard.resume_codes = list(resume.heard_frame_codes)
            heard.resume = {f.name: v for f, v in resume.ListFields() if f.name[0] != "h"}
            heard.resume["heard_frames"] = len(heard.resume_codes) // 7
        return request

    endpoints = ServerEndpoints(
        ",".join(addresses), api_key=None, use_tls=False, root_certificates=None, channel_options=()
    )
    session = SynthesisSession(
        endpoints=endpoints, session_id=session_id, start_request=start, connect_timeout=30
    )
    last_audio = 0.0
    try:
        heard.seed = (await session.open()).seed
        session.send_text(text, "utt")
        session.send_flush("utt")
        session.send_end_input()
        async for response in session.responses():
            node = session.started.node_id if session.started else ""
            if not heard.nodes or heard.nodes[-1] != node:
                heard.nodes.append(node)
            kind = response.WhichOneof("kind")
            if kind == "progress":
                heard.marks.append(response.progress.chars_done)
            elif kind == "audio":
                now = time.perf_counter()
                if len(heard.nodes) == 2 and heard.gap_ms is None:
                    heard.gap_ms = 1000.0 * (now - last_audio)
                last_audio = now
                if not heard.chunk_starts or heard.chunk_starts[-1] != response.audio.chunk_start:
                    heard.chunk_starts.append(response.audio.chunk_start)
                    heard.audio_of_chunk = 0
                heard.audio_of_chunk += 1
                heard.pcm += response.audio.pcm
                heard.audio.append(record(len(heard.nodes) - 1, response.audio))
                heard.audio_chunks += 1
                if len(heard.nodes) == 1:
                    heard.victim_bytes = len(heard.pcm)
            if victim is not None and victim.alive() and kill_when and kill_when(heard, kind):
                victim.kill()  # SIGKILL, with whatever audio of the chunk in flight delivered
    finally:
        await session.aclose()
        await endpoints.aclose()
    return heard


@dataclass
class KillResult:
    kill: str  # when the node was killed
    heard: Heard
    seam: Seam

    @property
    def exact(self) -> bool:
        """Nothing repeated, nothing missing, no text lost."""
        seam = self.seam
        clean = not (seam.repeated_samples or seam.frame_offset or seam.short_samples)
        return clean and not self.heard.text_lost

    def as_dict(self) -> dict[str, Any]:
        return {
            "kill": self.kill,
            "resume": self.heard.resume,
            "nodes": self.heard.nodes,
            "gap_ms": None if self.heard.gap_ms is None else round(self.heard.gap_ms, 1),
            "text_lost": self.heard.text_lost,
            **{k: round(v, 6) for k, v in self.seam.as_dict().items()},
        }


class Fleet:
    """Three nodes; a killed one restarts in the background and serves again later."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [ServerProcess(workdir / f"n{i}.log", NODE_ARGS) for i in range(3)]

    def start(self) -> Fleet:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()
        return self

    def ready(self, node: ServerProcess) -> ServerProcess:
        if not node.alive():
            node.start(wait=False)
        node.wait_ready()
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


async def kill_once(
    fleet: Fleet,
    run: int,
    kill_when: KillWhen,
    label: str,
    *,
    legacy: bool = False,
    busy: bool = False,
) -> KillResult:
    """Run `run`: primary and backup rotate over the fleet (a killed node restarts meanwhile)."""
    primary, backup = (fleet.nodes[(run + i) % 3] for i in range(2))
    for node in (primary, backup):
        fleet.ready(node)
    background = None
    if busy:  # the backup batches the resumed chunk with another session's rows
        background = asyncio.create_task(speak([backup.address], f"bg-{run}", seed=run))
    heard = await speak(
        [primary.address, backup.address],
        f"kill-{run}",
        kill_when=kill_when,
        victim=primary,
        legacy=legacy,
    )
    primary.start(wait=False)  # back for a later run
    if background is not None:
        await background
    return KillResult(label, heard, heard.seam())


def kill_points(audio_chunks: int, kills: int) -> list[int]:
    """`kills` values of N spread over an utterance of `audio_chunks` audio messages."""
    # decode windows (so audio messages per utterance) vary with load: stay clear of the end
    last = max(round(0.8 * audio_chunks), 1)
    return [1 + round(i * (last - 1) / max(kills - 1, 1)) for i in range(kills)]


def summary(results: Sequence[KillResult]) -> dict[str, Any]:
    def spread(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {
            "min": round(min(values), 1),
            "median": round(statistics.median(values), 1),
            "max": round(max(values), 1),
        }

    if not results:
        return {"kills": 0}
    return {
        "kills": len(results),
        "overlap_ms": spread([r.seam.overlap_ms for r in results]),
        "missing_ms": spread([r.seam.missing_ms for r in results]),
        # only where the new node had audio left to send (not when the chunk was heard whole)
        "gap_ms": spread([r.heard.gap_ms for r in results if r.heard.gap_ms is not None]),
        "text_lost": sum(r.heard.text_lost for r in results),
        "exact": sum(r.exact for r in results),
        "within_one_frame": sum(
            r.seam.overlap_ms <= FRAME_MS and not r.seam.missing_ms and not r.heard.text_lost
            for r in results
        ),
        "frame_offsets": sorted({r.seam.frame_offset for r in results}),
        "max_repeat_score": round(max(r.seam.peak_score for r in results), 3),
        "kills_mid_chunk": sum(r.seam.heard_frames > 0 for r in results),
        "ledger_exact": sum(r.seam.ledger_exact for r in results),
        "runs": [r.as_dict() for r in results],
    }


async def scenario(
    fleet: Fleet, first_run: int, points: Sequence[int], **kw: bool
) -> list[KillResult]:
    results = []
    for i, n in enumerate(points):
        try:
            result = await kill_once(
                fleet, first_run + i, after_audio_chunks(n), f"audio {n}", **kw
            )
        except APIError as exc:  # e.g. the backup refused the session: overloaded (2 CPU cores)
            # (counted in runs_not_counted, with runs the utterance ended before the kill)
            print(f"  audio {n}: resume failed: {exc}", flush=True)
            continue
        print(f"  {result.as_dict()}", flush=True)
        if len(result.heard.nodes) < 2:  # this time the utterance had fewer audio chunks
            print(f"  audio {n}: the utterance ended before it: no kill", flush=True)
            continue
        results.append(result)
    return results


async def bench(kills: int, side_kills: int, workdir: Path) -> dict[str, Any]:
    fleet = Fleet(workdir).start()
    try:
        whole = await speak([fleet.nodes[0].address], "count")
        points = kill_points(whole.audio_chunks, kills)
        side = kill_points(whole.audio_chunks, side_kills)
        out: dict[str, Any] = {"audio_chunks_per_utterance": whole.audio_chunks}
        out["audio_s_per_utterance"] = round(len(whole.pcm) / 2 / 24000, 2)
        for name, first, pts, kw in (
            ("resume", 0, points, {}),
            ("busy_backup", 100, side, {"busy": True}),
            ("legacy_resume", 200, side, {"legacy": True}),
        ):
            print(f"== {name}", flush=True)
            results = await scenario(fleet, first, pts, **kw)
            out[name] = summary(results) | {"runs_not_counted": len(pts) - len(results)}
        return out
    finally:
        fleet.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--side-kills", type=int, default=4, help="busy_backup, legacy_resume")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    kills, side = (10, 3) if args.quick else (args.kills, args.side_kills)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(bench(kills, side, Path(tmp)))
    result["config"] = {"text_bytes": len(TEXT.encode()), "node_args": list(NODE_ARGS)}
    path = write_json("failover", result, args.out)
    for name in ("resume", "busy_backup", "legacy_resume"):
        s = result[name]
        if not s["kills"]:
            continue
        print(
            f"{name}: {s['kills']} kills, overlap ms {s['overlap_ms']}, "
            f"missing ms {s['missing_ms']}, gap ms {s['gap_ms']}, text lost {s['text_lost']}, "
            f"exact {s['exact']}/{s['kills']}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
