"""Master, server and client objects against DESIGN.md's Python contract.

Every test runs on asyncio and on uvloop (conftest.py). Loopback only
(127.0.0.1 and ::1, port 0); every wait is bounded; timing assertions keep at
least 50 ms of slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import math
import os
import socket as std_socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

import anyio
import pytest
from conftest import HAS_IPV6, needs_ipv6

import aioluasock as socket
import aioluasock._socket
from aioluasock import BusyError, Client, Master, Server
from aioluasock._attach import Attach
from aioluasock._buffer import ReceiveBuffer
from aioluasock._protocol import (
    DEFER_MAX,
    READ_BURST_HIGH_WATER,
    READ_HIGH_WATER,
    WRITE_HIGH_WATER,
    StreamProtocol,
)

T = TypeVar("T")

LOCAL = "127.0.0.1"
RESOLVER_TEXTS = {
    "host or service not provided, or not known",
    "temporary failure in name resolution",
    "non-recoverable failure in name resolution",
    "No address associated with hostname",
}
MB = 1024 * 1024


# -- helpers ------------------------------------------------------------------


def ok(result: tuple[T, None] | tuple[None, str]) -> T:
    """The value of a successful `(value, None)` result."""
    value, err = result
    assert err is None, err
    assert value is not None
    return value


def port_of(obj: Master | Server | Client) -> int:
    name = obj.getsockname()
    assert name[0] is not None, name
    port = name[1]
    assert isinstance(port, int)
    return port


def kind(obj: object) -> type:
    """The class of `obj` now (listen and connect switch it; mypy cannot know)."""
    return type(obj)


def as_client(obj: object) -> Client:
    assert type(obj) is Client, type(obj)
    return obj


def as_server(obj: object) -> Server:
    assert type(obj) is Server, type(obj)
    return obj


def peer_port_of(client: Client) -> int:
    name = client.getpeername()
    assert name[0] is not None, name
    port = name[1]
    assert isinstance(port, int)
    return port


async def listening(host: str = LOCAL, backlog: int = 32) -> tuple[Server, int]:
    server = ok(await socket.bind(host, 0, backlog))
    return server, port_of(server)


@contextlib.asynccontextmanager
async def connected(host: str = LOCAL) -> AsyncIterator[tuple[Client, Client]]:
    """A connected `(client, peer)` pair; everything is closed afterwards."""
    server, port = await listening(host)
    client: Client | None = None
    peer: Client | None = None
    try:
        client = ok(await socket.connect(host, port))
        server.settimeout(5)
        peer = ok(await server.accept())
        yield client, peer
    finally:
        for obj in (client, peer, server):
            if obj is not None:
                obj.close()


async def closed_port() -> int:
    """A loopback port that was just bound and released: nobody listens on it."""
    master = ok(socket.tcp4())
    ok(await master.bind(LOCAL, 0))
    port = port_of(master)
    master.close()
    return port


async def wait_buffered(client: Client, count: int, limit: float = 5.0) -> None:
    """Wait (bounded) until `client` has at least `count` unconsumed bytes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while len(client._buffer) < count:
        assert loop.time() < deadline, f"only {len(client._buffer)} of {count} bytes arrived"
        await asyncio.sleep(0.005)


