"""gRPC status codes mapped onto LiveKit's API errors, the way LiveKit's own plugins map HTTP."""

from __future__ import annotations

import grpc
from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError

# HTTP equivalents (as in google.rpc's mapping): 4xx are never retried by LiveKit,
# except 429, which is what a node saturated with sessions answers.
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.ABORTED: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}
_NEVER_RETRY = {grpc.StatusCode.UNIMPLEMENTED}


def is_unavailable(error: grpc.aio.AioRpcError) -> bool:
    """The node is gone or unreachable (the case another node can take over)."""
    return error.code() == grpc.StatusCode.UNAVAILABLE


def api_error_from_grpc(error: grpc.aio.AioRpcError, *, request_id: str = "") -> APIError:
    """The LiveKit error for a failed Synthesize call; its message carries the server's details."""
    code = error.code()
    details = error.details() or code.name
    message = f"orpheus {code.name}: {details}"
    if code == grpc.StatusCode.CANCELLED:  # LiveKit's "client closed": ends without an error
        return APIStatusError(
            message, status_code=499, request_id=request_id or None, retryable=False
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return APIConnectionError(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return APITimeoutError(message)
    return APIStatusError(
        message,
        status_code=_HTTP_STATUS.get(code, 500),
        request_id=request_id or None,
        body=details,
        retryable=False if code in _NEVER_RETRY else None,
    )
