"""The namespace's shortcuts and small functions (`bind`, `connect`, time)."""

from __future__ import annotations

import asyncio
import socket
import time
from ssl import SSLContext
from typing import TypeVar, cast

from ._addresses import check_address, check_port, public_address, public_port, resolve
from ._tcp import Client, Server, tcp, tcp4, tcp6

__all__ = ["bind", "connect", "gettime", "skip", "sleep"]

T = TypeVar("T")


async def bind(address: str, port: int | str, backlog: int = 32) -> tuple[Server, None] | tuple[None, str]:
    """Make a listening server, as LuaSocket's `socket.bind`.

    ``"*"`` means the IPv4 wildcard; a host name is resolved and each address
    tried in order. The server has ``reuseaddr`` set.

    Returns:
        `(server, None)` or `(None, err)`.
    """
    return await _listen_on(public_address(address), public_port(port), backlog, ("reuseaddr",))


async def _listen_on(
    address: str, port: int | str, backlog: int, options: tuple[str, ...]
) -> tuple[Server, None] | tuple[None, str]:
    """`bind`, with the boolean socket options `options` set before binding
    (`serve` adds "reuseport"); a failure to set one fails the address."""
    host = check_address(address)
    check_port(port)
    if isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int, not {type(backlog).__name__}")
    resolved = await resolve("0.0.0.0" if host == "*" else host, "0", socket.AF_UNSPEC, passive=False)
    if isinstance(resolved, str):
        return None, resolved
    err = "no info on address"
    seen: set[tuple[int, object]] = set()
    for family, sockaddr in resolved:
        if (family, sockaddr[0]) in seen:
            continue
        seen.add((family, sockaddr[0]))
        master, create_err = tcp6() if family == socket.AF_INET6 else tcp4()
        if master is None:
            return None, create_err or "socket creation failed"
        failure: str | None = None
        for name in options:
            failure = master.setoption(name, True)[1]
            if failure is not None:
                break
        if failure is None:
            failure = await master._bind(str(sockaddr[0]), port)
        if failure is None:
            failure = master._listen(backlog)
        if failure is not None:
            master.close()
            err = failure
            continue
        # `_listen` turned the master into a server (its class was switched).
        return cast(Server, master), None
    return None, err


async def connect(
    address: str,
    port: int | str,
    locaddr: str | None = None,
    locport: int | str | None = None,
    *,
    ssl: SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[Client, None] | tuple[None, str]:
    """Connect to a server, as LuaSocket's `socket.connect`.

    Args:
        address, port: the server.
        locaddr, locport: bind to this local address (``"*"`` for the
            wildcard) and port first.
        ssl: speak TLS with these settings once connected (`Client.starttls`).
        server_hostname: the name for SNI and the certificate check; by
            default `address`.

    Returns:
        `(client, None)` or `(None, err)`; nothing is left open on failure.
        With `ssl`, a failed handshake gives `starttls`'s errors.
    """
    master, _ = tcp()
    try:
        err = None
        if locaddr is not None or locport is not None:
            err = await master._bind(
                "*" if locaddr is None else public_address(locaddr),
                0 if locport is None else public_port(locport),
            )
        if err is None:
            err = await master._connect(public_address(address), public_port(port))
    except BaseException:
        master.close()
        raise
    if err is None and ssl is not None:
        try:
            err = (await cast(Client, master).starttls(ssl, server_hostname=server_hostname or address))[1]
        except BaseException:
            master.close()
            raise
    if err is not None:
        master.close()
        return None, err
    # `_connect` turned the master into a client (its class was switched).
    return cast(Client, master), None


def gettime() -> float:
    """Return the wall-clock time, in seconds since the epoch."""
    return time.time()


async def sleep(seconds: float) -> None:
    """Sleep without blocking the loop; negative returns at once."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"sleep expects a number, not {type(seconds).__name__}")
    await asyncio.sleep(max(seconds, 0))


def skip(d: int, *values: T) -> tuple[T, ...]:
    """Return `values` without the first `d` of them (LuaSocket's `skip`)."""
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"skip expects an int count, not {type(d).__name__}")
    if d < 0:
        raise ValueError("skip count must be >= 0")
    return values[d:]