async def elapsed(call: Awaitable[T]) -> tuple[T, float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await call
    return result, loop.time() - start


async def trickle(sender: Client, data: bytes, interval: float) -> None:
    for index in range(len(data)):
        assert await sender.send(data[index : index + 1]) == (1, None)
        await asyncio.sleep(interval)


def payload(size: int) -> bytes:
    block = bytes(range(256)) * 4096  # 1 MiB of a recognisable pattern
    return (block * (size // len(block) + 1))[:size]


async def bounded(call: Awaitable[T], limit: float = 5.0) -> T:
    return await asyncio.wait_for(call, limit)


# -- constructors, kinds, repr --------------------------------------------------


@pytest.mark.asyncio
async def test_tcp_makes_a_master_without_descriptor() -> None:
    master, err = socket.tcp()
    assert err is None and type(master) is Master
    assert master.getfd() == -1
    assert master.getfamily() == "inet4"
    assert master.getsockname() == (None, "Bad file descriptor")
    assert master.setoption("reuseaddr", True) == (None, "setsockopt failed")
    assert master.getoption("reuseaddr") == (None, "getsockopt failed")
    assert master.listen() == (None, "Bad file descriptor")
    assert type(master) is Master
    assert "tcp{master}" in repr(master)
    assert master.close() == 1


@pytest.mark.asyncio
async def test_tcp4_and_tcp6_make_masters_with_descriptors() -> None:
    master4 = ok(socket.tcp4())
    assert type(master4) is Master
    assert master4.getfd() >= 0
    assert master4.getfamily() == "inet4"
    assert "tcp{master}" in repr(master4)
    assert master4.close() == 1
    if HAS_IPV6:
        master6 = ok(socket.tcp6())
        assert master6.getfd() >= 0
        assert master6.getfamily() == "inet6"
        assert master6.getoption("ipv6-v6only") == (True, None)
        assert master6.close() == 1


@pytest.mark.asyncio
async def test_each_kind_exposes_only_its_own_methods() -> None:
    common = ["close", "settimeout", "gettimeout", "setoption", "getoption", "getsockname"]
    common += ["getfd", "getfamily", "dirty"]
    only = {
        Master: {"bind", "listen", "connect"},
        Server: {"accept"},
        Client: {"receive", "send", "shutdown", "getpeername", "getstats", "setstats"},
    }
    for kind, own in only.items():
        for name in common:
            assert callable(getattr(kind, name)), (kind, name)
        for other in only.values():
            for name in other:
                assert hasattr(kind, name) == (name in own), (kind, name)
    async with connected() as (client, peer):
        assert not hasattr(client, "accept")
        assert not hasattr(peer, "bind")
        with pytest.raises(AttributeError):
            client.listen()  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_listen_turns_the_same_master_into_a_server() -> None:
    master = ok(socket.tcp4())
    identity = id(master)
    assert await master.bind(LOCAL, 0) == (1, None)
    assert kind(master) is Master  # bind does not change the kind
    port = port_of(master)
    master.settimeout(3)
    assert master.listen(4) == (1, None)
    server = as_server(master)
    assert id(server) == identity
    assert not hasattr(server, "bind")
    assert repr(server).startswith("<tcp{server}")
    assert f"127.0.0.1:{port}" in repr(server)
    assert server.gettimeout() == (3.0, None)  # the same object keeps its state
    client = ok(await socket.connect(LOCAL, port))
    peer = ok(await bounded(server.accept()))
    assert type(peer) is Client
    assert peer.gettimeout() == (None, None)  # not inherited from the server
    assert "tcp{client}" in repr(peer)
    for obj in (client, peer, server):
        obj.close()
    assert "closed" in repr(server)


@pytest.mark.asyncio
async def test_connect_turns_the_same_master_into_a_client() -> None:
    server, port = await listening()
    master = ok(socket.tcp())
    assert master.getfd() == -1
    assert await master.connect(LOCAL, port) == (1, None)
    client = as_client(master)
    assert client.getfd() >= 0
    local = port_of(client)
    text = repr(client)
    assert text.startswith("<tcp{client}")
    assert f"127.0.0.1:{local} -> 127.0.0.1:{port}" in text
    assert client.getfamily() == "inet4"
    assert client.getpeername() == (LOCAL, port)
    peer = ok(await bounded(server.accept()))
    assert peer.getpeername() == (LOCAL, local)
    assert await client.send(b"x\n") == (2, None)
    assert await bounded(peer.receive()) == (b"x", None)
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_failed_connect_still_makes_a_client() -> None:
    port = await closed_port()
    master = ok(socket.tcp4())
    assert await master.connect(LOCAL, port) == (None, "connection refused")
    client = as_client(master)
    assert "tcp{client}" in repr(client)
    assert await bounded(client.receive()) == (b"", "closed")
    assert await bounded(client.send(b"x")) == (0, "closed")
    assert client.getpeername() == (None, "Transport endpoint is not connected")
    assert client.close() == 1


@pytest.mark.asyncio
async def test_connect_with_zero_timeout_finishes_later() -> None:
    server, port = await listening()
    master = ok(socket.tcp4())
    master.settimeout(0)
    result = await master.connect(LOCAL, port)
    assert result in ((1, None), (None, "timeout"))
    client = as_client(master)
    if result == (None, "timeout"):
        readable, writable, err = await socket.select(None, [client], 5)
        assert err is None and writable == [client] and readable == []
    peer = ok(await bounded(server.accept()))
    client.settimeout(None)
    assert await bounded(client.send(b"late\n")) == (5, None)
    assert await bounded(peer.receive()) == (b"late", None)
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_receive_and_send_wait_for_a_connect_in_progress() -> None:
    # A server whose accept queue is full drops the SYNs of new connections
    # (the kernel retries them a second later): their connect stays in
    # progress. As in LuaSocket (recv/send say EAGAIN), receive and send on
    # such a client time out, or wait for the handshake within their
    # timeout; they do not say "closed".
    listener = std_socket.socket()
    listener.bind((LOCAL, 0))
    listener.listen(0)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    fills = []
    for _ in range(3):
        fill = std_socket.socket()
        fill.setblocking(False)
        fill.connect_ex((LOCAL, port))
        fills.append(fill)
    await asyncio.sleep(0.1)
    master = ok(socket.tcp4())
    master.settimeout(0)
    assert await master.connect(LOCAL, port) == (None, "timeout")
    client = as_client(master)
    assert client.getpeername() == (None, "Transport endpoint is not connected")
    assert await bounded(client.receive()) == (b"", "timeout")
    assert await bounded(client.send(b"hello\n")) == (0, "timeout")
    client.settimeout(0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await bounded(client.receive(5)) == (b"", "timeout")
    assert loop.time() - start >= 0.15
    # Room in the queue: the retried SYN gets in, the send goes out.
    for fill in fills:
        fill.close()
    first, _ = await bounded(loop.sock_accept(listener))
    first.close()
    # A receive and a send both waiting for the handshake: one transport.
    client.settimeout(5)
    receiving = asyncio.ensure_future(client.receive())
    await asyncio.sleep(0.05)
    assert await bounded(client.send(b"hello\n"), 10) == (6, None)
    peer, _ = await bounded(loop.sock_accept(listener))
    peer.setblocking(False)
    assert await bounded(loop.sock_recv(peer, 100)) == b"hello\n"
    await loop.sock_sendall(peer, b"back\n")
    assert await bounded(receiving) == (b"back", None)
    peer.close()
    client.close()
    listener.close()


@pytest.mark.asyncio
async def test_refused_connect_with_zero_timeout_reports_through_error_option() -> None:
    port = await closed_port()
    master = ok(socket.tcp4())
    master.settimeout(0)
    result = await master.connect(LOCAL, port)
    client = as_client(master)
    if result == (None, "timeout"):
        # The attempt goes on; select reports the socket once it is over.
        _, writable, err = await socket.select(None, [client], 5)
        assert err is None and writable == [client]
        assert client.getoption("error") == ("connection refused", None)
        assert client.getoption("error") == (None, None)  # reading cleared it
    else:
        assert result == (None, "connection refused")
    assert await bounded(client.send(b"x")) == (0, "closed")
    client.close()


@pytest.mark.asyncio
async def test_total_timeout_spans_all_patterns_of_a_call() -> None:
    async with connected() as (client, peer):
        client.settimeout(0.2, "t")
        sender = asyncio.create_task(trickle(peer, b"abcdefghij", 0.03))
        # Each pattern completes within the limit, the call as a whole does not.
        result, spent = await elapsed(bounded(client.receive(2, 2, 2, 2, 2)))
        await sender
        assert result[-1] == "timeout"
        assert 0.15 <= spent < 0.35
        values = result[:-1]
        failed = values.index(None) - 1 if None in values else len(values) - 1
        assert all(value is not None and len(value) == 2 for value in values[:failed])
        assert all(value is None for value in values[failed + 1 :])
        got = b"".join(value for value in values if isinstance(value, bytes))
        assert 4 <= len(got) < 10
        rest = await bounded(client.receive(10 - len(got)))
        assert rest == (b"abcdefghij"[len(got) :], None)


# -- the result table, row by row ------------------------------------------------


@pytest.mark.asyncio
async def test_module_bind_success_and_failure() -> None:
    server, port = await listening()
    assert type(server) is Server
    assert server.getoption("reuseaddr") == (True, None)
    assert server.getsockname() == (LOCAL, port)
    assert await socket.bind(LOCAL, port) == (None, "address already in use")
    with pytest.raises(TypeError):
        await socket.bind(LOCAL, 0, backlog=True)
    with pytest.raises(TypeError):
        await socket.bind(LOCAL, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await socket.bind(LOCAL, 70000)
    server.close()


@pytest.mark.asyncio
async def test_module_connect_success_and_failure() -> None:
    async with connected() as (client, peer):
        assert type(client) is Client
        assert client.getpeername() == peer.getsockname()
        assert peer.getpeername() == client.getsockname()
    port = await closed_port()
    assert await socket.connect(LOCAL, port) == (None, "connection refused")


@pytest.mark.asyncio
async def test_master_bind_success_and_failures() -> None:
    server, port = await listening()
    master = ok(socket.tcp4())
    assert await master.bind(LOCAL, port) == (None, "address already in use")
    assert type(master) is Master
    assert await master.bind(LOCAL, 0) == (1, None)
    # Already bound: the OS text, as LuaSocket reports it.
    assert await master.bind(LOCAL, 0) == (None, "Invalid argument")
    master.close()
    server.close()


@pytest.mark.asyncio
async def test_master_bind_wildcard() -> None:
    master = ok(socket.tcp4())
    assert await master.bind("*", 0) == (1, None)
    assert master.getsockname()[0] == "0.0.0.0"
    assert master.listen() == (1, None)
    server = as_server(master)
    client = ok(await socket.connect(LOCAL, port_of(server)))
    peer = ok(await bounded(server.accept()))
    assert peer.getsockname() == (LOCAL, port_of(server))
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_module_bind_wildcard_is_ipv4() -> None:
    server, port = await listening("*")
    assert server.getsockname() == ("0.0.0.0", port)
    assert server.getfamily() == "inet4"
    client = ok(await socket.connect(LOCAL, port))
    peer = ok(await bounded(server.accept()))
    assert await client.send(b"w\n") == (2, None)
    assert await bounded(peer.receive()) == (b"w", None)
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_host_name_localhost() -> None:
    server, port = await listening("localhost")
    assert server.getsockname()[0] in (LOCAL, "::1")
    client = ok(await socket.connect("localhost", port))
    peer = ok(await bounded(server.accept()))
    assert await client.send(b"name\n") == (5, None)
    assert await bounded(peer.receive("*l")) == (b"name", None)
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_unresolvable_host_gives_resolver_text() -> None:
    # `.invalid` is reserved (RFC 6761): it never resolves, and nothing is contacted.
    client, err = await socket.connect("no-such-host.invalid", 80)
    assert client is None and err in RESOLVER_TEXTS
    server, err = await socket.bind("no-such-host.invalid", 0)
    assert server is None and err in RESOLVER_TEXTS
    master = ok(socket.tcp())
    result = await master.bind("no-such-host.invalid", 0)
    assert result[0] is None and result[1] in RESOLVER_TEXTS
    assert kind(master) is Master
    result = await master.connect("no-such-host.invalid", 80)
    assert result[0] is None and result[1] in RESOLVER_TEXTS
    assert as_client(master).getpeername()[0] is None
    master.close()


@pytest.mark.asyncio
async def test_bad_addresses_and_ports_raise_or_give_the_resolvers_text() -> None:
    # Misuse raises; a name the resolver cannot take is an I/O failure with
    # its text. (The Lua bridge keeps LuaSocket's C-string behaviour instead:
    # tests/lua/08_bind_connect.lua.)
    misuse: list[tuple[str, object]] = [
        ("127.0.0.1", "99999"),
        ("127.0.0.1", "65536"),
        ("127.0.0.1", ""),
        ("127.0.0.1", "80\0"),
        ("127.0.0.1\0", 80),
        ("127.0.0.1\0evil", 80),
    ]
    master = ok(socket.tcp4())
    try:
        for host, port in misuse:
            with pytest.raises(ValueError):
                await socket.connect(host, port)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await socket.bind(host, port)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await master.bind(host, port)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await socket.connect(LOCAL, 80, locaddr=host, locport=port)  # type: ignore[arg-type]
        assert kind(master) is Master and master.getsockname()[0] == "0.0.0.0"  # nothing happened to it
        long_name = "a" * 300  # one label of 300 characters: IDNA refuses it
        assert await socket.connect(long_name, 80) == (None, "host or service not provided, or not known")
        assert await socket.bind(long_name, 0) == (None, "host or service not provided, or not known")
        assert await master.bind(long_name, 0) == (None, "host or service not provided, or not known")
        for huge in (10**400, 1e308 * 10):
            assert master.settimeout(huge) == 1
            assert master.gettimeout() == (math.inf, None)
    finally:
        master.close()
    for host, port in misuse:
        other = ok(socket.tcp4())
        with pytest.raises(ValueError):
            await other.connect(host, port)  # type: ignore[arg-type]
        other.close()


@pytest.mark.asyncio
async def test_connect_with_local_address_and_port() -> None:
    server, port = await listening()
    client = ok(await socket.connect(LOCAL, port, locaddr=LOCAL))
    assert client.getsockname()[0] == LOCAL
    peer = ok(await bounded(server.accept()))
    assert peer.getpeername() == client.getsockname()
    client.close()
    peer.close()
    # A chosen local port (one that was just free).
    locport = await closed_port()
    client = ok(await socket.connect(LOCAL, port, LOCAL, locport))
    assert client.getsockname() == (LOCAL, locport)
    peer = ok(await bounded(server.accept()))
    assert peer.getpeername() == (LOCAL, locport)
    # The same local port again while it is in use.
    assert await socket.connect(LOCAL, port, LOCAL, locport) == (None, "address already in use")
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_connect_to_unreachable_host_times_out() -> None:
    # Emulated on loopback: a listener whose backlog (0) is full drops new
    # handshakes, so a connect to it never finishes.
    server, port = await listening(backlog=0)
    masters: list[Client] = []
    try:
        result: tuple[int, None] | tuple[None, str] = (1, None)
        for _ in range(8):
            master = ok(socket.tcp4())
            master.settimeout(0.2)
            result, spent = await elapsed(master.connect(LOCAL, port))
            masters.append(as_client(master))  # a client, whatever the outcome
            if result != (1, None):
                break
        assert result == (None, "timeout")
        assert 0.15 <= spent < 2.0
    finally:
        for obj in masters:
            obj.close()
        server.close()


@pytest.mark.asyncio
async def test_a_zero_timeout_receive_sees_a_close_right_after_accept() -> None:
    # LuaSocket's close() ends the connection at once, and a timeout-0
    # receive on the other end (one recv()) sees it. Here the accepted side's
    # transport is still coming up when it is closed, and the client's
    # receive must not answer "timeout" meanwhile.
    server, port = await listening()
    try:
        for _ in range(20):
            client = ok(await socket.connect(LOCAL, port))
            peer = ok(await server.accept())
            peer.close()
            client.settimeout(0)
            assert await client.receive() == (b"", "closed")
            client.close()
    finally:
        server.close()


@pytest.mark.asyncio
async def test_accept_success_timeout_and_closed() -> None:
    server, port = await listening()
    server.settimeout(0.1)
    result, spent = await elapsed(server.accept())
    assert result == (None, "timeout")
    assert 0.05 <= spent < 1.0
    client = ok(await socket.connect(LOCAL, port))
    peer = ok(await server.accept())
    assert type(peer) is Client
    assert server.close() == 1
    result, spent = await elapsed(server.accept())
    assert result == (None, "closed") and spent < 0.05
    client.close()
    peer.close()


@pytest.mark.asyncio
async def test_pending_connections_are_accepted_in_order_with_their_bytes() -> None:
    server, port = await listening()
    clients = [ok(await socket.connect(LOCAL, port)) for _ in range(6)]
    peers: list[Client] = []
    try:
        for index, client in enumerate(clients):
            assert await client.send(b"line %d\n" % index) == (7, None)
        server.settimeout(5)
        # All pending at once: accepted back to back, in the order they came,
        # each before its transport is up, and no first byte is lost.
        peers = [ok(await server.accept()) for _ in clients]
        assert [peer_port_of(peer) for peer in peers] == [port_of(client) for client in clients]
        for index, peer in enumerate(peers):
            assert await bounded(peer.receive()) == (b"line %d" % index, None)
            assert await peer.send(b"ok\n") == (3, None)
        for client in clients:
            assert await bounded(client.receive()) == (b"ok", None)
    finally:
        for obj in (*clients, *peers, server):
            obj.close()


@pytest.mark.asyncio
async def test_accept_loop_keeps_the_listener_callback_only_while_accepting() -> None:
    loop = asyncio.get_running_loop()
    server, port = await listening()
    server.settimeout(5)
    fd = server.getfd()
    clients: list[Client] = []
    peers: list[Client] = []

    async def accept_two() -> tuple[Client, str | None]:
        # As an accept loop does: the second accept starts in the same step
        # as the first one returns (the callback is kept in between).
        peer = ok(await server.accept())
        peers.append(peer)
        server.settimeout(0.05)
        other, err = await server.accept()
        assert other is None
        return peer, err

    try:
        accepting = asyncio.ensure_future(accept_two())
        await asyncio.sleep(0.02)
        clients.append(ok(await socket.connect(LOCAL, port)))
        peer, err = await bounded(accepting)
        assert err == "timeout"
        # The callback is gone once nobody accepts any more.
        assert server._fd_readers == []
        assert not loop.remove_reader(fd)

        async def accept_then_close() -> Client:
            # Closed in the same step as an accept that waited returns, while
            # the callback is kept for a next accept: nothing is left behind.
            peer = ok(await server.accept())
            server.close()
            return peer

        server.settimeout(5)
        accepting_then_closing = asyncio.ensure_future(accept_then_close())
        await asyncio.sleep(0.02)
        clients.append(ok(await socket.connect(LOCAL, port)))
        peers.append(await bounded(accepting_then_closing))
        await asyncio.sleep(0)
        assert server._fd_readers == []
        assert not loop.remove_reader(fd)
        assert await server.accept() == (None, "closed")
        assert peer is peers[0]
    finally:
        for obj in (*clients, *peers, server):
            obj.close()


@pytest.mark.asyncio
async def test_getsockname_getpeername() -> None:
    async with connected() as (client, peer):
        local = client.getsockname()
        assert local[0] == LOCAL and isinstance(local[1], int)
        assert client.getpeername() == peer.getsockname()
        client.close()
        assert client.getsockname() == (None, "Bad file descriptor")
        assert client.getpeername() == (None, "Bad file descriptor")


@pytest.mark.asyncio
async def test_setoption_getoption_rows() -> None:
    async with connected() as (client, _peer):
        assert client.setoption("tcp-nodelay", True) == (1, None)
        assert client.getoption("tcp-nodelay") == (True, None)
        assert client.setoption("keepalive", True) == (1, None)
        assert client.getoption("keepalive") == (True, None)
        assert client.setoption("linger", {"on": True, "timeout": 3}) == (1, None)
        assert client.getoption("linger") == ({"on": True, "timeout": 3}, None)
        assert client.getoption("error") == (None, None)
        # IPV6_V6ONLY on an IPv4 socket: the OS refuses.
        assert client.setoption("ipv6-v6only", True) == (None, "setsockopt failed")
        with pytest.raises(ValueError):
            client.setoption("no-such-option", True)
        with pytest.raises(ValueError):
            client.setoption("error", True)
        with pytest.raises(TypeError):
            client.setoption("keepalive", 1)
        client.close()
        assert client.setoption("keepalive", True) == (None, "setsockopt failed")
        assert client.getoption("keepalive") == (None, "getsockopt failed")


@pytest.mark.asyncio
async def test_select_rows() -> None:
    async with connected() as (client, peer):
        result, spent = await elapsed(socket.select([client], None, 0.1))
        assert result == ([], [], "timeout")
        assert 0.05 <= spent < 1.0
        assert await peer.send(b"r") == (1, None)
        readable, writable, err = await socket.select([client], None, 5)
        assert err is None and readable == [client] and writable == []
        # Ready objects are reported at once, both directions in one call.
        readable, writable, err = await socket.select([client, peer], [peer], 0)
        assert err is None and readable == [client] and writable == [peer]


@pytest.mark.asyncio
async def test_small_results() -> None:
    async with connected() as (client, peer):
        assert client.settimeout(1) == 1
        assert client.settimeout(2, "t") == 1
        assert client.gettimeout() == (1.0, 2.0)
        assert isinstance(client.getfd(), int) and client.getfd() >= 0
        assert client.getfamily() == "inet4"
        assert client.dirty() is False
        assert await peer.send(b"d") == (1, None)
        await wait_buffered(client, 1)
        assert client.dirty() is True
        assert await client.receive(1) == (b"d", None)
        assert client.dirty() is False
        assert client.shutdown() == 1
        assert client.close() == 1
        assert client.close() == 1


# -- receive ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_receive_several_patterns_in_one_call() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"first line\r\n", b"12345", b"second\nrest") == (28, None)
        result = await bounded(client.receive("*l", 3, 2, "*l", 0))
        assert result == (b"first line", b"123", b"45", b"second", b"", None)
        assert await bounded(client.receive(4)) == (b"rest", None)


@pytest.mark.asyncio
async def test_receive_without_pattern_reads_a_line() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"one\ntwo\r\n\n") == (10, None)
        assert await bounded(client.receive()) == (b"one", None)
        assert await bounded(client.receive()) == (b"two", None)
        assert await bounded(client.receive()) == (b"", None)


@pytest.mark.asyncio
async def test_line_drops_every_cr() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"a\rb\r\r\nc\r\n") == (9, None)
        assert await bounded(client.receive("*l", "*l")) == (b"ab", b"c", None)
        # The partial line of a failed "*l" loses its CRs too.
        assert await peer.send(b"x\ry\r") == (4, None)
        peer.close()
        assert await bounded(client.receive("*l")) == (b"xy", "closed")


@pytest.mark.asyncio
async def test_prefix() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"abcdefgh\n") == (9, None)
        # A number pattern counts the prefix.
        assert await bounded(client.receive(10, prefix=b"123456")) == (b"123456abcd", None)
        # A prefix of n bytes or more is returned as it is, without reading.
        assert await bounded(client.receive(3, prefix=b"12345")) == (b"12345", None)
        assert await bounded(client.receive(2, prefix=b"xy")) == (b"xy", None)
        assert client.dirty() is True
        # The prefix goes in front of the first pattern only, "*l" too.
        assert await bounded(client.receive("*l", 0, prefix=b">")) == (b">efgh", b"", None)
        assert await peer.send(b"tail") == (4, None)
        peer.close()
        assert await bounded(client.receive("*a", prefix=bytearray(b"<"))) == (b"<tail", None)
        with pytest.raises(TypeError):
            await client.receive(1, prefix="str")  # type: ignore[call-overload]


@pytest.mark.asyncio
async def test_partial_results_of_a_failing_pattern() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"abcde") == (5, None)
        peer.close()
        result = await bounded(client.receive(3, 10, "*l", 1))
        assert result == (b"abc", b"de", None, None, "closed")
        # The partial was consumed.
        assert client.dirty() is False
        assert await bounded(client.receive(1)) == (b"", "closed")


@pytest.mark.asyncio
async def test_timed_out_read_resumes_with_prefix() -> None:
    async with connected() as (client, peer):
        client.settimeout(0.1)
        assert await peer.send(b"123") == (3, None)
        result = await bounded(client.receive(6))
        assert result == (b"123", "timeout")
        partial = result[0]
        assert isinstance(partial, bytes)
        assert client.dirty() is False
        assert await peer.send(b"456789") == (6, None)
        assert await bounded(client.receive(6, prefix=partial)) == (b"123456", None)
        assert await bounded(client.receive(3)) == (b"789", None)


@pytest.mark.asyncio
async def test_receive_all_at_end_of_stream_and_after() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"everything\r\nuntil the end") == (25, None)
        peer.close()
        assert await bounded(client.receive("*a")) == (b"everything\r\nuntil the end", None)
        # A stream that has already ended gives b"" and success, again and again.
        assert await bounded(client.receive("*a")) == (b"", None)
        assert await bounded(client.receive("*a", "*a")) == (b"", b"", None)
        # Other patterns report the end of stream.
        assert await bounded(client.receive("*a", "*l")) == (b"", b"", "closed")
        assert await bounded(client.receive(0)) == (b"", None)


