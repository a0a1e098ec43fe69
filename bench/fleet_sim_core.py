"""The fleet simulation's event loop: arrivals, node steps, heartbeats and fleet changes.

Every placement goes through the product's `SessionRouter.route()` and every admission
through its `AdmissionPolicy.check()`; a refused or dead owner makes the client retry on
another node as `FleetDispatch` does (up to 3 attempts, `avoid` the ones that failed).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from bench.fleet_sim_gpu import (
    HOP_S,
    LORA_FROM_CPU_S,
    LORA_FROM_DISK_S,
    SNAC_FIRST_DECODE_S,
    gpu_spec,
    real_time_step_s,
)
from bench.fleet_sim_node import FRAME_S, INF, LoraCache, Node, Stream
from bench.fleet_sim_routing import RoutingSeam, SimClock
from bench.fleet_sim_workload import Arrivals, Mix, time_mean_context, zipf_shares, zipf_voices
from inference_server.codec.stream_decoder import DEFAULT_RIGHT_CONTEXT
from inference_server.errors import Overloaded
from inference_server.fleet.nodes import NodeInfo
from inference_server.fleet.redis_gate import DEFAULT_TIMEOUT_S
from inference_server.fleet.ring import VoiceRing, replicas_for
from inference_server.fleet.router import NoNodeAvailable
from inference_server.orpheus.tokens import FRAME_TOKENS, TOKENS_PER_SECOND
from inference_server.service.admission import AdmissionPolicy
from inference_server.session.options import DEFAULT_SESSION_OPTIONS

MODEL = "orpheus-3b"
ATTEMPTS = 3  # FleetDispatch's max_attempts
DEAD_OWNER_S = 0.05  # a crashed owner refuses the connection (its host is up)
HEARTBEAT_S, REGISTRATION_TTL_S = 1.0, 3.0  # RedisMembership's defaults
MEMBERSHIP_RTT_PER_BEAT = 3  # register pipeline, SMEMBERS, MGET per node per heartbeat
SAMPLE_S = 10.0
STEADY_RAMP_S = 60.0  # the already-playing utterances are placed over the first minute
REMAP_SAMPLE = 2000  # live sessions whose ring preference is compared per change

CLIENT_RETRIES, CLIENT_RETRY_S = 3, 2.0  # LiveKit APIConnectOptions defaults

VIABLE, UNDERRUN, REJECTED = range(3)
ARRIVE, STEP, BEAT, SAMPLE, JOIN, FAIL, REDIS_DOWN, REDIS_UP, RETRY = range(9)


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 10
    gpu: str = "L40S"
    minutes: float = 60.0
    load: float = 0.8  # offered real-time streams / fleet capacity at the daily peak
    seed: int = 0
    voices: int = 5000
    zipf_s: float = 1.1
    max_loras: int = 16  # adapters in the batch's GPU slots (vLLM max_loras)
    max_cpu_loras: int = 1000  # ~49 GB of host memory at 48.6 MB per rank-16 adapter
    first_chunk_frames: int = 1
    headroom: float = 0.1  # capacity keeps each stream this much faster than real time
    max_ahead_s: float = DEFAULT_SESSION_OPTIONS.max_audio_ahead_s
    # The plugin opens its session as the reply starts and sends text once the LLM has
    # written its first sentences; a node reads the voice's adapter as the session opens
    # (SessionFactory warms it), so a disk read that fits in this lead adds nothing to
    # TTFA. 100 ms is below any LLM's time to its first sentence. A client's retry
    # arrives with its text, so it has no lead. 0 = text with SessionStart.
    session_lead_s: float = 0.1
    events: bool = True  # joins, failures and a Redis outage
    redis_outage_s: float = 60.0
    warmup_s: float = 120.0  # arrivals before this are not counted (caches fill)
    mix: Mix = field(default_factory=Mix)

    @property
    def duration_s(self) -> float:
        return 60.0 * self.minutes


@dataclass
class Outcome:
    ttfa_s: list[float] = field(default_factory=list)
    ttfa_arrival: list[float] = field(default_factory=list)
    ttfa_cold: list[bool] = field(default_factory=list)  # its adapter came from disk
    outcomes: list[tuple[float, int]] = field(default_factory=list)  # (arrival, VIABLE..)
    viable: int = 0
    underrun: int = 0
    rejected: int = 0
    refusals: int = 0
    client_retries: int = 0
    dead_owner_retries: int = 0
    routed: int = 0
    lora: Counter[str] = field(default_factory=Counter)
    lora_waits: int = 0
    changes: list[dict] = field(default_factory=list)
    load_samples: list[tuple[float, float, float, int]] = field(default_factory=list)
    background_rtt: Counter[str] = field(default_factory=Counter)


class FleetSim:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.gpu = gpu_spec(cfg.gpu)
        self.mean_context = time_mean_context(cfg.mix, np.random.default_rng(cfg.seed + 1))
        self.capacity = self.gpu.max_streams(
            self.mean_context, real_time_step_s(cfg.headroom), cfg.max_loras
        )
        self.policy = AdmissionPolicy(capacity=max(1, self.capacity))
        self.first_window = (cfg.first_chunk_frames + DEFAULT_RIGHT_CONTEXT) * FRAME_TOKENS
        self.clock = SimClock()
        universe = [node_name(i) for i in range(cfg.nodes + (2 if cfg.events else 0))]
        self.seam = RoutingSeam(self.clock, MODEL, universe)
        self.out = Outcome()
        self.nodes: dict[str, Node] = {}
        self.dead_since: dict[str, float] = {}
        self._infos: dict[str, NodeInfo] = {}
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.shares = zipf_shares(cfg.voices, cfg.zipf_s)
        for _ in range(cfg.nodes):
            self._add_node()
        self._workload()

    # -- setup ------------------------------------------------------------------------------

    def _add_node(self) -> Node:
        node_id = node_name(len(self.nodes))
        lora = LoraCache(self.cfg.max_loras, self.cfg.max_cpu_loras)
        node = Node(node_id, self.gpu, lora, self.cfg.max_ahead_s)
        node.last = self.clock.now
        self.nodes[node_id] = node
        self._alive = [i for i, n in self.nodes.items() if n.alive]
        return node

    def _workload(self) -> None:
        cfg = self.cfg
        mean_audio = float(cfg.mix.sample(np.random.default_rng(cfg.seed + 2), 200_000)[0].mean())
        self.peak_per_s = cfg.load * cfg.nodes * self.capacity / mean_audio
        arrivals = Arrivals(self.peak_per_s)
        times = arrivals.times(self.rng, cfg.duration_s)
        seeded_audio, seeded_at = self._steady_state(float(arrivals.rate(0.0)) * mean_audio)
        times = np.concatenate([seeded_at, times])
        n = len(times)
        self.audio_s, self.kind = cfg.mix.sample(self.rng, n)
        self.audio_s[: len(seeded_audio)] = seeded_audio
        self.voice = zipf_voices(self.rng, cfg.voices, cfg.zipf_s, n)
        self.jitter = self.rng.uniform(0.0, 1.0, n)  # where in a step the request lands
        self.ingress_u = self.rng.uniform(0.0, 1.0, n)
        for i, t in enumerate(times):
            self._push(float(t), ARRIVE, i)
        self._push(0.0, BEAT, None)
        self._push(SAMPLE_S, SAMPLE, None)
        if cfg.events:
            d = cfg.duration_s
            self._push(0.25 * d, JOIN, None)
            self._push(0.40 * d, FAIL, None)
            self._push(0.55 * d, REDIS_DOWN, None)
            self._push(0.55 * d + cfg.redis_outage_s, REDIS_UP, None)
            self._push(0.70 * d, FAIL, None)
            self._push(0.85 * d, JOIN, None)

    def _steady_state(self, streams: float) -> tuple[np.ndarray, np.ndarray]:
        """The utterances already playing when the simulation starts (what is left of them),
        so the hour starts at its steady load instead of ramping up for 20 minutes: lengths
        drawn in proportion to their length, a uniform share of each already spoken."""
        n = int(self.rng.poisson(streams))
        pool, _ = self.cfg.mix.sample(self.rng, 50 * n + 1)
        picked = self.rng.choice(pool, size=n, p=pool / pool.sum())
        left = np.maximum(0.5, picked * self.rng.uniform(0.0, 1.0, n))
        return left, np.sort(self.rng.uniform(0.0, STEADY_RAMP_S, n))

    def _push(self, t: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))

    # -- run --------------------------------------------------------------------------------

    def run(self) -> Outcome:
        handlers = {
            ARRIVE: self._arrive,
            STEP: self._step,
            BEAT: self._beat,
            SAMPLE: self._sample,
            JOIN: self._join,
            FAIL: self._fail,
            REDIS_DOWN: self._redis_down,
            REDIS_UP: self._redis_up,
            RETRY: self._retry,
        }
        end = self.cfg.duration_s
        while self._heap and self._heap[0][0] <= end:
            t, _, kind, payload = heapq.heappop(self._heap)
            self.clock.now = t
            handlers[kind](payload)
        self.clock.now = end
        return self.out

    def close(self) -> None:
        self.seam.close()

    # -- sessions ---------------------------------------------------------------------------

    def _new_stream(self, i: int) -> Stream:
        audio = float(self.audio_s[i])
        return Stream(
            session=i,
            voice=int(self.voice[i]),
            arrival=self.clock.now,
            total=audio * TOKENS_PER_SECOND,
            prompt=self.cfg.mix.prompt_tokens,
            chunk_tokens=int(self.cfg.mix.chunk_audio_s * TOKENS_PER_SECOND),
            first_window=self.first_window,
            first_audio_s=self.cfg.first_chunk_frames * FRAME_S,
        )

    def _arrive(self, i: object) -> None:
        assert isinstance(i, int)
        self._dispatch(self._new_stream(i), set())

    def _retry(self, s: object) -> None:
        assert isinstance(s, Stream)
        self._dispatch(s, set())

    def _counted(self, s: Stream) -> bool:
        return s.arrival >= self.cfg.warmup_s

    def _dispatch(self, s: Stream, avoid: set[str]) -> None:
        """Route, connect, be admitted: what the ingress node and the client do."""
        delay = 0.0
        alive = self._alive_ids()
        ingress = alive[int(self.ingress_u[s.session] * len(alive))]  # the client's pick
        for _ in range(ATTEMPTS):
            healthy = self.seam.healthy(ingress)
            try:
                node_id = self.seam.route(ingress, f"voice-{s.voice:05d}", f"s{s.session}", avoid)
            except NoNodeAvailable:
                break
            self.out.routed += 1
            if healthy and not self.seam.healthy(ingress):
                delay += DEFAULT_TIMEOUT_S  # the call that found Redis sick waited its timeout
            delay += HOP_S
            node = self.nodes[node_id]
            if not node.alive:
                self.out.dead_owner_retries += 1
                delay += DEAD_OWNER_S
                avoid.add(node_id)
                continue
            try:
                self.policy.check(node.clocks())
            except Overloaded:
                self.out.refusals += 1
                avoid.add(node_id)
                continue
            self._admit(node, s, delay)
            return
        if s.retries < CLIENT_RETRIES:  # LiveKit's own retry loop tries the call again
            s.retries += 1
            self.out.client_retries += 1
            self._push(self.clock.now + CLIENT_RETRY_S, RETRY, s)
        elif self._counted(s):
            self.out.rejected += 1  # its owner record is left to expire
            self.out.outcomes.append((s.arrival, REJECTED))

    def _admit(self, node: Node, s: Stream, delay: float) -> None:
        now = self.clock.now
        node.advance(now)
        source = node.lora.acquire(s.voice)
        s.start_at = now + delay  # held here until the LoRA is ready
        if source is None:
            self.out.lora_waits += self._counted(s)
            node.waiting.append(s)
        else:
            self._start(node, s, source)
        self._reschedule(node)

    def _start(self, node: Node, s: Stream, source: str) -> None:
        if self._counted(s):
            self.out.lora[source] += 1
            if source == "disk":
                self.out.lora["disk_off_home_set"] += not self._in_home_set(node, s.voice)
        s.lora_source = source
        load = {"gpu": 0.0, "cpu": LORA_FROM_CPU_S}.get(source, LORA_FROM_DISK_S)
        if source.startswith("disk") and not s.retries:  # read while the LLM writes
            hidden = min(LORA_FROM_DISK_S - LORA_FROM_CPU_S, self.cfg.session_lead_s)
            load -= hidden
            if self._counted(s) and hidden:
                self.out.lora["disk_read_before_text"] += 1
        ready = max(s.start_at, self.clock.now) + load
        next_step = self.jitter[s.session] * node.step
        s.start_at = ready + next_step + self.gpu.prefill_s(s.prompt)
        node.streams.append(s)

    def _in_home_set(self, node: Node, voice: int) -> bool:
        """Whether `node` is in the voice's home set sized for its true share (else the
        session was passed on by bounded load, or retried away from a refusing node)."""
        ring = self.seam.ring(self._alive_ids())
        r = replicas_for(float(self.shares[voice]), len(ring))
        return node.node_id in ring.home_set(MODEL, f"voice-{voice:05d}", r)

    def _reschedule(self, node: Node) -> None:
        node.version += 1
        due = node.recompute(self.clock.now)
        if due < INF:
            self._push(max(due, self.clock.now + 1e-6), STEP, (node.node_id, node.version))

    def _step(self, payload: object) -> None:
        node_id, version = payload  # type: ignore[misc]
        node = self.nodes[node_id]
        if version != node.version or not node.alive:
            return
        now = self.clock.now
        for s in node.advance(now):
            if self._counted(s) and s.failed_at == -INF:
                self.out.ttfa_s.append(now - s.arrival + SNAC_FIRST_DECODE_S)
                self.out.ttfa_arrival.append(s.arrival)
                self.out.ttfa_cold.append(s.lora_source.startswith("disk"))
        for s in node.finished(now):
            node.lora.release(s.voice)
            self._finish(s, node.node_id)
        self._serve_waiting(node)
        self._reschedule(node)

    def _serve_waiting(self, node: Node) -> None:
        while node.waiting:
            source = node.lora.acquire(node.waiting[0].voice)
            if source is None:
                return
            self._start(node, node.waiting.popleft(), source)

    def _finish(self, s: Stream, owner: str) -> None:
        self.seam.release(owner, f"s{s.session}")
        if not self._counted(s):
            return
        if s.underrun:
            self.out.underrun += 1
            self.out.outcomes.append((s.arrival, UNDERRUN))
        else:
            self.out.viable += 1
            self.out.outcomes.append((s.arrival, VIABLE))

    # -- fleet ------------------------------------------------------------------------------

    def _beat(self, _: object) -> None:
        """Every node heartbeats; the router sees loads (and joins and expiries) from it."""
        self._push(self.clock.now + HEARTBEAT_S, BEAT, None)
        self.seam.tick()
        if self.seam.redis.down:
            return  # RedisMembership keeps the last known view
        registered = {}
        for node_id, node in self.nodes.items():
            if not node.alive and self.clock.now - self.dead_since[node_id] >= REGISTRATION_TTL_S:
                continue
            info = self._infos.get(node_id)
            if info is None or info.live_sessions != node.admitted:
                info = NodeInfo(
                    node_id=node_id,
                    address=f"10.{len(self._infos) % 250}.0.1:50051",
                    capacity=self.policy.capacity,
                    live_sessions=node.admitted,
                )
                self._infos[node_id] = info
            registered[node_id] = info
            if node.alive:
                self.out.background_rtt["membership"] += MEMBERSHIP_RTT_PER_BEAT
                self.out.background_rtt["keepalive"] += node.admitted > 0
        self.seam.membership.publish(registered)

    def _sample(self, _: object) -> None:
        self._push(self.clock.now + SAMPLE_S, SAMPLE, None)
        loads = [n.admitted for n in self.nodes.values() if n.alive]
        self.out.load_samples.append(
            (self.clock.now, float(np.mean(loads)), float(max(loads)), sum(loads))
        )

    def _join(self, _: object) -> None:
        before = list(self._alive_ids())
        node = self._add_node()
        self._record_change("join", node.node_id, before, moved=0)

    def _fail(self, _: object) -> None:
        """The busiest node dies: its streams' clients re-dispatch at once."""
        alive = [n for n in self.nodes.values() if n.alive]
        node = max(alive, key=lambda n: (n.admitted, n.node_id))
        before = list(self._alive_ids())
        now = self.clock.now
        node.advance(now)
        node.alive = False
        self._alive = [i for i, n in self.nodes.items() if n.alive]
        node.version += 1
        self.dead_since[node.node_id] = now
        orphans = [*node.streams, *node.waiting]
        node.streams, node.waiting = [], []
        self._record_change("fail", node.node_id, before, moved=len(orphans))
        for s in orphans:
            self._dispatch(self._failover(s), {node.node_id})

    def _failover(self, s: Stream) -> Stream:
        """The same session re-sent: what is left of it, the listener's buffer carried."""
        remaining = max(0.0, s.total - max(s.tokens, 0.0))
        again = self._new_stream(s.session)
        again.arrival, again.total = s.arrival, max(remaining, 1.0)
        if s.lead > -INF:
            again.carried_lead, again.failed_at = max(0.0, s.lead), self.clock.now
            again.underrun = s.underrun
        return again

    def _redis_down(self, _: object) -> None:
        self.seam.redis.down = True
        self.out.changes.append({"t": self.clock.now, "kind": "redis_down"})

    def _redis_up(self, _: object) -> None:
        self.seam.redis.down = False
        self.out.changes.append({"t": self.clock.now, "kind": "redis_up"})

    def _alive_ids(self) -> list[str]:
        return self._alive

    def live_sessions(self) -> list[tuple[int, int, str]]:
        """(session, voice, node) of every stream admitted now (a dead node's included until
        its clients re-dispatch)."""
        return [
            (s.session, s.voice, n.node_id)
            for n in self.nodes.values()
            for s in (*n.streams, *n.waiting)
        ]

    def _record_change(self, kind: str, node_id: str, before: list[str], moved: int) -> None:
        live = self.live_sessions()
        ring_a, ring_b = self.seam.ring(before), self.seam.ring(self._alive_ids())
        sample = live[:REMAP_SAMPLE]
        moves = ring_remap(ring_a, ring_b, sample, self.shares, len(ring_a), node_id)
        resized = ring_remap(ring_a, ring_b, sample, self.shares, None, node_id)
        self.out.changes.append(
            {
                "t": self.clock.now,
                "kind": kind,
                "node": node_id,
                "live_sessions": len(live),
                "sessions_moved": moved,
                "ring_sample": min(len(live), REMAP_SAMPLE),
                "ring_preference_changed": len(moves),
                "ring_changed_without_node": sum(node_id not in m[:2] for m in moves),
                "ring_changed_outside_its_home_sets": sum(not m[2] for m in moves),
                "with_replica_counts_resized": len(resized),
                "resized_without_node": sum(node_id not in m[:2] for m in resized),
                "resized_outside_its_home_sets": sum(not m[2] for m in resized),
            }
        )


