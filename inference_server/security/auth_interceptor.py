"""Server interceptor: TTS calls need an API key or, for proxy hops, the cluster secret.

Health and reflection stay open so load balancers and grpcurl work without a key.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc

from ..service.client_writes import read_in_flight
from .api_keys import ApiKeyStore, key_label

log = logging.getLogger(__name__)

AUTH_HEADER = "authorization"
CLUSTER_SECRET_HEADER = "x-orpheus-cluster-secret"  # = fleet.proxy.CLUSTER_SECRET_HEADER
HOP_HEADER = "x-orpheus-hop"  # = fleet.proxy.HOP_HEADER (kept here: auth needs no fleet code)
PROTECTED_PREFIX = "/orpheus.v1.TTS/"

Metadata = Sequence[tuple[str, str | bytes]]


class Unauthenticated(Exception):
    """The call is refused with UNAUTHENTICATED and this message."""


def metadata_value(metadata: Metadata | None, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key:
            return v.decode(errors="replace") if isinstance(v, bytes) else v
    return None


def bearer_key(metadata: Metadata | None) -> str | None:
    """The API key of `authorization: Bearer <key>`, or None when absent."""
    value = metadata_value(metadata, AUTH_HEADER)
    if value is None:
        return None
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("malformed authorization metadata: expected 'Bearer <api key>'")
    return key.strip()


class Authenticator:
    """Decides who a call is: a client holding a key, or a peer node holding the secret."""

    def __init__(self, keys: ApiKeyStore, cluster_secret: str = "") -> None:
        self.keys = keys
        self.cluster_secret = cluster_secret

    def check(self, metadata: Metadata | None) -> str:
        """The caller's label ('cluster', 'key-<hash>', 'anonymous'); raises `Unauthenticated`.

        With a cluster secret, a call claiming a hop must prove it with the secret. Without
        one, a hop header proves nothing: the call is a client's like any other (API key
        checked) and the fleet routes it as such (fleet.proxy.trusted_hop)."""
        secret = metadata_value(metadata, CLUSTER_SECRET_HEADER)
        hop = metadata_value(metadata, HOP_HEADER)
        if self.cluster_secret and (hop is not None or secret is not None):
            if secret is None or not hmac.compare_digest(
                secret.encode(), self.cluster_secret.encode()
            ):
                raise Unauthenticated(
                    "proxied call without a valid cluster secret "
                    f"({CLUSTER_SECRET_HEADER} metadata)"
                )
            return "cluster"
        if not self.keys.enabled:
            return "anonymous"
        key = bearer_key(metadata)
        if key is None:
            raise Unauthenticated(
                f"missing API key: send metadata '{AUTH_HEADER}: Bearer <api key>'"
            )
        if not self.keys.accepts(key):
            raise Unauthenticated(f"invalid or revoked API key ({key_label(key)})")
        return key_label(key)


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, authenticator: Authenticator, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self._auth = authenticator
        self._on_refused = on_refused or (lambda reason: None)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(PROTECTED_PREFIX):
            return handler
        try:
            self._auth.check(handler_call_details.invocation_metadata)
        except Unauthenticated as exc:
            log.info("refused %s: %s", handler_call_details.method, exc)
            self._on_refused("auth")
            return refusing_handler(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return handler


def refusing_handler(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str
) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that ends the call with `code`."""

    async def refuse(request_or_iterator: object, context: grpc.aio.ServicerContext) -> None:
        if isinstance(request_or_iterator, AsyncIterator):
            await refuse_stream(request_or_iterator, context, code, details)
        else:
            await context.abort(code, details)

    serde = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(refuse, **serde)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **serde)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, **serde)
    return grpc.unary_unary_rpc_method_handler(refuse, **serde)


async def refuse_stream(
    requests: AsyncIterator[object],
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    details: str,
) -> None:
    """End a client-streaming call with `code` once the messages it already sent are in."""
    await read_in_flight(requests)
    await context.abort(code, details)
