"""gRPC status -> LiveKit API error mapping, and what LiveKit's retry loop makes of it."""

from __future__ import annotations

import grpc
import pytest
from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError
from livekit.plugins.orpheus.errors import api_error_from_grpc


def rpc_error(code: grpc.StatusCode, details: str = "boom") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    ("code", "kind", "retryable"),
    [
        (grpc.StatusCode.UNAVAILABLE, APIConnectionError, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, APITimeoutError, True),
        (grpc.StatusCode.INVALID_ARGUMENT, APIStatusError, False),
        (grpc.StatusCode.NOT_FOUND, APIStatusError, False),
        (grpc.StatusCode.UNAUTHENTICATED, APIStatusError, False),
        (grpc.StatusCode.PERMISSION_DENIED, APIStatusError, False),
        (grpc.StatusCode.FAILED_PRECONDITION, APIStatusError, False),
        (grpc.StatusCode.UNIMPLEMENTED, APIStatusError, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, APIStatusError, True),
        (grpc.StatusCode.INTERNAL, APIStatusError, True),
    ],
)
def test_status_mapping(code: grpc.StatusCode, kind: type, retryable: bool) -> None:
    error = api_error_from_grpc(rpc_error(code), request_id="orpheus_1")
    assert type(error) is kind
    assert error.retryable is retryable
    assert code.name in error.message and "boom" in error.message


def test_cancelled_is_livekits_graceful_close() -> None:
    """LiveKit ends a stream quietly on a 499 (client closed), as on its own cancellation."""
    error = api_error_from_grpc(rpc_error(grpc.StatusCode.CANCELLED), request_id="r1")
    assert isinstance(error, APIStatusError) and error.status_code == 499
    assert error.retryable is False


def test_not_found_keeps_server_details() -> None:
    details = "unknown voice 'nobody'; valid voices: tara, leah, jess"
    error = api_error_from_grpc(rpc_error(grpc.StatusCode.NOT_FOUND, details), request_id="r1")
    assert isinstance(error, APIStatusError)
    assert error.status_code == 404
    assert error.request_id == "r1"
    assert "valid voices: tara" in str(error)
