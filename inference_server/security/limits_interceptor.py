"""Per-call limits enforced around Synthesize: text per segment, concurrent sessions per API
key, session duration.

Quotas that clear with time (sessions per key, session duration) are RESOURCE_EXHAUSTED;
text over the size limit is a property of the request itself, so INVALID_ARGUMENT (as for
max_session_chars), never worth a retry. Each message names its limit.
Quotas are per node: a proxied session counts on the node it entered and on its owner,
each against that node's limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable

import grpc

from ..errors import ClientError
from ..service.client_writes import IDLE_S, read_in_flight
from .api_keys import key_label
from .auth_interceptor import (
    PROTECTED_PREFIX,
    Continuation,
    Unauthenticated,
    bearer_key,
    refuse_stream,
)

log = logging.getLogger(__name__)

SYNTHESIZE = PROTECTED_PREFIX + "Synthesize"


class KeySessionQuota:
    """Counts live sessions per caller; `max_per_key` 0 means unlimited."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self.live: Counter[str] = Counter()

    def acquire(self, label: str) -> bool:
        if self.max_per_key and self.live[label] >= self.max_per_key:
            return False
        self.live[label] += 1
        return True

    def release(self, label: str) -> None:
        self.live[label] -= 1
        if self.live[label] <= 0:
            del self.live[label]


def caller_label(metadata: object) -> str | None:
    """The quota bucket of a call: its API key's label, None without a (well-formed) key."""
    try:
        key = bearer_key(metadata)  # type: ignore[arg-type]
    except Unauthenticated:
        return None
    return key_label(key) if key else None


class SessionLimitsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        max_sessions_per_key: int = 0,
        max_session_seconds: float = 0.0,
        max_segment_chars: int = 0,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.quota = KeySessionQuota(max_sessions_per_key)
        self.max_session_seconds = max_session_seconds
        self.max_segment_chars = max_segment_chars
        self._on_refused = on_refused or (lambda limit: None)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method != SYNTHESIZE:
            return handler
        label = caller_label(handler_call_details.invocation_metadata)
        # Requests arrive as bytes and are decoded in `_checked`, so a malformed message is
        # INVALID_ARGUMENT naming the problem rather than gRPC's opaque deserialization error.
        return grpc.stream_stream_rpc_method_handler(
            self._limited(handler.stream_stream, handler.request_deserializer, label),
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )

    def _limited(
        self, behavior: Callable, decode: Callable[[bytes], object], label: str | None
    ) -> Callable:
        async def limited(
            request_iterator: AsyncIterator[object], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[object]:
            if label is not None and not self.quota.acquire(label):
                self._on_refused("max_sessions_per_key")
                await refuse_stream(
                    request_iterator,
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"API key {label} already has {self.quota.max_per_key} live sessions "
                    f"(max_sessions_per_key={self.quota.max_per_key})",
                )
            try:
                requests = self._checked(request_iterator, decode)
                async for response in self._within_deadline(behavior(requests, context)):
                    yield response
            except TimeoutError:
                self._on_refused("max_session_seconds")
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"session exceeded max_session_seconds={self.max_session_seconds:g}",
                )
            finally:
                if label is not None:
                    self.quota.release(label)

        return limited

    async def _within_deadline(self, responses: AsyncIterator[object]) -> AsyncIterator[object]:
        """`responses` until the session deadline; then the servicer is cancelled (it cleans
        up its session) and TimeoutError is raised. The deadline never spans a `yield`."""
        if not self.max_session_seconds:
            async for response in responses:
                yield response
            return
        deadline = asyncio.get_running_loop().time() + self.max_session_seconds
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    response = await anext(responses)
            except StopAsyncIteration:
                return
            yield response

    async def _checked(
        self, raw_requests: AsyncIterator[bytes], decode: Callable[[bytes], object]
    ) -> AsyncIterator[object]:
        """The client's requests decoded, refusing a segment that outgrows max_segment_chars."""
        segment_chars = 0
        async for raw in raw_requests:
            try:
                request = decode(raw)
            except Exception as exc:
                await read_in_flight(raw_requests, first_idle_s=IDLE_S)
                raise ClientError(
                    f"malformed SynthesizeRequest ({len(raw)} bytes): {exc}",
                ) from None
            kind = request.WhichOneof("kind")
            if kind == "text":
                segment_chars += len(request.text.text)
                if self.max_segment_chars and segment_chars > self.max_segment_chars:
                    self._on_refused("max_segment_chars")
                    await read_in_flight(raw_requests, first_idle_s=IDLE_S)
                    raise ClientError(
                        f"segment text exceeds max_segment_chars={self.max_segment_chars}",
                    )
            elif kind == "flush":
                segment_chars = 0
            yield request
