"""Unix domain stream sockets: LuaSocket's `socket.unix` (`unixstream`) on
the TCP engine.

A Unix stream is a TCP stream with a path for an address: the same
receive, send, timeout, select and TLS paths serve it, and only naming
differs. As LuaSocket's `unixstream.c`: a path of 108 bytes or more is
"path too long"; a failed `bind` or `connect` destroys the object's socket;
`connect` turns only a successful master into a client; a path starting
with NUL is an abstract name (Linux). Unlike LuaSocket, the socket file
that a `bind` created is removed when the object is closed (when it is
still the file we made), so that binding the same path again works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import ClassVar, Final, cast, final

from ._client import ClientBase
from ._errors import os_error_text
from ._lifecycle import TcpSocket
from ._options import UNIX_STREAM_OPTIONS, Option
from ._socket import BAD_FD

__all__ = ["UnixClient", "UnixMaster", "UnixServer", "bind", "connect", "stream"]

PATH_MAX: Final = 108
"""`sizeof(sockaddr_un.sun_path)` on Linux: a path must be shorter."""

PATH_TOO_LONG: Final = "path too long"

Path = str | bytes | os.PathLike[str] | os.PathLike[bytes]
"""What the Python API takes for a path (`str` paths are encoded with the
file system encoding; a leading NUL makes an abstract name)."""


def public_path(path: object) -> bytes:
    """Check a path given to the Python API; the bytes the kernel gets.

    Raises:
        TypeError: not a str, bytes or path-like object.
        ValueError: a NUL inside a file system path (an abstract name, which
            starts with NUL, may hold any byte).
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str, bytes or path-like object, not {type(path).__name__}")
    raw = os.fsencode(path)
    if raw[:1] != b"\0" and b"\0" in raw:
        raise ValueError(f"path must not contain a NUL character: {raw!r}")
    return raw


def path_text(address: object) -> str:
    """A socket address of the Unix family as the Python API reports it: the
    path (an abstract name with its leading NUL), "" for an unnamed socket."""
    if isinstance(address, bytes):
        return os.fsdecode(address)
    return str(address)


def sock_path(sock: socket.socket | None, closed: bool, *, peer: bool) -> tuple[str, None] | tuple[None, str]:
    """`(path, None)` of a Unix socket's own or its peer's address, or
    `(None, err)` ("Bad file descriptor" without a socket)."""
    if sock is None or closed:
        return None, BAD_FD
    try:
        return path_text(sock.getpeername() if peer else sock.getsockname()), None
    except OSError as exc:
        return None, os_error_text(exc)


def bind_path(sock: socket.socket, path: bytes) -> tuple[str, None] | tuple[None, tuple[bytes, int] | None]:
    """Bind a Unix socket: `(err, None)`, or `(None, made)` where `made` is
    the socket file the bind created (path and inode, so that a file somebody
    else put there later is never removed), `None` for an abstract name."""
    try:
        sock.bind(path)
    except OSError as exc:
        return os_error_text(exc), None
    made = None
    if path[:1] not in (b"", b"\0"):
        with contextlib.suppress(OSError):
            made = (path, os.stat(path).st_ino)
    return None, made


def describe(kind: str, sock: socket.socket | None, closed: bool, fd: int) -> str:
    """The `repr` of a Unix object: its kind, its path, its descriptor."""
    where = " closed" if closed else ""
    if sock is not None and not closed:
        with contextlib.suppress(OSError):
            where = f" {path_text(sock.getsockname())!r}"
    return f"<{kind}{where} fd={fd}>"


class UnixStream(TcpSocket):
    """What every Unix stream object has on top of the engine (not public)."""

    __slots__ = ()

    _options: ClassVar[dict[str, Option]] = UNIX_STREAM_OPTIONS
    _server_kind: ClassVar[type[UnixStream]]
    _client_kind: ClassVar[type[UnixStream]]

    async def _bind_path(self, path: bytes) -> str | None:
        """Bind to `path`; `None` or LuaSocket's error text. A failure
        destroys the socket, as in LuaSocket."""
        if len(path) >= PATH_MAX:
            return PATH_TOO_LONG
        err = self._new_socket_for(socket.AF_UNIX)
        if err is not None:
            return err
        sock = self._sock
        assert sock is not None
        err, self._made_file = bind_path(sock, path)
        if err is not None:
            self._drop_socket()
        return err

    async def _connect_path(self, path: bytes) -> str | None:
        """Connect to `path`; the object becomes a client only on success
        (LuaSocket's unixstream, unlike its tcp), and a failure destroys the
        socket."""
        if len(path) >= PATH_MAX:
            return PATH_TOO_LONG
        err = self._new_socket_for(socket.AF_UNIX)
        if err is not None:
            return err
        loop = asyncio.get_running_loop()
        err = await self._connect_to(loop, path, self._start_call(loop))
        if err is not None:
            self._drop_socket()
            return err
        self.__class__ = self._client_kind
        return await self._attach(loop)

    def _path(self, *, peer: bool) -> tuple[str, None] | tuple[None, str]:
        return sock_path(self._sock, self._closed, peer=peer)

    def getsockname(self) -> tuple[str, None] | tuple[None, str]:  # type: ignore[override]
        """Return `(path, None)` (an abstract name starts with NUL; "" when
        unbound), or `(None, err)`."""
        return self._path(peer=False)

    def __repr__(self) -> str:
        return describe(self._kind, self._sock, self._closed, self.getfd())


