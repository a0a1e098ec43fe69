"""Assemble a node (engine, codec, voices, service) and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .codec.decode_batcher import SnacDecodeBatcher
from .codec.snac_decoder import SnacDecoder
from .codec.snac_model import load_snac
from .codec.stream_decoder import DEFAULT_RIGHT_CONTEXT
from .config import ServerConfig
from .engine.adapter_fit import node_fit
from .engine.base import Engine, SamplingConfig
from .engine.model_loading import NOISE_WARNING, TINY_RANDOM, load_causal_lm, load_tokenizer
from .fleet import NodeInfo, RedisMembership, SessionRouter, StaticMembership, StreamProxy
from .fleet.dispatch import FleetDispatch
from .fleet.membership import Membership
from .fleet.peer_cards import PeerCards
from .metrics import NodeMetrics
from .node_state import NodeState
from .orpheus.tags import tags_for_model
from .orpheus.tokens import FRAME_TOKENS
from .probes import Probes, ProbeServer
from .proto import tts_pb2, tts_pb2_grpc
from .security.node_guard import NodeGuard
from .service.reflection import enable_reflection
from .service.tts_service import NodeIdentity, TTSService
from .session.factory import SessionFactory
from .session.options import SessionOptions
from .voices.model_card import ModelCard, load_model_card
from .voices.registry import VoiceRegistry

log = logging.getLogger(__name__)

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TTS"].full_name


def build_engine(config: ServerConfig, registry: VoiceRegistry) -> tuple[Engine, object]:
    """The configured engine and its tokenizer."""
    if config.engine == "vllm":
        from .engine.vllm_engine import build_vllm_engine  # CUDA-only extra, imported lazily

        return build_vllm_engine(config, registry)
    from .engine.lora_cache import LoraAdapterCache
    from .engine.torch_engine import TorchEngine

    model = load_causal_lm(config.model, device=config.device)
    lora = LoraAdapterCache(
        model,
        config.max_loras,
        locate=lambda name: registry.resolve(name).adapter_path,
        max_rank=config.max_lora_rank,
    )
    registry.add_listener(lora.invalidate)  # a retrained voice is reloaded on next use
    # A fresh request races ahead until the decoder's first window (frames + lookahead).
    first_window_tokens = (config.first_chunk_frames + DEFAULT_RIGHT_CONTEXT) * FRAME_TOKENS
    engine = TorchEngine(
        model, max_batch=config.max_batch, lora=lora, ttfa_tokens=first_window_tokens
    )
    return engine, load_tokenizer(config.model)


# Peers restart within seconds: reconnect quickly instead of gRPC's default backoff (up to
# two minutes), during which every forward to a restarted peer would fail at once.
PEER_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", -1),
)


@dataclass
class Fleet:
    """This node's view of the fleet and the parts that route sessions through it."""

    membership: Membership
    router: SessionRouter
    proxy: StreamProxy
    dispatch: FleetDispatch
    peer_cards: PeerCards | None = None  # static peers: what each serves, asked of it

    async def start(self) -> None:
        await self.membership.start()
        await self.router.start()
        if self.peer_cards is not None:
            await self.peer_cards.start()

    async def close(self) -> None:
        if self.peer_cards is not None:
            await self.peer_cards.close()
        await self.router.close()
        await self.membership.stop()
        await self.proxy.close()


