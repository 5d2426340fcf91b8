"""Addresses: argument checks, socket creation and name resolution.

The engine's checks (`check_address`, `check_port`) are LuaSocket's, which
the Lua bridge shares; the Python API adds its own stricter ones
(`public_address`, `public_port`).
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import os
import socket
import stat
from typing import Final

from ._errors import os_error_text, resolver_error_text


def check_address(address: object) -> str | None:
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, not {type(address).__name__}")
    return address


def check_port(port: object) -> str:
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        raise TypeError(f"port must be an int or a str, not {type(port).__name__}")
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ValueError(f"port out of range 0-65535: {port}")
    return str(port)


# The Python API's checks are stricter than the engine's, which the Lua bridge
# shares: LuaSocket hands C strings to getaddrinfo, so under the bridge
# "127.0.0.1\0x" is "127.0.0.1" and the service "99999" is port 34463 (glibc
# keeps the low 16 bits), as in real LuaSocket; in Python both are mistakes.


def public_address(address: object) -> str:
    """`check_address` for the Python API: a NUL is refused, not cut at."""
    host = check_address(address)
    assert host is not None
    if "\0" in host:
        raise ValueError(f"address must not contain a NUL character: {host!r}")
    return host


def public_port(port: object) -> int | str:
    """`check_port` for the Python API: a numeric string is range-checked
    like an int, an empty one refused; other strings are service names."""
    check_port(port)
    if isinstance(port, str):
        if not port:
            raise ValueError("port must not be empty: use 0 for an ephemeral port")
        if port.isascii() and port.isdigit() and not 0 <= int(port) <= 65535:
            raise ValueError(f"port out of range 0-65535: {port!r}")
        if "\0" in port:
            raise ValueError(f"port must not contain a NUL character: {port!r}")
    assert isinstance(port, (int, str))
    return port


class PlainSocket(socket.socket):
    """A `socket.socket` whose `family` and `type` are the plain ints of the
    C socket: `socket.socket` converts them to enums on every read (about a
    microsecond each), and the loops read them several times per connection
    (`accept`, `connect_accepted_socket`)."""

    __slots__ = ()

    family = _socket.socket.family  # type: ignore[assignment]
    type = _socket.socket.type  # type: ignore[assignment]


NONBLOCKING_STREAM: Final = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
"""The socket type that makes a socket object non-blocking from the start,
where the platform has the flag (it only sets the object's own mode: the
descriptor itself is made non-blocking by the loop that takes it)."""


def new_socket(family: int) -> socket.socket:
    sock = PlainSocket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            # As LuaSocket: an IPv6 socket never accepts IPv4-mapped peers.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def resolve(
    address: str | None, port: str, family: int, *, passive: bool, socktype: int = socket.SOCK_STREAM
) -> list[tuple[int, tuple[object, ...]]] | str:
    """Resolve with the loop's resolver (never blocking the loop): a list of
    `(family, sockaddr)` or LuaSocket's text for the failure. `socktype` is
    the hint LuaSocket gives (UDP objects resolve for SOCK_DGRAM)."""
    flags = socket.AI_PASSIVE if passive else 0
    if not port.isdigit():
        # A service name ("http", " 80", "-1"): translated here, with the C
        # library's rules as LuaSocket has them, so that both loops agree
        # (uvloop's resolver accepts "-1"). Only the local services database
        # is read; no host is looked up.
        try:
            port = str(socket.getaddrinfo(None, port or "0", socket.AF_INET, socktype)[0][4][1])
        except (OSError, UnicodeError) as exc:
            return os_error_text(exc) if isinstance(exc, OSError) else str(exc)
    if port.isdigit():
        # A numeric address (or the wildcard) needs no lookup: answer it here
        # instead of queueing it behind real lookups on the resolver's few
        # threads, which would make a crowd of connects crawl.
        try:
            infos = socket.getaddrinfo(
                address,
                port,
                family,
                socktype,
                0,
                flags | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
        except (OSError, UnicodeError):
            pass
        else:
            return [(info[0], info[4]) for info in infos]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            address,
            port,
            family=family,
            type=socktype,
            flags=flags,
        )
    except OSError as exc:
        return os_error_text(exc)
    except UnicodeError:
        # The IDNA codec refuses the name (a label over 63 characters, say):
        # the C resolver, which LuaSocket calls, answers "not known" for it.
        return resolver_error_text(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    if not infos:
        return "no info on address"
    return [(info[0], info[4]) for info in infos]


def remove_made_file(made: tuple[bytes, int]) -> None:
    """Remove the socket file that a Unix `bind` made (`path`, inode), if
    it is still that file: never one somebody else put there since."""
    path, inode = made
    with contextlib.suppress(OSError):
        info = os.stat(path)
        if info.st_ino == inode and stat.S_ISSOCK(info.st_mode):
            os.unlink(path)


def describe(kind: str, sock: socket.socket | None, closed: bool, fd: int, *, peer: bool) -> str:
    """The `repr` of an IP socket object: its kind, its local address (and
    with `peer`, the peer's), its descriptor."""
    where = " closed" if closed else ""
    if sock is not None and not closed:
        with contextlib.suppress(OSError):
            local = sock.getsockname()
            where = f" {local[0]}:{local[1]}"
            if peer:
                remote = sock.getpeername()
                where += f" -> {remote[0]}:{remote[1]}"
    return f"<{kind}{where} fd={fd}>"
