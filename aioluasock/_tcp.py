"""Master, server and client objects: the Python contract of DESIGN.md.

Each kind exposes only its own methods; an object changes kind by
reassigning `__class__` (see `_socket.py`). What they are made of:
`_socket.py` (state, common methods), `_lifecycle.py` (bind, listen,
connect, accept, attach), `_receive.py`, `_send.py` and `_tls.py`.

The client keeps its state in a `StreamProtocol` (buffer, end of stream,
waiters); the protocol never refers back to the client object, so an open
client that its owner forgets is garbage-collected (and closed, with a
`ResourceWarning`) even though the loop still holds its transport.
"""

from __future__ import annotations

import socket
from typing import final

from ._addresses import new_socket, public_address, public_port
from ._client import ClientBase
from ._errors import os_error_text
from ._lifecycle import TcpSocket

__all__ = ["Client", "Master", "Server", "tcp", "tcp4", "tcp6"]


@final
class Master(TcpSocket):
    """A TCP object that is neither listening nor connected (`tcp{master}`)."""

    __slots__ = ()
    _kind = "tcp{master}"

    async def bind(self, address: str, port: int | str) -> tuple[int, None] | tuple[None, str]:
        """Bind to a local address.

        Args:
            address: a host name or numeric address, or ``"*"`` for the
                wildcard of the object's family.
            port: a number (0 for an ephemeral port) or a service name.

        Returns:
            `(1, None)` or `(None, err)`: "address already in use",
            "Invalid argument" (already bound), "permission denied",
            "Cannot assign requested address", resolver texts.
        """
        err = await self._bind(public_address(address), public_port(port))
        return (None, err) if err is not None else (1, None)

    def listen(self, backlog: int = 32) -> tuple[int, None] | tuple[None, str]:
        """Listen for connections; the object becomes a `Server`.

        Connections nobody accepts yet wait in the kernel's queue, bounded by
        `backlog`.

        Returns:
            `(1, None)` or `(None, err)` ("Bad file descriptor" when not bound).
        """
        err = self._listen(backlog)
        return (None, err) if err is not None else (1, None)

    async def connect(self, address: str, port: int | str) -> tuple[int, None] | tuple[None, str]:
        """Connect; the object becomes a `Client`, even when connecting fails.

        Every resolved address is tried in order, each with the full timeout.
        With a timeout of 0 the attempt goes on after "timeout" is returned:
        `select` reports the client writable when it finishes.

        Returns:
            `(1, None)` or `(None, err)`: "connection refused", "timeout",
            "already connected", resolver texts, other OS texts.
        """
        err = await self._connect(public_address(address), public_port(port))
        return (None, err) if err is not None else (1, None)


@final
class Server(TcpSocket):
    """A listening TCP object (`tcp{server}`)."""

    __slots__ = ()
    _kind = "tcp{server}"

    async def accept(self) -> tuple[Client, None] | tuple[None, str]:
        """Wait for a connection and return it as a new `Client`.

        The new client has no timeout (it does not inherit the server's).

        Returns:
            `(client, None)`, or `(None, err)`: "timeout", "closed", or an OS
            text such as "Too many open files".

        Raises:
            BusyError: another task is accepting on this server.
        """
        return await self._accept()


@final
class Client(ClientBase):
    """A connected TCP object (`tcp{client}`)."""

    __slots__ = ()
    _kind = "tcp{client}"

    def getpeername(self) -> tuple[str, int] | tuple[None, str]:
        """Return the peer's `(ip, port)`, or `(None, err)`."""
        return self._address(peer=True)


TcpSocket._server_kind = Server
TcpSocket._client_kind = Client


def _make(family: int) -> tuple[Master, None] | tuple[None, str]:
    try:
        sock = new_socket(family)
    except OSError as exc:
        return None, os_error_text(exc)
    return Master(sock, family), None


def tcp() -> tuple[Master, None]:
    """Make a master with no descriptor yet; the first `bind` or `connect`
    creates one of the family its address resolves to.

    Returns:
        `(master, None)`.
    """
    return Master(None, socket.AF_UNSPEC), None


def tcp4() -> tuple[Master, None] | tuple[None, str]:
    """Make an IPv4 master. Returns `(master, None)` or `(None, err)`."""
    return _make(socket.AF_INET)


def tcp6() -> tuple[Master, None] | tuple[None, str]:
    """Make an IPv6 master (IPV6_V6ONLY set). Returns `(master, None)` or `(None, err)`."""
    return _make(socket.AF_INET6)
