"""Server TLS from PEM files, re-read when they change (cert-manager and friends rotate them).

gRPC asks for the certificate on every new handshake; the files' stamps are compared then,
so a rotated certificate is served to the next connection without a restart, and live
connections keep the one they shook hands with. Files that cannot be read or parsed keep
the last good certificate (and say so): a half-written rotation must not take TLS down.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int], ...]


class ReloadingCertificate:
    """The node's certificate, key and (for mTLS) client CA, as served to the next handshake."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        for flag, path in (
            ("--tls-cert", cert),
            ("--tls-key", key),
            ("--tls-client-ca", client_ca),
        ):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{flag} {path} does not exist")
        self._paths = tuple(Path(p) for p in (cert, key, client_ca) if p is not None)
        self._cert, self._key, self._client_ca = Path(cert), Path(key), client_ca
        self._stamp = self._read_stamp()
        self._initial = self._load()
        self.reloads = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,
            require_client_authentication=self._client_ca is not None,
        )

    def _read_stamp(self) -> Stamp:
        stats = (os.stat(p) for p in self._paths)
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._key.read_bytes(), self._cert.read_bytes())],
            root_certificates=Path(self._client_ca).read_bytes() if self._client_ca else None,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration, or None for no change."""
        try:
            stamp = self._read_stamp()
            if stamp == self._stamp:
                return None
            config = self._load()
        except OSError as exc:
            log.warning("TLS files unreadable (%s); serving the last good certificate", exc)
            return None
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self._cert)
        return config