@pytest.mark.asyncio
async def test_receive_all_then_other_patterns_fail_after_the_all() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"line\npart") == (9, None)
        assert await peer.send(b"") == (0, None)
        peer.shutdown("send")
        assert await bounded(client.receive("*l", "*a", 2)) == (b"line", b"part", b"", "closed")


@pytest.mark.asyncio
async def test_receive_zero_returns_at_once() -> None:
    async with connected() as (client, _peer):
        result, spent = await elapsed(bounded(client.receive(0)))
        assert result == (b"", None)
        assert spent < 0.05


@pytest.mark.asyncio
async def test_invalid_patterns_raise() -> None:
    async with connected() as (client, _peer):
        for bad in ("l", "*x", -1):
            with pytest.raises(ValueError):
                await client.receive(bad)
        for wrong in (1.5, True, None, b"*l"):
            with pytest.raises(TypeError):
                await client.receive(wrong)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.receive(1, "*z")


@pytest.mark.asyncio
async def test_big_receive_beyond_the_high_water_mark() -> None:
    size = 5 * MB
    assert size > READ_HIGH_WATER
    data = payload(size)
    async with connected() as (client, peer):
        client.settimeout(10)
        peer.settimeout(10)
        sent, received = await bounded(asyncio.gather(client.send(data), peer.receive(size)), 20)
        assert sent == (size, None)
        assert received[-1] is None and received[0] == data

        # "*a" of more than the high-water mark, too.
        async def send_all() -> tuple[int, str | None]:
            result = await client.send(data[:-1], data[-1:])
            client.shutdown("send")
            return result

        sent_all, received_all = await bounded(asyncio.gather(send_all(), peer.receive(10, "*a")), 20)
        assert sent_all == (size, None)
        assert received_all == (data[:10], data[10:], None)


