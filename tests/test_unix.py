"""Unix domain sockets (`aioluasock.unix`): stream and datagram objects.

Every test runs on asyncio and on uvloop (conftest.py). Sockets live in a
temporary directory, or under abstract names; every wait is bounded. The
Lua bridge's `socket.unix` is compared with real LuaSocket by the corpus
script tests/lua/23_unix.lua.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket as std_socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aioluasock as socket
from aioluasock import unix
from aioluasock.lua import run_string
from aioluasock.unix import (
    UnixClient,
    UnixDgramConnected,
    UnixDgramUnconnected,
    UnixMaster,
    UnixServer,
)


@contextlib.asynccontextmanager
async def stream_pair(path: Path) -> AsyncIterator[tuple[UnixServer, UnixClient, UnixClient]]:
    """A server on `path`, a client connected to it and the accepted peer."""
    server, err = await unix.bind(path)
    assert server is not None, err
    server.settimeout(5)
    client, err = await unix.connect(path)
    assert client is not None, err
    peer, err = await server.accept()
    assert peer is not None, err
    client.settimeout(5)
    peer.settimeout(5)
    try:
        yield server, client, peer
    finally:
        client.close()
        peer.close()
        server.close()


@pytest.mark.asyncio
async def test_stream_round_trip_with_every_pattern(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with stream_pair(path) as (server, client, peer):
        assert isinstance(server, UnixServer) and isinstance(client, UnixClient)
        assert await client.send(b"line one\r\nline two\n", b"12345", b"rest") == (28, None)
        assert await peer.receive("*l", "*l", 5) == (b"line one", b"line two", b"12345", None)
        peer.settimeout(0.05)
        assert await peer.receive(10) == (b"rest", "timeout")
        assert await peer.receive(6, prefix=b"rest") == (b"rest", "timeout")
        client.shutdown("send")
        assert await peer.receive("*a") == (b"", None)
        assert await peer.send(b"back\n") == (5, None)
        assert await client.receive() == (b"back", None)
        assert client.getstats()[:2] == (5, 28)


@pytest.mark.asyncio
async def test_names_kinds_and_repr(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    async with stream_pair(path) as (server, client, peer):
        assert server.getsockname() == (str(path), None)
        assert client.getsockname() == ("", None)  # unbound
        assert client.getpeername() == (str(path), None)
        assert peer.getsockname() == (str(path), None)
        assert peer.getpeername() == ("", None)
        assert client.getfamily() == "unix"
        assert repr(server).startswith("<unixstream{server} ")
        assert repr(client).startswith("<unixstream{client} ")
        assert not hasattr(server, "receive") and not hasattr(client, "accept")
    master, err = unix.stream()
    assert isinstance(master, UnixMaster), err
    assert repr(master) == f"<unixstream{{master}} '' fd={master.getfd()}>"
    assert not hasattr(master, "send")
    master.close()
    assert master.getsockname() == (None, "Bad file descriptor")
    assert repr(master) == "<unixstream{master} closed fd=-1>"


@pytest.mark.asyncio
async def test_the_socket_file_is_removed_on_close_only_when_it_is_ours(tmp_path: Path) -> None:
    path = tmp_path / "f.sock"
    server, err = await unix.bind(path)
    assert server is not None, err
    assert path.exists()
    again, err = await unix.bind(path)
    assert again is None and err == "address already in use"
    server.close()
    assert not path.exists()
    # Binding the same path again works, and a file put in its place after
    # our bind is not ours to remove.
    server, err = await unix.bind(str(path))
    assert server is not None, err
    path.unlink()
    path.write_bytes(b"somebody else's")
    server.close()
    assert path.read_bytes() == b"somebody else's"


@pytest.mark.asyncio
async def test_abstract_names() -> None:
    name = f"\0aioluasock-test-{os.getpid()}-{id(object())}"
    server, err = await unix.bind(name)
    assert server is not None, err
    client, err = await unix.connect(name.encode())
    assert client is not None, err
    peer, err = await server.accept()
    assert peer is not None, err
    assert server.getsockname() == (name, None)
    assert await client.send(b"abstract\n") == (9, None)
    assert await peer.receive() == (b"abstract", None)
    for obj in (client, peer, server):
        obj.close()


@pytest.mark.asyncio
async def test_failures_are_luasocket_strings_and_destroy_the_socket(tmp_path: Path) -> None:
    master, _ = unix.stream()
    assert master is not None
    assert await master.connect(tmp_path / "missing.sock") == (None, "No such file or directory")
    assert isinstance(master, UnixMaster)  # a failed connect leaves a master...
    assert master.getfd() == -1  # ...without a socket, as LuaSocket
    master.close()
    master, _ = unix.stream()
    assert master is not None
    assert await master.bind("x" * 108) == (None, "path too long")
    assert master.getfd() >= 0  # refused before any system call: the socket stays
    assert await master.bind(tmp_path) == (None, "address already in use")
    assert master.getfd() == -1
    master.close()
    # Nobody listening on a socket file: refused.
    plain = std_socket.socket(std_socket.AF_UNIX, std_socket.SOCK_STREAM)
    plain.bind(str(tmp_path / "deaf.sock"))
    client, err = await unix.connect(tmp_path / "deaf.sock")
    assert client is None and err == "connection refused"
    plain.close()
    assert await unix.connect(tmp_path / "deaf.sock") == (None, "connection refused")


@pytest.mark.asyncio
async def test_misuse_raises() -> None:
    master, _ = unix.stream()
    assert master is not None
    try:
        with pytest.raises(TypeError):
            await master.bind(5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="NUL"):
            await master.connect("/tmp/a\0b")
        with pytest.raises(ValueError, match="unsupported option"):
            master.setoption("tcp-nodelay", True)
    finally:
        master.close()


@pytest.mark.asyncio
async def test_polling_with_timeout_zero_sees_the_line(tmp_path: Path) -> None:
    async with stream_pair(tmp_path / "p.sock") as (_, client, peer):
        await peer.send(b"hello\n")
        client.settimeout(0)
        for polls in range(50):  # noqa: B007 (read after the loop)
            line, err = await client.receive("*l")
            if err is None:
                break
            assert (line, err) == (b"", "timeout")
        assert line == b"hello" and polls < 5


@pytest.mark.asyncio
async def test_select_and_close_wake_waiters(tmp_path: Path) -> None:
    async with stream_pair(tmp_path / "w.sock") as (server, client, peer):
        assert await socket.select([peer, server], [client], 0) == ([], [client], None)
        waiting = asyncio.ensure_future(peer.receive("*l"))
        await asyncio.sleep(0.01)
        await client.send(b"partial")
        await asyncio.sleep(0.05)
        peer.close()
        assert await asyncio.wait_for(waiting, 5) == (b"partial", "closed")
        pending = await unix.connect(server.getsockname()[0] or "")
        assert pending[0] is not None
        readable, _, err = await socket.select([server], None, 5)
        assert readable == [server] and err is None
        pending[0].close()


@pytest.mark.asyncio
async def test_dgram_unconnected_and_connected(tmp_path: Path) -> None:
    a, _ = unix.dgram()
    b, _ = unix.dgram()
    anonymous, _ = unix.dgram()
    assert isinstance(a, UnixDgramUnconnected) and b is not None and anonymous is not None
    try:
        pa, pb = tmp_path / "a.sock", tmp_path / "b.sock"
        assert await a.bind(pa) == (1, None)
        assert await b.bind(pb) == (1, None)
        a.settimeout(5)
        b.settimeout(5)
        assert await a.sendto(b"to b", pb) == (4, None)
        assert await b.receivefrom() == (b"to b", str(pa), None)
        assert await anonymous.sendto(b"from nobody", pa) == (11, None)
        assert await a.receivefrom(4) == (b"from", "", None)  # truncated, unbound sender
        assert await b.connect(pa) == (1, None)
        connected: object = b  # the same object, of another kind now
        assert isinstance(connected, UnixDgramConnected)
        assert connected.getpeername() == (str(pa), None)
        assert await connected.send(b"reply") == (5, None)
        assert await a.receive() == (b"reply", None)
        a.settimeout(0)
        assert await a.receivefrom() == (None, "timeout")
        assert await a.sendto(b"x", tmp_path / "nobody.sock") == (None, "No such file or directory")
        assert await a.sendto(b"x", "y" * 108) == (None, "path too long")
        await anonymous.sendto(b"ready", pa)
        readable, _, err = await socket.select([a], None, 5)
        assert readable == [a] and err is None
        assert a.getsockname() == (str(pa), None)
        assert repr(a).startswith("<unixdgram{unconnected} ")
    finally:
        for obj in (a, b, anonymous):
            obj.close()
    assert not (tmp_path / "a.sock").exists()


@pytest.mark.asyncio
async def test_dgram_receive_cancelled_loses_nothing(tmp_path: Path) -> None:
    a, _ = unix.dgram()
    b, _ = unix.dgram()
    assert a is not None and b is not None
    try:
        await a.bind(tmp_path / "a.sock")
        waiting = asyncio.ensure_future(a.receivefrom())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert await b.sendto(b"kept", tmp_path / "a.sock") == (4, None)
        a.settimeout(5)
        assert await a.receivefrom() == (b"kept", "", None)
    finally:
        a.close()
        b.close()


@pytest.mark.asyncio
async def test_bridge_unix_stream_with_an_abstract_name_and_python_peer(tmp_path: Path) -> None:
    # LuaSocket 3.1 passes strlen(path) as the address length, so abstract
    # names do not work there; the bridge gives them their whole length.
    name = f"\0aioluasock-bridge-{os.getpid()}-{id(tmp_path)}"
    server, err = await unix.bind(name)
    assert server is not None, err
    script = asyncio.ensure_future(
        run_string(
            """
            local unix = require "socket.unix"
            local c = assert(unix.stream())
            assert(c:connect(...))
            assert(c:send("from lua\\n"))
            local line = assert(c:receive())
            c:close()
            return line, c.class
            """,
            name,
        )
    )
    peer, err = await server.accept()
    assert peer is not None, err
    peer.settimeout(5)
    assert await peer.receive() == (b"from lua", None)
    assert await peer.send(b"from python\n") == (12, None)
    result = await asyncio.wait_for(script, 10)
    assert result.values == (b"from python", b"unixstream{client}")
    peer.close()
    server.close()
