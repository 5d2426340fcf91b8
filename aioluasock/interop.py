"""Adapters that let code written for asyncio streams or anyio run over a `Client`.

- `open_streams(client)` gives an `asyncio.StreamReader` / `asyncio.StreamWriter`
  pair: the stdlib's own classes, over a transport that reads and writes
  through the client (so `readline`, `readexactly`, `drain`, `write_eof`,
  `get_extra_info` and flow control all work as on a real connection).
- `ByteStream(client)` is an `anyio.abc.ByteStream` with the socket's typed
  attributes (`anyio.abc.SocketAttribute.local_address`, ...). It needs the
  `anyio` package (``pip install aioluasock[anyio]``).

Either adapter takes the client over: use the client directly again only
after the adapter is closed (a receive of your own would race its reads).
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final, final

from ._errors import CLOSED, TIMEOUT, BusyError
from ._tcp import Client

__all__ = ["ByteStream", "open_streams"]

_READ_SIZE: Final = 64 * 1024
_WRITE_HIGH: Final = 256 * 1024
_WRITE_LOW: Final = 64 * 1024


# -- asyncio streams ------------------------------------------------------------------


@final
class _ClientTransport(asyncio.Transport):
    """An asyncio transport whose I/O is a `Client`'s receive and send.

    A reader task feeds the protocol (`data_received`, `eof_received`,
    `connection_lost`) and honours `pause_reading`; writes queue up and a
    writer task sends them in order, pausing the protocol's writing above
    the high-water mark, as a socket transport does.
    """

    def __init__(self, client: Client, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._client = client
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._lost = False
        self._paused_writing = False
        self._eof_pending = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._high, self._low = _WRITE_HIGH, _WRITE_LOW
        self._readable = asyncio.Event()
        self._readable.set()
        self._work = asyncio.Event()
        self._reader = self._loop.create_task(self._read_loop())
        self._writer = self._loop.create_task(self._write_loop())

    # transport interface ---------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        client = self._client
        if name == "peername":
            peer = client.getpeername()
            return default if peer[0] is None else peer
        if name == "sockname":
            local = client.getsockname()
            return default if local[0] is None else local
        if name == "socket":
            return client._sock
        if name == "aioluasock.client":
            return client
        if name in ("ssl_object", "sslcontext", "peercert", "cipher", "compression"):
            proto = client._proto
            if proto is not None and proto.transport is not None:
                return proto.transport.get_extra_info(name, default)
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is queued, then close the client."""
        if not self._closing:
            self._closing = True
            self._work.set()

    def abort(self) -> None:
        self._closing = True
        self._queue.clear()
        self._queued = 0
        self._client.close()
        self._work.set()

    def is_reading(self) -> bool:
        return self._readable.is_set() and not self._closing

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_pending:
            raise RuntimeError("write after close() or write_eof()")
        if not data:
            return
        chunk = bytes(data)
        self._queue.append(chunk)
        self._queued += len(chunk)
        self._work.set()
        if self._queued > self._high and not self._paused_writing:
            self._paused_writing = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._eof_pending = True
        self._work.set()

    def get_write_buffer_size(self) -> int:
        return self._queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        # asyncio's rule: high defaults to 4 * low (64 KiB without either), low to high // 4.
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    # the two tasks -----------------------------------------------------------

    async def _read_loop(self) -> None:
        client = self._client
        while not self._closing:
            await self._readable.wait()
            data, err = await client._receive_some(_READ_SIZE)
            if err is None:
                self._protocol.data_received(data)
                continue
            proto = client._proto
            if err == CLOSED and proto is not None and proto.eof and not client._closed:
                if self._protocol.eof_received():
                    return  # keep the connection: the writer may go on (half-close)
                self.close()
                return
            if not self._closing:
                self._lose(None if err == CLOSED and client._closed else ConnectionResetError(err))
            return

    async def _write_loop(self) -> None:
        client = self._client
        while True:
            while self._queue:
                chunk = self._queue[0]
                _, err = await client.send(chunk)
                self._queue.popleft()
                self._queued -= len(chunk)
                if err is not None:
                    self._queue.clear()
                    self._queued = 0
                    self._lose(ConnectionResetError(err) if err != TIMEOUT else TimeoutError(err))
                    return
                if self._paused_writing and self._queued <= self._low:
                    self._paused_writing = False
                    self._protocol.resume_writing()
            if self._eof_pending and not self._closing:
                client.shutdown("send")
            if self._closing:
                self._lose(None)
                return
            self._work.clear()
            await self._work.wait()

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._client.close()
        current = asyncio.current_task()
        for task in (self._reader, self._writer):
            if task is not current:
                task.cancel()
        self._loop.call_soon(self._protocol.connection_lost, exc)


async def open_streams(
    client: Client, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An `asyncio.StreamReader`/`StreamWriter` pair over `client`.

    Args:
        client: a connected client (plain or after `starttls`).
        limit: the reader's buffer limit, as in `asyncio.open_connection`.

    Returns:
        `(reader, writer)`; `writer.close()` closes the client once what was
        written is sent. Errors surface as the streams' own exceptions
        (`ConnectionResetError` with the LuaSocket text, `IncompleteReadError`).
    """
    if not isinstance(client, Client):
        raise TypeError(f"open_streams needs a connected Client, not {type(client).__name__}")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = _ClientTransport(client, protocol)
    protocol.connection_made(transport)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


# -- anyio ------------------------------------------------------------------------------

try:
    import anyio
    from anyio.abc import ByteStream as _AnyioByteStream
    from anyio.abc import SocketAttribute
except ImportError:  # pragma: no cover (anyio is optional)
    _AnyioByteStream = object  # type: ignore[assignment, misc]


@final
class ByteStream(_AnyioByteStream):
    """An `anyio.abc.ByteStream` over a `Client` (needs `anyio`).

    `receive` returns what arrives first (up to `max_bytes`) and raises
    `anyio.EndOfStream` at the peer's end of stream, `anyio.ClosedResourceError`
    after `aclose`, `anyio.BrokenResourceError` after a reset or a failed
    send, `anyio.BusyResourceError` for a second concurrent receiver or
    sender, and `TimeoutError` when the client's own timeout ran out.
    """

    def __init__(self, client: Client) -> None:
        if _AnyioByteStream is object:  # pragma: no cover
            raise RuntimeError("aioluasock.interop.ByteStream needs the anyio package")
        if not isinstance(client, Client):
            raise TypeError(f"ByteStream needs a connected Client, not {type(client).__name__}")
        self.client = client

    async def receive(self, max_bytes: int = _READ_SIZE) -> bytes:
        client = self.client
        try:
            data, err = await client._receive_some(max_bytes)
        except Exception as exc:
            raise _anyio_error(exc) from exc
        if err is None:
            return data
        if client._closed:
            raise anyio.ClosedResourceError
        if err == TIMEOUT:
            raise TimeoutError(err)
        proto = client._proto
        if err == CLOSED and proto is not None and proto.eof:
            raise anyio.EndOfStream
        raise anyio.BrokenResourceError(err)

    async def send(self, item: bytes) -> None:
        client = self.client
        if client._closed:
            raise anyio.ClosedResourceError
        try:
            _, err = await client.send(item)
        except Exception as exc:
            raise _anyio_error(exc) from exc
        if err == TIMEOUT:
            raise TimeoutError(err)
        if err is not None:
            raise anyio.ClosedResourceError if client._closed else anyio.BrokenResourceError(err)

    async def send_eof(self) -> None:
        self.client.shutdown("send")

    async def aclose(self) -> None:
        self.client.close()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        client = self.client

        def local() -> tuple[str, int]:
            name = client.getsockname()
            if name[0] is None:
                raise anyio.BrokenResourceError(name[1])
            return name[0], name[1]

        def remote() -> tuple[str, int]:
            name = client.getpeername()
            if name[0] is None:
                raise anyio.BrokenResourceError(name[1])
            return name[0], name[1]

        def raw() -> socket.socket:
            sock = client._sock
            if sock is None:
                raise anyio.ClosedResourceError
            return sock

        def family() -> socket.AddressFamily:
            return raw().family

        return {
            SocketAttribute.family: family,
            SocketAttribute.local_address: local,
            SocketAttribute.local_port: lambda: local()[1],
            SocketAttribute.remote_address: remote,
            SocketAttribute.remote_port: lambda: remote()[1],
            SocketAttribute.raw_socket: raw,
        }


def _anyio_error(exc: Exception) -> Exception:
    if isinstance(exc, BusyError):
        return anyio.BusyResourceError("receiving" if "receiv" in str(exc) else "sending")
    return exc