# -- send ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_several_strings() -> None:
    async with connected() as (client, peer):
        result = await client.send(b"ab", bytearray(b"cd"), memoryview(b"ef"), b"", b"\n")
        assert result == (7, None)
        assert await client.send() == (0, None)
        assert await bounded(peer.receive()) == (b"abcdef", None)
        assert client.getstats()[1] == 7


@pytest.mark.asyncio
async def test_send_refuses_str() -> None:
    async with connected() as (client, peer):
        with pytest.raises(TypeError, match="encode"):
            await client.send("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="encode"):
            await client.send(b"ok", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.send(42)  # type: ignore[arg-type]
        # Nothing was sent by the refused calls.
        assert await client.send(b"only\n") == (5, None)
        assert await bounded(peer.receive()) == (b"only", None)


@pytest.mark.asyncio
async def test_send_after_peer_closed_reports_closed() -> None:
    async with connected() as (client, peer):
        peer.close()
        client.settimeout(2)
        result: tuple[int, str | None] = (0, None)
        for _ in range(200):
            result = await bounded(client.send(b"x" * 65536))
            if result[1] is not None:
                break
            await asyncio.sleep(0.01)
        assert result[1] == "closed"
        assert 0 <= result[0] <= 65536


@pytest.mark.asyncio
async def test_send_count_on_timeout_is_exactly_what_the_peer_gets() -> None:
    size = 32 * MB
    data = payload(size)
    async with connected() as (client, peer):
        client.settimeout(0.3)
        result, spent = await elapsed(bounded(client.send(data[: size // 2], data[size // 2 :]), 10))
        count, err = result
        assert err == "timeout"
        assert 0 < count < size
        assert spent >= 0.25
        client.close()  # queued bytes are still delivered
        peer.settimeout(10)
        received = await bounded(peer.receive("*a"), 20)
        assert received == (data[:count], None)


@pytest.mark.asyncio
async def test_peer_reset_reads_closed() -> None:
    async with connected() as (client, peer):
        assert await client.send(b"unread") == (6, None)
        # linger {on, 0}: close sends a reset instead of an end of stream.
        assert peer.setoption("linger", {"on": True, "timeout": 0}) == (1, None)
        await asyncio.sleep(0.02)
        peer.close()
        client.settimeout(2)
        assert await bounded(client.receive(1)) == (b"", "closed")
        result: tuple[int, str | None] = (0, None)
        for _ in range(100):
            result = await bounded(client.send(b"x"))
            if result[1] is not None:
                break
            await asyncio.sleep(0.01)
        assert result == (0, "closed")


# -- the hot paths (issue 3) ---------------------------------------------------------


def finished_at_once(call: Coroutine[Any, Any, T]) -> T:
    """Run `call` one step: it must complete without suspending (no loop wait)."""
    with pytest.raises(StopIteration) as stop:
        call.send(None)
    value: T = stop.value.value
    return value


@contextlib.contextmanager
def counting(loop: asyncio.AbstractEventLoop, *names: str) -> Iterator[list[str]]:
    """Record the calls of the loop's `names` methods made through the loop object."""
    calls: list[str] = []

    def spy(name: str) -> Callable[..., Any]:
        real = getattr(loop, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for name in names:
        setattr(loop, name, spy(name))
    try:
        yield calls
    finally:
        for name in names:
            delattr(loop, name)


@pytest.mark.asyncio
async def test_hot_paths_make_no_future_no_timer_and_do_not_wait() -> None:
    loop = asyncio.get_running_loop()
    async with connected() as (client, peer):
        assert await peer.send(b"one\ntwo\n") == (8, None)
        await wait_buffered(client, 8)
        with counting(loop, "create_future", "call_later", "call_at") as calls:
            # A line already buffered: taken at once, no future, no timer.
            assert finished_at_once(client.receive()) == (b"one", None)
            assert finished_at_once(client.receive("*l")) == (b"two", None)
            # A small send the transport can take: no wait for the loop.
            assert finished_at_once(client.send(b"small\n")) == (6, None)
            assert calls == []
            # A wait with no timeout set: one future, no timer.
            waiting = asyncio.ensure_future(client.receive())
            await asyncio.sleep(0)
            assert not waiting.done()
            assert calls == ["create_future"]
        assert await peer.send(b"three\n") == (6, None)
        assert await bounded(waiting) == (b"three", None)
        assert await bounded(peer.receive()) == (b"small", None)


# -- timeouts -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_block_timeout_restarts_on_progress() -> None:
    async with connected() as (client, peer):
        client.settimeout(0.1)
        sender = asyncio.create_task(trickle(peer, b"0123456789", 0.03))
        result, spent = await elapsed(bounded(client.receive(10)))
        await sender
        assert result == (b"0123456789", None)
        assert spent >= 0.2


@pytest.mark.asyncio
async def test_total_timeout_limits_the_whole_call() -> None:
    async with connected() as (client, peer):
        client.settimeout(0.15, "t")
        assert client.gettimeout() == (None, 0.15)
        sender = asyncio.create_task(trickle(peer, b"0123456789", 0.03))
        result, spent = await elapsed(bounded(client.receive(10)))
        assert result[1] == "timeout"
        partial = result[0]
        assert isinstance(partial, bytes) and 0 < len(partial) < 10
        assert b"0123456789".startswith(partial)
        assert 0.1 <= spent < 0.28
        await sender
        rest = await bounded(client.receive(10 - len(partial)))
        assert rest == (b"0123456789"[len(partial) :], None)


@pytest.mark.asyncio
async def test_block_and_total_together() -> None:
    async with connected() as (client, peer):
        client.settimeout(0.1, "b")
        client.settimeout(0.2, "t")
        sender = asyncio.create_task(trickle(peer, b"0123456789", 0.03))
        result, spent = await elapsed(bounded(client.receive(10)))
        assert result[1] == "timeout"
        assert 0.15 <= spent < 0.3
        await sender
        # A gap longer than the block limit ends the call early.
        client.settimeout(None, "t")
        result, spent = await elapsed(bounded(client.receive(20)))
        assert result[1] == "timeout"
        assert 0.05 <= spent < 0.5


@pytest.mark.asyncio
async def test_send_block_timeout_restarts_on_progress() -> None:
    size = 4 * MB
    data = payload(size)
    async with connected() as (client, peer):
        # Small kernel buffers: the pipe holds little, so the send waits for
        # the reader many times, and each wait ends with progress.
        assert peer.setoption("recv-buffer-size", 65536) == (1, None)
        assert client.setoption("send-buffer-size", 65536) == (1, None)

        async def drain() -> bytes:
            got = bytearray()
            while len(got) < size:
                await asyncio.sleep(0.02)
                chunk = await peer.receive(min(128 * 1024, size - len(got)))
                assert chunk[1] is None
                got += chunk[0]
            return bytes(got)

        reader = asyncio.create_task(drain())
        # A total limit ends the call although it is making progress...
        client.settimeout(0.15, "t")
        count, err = await bounded(client.send(data), 10)
        assert err == "timeout" and 0 < count < size
        # ...a block limit does not: every wait is shorter than it.
        client.settimeout(None, "t")
        client.settimeout(0.15, "b")
        result, spent = await elapsed(bounded(client.send(data[count:]), 20))
        assert result == (size - count, None)
        assert spent > 0.2
        assert await bounded(reader, 20) == data


@pytest.mark.asyncio
async def test_timeout_zero_tries_once() -> None:
    async with connected() as (client, peer):
        client.settimeout(0)
        result, spent = await elapsed(client.receive(1))
        assert result == (b"", "timeout") and spent < 0.05
        assert await peer.send(b"ab\n") == (3, None)
        await wait_buffered(client, 3)
        # Buffered data is delivered even with a zero timeout.
        assert await client.receive(1, "*l") == (b"a", b"b", None)
        assert await client.receive("*l") == (b"", "timeout")


@pytest.mark.asyncio
async def test_timeout_zero_yields_to_the_loop() -> None:
    async with connected() as (client, _peer):
        server, port = await listening()
        client.settimeout(0)
        server.settimeout(0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            for _ in range(20):
                assert await client.receive(1) == (b"", "timeout")
            assert ticks >= 10
            before = ticks
            for _ in range(20):
                assert await server.accept() == (None, "timeout")
            assert ticks - before >= 10
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            server.close()
        assert port > 0


@pytest.mark.asyncio
async def test_no_limit_timeouts() -> None:
    async with connected() as (client, peer):
        client.settimeout(-1)
        assert client.gettimeout() == (None, None)
        client.settimeout(5, "t")
        client.settimeout(-3.5, "t")
        assert client.gettimeout() == (None, None)
        client.settimeout(None)
        assert client.gettimeout() == (None, None)

        async def later() -> None:
            await asyncio.sleep(0.2)
            await peer.send(b"late\n")

        sender = asyncio.create_task(later())
        result, spent = await elapsed(bounded(client.receive()))
        await sender
        assert result == (b"late", None)
        assert spent >= 0.15


@pytest.mark.asyncio
async def test_settimeout_misuse_raises() -> None:
    master = ok(socket.tcp4())
    try:
        for wrong in (True, False, "1", b"1", [1]):
            with pytest.raises(TypeError):
                master.settimeout(wrong)  # type: ignore[arg-type]
        for mode in ("x", "", "q"):
            with pytest.raises(ValueError):
                master.settimeout(1, mode)
        assert master.gettimeout() == (None, None)
        assert master.settimeout(1.5) == 1
        assert master.settimeout(2, "t") == 1
        assert master.gettimeout() == (1.5, 2.0)
    finally:
        master.close()


# -- polling with a timeout of 0 (issue 11) ---------------------------------------------
#
# LuaSocket's timeout-0 calls are one system call each: they see what the
# kernel holds. Ours must too, after their one yield to the loop, and a
# "timeout" must never hand out, as its partial, more than the pattern could
# have taken (a line with its LF, several lines, more than n bytes).


def _no_more_than_the_pattern(partial: bytes | str | None, pattern: str | int) -> None:
    assert isinstance(partial, bytes)
    if pattern == "*l":
        assert b"\n" not in partial, partial
    elif isinstance(pattern, int):
        assert len(partial) < pattern, partial


@pytest.mark.asyncio
@pytest.mark.parametrize("pattern", ["*l", 5])
async def test_zero_timeout_poll_right_after_connect_sees_the_peers_bytes(pattern: str | int) -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"hello\nworld\n") == (12, None)
        client.settimeout(0)
        got: list[bytes] = []
        partial = b""
        for _ in range(3):  # "within a few polls": the bytes are in the kernel already
            data, err = await client.receive(pattern, prefix=partial)
            if err is None:
                assert isinstance(data, bytes)
                got.append(data)
                break
            assert err == "timeout"
            _no_more_than_the_pattern(data, pattern)
            partial = data
        assert got == [b"hello"]
        # The rest is intact, not glued onto a partial.
        assert await client.receive(pattern) == ((b"world", None) if pattern == "*l" else (b"\nworl", None))


@pytest.mark.asyncio
async def test_zero_timeout_poll_reassembles_a_line_sent_in_two_halves() -> None:
    # LuaSocket's own test_nonblocking: `receive("*l", part)` polled until it
    # is no longer "timeout", while the line comes in two halves.
    async with connected() as (client, peer):
        client.settimeout(0)

        async def halves() -> None:
            await peer.send(b"first half, ")
            await asyncio.sleep(0.05)
            await peer.send(b"second half\nnext\n")

        sender = asyncio.create_task(halves())
        partial = b""
        for _ in range(100_000):
            data, err = await client.receive("*l", prefix=partial)
            if err is None:
                break
            assert err == "timeout"
            _no_more_than_the_pattern(data, "*l")
            assert isinstance(data, bytes)
            partial = data
        else:
            pytest.fail("the line never came")
        await sender
        assert data == b"first half, second half"
        assert await client.receive() == (b"next", None)


@pytest.mark.asyncio
async def test_timer_firing_in_the_iteration_the_bytes_arrive_still_returns_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The timer of a block timeout sets the waiter's result first; the bytes
    # of the same loop iteration come after it (simulated here: the expiry
    # feeds the protocol right after expiring the waiter). They must be
    # returned as data, not handed out as the partial of a "timeout".
    import aioluasock._waits as waits  # the module whose timer callback is patched

    async with connected() as (client, _peer):
        client.settimeout(0.05)
        proto = client._proto
        assert proto is not None
        expire = waits.expire

        def expire_then_bytes(waiter: asyncio.Future[bool]) -> None:
            expire(waiter)
            proto.data_received(b"line one\nline two\n")

        monkeypatch.setattr(waits, "expire", expire_then_bytes)
        assert await client.receive("*l") == (b"line one", None)
        monkeypatch.setattr(waits, "expire", expire)
        assert await client.receive("*l") == (b"line two", None)
        assert await client.receive("*l") == (b"", "timeout")


@pytest.mark.asyncio
async def test_zero_timeout_select_loop_reads_a_body_beyond_the_high_water_mark() -> None:
    # What `copas.receive` does with a large request body: select, then
    # `receive(n, partial)` with timeout 0. A partial that empties a buffer
    # whose reading was paused (high-water mark, nobody reading) must restart
    # reading, or select never reports the socket again.
    size = 4 * READ_HIGH_WATER
    body = payload(size)
    async with connected() as (client, peer):
        sender = asyncio.create_task(peer.send(body))
        await wait_buffered(client, READ_HIGH_WATER)  # reading pauses here
        client.settimeout(0)
        partial = b""
        for _ in range(10_000):
            readable, _, err = await socket.select([client], None, 5)
            assert err is None and readable == [client], "select stopped reporting the socket"
            data, err = await client.receive(size, prefix=partial)
            assert isinstance(data, bytes)
            if err is None:
                break
            assert err == "timeout"
            _no_more_than_the_pattern(data, size)
            partial = data
        assert data == body
        assert await bounded(sender) == (size, None)


@pytest.mark.asyncio
async def test_zero_timeout_send_resumed_from_the_returned_count_delivers_everything() -> None:
    # Nobody reads at first, so the kernel's buffers and the transport fill
    # and a send reports "timeout" with the count it handed over; then the
    # peer reads while the sender polls `send(rest)`.
    size = 64 * MB
    body = payload(size)
    async with connected() as (client, peer):
        client.settimeout(0)
        sent = 0
        reader: asyncio.Task[tuple[bytes, None] | tuple[bytes, str]] | None = None
        for _ in range(1_000_000):
            count, err = await client.send(body[sent:])
            sent += count
            if err is None:
                break
            assert err == "timeout"
            if reader is None:
                reader = asyncio.create_task(peer.receive(size))
        assert sent == size
        assert reader is not None, "the sends never filled the transport"
        assert await bounded(reader) == (body, None)


@pytest.mark.asyncio
async def test_zero_timeout_accept_poll_takes_a_pending_connection() -> None:
    server, port = await listening()
    server.settimeout(0)
    assert await server.accept() == (None, "timeout")
    client = ok(await socket.connect(LOCAL, port))
    try:
        for _ in range(3):
            accepted, err = await server.accept()
            if accepted is not None:
                accepted.close()
                break
            assert err == "timeout"
        else:
            pytest.fail("the pending connection was not accepted")
    finally:
        client.close()
        server.close()


# -- close -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_after_close() -> None:
    async with connected() as (client, peer):
        client.settimeout(None)
        assert await peer.send(b"buffered\n") == (9, None)
        await wait_buffered(client, 9)
        assert client.close() == 1
        assert client.getfd() == -1
        assert client.dirty() is False  # discarded with the socket
        result, spent = await elapsed(bounded(client.receive()))
        assert result == (b"", "closed") and spent < 0.05
        assert await bounded(client.receive(3, "*a")) == (b"", None, "closed")
        assert await bounded(client.send(b"x", b"y")) == (0, "closed")
        assert client.close() == 1
        assert client.shutdown("send") == 1
        assert "closed" in repr(client)
    server, _ = await listening()
    server.close()
    assert server.getfd() == -1
    assert await bounded(server.accept()) == (None, "closed")
    assert server.close() == 1


@pytest.mark.asyncio
async def test_close_from_another_task_wakes_a_receiver_with_its_partial() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"abcde") == (5, None)
        receiver = asyncio.create_task(client.receive(2, 10))
        await wait_buffered(client, 3)
        await asyncio.sleep(0.02)
        assert not receiver.done()
        client.close()
        assert await bounded(receiver) == (b"ab", b"cde", "closed")
        assert client.dirty() is False
        assert await bounded(client.receive(1)) == (b"", "closed")


@pytest.mark.asyncio
async def test_close_from_another_task_wakes_an_all_receiver() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"some") == (4, None)
        receiver = asyncio.create_task(client.receive("*a"))
        await wait_buffered(client, 4)
        await asyncio.sleep(0.02)
        client.close()
        assert await bounded(receiver) == (b"some", "closed")


@pytest.mark.asyncio
async def test_close_from_another_task_wakes_accept_and_send() -> None:
    server, _ = await listening()
    acceptor = asyncio.create_task(server.accept())
    await asyncio.sleep(0.02)
    server.close()
    assert await bounded(acceptor) == (None, "closed")
    async with connected() as (client, _peer):
        sender = asyncio.create_task(client.send(payload(32 * MB)))
        await asyncio.sleep(0.2)
        assert not sender.done()
        client.close()
        count, err = await bounded(sender)
        assert err == "closed"
        assert 0 < count < 32 * MB


@pytest.mark.asyncio
async def test_close_before_the_transport_is_up() -> None:
    server, port = await listening()
    server.settimeout(5)
    client = ok(await socket.connect(LOCAL, port))
    try:
        peer = ok(await server.accept())
        assert peer._proto is not None and peer._proto.transport is None
        # Closed before connection_made: the transport closes as it comes up.
        assert peer.close() == 1
        assert await peer.receive() == (b"", "closed")
        assert await bounded(client.receive()) == (b"", "closed")
    finally:
        client.close()
        server.close()


# -- the attach driver (the loop's coroutine, stepped without a task) ---------------


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def attaching(
    make: Callable[[StreamProtocol], Coroutine[Any, Any, object]],
) -> tuple[Client, StreamProtocol, Attach]:
    """A client whose "transport" is being made by `make(proto)`."""
    client = Client(None, std_socket.AF_INET)
    proto = client._proto = StreamProtocol(client._buffer, asyncio.get_running_loop())
    attach = client._attaching = Attach(client, proto, make(proto))
    return client, proto, attach


@pytest.mark.asyncio
async def test_attach_driver_follows_bare_yields_and_wakes_each_waiter() -> None:
    transport = FakeTransport()

    async def make(proto: StreamProtocol) -> tuple[FakeTransport, StreamProtocol]:
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0)
        return transport, proto

    client, proto, attach = attaching(make)
    attach.step()
    first, second = attach.wait(), attach.wait()
    first.cancel()  # one waiter giving up leaves the others alone
    await bounded(second)
    assert second.done() and not second.cancelled()
    assert client._attaching is None and attach.error is None
    finished = attach.wait()
    assert finished.done()  # finished: at once
    assert not transport.closed and proto.error is None
    client.close()


@pytest.mark.asyncio
async def test_attach_driver_closes_what_was_closed_while_it_came_up() -> None:
    transport = FakeTransport()
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def make(proto: StreamProtocol) -> tuple[FakeTransport, StreamProtocol]:
        await gate
        return transport, proto

    client, _, attach = attaching(make)
    attach.step()
    client.close()
    gate.set_result(None)
    await bounded(attach.wait())
    assert transport.closed


@pytest.mark.asyncio
async def test_attach_driver_reports_the_loops_error_to_receive_and_send() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def make(proto: StreamProtocol) -> None:
        await gate
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    client, proto, attach = attaching(make)
    attach.step()
    receiving = asyncio.ensure_future(client.receive())
    sending = asyncio.ensure_future(client.send(b"x"))
    await asyncio.sleep(0)
    gate.set_result(None)
    assert await bounded(receiving) == (b"", "closed")
    assert await bounded(sending) == (0, "closed")
    assert attach.error == "closed" and proto.error == "closed"
    client.close()


@pytest.mark.asyncio
async def test_attach_driver_raises_an_unexpected_error_in_its_caller() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_later(proto: StreamProtocol) -> None:
        await gate
        raise RuntimeError("unexpected")

    client, proto, attach = attaching(fails_later)
    attach.step()
    waiting = attach.wait()
    gate.set_result(None)
    with pytest.raises(RuntimeError, match="unexpected"):
        await bounded(waiting)
    assert proto.error == "closed"
    client.close()

    async def fails_at_once(proto: StreamProtocol) -> None:
        raise RuntimeError("at once")

    client, _, attach = attaching(fails_at_once)
    with pytest.raises(RuntimeError, match="at once"):
        attach.step()  # nobody waits yet: the caller of the first step gets it
    client.close()


# -- concurrency -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_second_receiver_sender_acceptor_is_busy() -> None:
    async with connected() as (client, peer):
        receiver = asyncio.create_task(client.receive(4))
        await asyncio.sleep(0.02)
        with pytest.raises(BusyError):
            await client.receive(1)
        with pytest.raises(BusyError):
            await client.receive("*l", prefix=b"x")
        sender = asyncio.create_task(client.send(payload(32 * MB)))
        await asyncio.sleep(0.1)
        assert not sender.done()
        with pytest.raises(BusyError):
            await client.send(b"x")
        with pytest.raises(BusyError):
            await client.send(b"x", b"y")
        # The busy receiver was not disturbed.
        assert await peer.send(b"wxyz") == (4, None)
        assert await bounded(receiver) == (b"wxyz", None)
        client.close()
        assert (await bounded(sender))[1] == "closed"
    server, _ = await listening()
    acceptor = asyncio.create_task(server.accept())
    await asyncio.sleep(0.02)
    with pytest.raises(BusyError):
        await server.accept()
    server.close()
    assert await bounded(acceptor) == (None, "closed")


@pytest.mark.asyncio
async def test_busy_while_the_transport_comes_up() -> None:
    server, port = await listening()
    # accept returns at once, and the transport comes up on the loop's next
    # iteration: a receive or a send made before that (in the accepting
    # task's own step) waits for it, and a second receiver (or sender)
    # meanwhile is refused all the same.
    server.settimeout(5)
    clients = [ok(await socket.connect(LOCAL, port))]
    try:
        assert await clients[0].send(b"abc") == (3, None)
        reader = ok(await server.accept())
        assert reader._proto is not None and reader._proto.transport is None
        second = asyncio.create_task(reader.receive(3))
        async with asyncio.timeout(5):
            first = await reader.receive(3)  # starts in this step (wait_for would make a task)
        assert first == (b"abc", None)
        with pytest.raises(BusyError):
            await bounded(second)
        clients.append(ok(await socket.connect(LOCAL, port)))
        writer = ok(await server.accept())
        assert writer._proto is not None and writer._proto.transport is None
        other_sending = asyncio.create_task(writer.send(b"two"))
        async with asyncio.timeout(5):
            sent = await writer.send(b"one")
        assert sent == (3, None)
        with pytest.raises(BusyError):
            await bounded(other_sending)
        assert await bounded(clients[1].receive(3)) == (b"one", None)
        reader.close()
        writer.close()
    finally:
        for obj in (*clients, server):
            obj.close()


@pytest.mark.asyncio
async def test_full_duplex() -> None:
    size = 4 * MB
    data = payload(size)
    async with connected() as (client, peer):

        async def echo() -> None:
            got = await peer.receive(size)
            assert got == (data, None)
            assert await peer.send(data[::-1]) == (size, None)

        echoer = asyncio.create_task(echo())
        # One task sends while another receives on the same client.
        sent, received = await bounded(asyncio.gather(client.send(data), client.receive(size)), 20)
        await bounded(echoer)
        assert sent == (size, None)
        assert received == (data[::-1], None)


# -- no data lost ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelled_receive_loses_no_bytes() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"abc") == (3, None)
        receiver = asyncio.create_task(client.receive(10))
        await wait_buffered(client, 3)
        await asyncio.sleep(0.02)
        receiver.cancel()
        with pytest.raises(asyncio.CancelledError):
            await receiver
        assert client.dirty() is True
        assert await bounded(client.receive(3)) == (b"abc", None)


@pytest.mark.asyncio
async def test_receive_under_asyncio_timeout_loses_no_bytes() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"par\rtial") == (8, None)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.receive("*l")
        assert await peer.send(b" line\n") == (6, None)
        assert await bounded(client.receive("*l")) == (b"partial line", None)
        assert await peer.send(b"xyz") == (3, None)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.receive(100), 0.1)
        assert await bounded(client.receive(3)) == (b"xyz", None)


@pytest.mark.asyncio
async def test_cancelled_multi_pattern_receive_loses_no_bytes() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"ab\r\ncde") == (7, None)
        await wait_buffered(client, 7)
        receiver = asyncio.create_task(client.receive("*l", 2, 10))
        await asyncio.sleep(0.05)
        assert not receiver.done()
        receiver.cancel()
        with pytest.raises(asyncio.CancelledError):
            await receiver
        # Also bytes that earlier patterns of the cancelled call had read.
        assert await bounded(client.receive(7)) == (b"ab\r\ncde", None)
        assert client.getstats()[0] == 7


# -- garbage collection --------------------------------------------------------------


@pytest.mark.asyncio
async def test_garbage_collected_objects_warn_and_close() -> None:
    server, port = await listening()
    client = ok(await socket.connect(LOCAL, port))
    peer = ok(await bounded(server.accept()))
    peer.settimeout(5)
    with pytest.warns(ResourceWarning, match="tcp{client}"):
        del client
        gc.collect()
    # The collected client was closed: its peer sees the end of the stream.
    assert await bounded(peer.receive("*a")) == (b"", None)
    peer.close()
    with pytest.warns(ResourceWarning, match="tcp{server}"):
        del server
        gc.collect()
    assert await socket.connect(LOCAL, port) == (None, "connection refused")
    master = ok(socket.tcp4())
    with pytest.warns(ResourceWarning, match="tcp{master}"):
        del master
        gc.collect()
    # A tcp() master with no descriptor owns nothing: collecting it is silent.
    bare = ok(socket.tcp())
    del bare
    gc.collect()
    await asyncio.sleep(0.01)  # let the loop run the transports' close callbacks


# -- backlog and flow control -----------------------------------------------------------


@pytest.mark.asyncio
async def test_connections_wait_in_the_backlog() -> None:
    server, port = await listening(backlog=8)
    server.settimeout(0)
    assert await server.accept() == (None, "timeout")
    clients = [ok(await socket.connect(LOCAL, port)) for _ in range(3)]
    peers: list[Client] = []
    try:
        for index, client in enumerate(clients):
            assert await client.send(b"%d\n" % index) == (2, None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(peers) < 3:
            assert loop.time() < deadline
            peer, err = await server.accept()
            if peer is None:
                assert err == "timeout"
                await asyncio.sleep(0.01)
            else:
                peers.append(peer)
        lines = sorted([await bounded(peer.receive()) for peer in peers])
        assert lines == [(b"0", None), (b"1", None), (b"2", None)]
        assert await server.accept() == (None, "timeout")
    finally:
        for obj in [*clients, *peers, server]:
            obj.close()


@pytest.mark.asyncio
async def test_slow_reader_pauses_reading_and_sender_gets_exact_count() -> None:
    size = 32 * MB
    data = payload(size)
    async with connected() as (client, peer):
        client.settimeout(0.4)
        count, err = await bounded(client.send(data), 10)
        assert err == "timeout"
        assert 0 < count < size
        proto = peer._proto
        assert proto is not None
        # The reader's protocol stopped reading: what is buffered is bounded.
        assert proto.reading_paused is True
        assert READ_HIGH_WATER <= len(peer._buffer) <= READ_HIGH_WATER + 256 * 1024
        # A zero timeout on a full pipe: one attempt, nothing handed over.
        client.settimeout(0)
        assert await client.send(b"more") == (0, "timeout")
        peer.settimeout(10)
        assert await bounded(peer.receive(count), 20) == (data[:count], None)
        peer.settimeout(0.1)
        assert await bounded(peer.receive(1)) == (b"", "timeout")
        # The sender can go on where it stopped.
        client.settimeout(10)
        rest = size - count
        sent, received = await bounded(asyncio.gather(client.send(data[count:]), peer.receive(rest)), 20)
        assert sent == (rest, None)
        assert received == (data[count:], None)


# -- shutdown, stats ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_shutdown_send() -> None:
    async with connected() as (client, peer):
        assert await client.send(b"last words") == (10, None)
        assert client.shutdown("send") == 1
        assert await bounded(peer.receive("*a")) == (b"last words", None)
        assert await bounded(client.send(b"more")) == (0, "closed")
        # The other direction still works.
        assert await peer.send(b"reply\n") == (6, None)
        assert await bounded(client.receive()) == (b"reply", None)


@pytest.mark.asyncio
async def test_shutdown_receive() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"kept\n") == (5, None)
        await wait_buffered(client, 5)
        assert client.shutdown("receive") == 1
        assert client.dirty() is True  # bytes that arrived are not lost (DESIGN.md)
        assert await bounded(client.receive("*l")) == (b"kept", None)
        assert await bounded(client.receive(1)) == (b"", "closed")
        assert await bounded(client.send(b"still\n")) == (6, None)
        assert await bounded(peer.receive()) == (b"still", None)


@pytest.mark.asyncio
async def test_receive_all_after_shutdown_receive_returns_what_was_buffered() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"kept\r\n", b"too") == (9, None)
        await wait_buffered(client, 9)
        assert client.shutdown("receive") == 1
        # As LuaSocket on Linux: the end of the stream, not a local close.
        assert await bounded(client.receive("*a")) == (b"kept\r\ntoo", None)
        assert await bounded(client.receive("*a")) == (b"", "closed")


