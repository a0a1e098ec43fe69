"""Everything that stands between the network and a node's servicers, built from its config."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry, Counter

from .api_keys import ApiKeyStore
from .auth_interceptor import Authenticator, AuthInterceptor
from .limits_interceptor import SessionLimitsInterceptor
from .tls import ReloadingCertificate

log = logging.getLogger(__name__)


class NodeGuard:
    """API keys, cluster secret, per-call limits and TLS for one node's gRPC server."""

    def __init__(
        self,
        *,
        api_keys_file: Path | None = None,
        accepted_api_keys: str = "",
        cluster_secret: str = "",
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_client_ca: Path | None = None,
        max_sessions_per_key: int = 0,
        max_session_seconds: float = 0.0,
        max_segment_chars: int = 0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        self.keys = ApiKeyStore(api_keys_file, accepted_api_keys)
        self.authenticator = Authenticator(self.keys, cluster_secret)
        self.refused = Counter(
            "orpheus_refused_calls",
            "Calls refused before reaching a session, by reason (auth or the limit hit)",
            ["reason"],
            registry=registry,
        )
        self.limits = SessionLimitsInterceptor(
            max_sessions_per_key,
            max_session_seconds,
            max_segment_chars,
            on_refused=lambda reason: self.refused.labels(reason).inc(),
        )
        self._tls = (
            ReloadingCertificate(tls_cert, tls_key, tls_client_ca) if tls_cert is not None else None
        )

    @classmethod
    def from_config(cls, cfg: object, registry: CollectorRegistry | None = None) -> NodeGuard:
        """The guard described by a `ServerConfig`."""
        return cls(
            api_keys_file=cfg.api_keys_file,
            accepted_api_keys=cfg.accepted_api_keys,
            cluster_secret=cfg.cluster_secret,
            tls_cert=cfg.tls_cert,
            tls_key=cfg.tls_key,
            tls_client_ca=cfg.tls_client_ca,
            max_sessions_per_key=cfg.max_sessions_per_key,
            max_session_seconds=cfg.max_session_seconds,
            max_segment_chars=cfg.max_segment_chars,
            registry=registry,
        )

    @property
    def auth_enabled(self) -> bool:
        return self.keys.enabled or bool(self.authenticator.cluster_secret)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Outermost first: authenticate, then apply the limits."""
        auth = AuthInterceptor(self.authenticator, lambda r: self.refused.labels(r).inc())
        return [auth, self.limits] if self.auth_enabled else [self.limits]

    def add_port(self, server: grpc.aio.Server, address: str) -> int:
        """Bind `address` (TLS when configured); logs how callers are authenticated."""
        if self._tls is not None:
            bound = server.add_secure_port(address, self._tls.credentials())
        else:
            bound = server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"cannot bind {address}")
        self._log_posture(address)
        return bound

    def _log_posture(self, address: str) -> None:
        transport = "TLS" if self._tls is not None else "plaintext"
        if self.keys.enabled:
            log.info("%s on %s; API keys required (%d loaded)", transport, address, len(self.keys))
        else:
            log.warning(
                "%s on %s; NO API KEYS configured: any caller that reaches this port may "
                "synthesize (bound to loopback unless --allow-unauthenticated)",
                transport,
                address,
            )
        if self.authenticator.cluster_secret:
            log.info("proxy hops between nodes authenticate with the cluster secret")
