"""The inference nodes named by `base_url`, one reusable gRPC channel each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from .proto import tts_pb2_grpc

# Reconnect quickly after a node restarts (gRPC's default backoff reaches two minutes),
# but give each connection attempt time to finish its handshake: gRPC uses
# min_reconnect_backoff as the connect deadline, and a node 400 ms away needs more than
# one round trip for TCP + HTTP/2 SETTINGS. The call itself is bounded by LiveKit's
# `conn_options.timeout`, not by these.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 5000),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 0),  # LiveKit's retry loop owns retries
    # A fixed 64 KiB receive window (no BDP growth to MiBs): audio is 48 KB/s, so this is
    # still 3x real time at 400 ms RTT, and the node sees a hung agent stop reading after
    # ~1.4 s of audio instead of ~88 s (bench/bench_slow_reader.py: ended after 31 s and
    # 17 CPU-s instead of 114 s and 56 CPU-s).
    ("grpc.http2.bdp_probe", 0),
    # each TTS owns its connections: a closed instance's failed subchannel (and its
    # backoff) is never inherited by a new one through gRPC's process-wide pool
    ("grpc.use_local_subchannel_pool", 1),
)


def parse_base_url(base_url: str) -> tuple[list[str], bool]:
    """Addresses in a comma-separated `base_url` and whether any asked for TLS (grpcs://)."""
    addresses: list[str] = []
    tls = False
    for raw in base_url.split(","):
        address = raw.strip()
        if not address:
            continue
        scheme, sep, rest = address.partition("://")
        if sep:
            if scheme not in ("grpc", "grpcs"):
                raise ValueError(f"base_url {raw!r}: scheme must be grpc:// or grpcs://")
            tls = tls or scheme == "grpcs"
            address = rest
        address = address.rstrip("/")
        if ":" not in address:
            raise ValueError(f"base_url {raw!r}: expected host:port")
        addresses.append(address)
    if not addresses:
        raise ValueError("base_url names no address")
    return addresses, tls


class ServerEndpoints:
    """Channels are opened lazily and kept for the life of the TTS; the first address is
    primary, and an address that became unreachable hands the role to the next one."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        use_tls: bool,
        root_certificates: bytes | None,
        channel_options: Sequence[tuple[str, Any]],
    ) -> None:
        self.addresses, tls_scheme = parse_base_url(base_url)
        self._credentials = (
            grpc.ssl_channel_credentials(root_certificates=root_certificates)
            if use_tls or tls_scheme or root_certificates
            else None
        )
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        # user options override the defaults of the same name
        self._options = list(dict((*DEFAULT_CHANNEL_OPTIONS, *channel_options)).items())
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._stubs: dict[int, tts_pb2_grpc.TTSStub] = {}
        self.current = 0

    def stub(self, index: int) -> tts_pb2_grpc.TTSStub:
        if index not in self._stubs:
            self._stubs[index] = tts_pb2_grpc.TTSStub(self._channel(index))
        return self._stubs[index]

    def connect(self, index: int | None = None) -> None:
        """Start connecting without waiting (prewarm)."""
        self._channel(self.current if index is None else index).get_state(try_to_connect=True)

    async def until_ready(self, index: int) -> bool:
        """Wait until the channel to `index` is READY, connecting it if idle (unbounded: the
        caller bounds it). True if it was not READY at first, so the next call runs on a
        connection made after this wait began."""
        channel = self._channel(index)
        state = channel.get_state(try_to_connect=True)
        reconnected = False
        while state != grpc.ChannelConnectivity.READY:
            reconnected = True
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)
        return reconnected

    def next_after(self, index: int) -> int:
        return (index + 1) % len(self.addresses)

    def mark_unreachable(self, index: int) -> None:
        """The next call (or retry) starts on the following address."""
        if index == self.current:
            self.current = self.next_after(index)

    async def aclose(self) -> None:
        channels, self._channels, self._stubs = self._channels, {}, {}
        for channel in channels.values():
            await channel.close()

    def _channel(self, index: int) -> grpc.aio.Channel:
        if index not in self._channels:
            address = self.addresses[index]
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, self._options)
            else:
                channel = grpc.aio.insecure_channel(address, self._options)
            self._channels[index] = channel
        return self._channels[index]
