"""Unix domain datagram sockets: LuaSocket's `socket.unix.dgram()`
(`unixdgram`) on the UDP engine.

The UDP engine's queue, timeouts, no-loss cancel and select serve it; what
differs is the address (a path) and LuaSocket's `unixdgram.c` rules: a path
of 108 bytes or more is "path too long"; a failed `bind` or `connect`
destroys the object's socket; `connect` makes the object connected (there
is no way back); a datagram from an unbound sender comes from "".
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar, final

from ._errors import os_error_text
from ._options import UNIX_DGRAM_OPTIONS, Option
from ._send import Buffer, as_bytes
from ._socket import BAD_FD
from ._udp import _check_size, _Udp
from ._unix import PATH_MAX, PATH_TOO_LONG, Path, bind_path, describe, path_text, public_path, sock_path

__all__ = ["UnixDgramConnected", "UnixDgramUnconnected", "dgram"]


class UnixDgram(_Udp):
    """What both Unix datagram kinds have on top of the UDP engine (not public)."""

    __slots__ = ()

    _options: ClassVar[dict[str, Option]] = UNIX_DGRAM_OPTIONS
    _unconnected_kind: ClassVar[type[UnixDgram]]
    _connected_kind: ClassVar[type[UnixDgram]]

    @staticmethod
    def _bound(sock: socket.socket) -> bool:
        try:
            return bool(sock.getsockname())  # "" (or b""): unnamed
        except OSError:
            return False

    @staticmethod
    def _sender(addr: Any) -> Any:
        return path_text(addr) if addr else ""

    def _path(self, *, peer: bool) -> tuple[str, None] | tuple[None, str]:
        return sock_path(self._sock, self._closed, peer=peer)

    def getsockname(self) -> tuple[str, None] | tuple[None, str]:  # type: ignore[override]
        """Return `(path, None)` ("" when unbound), or `(None, err)`."""
        return self._path(peer=False)

    async def _bind_path(self, path: bytes) -> str | None:
        """Bind to `path`: `None` or the error text (a failure destroys the
        socket, as in LuaSocket)."""
        if len(path) >= PATH_MAX:
            return PATH_TOO_LONG
        sock = self._sock
        if sock is None or self._closed:
            return BAD_FD
        err, self._made_file = bind_path(sock, path)
        if err is not None:
            self._drop_socket()
            return err
        self._attach()
        await self._settle()
        return None

    async def _connect_path(self, path: bytes) -> str | None:
        """Give the object its peer: `None` (it is connected now) or the
        error text (a failure destroys the socket)."""
        if len(path) >= PATH_MAX:
            return PATH_TOO_LONG
        sock = self._sock
        if sock is None or self._closed:
            return BAD_FD
        try:
            sock.connect(path)
        except OSError as exc:
            self._drop_socket()
            return os_error_text(exc)
        self.__class__ = self._connected_kind
        self._attach()
        await self._settle()
        return None

    async def _sendto_path(self, payload: bytes, path: bytes) -> int | str:
        if len(path) >= PATH_MAX:
            return PATH_TOO_LONG
        return await self._send(payload, path)

    async def connect(self, path: Path) -> tuple[int, None] | tuple[None, str]:
        """Send to and receive from `path` only: the object becomes a
        `UnixDgramConnected` (LuaSocket's `connect`/`setpeername`).

        Returns:
            `(1, None)`, or `(None, err)`: "path too long", "No such file or
            directory", "connection refused"; the object then has no socket.
        """
        err = await self._connect_path(public_path(path))
        return (None, err) if err is not None else (1, None)

    def __repr__(self) -> str:
        return describe(self._kind, self._sock, self._closed, self.getfd())


@final
class UnixDgramUnconnected(UnixDgram):
    """A Unix datagram object with no peer (`unixdgram{unconnected}`)."""

    __slots__ = ()
    _kind = "unixdgram{unconnected}"

    async def bind(self, path: Path) -> tuple[int, None] | tuple[None, str]:
        """Bind to a path (a new socket file) or an abstract name (``"\\0name"``).

        Returns:
            `(1, None)` or `(None, err)`: "path too long", "address already
            in use", other OS texts; the object then has no socket.
        """
        err = await self._bind_path(public_path(path))
        return (None, err) if err is not None else (1, None)

    async def sendto(self, data: Buffer, path: Path) -> tuple[int, None] | tuple[None, str]:
        """Send one datagram to `path`.

        Returns:
            `(count, None)`, or `(None, err)`: "path too long", "connection
            refused" (nobody bound there), "No such file or directory",
            "timeout" (the receiver's queue is full), other OS texts.
        """
        got = await self._sendto_path(as_bytes(data, "data"), public_path(path))
        return (None, got) if isinstance(got, str) else (got, None)

    async def receivefrom(self, size: int | None = None) -> tuple[bytes, str, None] | tuple[None, str]:
        """Receive one datagram and its sender's path ("" for an unbound sender).

        Args:
            size: the most bytes to return (8192 when `None`); the rest of a
                longer datagram is discarded.

        Returns:
            `(datagram, path, None)`, or `(None, err)`: "timeout", "closed",
            OS texts.
        """
        got = await self._receive(_check_size(size))
        if isinstance(got, str):
            return None, got
        return got[0], got[1], None


@final
class UnixDgramConnected(UnixDgram):
    """A Unix datagram object with a peer (`unixdgram{connected}`)."""

    __slots__ = ()
    _kind = "unixdgram{connected}"

    async def send(self, data: Buffer) -> tuple[int, None] | tuple[None, str]:
        """Send one datagram to the peer.

        Returns:
            `(count, None)`, or `(None, err)`: "connection refused" (the peer
            is gone), "timeout" (its queue is full), "closed", OS texts.
        """
        got = await self._send(as_bytes(data, "data"), None)
        return (None, got) if isinstance(got, str) else (got, None)

    def getpeername(self) -> tuple[str, None] | tuple[None, str]:
        """Return `(path, None)` of the peer, or `(None, err)`."""
        return self._path(peer=True)


UnixDgram._unconnected_kind = UnixDgramUnconnected
UnixDgram._connected_kind = UnixDgramConnected


def dgram() -> tuple[UnixDgramUnconnected, None] | tuple[None, str]:
    """Make a Unix datagram object (LuaSocket's `socket.unix.dgram()`).

    Returns:
        `(object, None)` or `(None, err)`.
    """
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
    except OSError as exc:
        return None, os_error_text(exc)
    return UnixDgramUnconnected(sock, socket.AF_UNIX), None
