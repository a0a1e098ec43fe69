"""3 real nodes + redis: the owner dies mid-utterance (SIGKILL) or drains (SIGTERM).

The client is the LiveKit plugin's own `SynthesisSession` (its resume ledger is what a
voice agent runs), pointed at the owner and a backup, or at a non-owner that proxies.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from livekit.plugins.orpheus.endpoints import ServerEndpoints
from livekit.plugins.orpheus.session import SynthesisSession
from support_fleet import Fleet, collect, refusal, start_request, text_requests
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb

# Each sentence is its own generation chunk (MAX_CHUNK_CHARS=40): one TextProgress each.
TEXT = (
    "The first sentence is short. A second one follows it now. Then a third keeps it busy. "
    "A fourth sentence comes next. The fifth is nearly the end. And the sixth closes it."
)
AUDIO_S = "orpheus_audio_seconds_total"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet")).start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def baseline_marks(fleet: Fleet) -> list[int]:
    """TextProgress marks of TEXT spoken start to end by one healthy node."""
    reply = asyncio.run(
        collect(fleet.nodes[2].address, [start_request("baseline"), *text_requests(TEXT)])
    )
    return [r.progress.chars_done for r in reply if r.WhichOneof("kind") == "progress"]


@dataclass
class Received:
    """What the plugin session delivered, tagged with the node serving it at the time."""

    audio: list[tuple[float, str, int, int]] = field(default_factory=list)  # t, node, seq, bytes
    marks: list[tuple[str, int]] = field(default_factory=list)  # node, chars_done
    done: list[str] = field(default_factory=list)

    def audio_from(self, node_id: str, *, other: bool = False) -> list[tuple[float, str, int, int]]:
        return [a for a in self.audio if (a[1] != node_id) == other]


async def _speak_and_kill(base_url: str, session_id: str, victim: ServerProcess) -> Received:
    """Speak TEXT through the plugin session; SIGKILL `victim` after its first progress mark."""

    def start(resume: pb.ResumeFrom | None) -> pb.SynthesizeRequest:
        request = start_request(session_id)
        if resume is not None:
            request.start.resume.CopyFrom(resume)
        return request

    endpoints = ServerEndpoints(
        base_url, api_key=None, use_tls=False, root_certificates=None, channel_options=()
    )
    session = SynthesisSession(
        endpoints=endpoints, session_id=session_id, start_request=start, connect_timeout=10
    )
    got = Received()
    try:
        await session.open()
        session.send_text(TEXT, "utt-1")
        session.send_flush("utt-1")
        session.send_end_input()
        async for response in session.responses():
            node = session.started.node_id
            kind = response.WhichOneof("kind")
            if kind == "audio":
                a = response.audio
                got.audio.append((time.monotonic(), node, a.sequence, len(a.pcm)))
            elif kind == "progress":
                got.marks.append((node, response.progress.chars_done))
                if victim.alive():
                    victim.kill()
            elif kind == "segment_done":
                got.done.append(response.segment_done.segment_id)
    finally:
        await session.aclose()
        await endpoints.aclose()
    return got


def _check_resumed(
    got: Received, victim_id: str, baseline: list[int], survivors_audio_s: float
) -> float:
    """No text lost, no delivered chunk repeated; returns the gap (s) at the failover."""
    before, after = got.audio_from(victim_id), got.audio_from(victim_id, other=True)
    assert before and after, "the utterance must straddle the kill"
    seqs = [a[2] for a in got.audio]
    assert seqs == list(range(len(seqs)))  # strictly increasing, no duplicate, no hole
    assert got.audio[: len(before)] == before  # the victim's audio all came first
    marks = [m for _, m in got.marks]
    assert marks == baseline  # every mark once: before the kill, then the rest elsewhere
    assert any(n != victim_id for n, _ in got.marks)
    assert got.done == ["utt-1"]
    # the new node synthesized exactly what the client received from it: nothing re-sent
    after_s = sum(a[3] for a in after) / 2 / 24000
    assert survivors_audio_s == pytest.approx(after_s, abs=0.01)
    return after[0][0] - before[-1][0]


def _audio_seconds(nodes: list[ServerProcess]) -> float:
    return sum(n.metric(AUDIO_S) for n in nodes if n.alive())


async def test_owner_killed_with_client_connected_directly(
    fleet: Fleet, baseline_marks: list[int]
) -> None:
    fleet.ensure_running()
    owner, backup = fleet.nodes[0], fleet.nodes[1]
    survivors = fleet.nodes[1:]
    fleet.pin("kill-direct", owner)
    audio_before = _audio_seconds(survivors)
    got = await _speak_and_kill(f"{owner.address},{backup.address}", "kill-direct", owner)
    assert got.audio[0][1] == "n0"  # the client spoke to the owner directly
    gap = _check_resumed(got, "n0", baseline_marks, _audio_seconds(survivors) - audio_before)
    print(f"\nfailover gap, direct client: {gap * 1000:.0f} ms (resumed on {got.audio[-1][1]})")


async def test_owner_killed_while_another_node_proxies(
    fleet: Fleet, baseline_marks: list[int]
) -> None:
    fleet.ensure_running()
    owner, entry = fleet.nodes[0], fleet.nodes[1]
    survivors = fleet.nodes[1:]
    fleet.pin("kill-proxied", owner)
    hops = entry.metric("orpheus_proxy_hops_total")
    audio_before = _audio_seconds(survivors)
    got = await _speak_and_kill(entry.address, "kill-proxied", owner)
    assert got.audio[0][1] == "n0"  # served by the owner through the entry node
    assert entry.metric("orpheus_proxy_hops_total") >= hops + 1
    gap = _check_resumed(got, "n0", baseline_marks, _audio_seconds(survivors) - audio_before)
    print(f"\nfailover gap, proxied client: {gap * 1000:.0f} ms (resumed on {got.audio[-1][1]})")


async def test_sigterm_drains_live_sessions_and_sends_new_ones_elsewhere(
    fleet: Fleet, baseline_marks: list[int]
) -> None:
    fleet.ensure_running()
    node, entry = fleet.nodes[0], fleet.nodes[1]
    fleet.pin("drain-live", node)
    fleet.pin("drain-live-2", node)
    live = [
        asyncio.create_task(
            collect(node.address, [start_request(f"drain-live{s}"), *text_requests(TEXT)])
        )
        for s in ("", "-2")
    ]
    while node.metric("orpheus_live_sessions") < 2:  # noqa: ASYNC110 (polls another process)
        await asyncio.sleep(0.05)
    node.signal(signal.SIGTERM)
    await asyncio.sleep(0.3)  # the draining flag is pushed to Redis at once

    # a new session sent straight to the draining node is told to go elsewhere
    err = await refusal(node.address, start_request("drain-new"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "draining" in err.details()
    # new sessions entering elsewhere never land on it, even one whose record points at it
    fleet.pin("drain-sticky", node)
    for sid, voice in [
        ("drain-sticky", "tara"),
        *[(f"drain-{v}", v) for v in ("leah", "leo", "mia")],
    ]:
        reply = await collect(entry.address, [start_request(sid, voice), *text_requests("Hi.")])
        assert reply[0].started.node_id != "n0"
        assert reply[-1].WhichOneof("kind") == "segment_done"

    for task in live:  # zero sessions cut: both finished every sentence
        reply = await task
        assert reply[0].started.node_id == "n0"
        marks = [r.progress.chars_done for r in reply if r.WhichOneof("kind") == "progress"]
        assert marks == baseline_marks and reply[-1].WhichOneof("kind") == "segment_done"
    assert node.proc is not None and node.proc.wait(60) == 0
    assert "n0" not in fleet.registered()  # deregistered, not left to expire