def preferred_owner(ring: VoiceRing, session: int, voice: int, r: int) -> str:
    """The ring's first choice for a session (its home set of r by HRW), load aside."""
    return next(ring.iter_candidates(MODEL, f"voice-{voice:05d}", f"s{session}", r))


def node_name(i: int) -> str:
    return f"node-{i:04d}"


def ring_remap(
    ring_a: VoiceRing,
    ring_b: VoiceRing,
    sessions: list[tuple[int, int, str]],
    shares: np.ndarray,
    sized_for: int | None,
    node_id: str,
) -> list[tuple[str, str, bool]]:
    """(was, now, whether `node_id` was in its home set before or after) for each session
    whose preferred node the change moved. Home sets are sized for `sized_for` nodes on
    both rings (the ring's own property), or each for its own ring (None: popularity
    replication re-sizes them as the fleet changes). A node leaving a home set lets the
    next node on the walk in, which may win the session's HRW: the preference can move
    between two other nodes, but only for voices whose home set held `node_id`."""
    moves = []
    for session, voice, _ in sessions:
        share = float(shares[voice])
        r_a = replicas_for(share, sized_for or len(ring_a))
        r_b = replicas_for(share, sized_for or len(ring_b))
        a = preferred_owner(ring_a, session, voice, r_a)
        b = preferred_owner(ring_b, session, voice, r_b)
        if a != b:
            home = ring_a.home_set(MODEL, f"voice-{voice:05d}", r_a)
            home += ring_b.home_set(MODEL, f"voice-{voice:05d}", r_b)
            moves.append((a, b, node_id in home))
    return moves


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan
