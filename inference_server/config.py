"""Node configuration: every `orpheus-server` flag, also readable as ORPHEUS_<FLAG>."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .session.options import DEFAULT_SESSION_OPTIONS as _SESSION  # the flags' defaults

# Admission refuses while half the playing streams have starved this long (service/admission.py).
DEFAULT_STARVING_MS = 250.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    model: str = "tiny-random"
    model_name: str = ""  # name clients use in SessionStart.model; default derived from --model
    snac: str = "random"
    engine: str = "torch"
    device: str = "auto"  # auto = cuda when torch sees a GPU, else cpu
    voices_dir: Path | None = None
    max_loras: int = 8
    redis_url: str | None = None
    peers: tuple[str, ...] = ()
    node_id: str = ""
    advertise: str = ""
    role: str = "inference"
    api_keys_file: Path | None = None
    cluster_secret: str = ""  # proxy hops between nodes carry it; clients never hold it
    allow_unauthenticated: bool = False  # serve a non-loopback host without API keys
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate it signed
    metrics_port: int = 0
    http_port: int = 0  # HTTP front door (OpenAI speech API, WebSocket, playground); 0 = off
    capacity: int = 32  # concurrent sessions admitted
    admit_starving_ms: float = DEFAULT_STARVING_MS  # 0 = admit on capacity alone
    max_batch: int = 64
    max_chunk_chars: int = _SESSION.max_chunk_chars
    max_session_chars: int = _SESSION.max_session_chars
    max_message_bytes: int = 64 * 1024
    max_segment_chars: int = 20_000
    max_session_seconds: float = 900.0  # 0 = unlimited
    first_text_timeout: float = 10.0  # a session with no text this long after its start ends
    max_audio_ahead: float = _SESSION.max_audio_ahead_s  # generation paces the listener; 0 = off
    max_stalled_read: float = 30.0  # a response write pending this long ends the call; 0 = never
    max_sessions_per_key: int = 0  # concurrent, per node; 0 = unlimited
    silence_threshold_db: float = _SESSION.silence_threshold_dbfs
    continuity_frames: int = _SESSION.continuity_frames
    first_chunk_frames: int = _SESSION.first_chunk_frames
    drain_grace_s: float = 30.0
    # vLLM engine
    quantization: str = "auto"  # auto = fp8 on cuda, none on cpu
    kv_cache_dtype: str = "auto"
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.9
    max_lora_rank: int = 64
    max_cpu_loras: int = 64

    def for_hardware(self, cuda_available: bool) -> ServerConfig:
        """This config with `auto` device and quantization decided for this machine.

        Raises ValueError naming the flag when an explicit choice cannot run here."""
        device = self.device.lower()
        if device == "auto":
            device = "cuda" if cuda_available else "cpu"
        if device.startswith("cuda") and not cuda_available:
            raise ValueError(f"--device {self.device}: no CUDA device is visible to torch")
        quantization = self.quantization.lower() or "none"
        if quantization == "auto":
            quantization = "fp8" if device.startswith("cuda") else "none"
        if quantization not in ("fp8", "none"):
            raise ValueError(f"--quantization must be auto, fp8 or none, got {self.quantization!r}")
        if quantization == "fp8" and not device.startswith("cuda"):
            raise ValueError(
                "--quantization fp8 needs a CUDA GPU (vLLM has no FP8 kernels on CPU); "
                "use --quantization none or auto"
            )
        return replace(self, device=device, quantization=quantization)

    @property
    def served_model_name(self) -> str:
        if self.model_name:
            return self.model_name
        return self.model if self.model == "tiny-random" else Path(self.model).name

    @property
    def address(self) -> str:
        return self.advertise or f"{self.host}:{self.port}"