@pytest.mark.asyncio
async def test_shutdown_both_and_bad_mode() -> None:
    async with connected() as (client, peer):
        with pytest.raises(ValueError):
            client.shutdown("read")
        assert client.shutdown() == 1
        assert await bounded(client.receive()) == (b"", "closed")
        assert await bounded(client.send(b"x")) == (0, "closed")
        assert await bounded(peer.receive("*a")) == (b"", None)
        assert client.shutdown("both") == 1


@pytest.mark.asyncio
async def test_getstats_setstats() -> None:
    async with connected() as (client, peer):
        received, sent, age = client.getstats()
        assert (received, sent) == (0, 0) and 0 <= age < 5
        assert await client.send(b"12345", b"67") == (7, None)
        assert await peer.send(b"ab\r\ncd") == (6, None)
        assert await bounded(client.receive("*l")) == (b"ab", None)
        # CR and LF that "*l" drops are counted.
        assert client.getstats()[:2] == (4, 7)
        await wait_buffered(client, 2)
        assert client.getstats()[0] == 4  # buffered, not yet consumed
        assert client.setstats(100, 200, 1000) == 1
        received, sent, age = client.getstats()
        assert (received, sent) == (100, 200) and 1000 <= age < 1005
        assert client.setstats(None, 5) == 1
        assert client.getstats()[:2] == (100, 5)
        with pytest.raises(TypeError):
            client.setstats(True)
        with pytest.raises(TypeError):
            client.setstats("1")  # type: ignore[arg-type]


