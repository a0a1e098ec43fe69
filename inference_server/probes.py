"""HTTP on the metrics port: /metrics, /healthz (liveness) and /readyz (readiness).

Kubernetes (and compose) probe these. /healthz answers 200 from the moment the port opens
(the model may still be loading) until the process exits: a draining node is alive, and
restarting it would cut the sessions it is finishing. /readyz answers 200 only while the
node would take a new session: loaded, not draining, below --capacity. Both read the
node's one NodeState at request time, from the HTTP server's thread (a bool and a dict
length: no lock needed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .node_state import NodeState

StartResponse = Callable[..., object]


class Probes:
    """What the node answers to /healthz and /readyz."""

    def __init__(self, state: NodeState, capacity: int) -> None:
        self.state = state
        self.capacity = capacity
        self.loading = True  # until InferenceNode.start() has finished

    def ready(self) -> tuple[bool, str]:
        if self.loading:
            return False, "loading"
        if self.state.draining:
            return False, "draining"
        if len(self.state.live) >= self.capacity:
            return False, "full"
        return True, "ready"

    def alive(self) -> tuple[bool, str]:
        return True, "draining" if self.state.draining else "ok"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
        pass


class ProbeServer:
    """One thread serving /metrics (the node's registry), /healthz and /readyz."""

    def __init__(self, registry: CollectorRegistry, probes: Probes, port: int, host: str) -> None:
        self._metrics = make_wsgi_app(registry)
        self._probes = probes
        self._server = make_server(
            host, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probe-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port

    def _app(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            ok, why = (self._probes.alive if path == "/healthz" else self._probes.ready)()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [why.encode() + b"\n"]
        if path in ("/", "/metrics"):
            return self._metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: /metrics, /healthz, /readyz\n"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
