"""3 real orpheus-server nodes + a real redis-server: routing, one-hop proxy, Redis outage."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import redis
from support_calls import final_status
from support_fleet import (
    HEARTBEAT_S,
    Fleet,
    audio_of,
    collect,
    open_session,
    owner_of,
    refusal,
    start_request,
    text_requests,
)

from inference_server.fleet.nodes import NodeInfo
from inference_server.fleet.proxy import HOP_HEADER
from inference_server.proto import tts_pb2 as pb

VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
OK = 'orpheus_sessions_total{code="OK"}'
HOPS = "orpheus_proxy_hops_total"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet")).start()
    yield f
    f.stop()


async def _foreign_session(fleet: Fleet, entry: int) -> tuple[str, str, str]:
    """(session id, voice, owner id) of a session that node `entry` does not own."""
    me = f"n{entry}"
    for i in range(40):
        sid, voice = f"route-{entry}-{i}", VOICES[i % len(VOICES)]
        owner = await owner_of(fleet.nodes[entry].address, sid, voice)
        if owner != me:
            return sid, voice, owner
    raise AssertionError(f"node {me} owned all 40 probe sessions: routing never forwards")


async def test_session_sent_to_non_owner_is_served_by_owner_with_same_audio(fleet: Fleet) -> None:
    entry = fleet.nodes[1]
    sid, voice, owner_id = await _foreign_session(fleet, 1)
    owner = fleet.by_id(owner_id)
    text = text_requests("Hello there. How are you today?")
    await asyncio.sleep(0.3)  # the probe's cancelled session ends on the owner
    owner_ok, hops, entry_ok = owner.metric(OK), entry.metric(HOPS), entry.metric(OK)

    fleet.pin(sid, owner)  # the probe released the record; keep the same owner
    proxied = await collect(entry.address, [start_request(sid, voice), *text])
    assert proxied[0].started.node_id == owner_id
    assert proxied[-1].WhichOneof("kind") == "segment_done"
    assert owner.metric(OK) == owner_ok + 1  # the owner served it...
    assert entry.metric(HOPS) == hops + 1  # ...through one hop from the entry node...
    assert entry.metric(OK) == entry_ok  # ...which served nothing itself

    fleet.pin(f"{sid}-direct", owner)
    direct = await collect(owner.address, [start_request(f"{sid}-direct", voice), *text])
    assert direct[0].started.node_id == owner_id
    assert len(audio_of(direct)) > 0
    # The same audio within the streaming decoder's bound: the owner picks its decode
    # windows by timing (how far ahead of playback a stream is), and each streamed decode is
    # within 1e-4 relative RMS of a full decode, so two runs are within 2e-4 of each other.
    # The proxy itself copies bytes.
    a = np.frombuffer(audio_of(proxied), np.int16).astype(np.float64)
    b = np.frombuffer(audio_of(direct), np.int16).astype(np.float64)
    assert a.shape == b.shape
    rel_rms = np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2))
    assert rel_rms <= 2e-4 and np.mean(a == b) > 0.95, rel_rms
    seqs = [r.audio.sequence for r in proxied if r.WhichOneof("kind") == "audio"]
    assert seqs == list(range(len(seqs)))


async def test_session_without_id_gets_one_assigned_by_the_routing_node(fleet: Fleet) -> None:
    reply = await collect(fleet.nodes[0].address, [start_request(""), *text_requests("Hi.")])
    started = reply[0].started
    assert started.session_id and started.node_id in {"n0", "n1", "n2"}


async def test_forged_hop_header_without_cluster_secret_is_routed_to_the_owner(
    fleet: Fleet,
) -> None:
    """A client claiming to be a peer (hop header, no cluster secret) is routed like any
    other call; the fleet started without a secret says so loudly at start."""
    entry = fleet.nodes[2]
    for i, owner in enumerate(fleet.nodes[:2]):
        sid = f"forged-hop-{i}"
        fleet.pin(sid, owner)
        reply = await collect(
            entry.address,
            [start_request(sid, VOICES[i]), *text_requests("Hi.")],
            metadata=((HOP_HEADER, "n0"),),
        )
        assert reply[0].started.node_id == fleet.node_id(owner)
    for node in fleet.nodes:
        assert re.search(r" WARNING inference_server\.server .*--cluster-secret", node.log(None))


async def test_unknown_model_is_not_found_across_the_fleet(fleet: Fleet) -> None:
    err = await refusal(fleet.nodes[0].address, start_request("m1", model="nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "not served by any node" in err.details()


async def test_redis_outage_keeps_sessions_and_routing_then_nodes_reregister(fleet: Fleet) -> None:
    entry = fleet.nodes[0]
    known = {}
    for i, voice in enumerate(VOICES[:4]):
        known[(f"outage-{i}", voice)] = await owner_of(entry.address, f"outage-{i}", voice)
    live = asyncio.create_task(
        collect(
            entry.address,
            [start_request("outage-live"), *text_requests("One. Two is here. Three again.")],
        )
    )
    await asyncio.sleep(0.5)
    fleet.redis.stop()
    try:
        # new sessions while Redis is down: still routed by the last known ring, and served
        served = set()
        for i, voice in enumerate(VOICES):
            reply = await collect(
                entry.address, [start_request(f"down-{i}", voice), *text_requests("Hi.")]
            )
            assert reply[-1].WhichOneof("kind") == "segment_done"
            served.add(reply[0].started.node_id)
        assert len(served) > 1, f"without Redis every session stayed on {served}"
        done = await live
        assert done[-1].WhichOneof("kind") == "segment_done"  # the live session finished
    finally:
        fleet.redis.start()
    t0 = time.monotonic()
    elapsed = fleet.wait_registered(timeout_s=10)
    print(f"\nall 3 nodes re-registered {time.monotonic() - t0:.2f}s after Redis came back")
    assert elapsed <= 2 * HEARTBEAT_S + 0.5
    assert all(n.alive() for n in fleet.nodes)
    client = redis.Redis(port=fleet.redis.port)
    info = NodeInfo.from_json(client.get("orpheus:node:n1"))
    client.close()
    assert info.address == fleet.nodes[1].address and info.models == ("tiny-random",)
    assert info.role == "inference" and not info.draining and info.capacity > 0


async def test_frozen_redis_never_holds_up_a_session_start(fleet: Fleet) -> None:
    """SIGSTOP on redis-server: connections open, nothing answers. Every start still gets
    SessionStarted well inside a 2 s client deadline (it used to wait 3 s: three Redis calls
    in a row, each timing out), routed by the last known ring; served both here and across."""
    entry = fleet.nodes[0]
    fleet.redis.freeze()
    try:
        served = set()
        for i, voice in enumerate(VOICES):
            call, started = await open_session(entry.address, f"frozen-{i}", voice, deadline_s=2)
            served.add(started.node_id)
            call.cancel()
        assert len(served) > 1, f"with Redis frozen every session stayed on {served}"
    finally:
        fleet.redis.thaw()
    fleet.wait_registered(timeout_s=10)


async def test_flushall_restores_the_owner_record_of_every_live_session(fleet: Fleet) -> None:
    """Redis loses every record (FLUSHALL) while 6 sessions are live, some proxied: each
    owner writes its sessions' records again, and every node registers again."""
    fleet.ensure_running()
    entry = fleet.nodes[1]
    live = {}
    try:
        for i, voice in enumerate(VOICES[:6]):
            call, started = await open_session(entry.address, f"flush-{i}", voice, text="Hi.")
            live[started.session_id] = (call, started.node_id)
        assert {owner for _, owner in live.values()} != {"n1"}, "no session was proxied"
        client = redis.Redis(port=fleet.redis.port)
        client.flushall()
        deadline = time.monotonic() + 5
        while True:
            records = {sid: client.get(f"orpheus:session:{sid}") for sid in live}
            if all(records[sid] == owner.encode() for sid, (_, owner) in live.items()):
                break
            assert time.monotonic() < deadline, f"records not restored: {records}"
            await asyncio.sleep(0.05)
        client.close()
        fleet.wait_registered(timeout_s=5)
    finally:
        for call, _ in live.values():
            call.cancel()


async def test_a_refused_request_through_a_non_owner_ends_the_call_and_frees_the_owner(
    fleet: Fleet,
) -> None:
    """The entry node refuses a segment over --max-segment-chars while forwarding it: the
    client gets the refusal at once (gRPC would swallow it inside the forwarded request
    stream, leaving the call to hang to its deadline), and the owner's session ends."""
    entry = fleet.nodes[1]
    sid, voice, owner_id = await _foreign_session(fleet, 1)
    owner = fleet.by_id(owner_id)
    fleet.pin(sid, owner)
    msgs = [
        start_request(sid, voice),
        pb.SynthesizeRequest(text=pb.TextChunk(text="word " * 3200)),  # 16,000 characters
        pb.SynthesizeRequest(text=pb.TextChunk(text="more " * 801)),  # ... and 4,005 more
    ]
    started = time.monotonic()
    end = await final_status(lambda: grpc.aio.insecure_channel(entry.address), msgs)
    assert end.code == grpc.StatusCode.INVALID_ARGUMENT, end
    assert "max_segment_chars=20000" in end.details
    assert time.monotonic() - started < 10  # refused, not left to its deadline
    deadline = time.monotonic() + 10
    while owner.metric("orpheus_live_sessions") and time.monotonic() < deadline:  # noqa: ASYNC110 (polls another process)
        await asyncio.sleep(0.05)
    assert owner.metric("orpheus_live_sessions") == 0