@final
class UnixMaster(UnixStream):
    """A Unix stream object neither listening nor connected (`unixstream{master}`)."""

    __slots__ = ()
    _kind = "unixstream{master}"

    async def bind(self, path: Path) -> tuple[int, None] | tuple[None, str]:
        """Bind to a path (a new socket file) or an abstract name (``"\\0name"``).

        Returns:
            `(1, None)` or `(None, err)`: "path too long", "address already
            in use", "permission denied", other OS texts. After a failure
            the object has no socket any more (as in LuaSocket).

        Raises:
            TypeError / ValueError: see `public_path`.
        """
        err = await self._bind_path(public_path(path))
        return (None, err) if err is not None else (1, None)

    def listen(self, backlog: int = 32) -> tuple[int, None] | tuple[None, str]:
        """Listen for connections; the object becomes a `UnixServer`.

        Returns:
            `(1, None)` or `(None, err)`.
        """
        err = self._listen(backlog)
        return (None, err) if err is not None else (1, None)

    async def connect(self, path: Path) -> tuple[int, None] | tuple[None, str]:
        """Connect; on success the object becomes a `UnixClient`.

        Returns:
            `(1, None)` or `(None, err)`: "path too long", "connection
            refused" (nobody listens), "No such file or directory",
            "timeout". After a failure the object has no socket any more.
        """
        err = await self._connect_path(public_path(path))
        return (None, err) if err is not None else (1, None)


@final
class UnixServer(UnixStream):
    """A listening Unix stream object (`unixstream{server}`)."""

    __slots__ = ()
    _kind = "unixstream{server}"

    async def accept(self) -> tuple[UnixClient, None] | tuple[None, str]:
        """Wait for a connection and return it as a new `UnixClient`.

        Returns:
            `(client, None)`, or `(None, err)`: "timeout", "closed", OS texts.

        Raises:
            BusyError: another task is accepting on this server.
        """
        client, err = await self._accept()
        if client is None:
            assert err is not None
            return None, err
        return cast(UnixClient, client), None  # made by this kind's `_client_kind`


@final
class UnixClient(UnixStream, ClientBase):
    """A connected Unix stream object (`unixstream{client}`): `receive`,
    `send`, `shutdown`, `getstats`, `starttls`... exactly as a TCP `Client`."""

    __slots__ = ()
    _kind = "unixstream{client}"

    def getpeername(self) -> tuple[str, None] | tuple[None, str]:
        """Return `(path, None)` of the peer ("" for an unbound peer), or
        `(None, err)`. (LuaSocket's unixstream has no getpeername.)"""
        return self._path(peer=True)


UnixStream._server_kind = UnixServer
UnixStream._client_kind = UnixClient


def stream() -> tuple[UnixMaster, None] | tuple[None, str]:
    """Make a Unix stream master (LuaSocket's `socket.unix.stream()`).

    Returns:
        `(master, None)` or `(None, err)`.
    """
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
    except OSError as exc:
        return None, os_error_text(exc)
    return UnixMaster(sock, socket.AF_UNIX), None


async def bind(path: Path, backlog: int = 32) -> tuple[UnixServer, None] | tuple[None, str]:
    """Make a server listening on `path`: `stream()`, `bind`, `listen`.

    Returns:
        `(server, None)` or `(None, err)`.
    """
    raw = public_path(path)
    master, err = stream()
    if master is None:
        return None, err or "closed"
    err = await master._bind_path(raw)
    if err is None:
        err = master._listen(backlog)
    if err is not None:
        master.close()
        return None, err
    return cast(UnixServer, master), None  # `listen` changed its class


async def connect(path: Path) -> tuple[UnixClient, None] | tuple[None, str]:
    """Connect to `path`: `stream()` then `connect`.

    Returns:
        `(client, None)` or `(None, err)`.
    """
    raw = public_path(path)
    master, err = stream()
    if master is None:
        return None, err or "closed"
    err = await master._connect_path(raw)
    if err is not None:
        master.close()
        return None, err
    return cast(UnixClient, master), None  # `connect` changed its class
