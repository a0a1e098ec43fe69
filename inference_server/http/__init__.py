"""HTTP front door of a node (--http-port): OpenAI speech API, a streaming WebSocket and the
voice playground, all served through the node's own gRPC service (node_client.py)."""

from .front_door import HttpFrontDoor

__all__ = ["HttpFrontDoor"]
