"""A TCP fault proxy for 127.0.0.1: LiveKit's toxiproxy cases, re-created in Python.

Put it between a client and a node (`FaultProxy(upstream).address`) and turn faults on
and off while calls run: latency and bandwidth per direction, a reset of every open
connection (RST, not FIN), a reset once the node has sent N bytes, a stall (connections
stay open, nothing moves) and a blackhole (accepts TCP, never answers). Faults are
switched by the test at the moment it chooses, so no test waits on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

_READ = 64 * 1024


@dataclass
class Faults:
    latency_s: float = 0.0  # added to each direction: a round trip gains 2x
    bytes_per_s: float = 0.0  # 0 = unlimited; per direction
    reset_after_downstream_bytes: int = 0  # 0 = never; counted per connection
    blackhole: bool = False  # new connections are accepted and never served


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self.faults = Faults()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()  # blackholed connections
        self.connections = 0  # accepted so far
        self.on_accept: Callable[[int], None] = lambda n: None  # called with the new count

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def stall(self) -> None:
        """Every open and new connection stays open and carries nothing."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def reset(self) -> None:
        """Abort every open connection with a TCP RST."""
        for link in list(self._links):
            link.abort()
        for writer in list(self._held):
            _abort(writer)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.on_accept(self.connections)
        if self.faults.blackhole:
            self._held.add(client_w)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await client_r.read()  # hold the socket open until the client gives up
            self._held.discard(client_w)
            _abort(client_w)
            return
        try:
            node_r, node_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            _abort(client_w)
            return
        link = _Link(self, client_w, node_w)
        self._links.add(link)
        try:
            await asyncio.gather(
                link.pump(client_r, node_w, downstream=False),
                link.pump(node_r, client_w, downstream=True),
            )
        finally:
            self._links.discard(link)
            link.abort()


class _Link:
    def __init__(
        self, proxy: FaultProxy, client_w: asyncio.StreamWriter, node_w: asyncio.StreamWriter
    ) -> None:
        self._proxy = proxy
        self._writers = (client_w, node_w)
        self._downstream_bytes = 0

    def abort(self) -> None:
        for writer in self._writers:
            _abort(writer)

    async def pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        """Forward one direction: data read at t is written at t + latency, in order."""
        in_transit: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(in_transit, writer, downstream))
        loop = asyncio.get_running_loop()
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(_READ):
                    in_transit.put_nowait((loop.time() + self._proxy.faults.latency_s, data))
            await in_transit.join()
        finally:
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver
            self.abort()

    async def _deliver(
        self,
        in_transit: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        downstream: bool,
    ) -> None:
        faults, loop = self._proxy.faults, asyncio.get_running_loop()
        while True:
            due, data = await in_transit.get()
            await asyncio.sleep(max(0.0, due - loop.time()))  # the fault itself: a slow link
            await self._proxy._flowing.wait()
            if downstream and faults.reset_after_downstream_bytes:
                room = faults.reset_after_downstream_bytes - self._downstream_bytes
                if len(data) >= room:
                    data = data[: max(room, 0)]
                    self._downstream_bytes = faults.reset_after_downstream_bytes
                    with contextlib.suppress(Exception):
                        writer.write(data)
                        await writer.drain()
                    self.abort()
                    in_transit.task_done()
                    return
                self._downstream_bytes += len(data)
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                self.abort()
            finally:
                in_transit.task_done()
            if faults.bytes_per_s:
                await asyncio.sleep(len(data) / faults.bytes_per_s)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), the way a crashed peer or a middlebox reset looks."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