def build_fleet(
    cfg: ServerConfig,
    identity: NodeIdentity,
    metrics: NodeMetrics,
    sessions: SessionFactory | None,
    state: NodeState,
) -> Fleet | None:
    """Membership (Redis, else static peers), router and proxy; None for a single node."""
    if not cfg.redis_url and not cfg.peers:
        if cfg.role == "router":
            raise ValueError("--role router needs a fleet to route to: give --redis-url or --peers")
        return None
    if not cfg.cluster_secret:
        log.warning(
            "fleet without --cluster-secret: nodes cannot tell a peer's forwarded call from a "
            "client's, so every call is routed (hop headers are ignored); set --cluster-secret "
            "(ORPHEUS_CLUSTER_SECRET) to the same value on every node"
        )
    me = NodeInfo(
        node_id=identity.node_id,
        address=cfg.address,
        models=(identity.model_name,) if sessions is not None else (),
        capacity=cfg.capacity,
        role="router" if cfg.role == "router" else "inference",
        language=identity.language if sessions is not None else "",
        base_voices=identity.base_voices if sessions is not None else (),
    )
    membership: Membership
    if cfg.redis_url:
        membership = RedisMembership(cfg.redis_url, me)
        router = SessionRouter(me.node_id, membership, redis=membership.redis)
    else:
        membership = StaticMembership(cfg.peers, me)
        router = SessionRouter(me.node_id, membership)

    def on_load(live_sessions: int) -> None:
        voices = tuple(sorted(sessions.loaded_adapters())) if sessions is not None else ()
        membership.update_self(
            live_sessions=live_sessions, draining=state.draining, voices=voices
        )  # a change of draining is pushed at once, not next beat

    state.add_load_listener(on_load)

    proxy = StreamProxy(
        me.node_id,
        channel_options=PEER_CHANNEL_OPTIONS,
        cluster_secret=cfg.cluster_secret,
    )
    dispatch = FleetDispatch(
        membership, router, proxy, state, metrics, serves_locally=sessions is not None
    )
    cards = None
    if isinstance(membership, StaticMembership):
        cards = PeerCards(membership, proxy.channel, cluster_secret=cfg.cluster_secret)
    return Fleet(membership, router, proxy, dispatch, cards)


