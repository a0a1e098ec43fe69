"""Domain errors -> precise gRPC status codes."""

from __future__ import annotations

import grpc

from ..engine.base import AdapterLoadError
from ..session.synthesis import SessionInputError
from ..voices.names import InvalidVoiceNameError
from ..voices.registry import UnknownVoiceError


class RpcError(Exception):
    """Ends the call with `code` and `details`."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def to_rpc_error(exc: BaseException) -> RpcError:
    """Map an exception raised while serving a call to the status the client should see."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, UnknownVoiceError):
        return RpcError(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, InvalidVoiceNameError | SessionInputError | ValueError):
        return RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, AdapterLoadError):
        return RpcError(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    return RpcError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
