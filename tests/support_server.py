"""Integration tests start real nodes through the package's own launcher."""

from inference_server.local_server import ServerProcess, free_port, wait_healthy

__all__ = ["ServerProcess", "free_port", "wait_healthy"]
