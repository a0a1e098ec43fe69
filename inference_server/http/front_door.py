"""The HTTP front door's lifecycle: a uvicorn server inside the node's own asyncio loop.

The node's gRPC server also listens on a unix socket in a fresh 0700 directory (only this
node's user can connect); the front door calls the node through it, so TLS on the gRPC
port never stands in the way and the API key of each HTTP request is checked by the node
itself. The HTTP port uses the node's host and its TLS certificate, when it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import uvicorn

from .app import build_app
from .node_client import NodeClient

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the node owns SIGTERM/SIGINT (it drains)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpFrontDoor:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_client_ca: Path | None = None,
        grace_s: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = (tls_cert, tls_key, tls_client_ca)
        self._grace_s = grace_s
        self._dir = Path(tempfile.mkdtemp(prefix="orpheus-http-"))  # mode 0700
        self.grpc_target = f"unix:{self._dir / 'node.sock'}"
        self.node: NodeClient | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None
        self._listener: socket.socket | None = None

    @classmethod
    def from_config(cls, cfg: object) -> HttpFrontDoor:
        return cls(
            cfg.host,
            cfg.http_port,
            tls_cert=cfg.tls_cert,
            tls_key=cfg.tls_key,
            tls_client_ca=cfg.tls_client_ca,
        )

    def attach(self, server: grpc.aio.Server) -> None:
        """Bind the HTTP port (OSError if taken) and add the private unix socket to the
        node's gRPC server; call before that server starts."""
        try:
            self._listener = socket.create_server(
                (self.host.strip("[]"), self.port),
                family=socket.AF_INET6 if ":" in self.host else socket.AF_INET,
            )
        except OSError as exc:
            raise OSError(f"--http-port {self.port} on {self.host}: {exc.strerror}") from exc
        self.port = self._listener.getsockname()[1]
        if server.add_insecure_port(self.grpc_target) == 0:
            raise OSError(f"cannot bind {self.grpc_target}")

    async def start(self) -> None:
        """Serve on the bound port until `stop`."""
        if self._listener is None:
            raise RuntimeError("HttpFrontDoor.attach() first")
        listener = self._listener
        self.node = NodeClient(self.grpc_target)
        cert, key, client_ca = self._tls
        config = uvicorn.Config(
            build_app(self.node),
            log_config=None,  # the node's logging
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",
            ssl_certfile=cert,
            ssl_keyfile=key,
            ssl_ca_certs=client_ca,
            ssl_cert_reqs=ssl.CERT_REQUIRED if client_ca else ssl.CERT_NONE,
            timeout_graceful_shutdown=self._grace_s,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # raises why it could not start
                    raise RuntimeError("HTTP server exited during startup")
                await asyncio.sleep(0.01)
        scheme = "https" if cert else "http"
        log.info(
            "HTTP API on %s://%s:%d (OpenAI speech API, /v1/audio/stream)",
            scheme,
            self.host,
            self.port,
        )

    async def stop(self, grace_s: float | None = None) -> None:
        if self._server is not None and self._task is not None:
            if grace_s is not None:
                self._server.config.timeout_graceful_shutdown = grace_s
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task  # uvicorn closes the listener
        elif self._listener is not None:
            self._listener.close()
        if self.node is not None:
            await self.node.close()
        shutil.rmtree(self._dir, ignore_errors=True)