# -- IPv6 -------------------------------------------------------------------------------


@needs_ipv6
@pytest.mark.asyncio
async def test_ipv6_loopback() -> None:
    async with connected("::1") as (client, peer):
        assert client.getfamily() == "inet6" and peer.getfamily() == "inet6"
        name = client.getpeername()
        assert name[0] == "::1"
        assert peer.getsockname() == name
        assert "::1" in repr(client)
        assert await client.send(b"six\n") == (4, None)
        assert await bounded(peer.receive()) == (b"six", None)


@needs_ipv6
@pytest.mark.asyncio
async def test_tcp6_is_v6only() -> None:
    master = ok(socket.tcp6())
    assert master.getoption("ipv6-v6only") == (True, None)
    assert await master.bind("*", 0) == (1, None)
    assert master.getsockname()[0] == "::"
    assert master.listen() == (1, None)
    server = as_server(master)
    port = port_of(server)
    # IPv4 peers are refused by an IPv6-only socket.
    assert await socket.connect(LOCAL, port) == (None, "connection refused")
    client = ok(await socket.connect("::1", port))
    peer = ok(await bounded(server.accept()))
    assert peer.getfamily() == "inet6"
    # tcp6 cannot use an IPv4 address: the resolver refuses the family.
    other = ok(socket.tcp6())
    result = await other.connect(LOCAL, port)
    assert result[0] is None and result[1] == "Address family for hostname not supported"
    for obj in (client, peer, server, other):
        obj.close()


