"""Server TLS credentials from PEM files (optionally requiring client certificates)."""

from __future__ import annotations

from pathlib import Path

import grpc


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """TLS with `cert`/`key`; with `client_ca`, clients must present a cert it signed (mTLS)."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-client-ca", client_ca)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path} does not exist")
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=Path(client_ca).read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )
