"""The one place where an error becomes an HTTP status and OpenAI's error JSON.

The HTTP front door is a gRPC client of its own node, so most errors arrive as the gRPC
status the node decided (service/errors.py made it from the taxonomy); errors raised here
(a bad request field) are taxonomy kinds and go through the same gRPC mapping first. So
each kind of failure has exactly one HTTP status, whichever layer noticed it.

Body: `{"error": {"message", "type", "param", "code"}}`, as api.openai.com answers (the
`openai` SDK turns 401 into AuthenticationError, 404 into NotFoundError, ...). A 500 says
only "internal error (ref ...)": the stack trace stays in the node's log.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import grpc

from .. import errors as E
from ..service.errors import to_status

log = logging.getLogger(__name__)


class ParamError(E.ClientError):
    """A request field is wrong; `param` names it (OpenAI's error.param)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


# gRPC status -> (HTTP status, OpenAI error type, error code)
_HTTP: dict[grpc.StatusCode, tuple[int, str, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error", "invalid_request"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error", "failed_precondition"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error", "out_of_range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error", "invalid_api_key"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error", "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error", "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "invalid_request_error", "already_exists"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error", "rate_limit_exceeded"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error", "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error", "timeout"),
    grpc.StatusCode.CANCELLED: (499, "server_error", "cancelled"),
}
_INTERNAL = (500, "server_error", "internal_error")
RETRY_AFTER_S = 1  # 429 and 503 carry Retry-After: capacity frees up within seconds


@dataclass
class HttpError:
    """An error as the HTTP client sees it."""

    status: int
    message: str
    type: str
    code: str
    param: str | None = None
    extra: dict = field(default_factory=dict)  # more fields of error (e.g. "voices")

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
                **self.extra,
            }
        }

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status in (429, 503) else {}

    @property
    def ws_close_code(self) -> int:
        """WebSocket close code of the same error: 4000 + the HTTP status (RFC 6455 leaves
        4000-4999 to applications), so a client reads it like the POST's status."""
        return 4000 + self.status


def http_error(exc: BaseException) -> HttpError:
    """The HTTP error for `exc`: a gRPC error from the node, or a taxonomy kind raised here.

    Anything else is our bug: logged here with a reference the client gets."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code, details = exc.code(), exc.details() or exc.code().name
    elif isinstance(exc, E.OrpheusError):
        status = to_status(exc)
        code, details = status.code, status.details
    else:
        ref = uuid.uuid4().hex[:12]
        log.error("internal error ref=%s", ref, exc_info=exc)
        return HttpError(500, f"internal error (ref {ref} in the node log)", *_INTERNAL[1:])
    status, kind, error_code = _HTTP.get(code, _INTERNAL)
    param = exc.param if isinstance(exc, ParamError) else None
    if code == grpc.StatusCode.NOT_FOUND:
        param, error_code = _not_found_param(details)
    return HttpError(status, details, kind, error_code, param)


async def http_error_listing_voices(
    exc: BaseException, voice_names: Callable[[], Awaitable[Iterable[str]]]
) -> HttpError:
    """`http_error(exc)`; an unknown voice's error also lists the voices (error.voices)."""
    err = http_error(exc)
    if err.code == "voice_not_found":
        with contextlib.suppress(grpc.aio.AioRpcError):  # the message names them too
            err.extra["voices"] = sorted(set(await voice_names()))
    return err


def _not_found_param(details: str) -> tuple[str | None, str]:
    """Which field named the missing thing, read from the node's message."""
    if details.startswith("unknown voice"):
        return "voice", "voice_not_found"
    if details.startswith("model"):
        return "model", "model_not_found"
    if details.startswith("language"):
        return "language", "language_not_found"
    return None, "not_found"