# -- anyio -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_inside_an_anyio_task_group() -> None:
    server, port = await listening()
    results: list[bytes | str | None] = []

    async def serve() -> None:
        peer = ok(await server.accept())
        line = await peer.receive()
        try:
            assert await peer.send(b"echo: ", line[0] or b"", b"\n") == (12, None)
        finally:
            peer.close()

    async def use() -> None:
        client = ok(await socket.connect(LOCAL, port))
        assert await client.send(b"hello\n") == (6, None)
        results.extend(await client.receive())
        client.close()

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(serve)
                group.start_soon(use)
    finally:
        server.close()
    assert results == [b"echo: hello", None]


@pytest.mark.asyncio
async def test_anyio_fail_after_loses_no_bytes() -> None:
    async with connected() as (client, peer):
        assert await peer.send(b"abc") == (3, None)
        with pytest.raises(TimeoutError), anyio.fail_after(0.1):
            await client.receive(10)
        with anyio.move_on_after(0.1) as scope:
            await client.receive(2, 10)
        assert scope.cancelled_caught
        assert await peer.send(b"defghij") == (7, None)
        assert await bounded(client.receive(10)) == (b"abcdefghij", None)


class _CountingTransport:
    """A transport proxy that counts the writes handed to the real one."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.real.write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes.append(b"".join(chunks))
        self.real.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.asyncio
async def test_several_strings_go_out_in_one_transport_write() -> None:
    async with connected() as (client, peer):
        proto = client._proto
        assert proto is not None and proto.transport is not None
        counting = _CountingTransport(proto.transport)
        proto.transport = counting  # type: ignore[assignment]
        try:
            assert await client.send(b"line", bytearray(b" two"), memoryview(b"\n")) == (9, None)
            assert counting.writes == [b"line two\n"]
            with pytest.raises(TypeError, match="encode"):
                await client.send(b"ok", "text")  # type: ignore[arg-type]
            assert counting.writes == [b"line two\n"]  # nothing of a refused call went out
        finally:
            proto.transport = counting.real
        assert await peer.receive() == (b"line two", None)


@pytest.mark.asyncio
async def test_batched_replies_keep_their_order_through_every_path() -> None:
    # Replies sent while more requests are buffered are batched into one
    # transport write; a multi-string send, shutdown("send") and close must
    # still deliver every byte, in order, before the end of stream.
    async with connected() as (client, peer):
        client.settimeout(5)
        peer.settimeout(5)
        requests = b"".join(b"request %d\n" % n for n in range(500))
        assert await client.send(requests) == (len(requests), None)
        expected = bytearray()
        for n in range(500):
            assert await peer.receive("*l") == (b"request %d" % n, None)
            reply = b"reply %d\n" % n
            expected += reply
            assert await peer.send(reply) == (len(reply), None)
            if n == 250:  # the slow path (several strings) in the middle of a batch
                assert await peer.send(b"a", b"b\n") == (3, None)
                expected += b"ab\n"
        assert await peer.send(b"last\n") == (5, None)
        expected += b"last\n"
        assert peer.shutdown("send") == 1
        assert await client.receive("*a") == (bytes(expected), None)
        assert peer.getstats()[1] == len(expected)


@pytest.mark.asyncio
async def test_large_replies_join_the_batch_by_reference_and_keep_their_order() -> None:
    # A reply of DEFER_MAX bytes or more, sent while requests are buffered,
    # joins the batch as it is (no copy) between the small replies around it.
    async with connected() as (client, peer):
        client.settimeout(5)
        peer.settimeout(5)
        requests = b"".join(b"request %d\n" % n for n in range(6))
        assert await client.send(requests) == (len(requests), None)
        expected = bytearray()
        for n in range(6):
            assert await peer.receive("*l") == (b"request %d" % n, None)
            reply = (b"%d" % n) * (DEFER_MAX if n % 2 else 3) + b"\n"
            expected += reply
            assert await peer.send(reply) == (len(reply), None)
            if n == 1:  # no await has let the batch go out yet
                proto = peer._proto
                assert proto is not None
                assert proto.pending is not None
                assert proto.pending[-1] is reply
                assert proto.pending_size == len(expected)
        assert peer.shutdown("send") == 1
        assert await bounded(client.receive("*a")) == (bytes(expected), None)
        assert peer.getstats()[1] == len(expected)


@pytest.mark.asyncio
async def test_full_batch_goes_out_before_the_send_that_does_not_fit() -> None:
    # Four 64 KiB echoes fill the batch up to the write high-water mark; the
    # next send finds no room beside it, so the batch is written first and
    # the send follows it (fast path or `_send`), in order.
    block_size = 65536
    data = payload(4 * block_size) + b"tail!"
    async with connected() as (client, peer):
        client.settimeout(10)
        peer.settimeout(10)
        assert await client.send(data) == (len(data), None)
        assert await bounded(peer.receive(1)) == (data[:1], None)
        while len(peer._buffer) < len(data) - 1:  # everything arrived (no pause below the mark)
            await bounded(asyncio.sleep(0.01))
        rest, err = await peer.receive(block_size - 1)
        assert err is None
        assert await peer.send(data[:1] + rest) == (block_size, None)
        for n in range(1, 4):
            block, err = await peer.receive(block_size)
            assert (block, err) == (data[n * block_size : (n + 1) * block_size], None)
            assert await peer.send(block) == (block_size, None)
        proto = peer._proto
        assert proto is not None
        assert proto.pending_size == 4 * block_size == WRITE_HIGH_WATER
        assert await peer.receive(5) == (b"tail!", None)
        assert await peer.send(b"tail!") == (5, None)
        assert proto.pending is None
        assert await bounded(client.receive(len(data))) == (data, None)
        assert peer.getstats()[1] == len(data)


@pytest.mark.asyncio
async def test_bulk_echo_of_blocks_read_together() -> None:
    # The bulk benchmark's loop: several 64 KiB blocks arrive in one read and
    # their echoes are batched; every byte comes back, in order.
    block_size = 65536
    count = 12
    data = payload(block_size * count)
    async with connected() as (client, peer):
        client.settimeout(10)
        peer.settimeout(10)

        async def echo() -> None:
            for _ in range(count):
                block, err = await peer.receive(block_size)
                assert err is None
                assert await peer.send(block) == (block_size, None)

        sent, received, _ = await bounded(
            asyncio.gather(client.send(data), client.receive(len(data)), echo()), 20
        )
        assert sent == (len(data), None)
        assert received == (data, None)
        assert peer.getstats()[:2] == (len(data), len(data))


@pytest.mark.asyncio
async def test_close_delivers_batched_replies() -> None:
    async with connected() as (client, peer):
        client.settimeout(5)
        peer.settimeout(5)
        assert await client.send(b"one\ntwo\n") == (8, None)
        assert await peer.receive("*l") == (b"one", None)
        assert await peer.send(b"1\n") == (2, None)  # "two" is still buffered: batched
        peer.close()  # before the loop ran the batch's write
        assert await client.receive("*a") == (b"1\n", None)


@pytest.mark.asyncio
async def test_an_echo_whose_peer_does_not_read_keeps_its_receive_buffer_bounded() -> None:
    # A line echo whose peer sends without ever reading: the echo's sends
    # block at the write high-water mark, and its receive buffer must stop
    # reading at the read one. libuv reads up to 32 times per wake-up: the
    # reads that land after a waiting receive was woken, before it runs,
    # found `keep_reading` still set and buffered up to 32 reads of 256 KiB
    # past the mark, until waking a receive cleared it.
    line = bytes(ord("a") + i % 26 for i in range(255)) + b"\n"
    uvloop_burst = 32 * 256 * 1024
    async with connected() as (client, peer):

        async def echo() -> None:
            while True:
                got, err = await peer.receive()
                if err is not None:
                    return
                if (await peer.send(got + b"\n"))[1] is not None:
                    return

        task = asyncio.create_task(echo())
        try:
            client.settimeout(0.5)
            count, err = await bounded(client.send(line * (32 * MB // len(line))), 20)
            assert err == "timeout"
            assert count > 2 * READ_HIGH_WATER
            buffered = len(peer._buffer)
            # Bounded on both loops (one burst at most)...
            assert buffered <= READ_HIGH_WATER + uvloop_burst
        finally:
            peer.close()
            await bounded(task)
            # The closed side's transport still holds replies for a peer
            # that does not read: read them, so that it can let go.
            client.settimeout(5)
            await bounded(client.receive("*a"), 10)
    # ... and within one read of the burst's mark: a burst of reads after a
    # waiting receive was woken pauses at READ_BURST_HIGH_WATER (see
    # `test_reading_pauses_at_the_mark_and_at_the_burst_mark_after_a_wake`).
    assert buffered <= READ_BURST_HIGH_WATER + 256 * 1024


class _PausableTransport:
    """Just what the protocol's flow control calls."""

    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