class InferenceNode:
    """One running node: its gRPC server and the parts behind it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = NodeMetrics()
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.service: TTSService | None = None
        self.state = NodeState()  # draining and load, shared by service, fleet and health
        self.fleet: Fleet | None = None
        self._closers: list = []
        self.probes = Probes(self.state, config.capacity)  # /healthz, /readyz
        self.probe_server: ProbeServer | None = None
        self.http = None  # http.HttpFrontDoor when --http-port is set

    async def start(self) -> None:
        if self.config.role != "router":
            import torch

            self.config = self.config.for_hardware(torch.cuda.is_available())
        cfg = self.config
        self.probes.capacity = cfg.capacity
        if cfg.metrics_port:  # open while loading: alive, not ready
            self.probe_server = ProbeServer(
                self.metrics.registry, self.probes, cfg.metrics_port, cfg.host
            )
        card = model_card(cfg)
        factory = await self._build_sessions(card) if cfg.role != "router" else None
        identity = NodeIdentity(
            cfg.node_id or cfg.address,
            card.name,
            cfg.capacity,
            cfg.admit_starving_ms,
            cfg.realtime_streams,
            language=card.language,
            base_voices=card.voices,
        )
        self.fleet = build_fleet(cfg, identity, self.metrics, factory, self.state)
        self.service = TTSService(
            factory,
            identity,
            first_text_timeout=cfg.first_text_timeout,
            max_stalled_read=cfg.max_stalled_read,
            metrics=self.metrics,
            dispatch=self.fleet.dispatch if self.fleet else None,
            state=self.state,
        )
        self.state.add_load_listener(self._health_for_load)
        self.guard = NodeGuard.from_config(cfg, self.metrics.registry)
        self.server = self._grpc_server()
        if cfg.http_port:  # the HTTP API calls this node through a private unix socket
            from .http import HttpFrontDoor

            self.http = HttpFrontDoor.from_config(cfg)
            self.http.attach(self.server)
        await self.server.start()
        if self.fleet is not None:
            await self.fleet.start()
        if self.http is not None:
            await self.http.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self.probes.loading = False
        log.info(
            "node %s (%s) serving %s (%s: %s) on %s",
            identity.node_id,
            cfg.role,
            identity.model_name,
            identity.language,
            ", ".join(identity.base_voices),
            cfg.address,
        )

    def _health_for_load(self, live_sessions: int) -> None:
        """The TTS service reports NOT_SERVING while the node is full, so balancers skip it."""
        full = live_sessions >= self.config.capacity or self.state.draining
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if full
            else health_pb2.HealthCheckResponse.SERVING
        )
        asyncio.get_running_loop().create_task(self.health.set(SERVICE_NAME, status))

    async def _build_sessions(self, card: ModelCard) -> SessionFactory:
        cfg = self.config
        _warn_random_weights(cfg)
        fit = node_fit(cfg.model, cfg.engine, cfg.max_lora_rank)  # broken voices go unlisted
        registry = VoiceRegistry(cfg.voices_dir, card.name, fit=fit, base_voices=card.voices)
        engine, tokenizer = build_engine(cfg, registry)
        decoder = SnacDecodeBatcher(SnacDecoder(load_snac(cfg.snac, device=cfg.device)))
        await engine.start()
        decoder.start()
        if cfg.warm_up_frames:
            started = time.perf_counter()
            await decoder.warm_up(cfg.warm_up_frames)
            took_ms = 1000 * (time.perf_counter() - started)
            log.info(
                "decode warm-up: windows of 1..%d frames in %.0f ms", cfg.warm_up_frames, took_ms
            )
        await registry.start()
        self._closers = [registry.close, decoder.close, engine.close]
        self._watch_engine(engine)
        return SessionFactory(
            engine=engine,
            tokenizer=tokenizer,
            decoder=decoder,
            voices=registry,
            default_sampling=SamplingConfig(),
            emotion_tags=tags_for_model(card.name),
            options=SessionOptions(
                max_chunk_chars=cfg.max_chunk_chars,
                silence_threshold_dbfs=cfg.silence_threshold_db,
                continuity_frames=cfg.continuity_frames,
                first_chunk_frames=cfg.first_chunk_frames,
                max_session_chars=cfg.max_session_chars,
                max_audio_ahead_s=cfg.max_audio_ahead,
                chunk_gap_ms=cfg.chunk_gap_ms,
                overrun_factor=cfg.overrun_factor,
                language=card.language,  # the speech-length estimate's rate
            ),
        )

    def _grpc_server(self) -> grpc.aio.Server:
        cfg = self.config
        server = grpc.aio.server(
            interceptors=self.guard.interceptors(),
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        tts_pb2_grpc.add_TTSServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), server)
        self.guard.add_port(server, f"{cfg.host}:{cfg.port}")
        return server

    def _watch_engine(self, engine: Engine) -> None:
        self.metrics.engine_live_requests.set_function(lambda: len(engine.live_request_ids()))
        self.metrics.engine_queue_depth.set_function(lambda: engine.stats().queued_requests)
        self.metrics.watch_lora_cache(lambda: engine.stats().adapters)

    async def drain(self, grace_s: float) -> int:
        """Refuse new sessions, let live ones finish (up to `grace_s`); return how many were cut."""
        self.state.start_draining()  # health and membership learn it through the listeners
        await self.health.enter_graceful_shutdown()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.idle.wait(), grace_s)
        cut = self.state.busy
        if self.fleet is not None:
            await self.fleet.membership.deregister()
        return cut

    async def stop(self, grace_s: float = 1.0) -> None:
        if self.http is not None:
            await self.http.stop(grace_s)
        if self.server is not None:
            await self.server.stop(grace_s)
        if self.fleet is not None:
            await self.fleet.close()
        for close in self._closers:
            await close()
        if self.probe_server is not None:
            self.probe_server.close()


def model_card(cfg: ServerConfig) -> ModelCard:
    """What this node serves: --model's orpheus.json under the --model-name, --language and
    --base-voices flags (a router loads no model: its card is only the defaults)."""
    return load_model_card(
        cfg.model if cfg.role != "router" else "",
        cfg.served_model_name,
        model_name=cfg.model_name,
        language=cfg.language,
        base_voices=cfg.base_voices,
    )


def _warn_random_weights(cfg: ServerConfig) -> None:
    for flag, value, random in (
        ("--model", cfg.model, TINY_RANDOM),
        ("--snac", cfg.snac, "random"),
    ):
        if value == random:
            log.warning(NOISE_WARNING.format(what=f"{flag} {random}"))


async def serve(config: ServerConfig) -> int:
    """Run a node until SIGTERM/SIGINT, then drain; exit code 0 when no session was cut."""
    node = InferenceNode(config)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"orpheus-server listening on {config.host}:{config.port}", flush=True)
    await stop.wait()
    log.info("draining: %d live sessions, grace %.0fs", len(node.state.live), config.drain_grace)
    cut = await node.drain(config.drain_grace)
    await node.stop()
    if cut:
        log.warning("drain grace expired with %d live sessions", cut)
    return 0
