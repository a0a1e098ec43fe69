"""VoiceRing, replica sizing, bounded load and NodeInfo: pure properties."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_server.fleet.nodes import NodeInfo
from inference_server.fleet.ring import VoiceRing, bounded_cap, rendezvous_order, replicas_for

NODES = [f"node-{i:02d}" for i in range(8)]


def test_home_set_is_distinct_prefix_of_walk() -> None:
    ring = VoiceRing(NODES)
    walk = ring.walk("m", "tara")
    assert sorted(walk) == sorted(NODES)
    for r in range(1, len(NODES) + 1):
        home = ring.home_set("m", "tara", r)
        assert home == list(walk[:r])
    assert ring.home_set("m", "tara", 99) == list(walk)


def test_ring_is_deterministic_and_order_independent() -> None:
    a = VoiceRing(NODES)
    b = VoiceRing(reversed(NODES))
    for voice in ("tara", "leo", "clone-7"):
        assert a.home_set("m", voice, 3) == b.home_set("m", voice, 3)
        assert a.candidates("m", voice, "s-1", 3) == b.candidates("m", voice, "s-1", 3)


def test_model_is_part_of_the_key() -> None:
    ring = VoiceRing(NODES)
    walks = {ring.walk(f"model-{i}", "tara") for i in range(8)}
    assert len(walks) > 1


@settings(max_examples=50, deadline=None)
@given(voice=st.text(min_size=1, max_size=12), r=st.integers(1, 4), leaver=st.sampled_from(NODES))
def test_leaving_node_only_moves_its_own_homes(voice: str, r: int, leaver: str) -> None:
    before = VoiceRing(NODES).home_set("m", voice, r)
    after = VoiceRing([n for n in NODES if n != leaver]).home_set("m", voice, r)
    if leaver not in before:
        assert after == before
    else:
        assert set(before) - set(after) == {leaver}
        assert set(after) - set(before) <= {VoiceRing(NODES).walk("m", voice)[r]}


def test_excluded_node_is_replaced_by_next_clockwise() -> None:
    ring = VoiceRing(NODES)
    walk = ring.walk("m", "tara")
    assert ring.home_set("m", "tara", 2, exclude={walk[0]}) == [walk[1], walk[2]]


def test_rendezvous_order_is_stable_when_others_leave() -> None:
    full = rendezvous_order("session-1", NODES)
    top = full[0]
    assert rendezvous_order("session-1", [n for n in NODES if n != full[-1]])[0] == top


def test_sessions_spread_over_home_set() -> None:
    ring = VoiceRing(NODES)
    home = ring.home_set("m", "tara", 3)
    firsts = Counter(ring.candidates("m", "tara", f"s{i}", 3)[0] for i in range(600))
    assert set(firsts) == set(home)
    assert min(firsts.values()) > 100


def test_replicas_for_clamps() -> None:
    assert replicas_for(0.0, 16) == 1
    assert replicas_for(0.001, 16, spread=1.5) == 1
    assert replicas_for(0.2, 16, spread=1.5) == 5
    assert replicas_for(1.0, 16) == 16
    assert replicas_for(0.0, 16, r_min=2) == 2
    assert replicas_for(0.5, 0) == 0
    assert replicas_for(0.0, 1, r_min=3) == 1


@given(total=st.integers(0, 10_000), n=st.integers(1, 64))
def test_bounded_cap_always_leaves_room(total: int, n: int) -> None:
    cap = bounded_cap(total, n, 1.25)
    assert cap * n > total  # pigeonhole: the least loaded node is below the cap
    assert cap <= max(-(-(total + 1) // n), 1.25 * (total + 1) / n)


def test_place_respects_cap_and_passes_full_nodes_on() -> None:
    ring = VoiceRing(NODES)
    loads: Counter[str] = Counter()
    for i in range(800):
        node = ring.place("m", "tara", f"s{i}", 1, loads, 1.25)
        assert node is not None
        loads[node] += 1
    mean = 800 / len(NODES)
    assert max(loads.values()) <= 1.25 * mean
    home = ring.home_set("m", "tara", 1)[0]
    assert loads[home] == max(loads.values())  # the home fills first, then spills clockwise


def test_place_skips_excluded_and_returns_none_when_all_excluded() -> None:
    ring = VoiceRing(NODES)
    first = ring.place("m", "tara", "s", 3, {})
    assert first is not None
    assert ring.place("m", "tara", "s", 3, {}, exclude={first}) != first
    assert ring.place("m", "tara", "s", 3, {}, exclude=set(NODES)) is None
    assert VoiceRing([]).place("m", "tara", "s", 3, {}) is None


def test_nodeinfo_json_round_trip() -> None:
    info = NodeInfo(
        node_id="a",
        address="10.0.0.1:50051",
        models=("orpheus",),
        capacity=8,
        live_sessions=3,
        draining=True,
        voices=("tara", "clone-1"),
        role="inference",
    )
    assert NodeInfo.from_json(info.to_json()) == info
    extra = info.to_json()[:-1] + ',"added_later":1}'
    assert NodeInfo.from_json(extra) == info


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node_id": "", "address": "h:1"}, "node_id"),
        ({"node_id": "a", "address": "nohost"}, "host:port"),
        ({"node_id": "a", "address": "h:99999"}, "host:port"),
        ({"node_id": "a", "address": "h:1", "role": "boss"}, "role"),
        ({"node_id": "a", "address": "h:1", "capacity": -1}, "capacity"),
    ],
)
def test_nodeinfo_rejects_bad_fields(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeInfo(**kwargs)


def test_nodeinfo_from_json_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        NodeInfo.from_json("{")
    with pytest.raises(ValueError, match="missing a field"):
        NodeInfo.from_json('{"node_id": "a"}')


def test_serves_and_full() -> None:
    any_model = NodeInfo("a", "h:1")
    one_model = NodeInfo("b", "h:2", models=("x",), capacity=2, live_sessions=2)
    router = NodeInfo("c", "h:3", role="router")
    assert any_model.serves("x") and any_model.serves("")
    assert one_model.serves("x") and not one_model.serves("y") and one_model.serves("")
    assert not router.serves("x")
    assert one_model.full and not any_model.full
