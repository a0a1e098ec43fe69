"""A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SelfSignedPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> SelfSignedPki:
    """A self-signed CA and a server cert it signed (SAN: IP 127.0.0.1, DNS localhost)."""
    d = directory
    key = ("-newkey", "rsa:2048", "-nodes")
    _openssl("req", "-x509", *key, "-days", "2", "-subj", "/CN=orpheus test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    _openssl("req", *key, "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
             "-out", "server.pem", cwd=d)  # fmt: skip
    return SelfSignedPki(d / "ca.pem", d / "server.pem", d / "server.key")
