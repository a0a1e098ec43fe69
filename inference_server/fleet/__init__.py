"""Fleet routing: who is in the fleet, which node owns a session, and the one-hop proxy to it."""

from .catalog import ModelCatalog, ServedModel
from .membership import Membership, RedisMembership, StaticMembership, parse_peers
from .nodes import NodeInfo
from .proxy import HOP_HEADER, StreamProxy, hop_of
from .ring import VoiceRing, replicas_for
from .router import NoNodeAvailable, SessionRouter

__all__ = [
    "HOP_HEADER",
    "Membership",
    "ModelCatalog",
    "NoNodeAvailable",
    "NodeInfo",
    "RedisMembership",
    "ServedModel",
    "SessionRouter",
    "StaticMembership",
    "StreamProxy",
    "VoiceRing",
    "hop_of",
    "parse_peers",
    "replicas_for",
]