@pytest.mark.asyncio
async def test_reading_pauses_at_the_mark_and_at_the_burst_mark_after_a_wake() -> None:
    loop = asyncio.get_running_loop()
    buffer = ReceiveBuffer()
    proto = StreamProtocol(buffer, loop)
    transport = _PausableTransport()
    proto.transport = cast(asyncio.Transport, transport)
    read = b"x" * (64 * 1024)

    def fill_until_paused() -> int:
        for _ in range(64):
            proto.data_received(read)
            if transport.paused:
                return len(buffer)
        raise AssertionError("reading never paused")

    # Nobody waits: the mark.
    assert READ_HIGH_WATER < fill_until_paused() <= READ_HIGH_WATER + len(read)
    # A waiting receive woken by a read: the rest of that burst (the reads
    # before the receive runs) goes on to the burst's mark...
    assert buffer.take(len(buffer)) is not None
    proto.resume_reading()
    waiter = loop.create_future()
    proto.read_waiter = waiter
    proto.keep_reading = True
    proto.data_received(read)
    assert waiter.done() and not transport.paused
    paused_at = fill_until_paused()
    assert READ_HIGH_WATER + len(read) < paused_at  # past where the mark pauses
    assert READ_BURST_HIGH_WATER < paused_at <= READ_BURST_HIGH_WATER + len(read)
    # ... and once that receive has taken something (and does not wait
    # again), the mark is back.
    assert buffer.take(1) is not None
    proto.resume_reading()
    proto.data_received(read)
    assert transport.paused


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
async def test_close_frees_the_descriptor_of_a_peer_that_stopped_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The transport closes once its queued replies are out; a peer that never
    # reads again would hold the descriptor for good. After CLOSE_FLUSH_LIMIT
    # seconds without progress the rest is dropped and the descriptor freed.
    monkeypatch.setattr(aioluasock._socket, "CLOSE_FLUSH_LIMIT", 0.2)
    async with connected() as (_client, peer):
        peer.settimeout(0.3)
        count, err = await bounded(peer.send(b"x" * (8 * MB)), 10)
        assert err == "timeout" and count > 0
        before = _open_fds()
        peer.close()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if _open_fds() < before:
                break
        assert _open_fds() == before - 1


@pytest.mark.asyncio
async def test_close_keeps_flushing_to_a_slow_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioluasock._socket, "CLOSE_FLUSH_LIMIT", 0.2)
    async with connected() as (client, peer):
        peer.settimeout(0.3)
        count, err = await bounded(peer.send(b"y" * (8 * MB)), 10)
        assert err == "timeout" and count > 0
        peer.close()
        client.settimeout(5)
        got = 0
        while True:  # slower than the limit, but never stalled for all of it
            data, err = await bounded(client.receive(count // 8 + 1), 10)
            got += len(data)
            if err is not None:
                break
            await asyncio.sleep(0.1)
        assert (got, err) == (count, "closed")
