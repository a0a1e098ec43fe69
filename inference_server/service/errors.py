"""The one place where an error kind becomes a gRPC status.

Layers raise the kinds of `inference_server.errors`; a status another node already
decided (a forwarded call's answer) travels as `PeerStatus` and is relayed unchanged.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import grpc

from .. import errors as E

log = logging.getLogger(__name__)

_STATUS: dict[type[E.OrpheusError], grpc.StatusCode] = {
    E.ClientError: grpc.StatusCode.INVALID_ARGUMENT,
    E.ProtocolOrderError: grpc.StatusCode.FAILED_PRECONDITION,
    E.ClientTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    E.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    E.NotFound: grpc.StatusCode.NOT_FOUND,
    E.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    E.Unusable: grpc.StatusCode.FAILED_PRECONDITION,
    E.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.Unavailable: grpc.StatusCode.UNAVAILABLE,
    E.Internal: grpc.StatusCode.INTERNAL,
}


@dataclass(frozen=True, slots=True)
class Status:
    code: grpc.StatusCode
    details: str


def to_status(exc: BaseException) -> Status:
    """The status the client sees for `exc`. Anything outside the taxonomy is our bug: the
    client gets INTERNAL with a reference, the node log gets the exception."""
    if isinstance(exc, E.PeerStatus):
        return Status(_peer_code(exc.code), exc.details)
    for kind in type(exc).__mro__:
        code = _STATUS.get(kind)  # type: ignore[arg-type]
        if code is not None:
            return Status(code, str(exc))
    ref = uuid.uuid4().hex[:12]
    log.error("internal error ref=%s", ref, exc_info=exc)
    return Status(grpc.StatusCode.INTERNAL, f"internal error (ref {ref} in the node log)")


def _peer_code(name: str) -> grpc.StatusCode:
    """A peer's status code by name; a name this gRPC does not know is the peer's fault."""
    try:
        return grpc.StatusCode[name]
    except KeyError:
        return grpc.StatusCode.UNKNOWN
