"""`setoption` / `getoption` (SEMANTICS.md section 10) on every kind of object.

Every option round-trips through the OS on a master, a server, a connecting
client and an accepted client, on both loops (the transport owns the client's
descriptor, so this checks that the options reach the right socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket as pysocket
from collections.abc import AsyncIterator
from typing import Literal

import pytest

import aioluasock as socket

Kind = Literal["master", "server", "client", "accepted"]
KINDS: tuple[Kind, ...] = ("master", "server", "client", "accepted")
AnySocket = socket.Master | socket.Server | socket.Client

SETOPT_FAILED = (None, "setsockopt failed")
GETOPT_FAILED = (None, "getsockopt failed")


@contextlib.asynccontextmanager
async def make(kind: Kind, host: str = "127.0.0.1") -> AsyncIterator[AnySocket]:
    """An object of `kind`, with whatever it needs kept open meanwhile."""
    to_close: list[AnySocket] = []
    try:
        if kind == "master":
            master, err = socket.tcp6() if ":" in host else socket.tcp4()
            assert master is not None, err
            to_close.append(master)
            yield master
            return
        server, err = await socket.bind(host, 0)
        assert server is not None, err
        to_close.append(server)
        if kind == "server":
            yield server
            return
        _, port = server.getsockname()
        assert isinstance(port, int)
        client, err = await socket.connect(host, port)
        assert client is not None, err
        to_close.append(client)
        peer, err = await server.accept()
        assert peer is not None, err
        to_close.append(peer)
        yield client if kind == "client" else peer
    finally:
        for obj in reversed(to_close):
            obj.close()


# -- round trips ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["keepalive", "reuseaddr", "reuseport", "tcp-nodelay"])
async def test_boolean_round_trip(kind: Kind, name: str) -> None:
    async with make(kind) as obj:
        for value in (True, False, True):
            assert obj.setoption(name, value) == (1, None)
            assert obj.getoption(name) == (value, None)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "value"), [("tcp-keepidle", 30), ("tcp-keepcnt", 4), ("tcp-keepintvl", 7)])
async def test_keepalive_tuning_round_trip(kind: Kind, name: str, value: int) -> None:
    async with make(kind) as obj:
        assert obj.setoption(name, value) == (1, None)
        assert obj.getoption(name) == (value, None)
        assert obj.setoption(name, value + 1) == (1, None)
        assert obj.getoption(name) == (value + 1, None)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_linger_round_trip(kind: Kind) -> None:
    async with make(kind) as obj:
        assert obj.getoption("linger") == ({"on": False, "timeout": 0}, None)
        assert obj.setoption("linger", {"on": True, "timeout": 3}) == (1, None)
        assert obj.getoption("linger") == ({"on": True, "timeout": 3}, None)
        assert obj.setoption("linger", {"on": False, "timeout": 0}) == (1, None)
        value, err = obj.getoption("linger")
        assert err is None
        assert isinstance(value, dict)
        assert value["on"] is False
        assert isinstance(value["timeout"], int)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "size"), [("recv-buffer-size", 65536), ("send-buffer-size", 32768)])
async def test_buffer_size_round_trip(kind: Kind, name: str, size: int) -> None:
    async with make(kind) as obj:
        assert obj.setoption(name, size) == (1, None)
        value, err = obj.getoption(name)
        assert err is None
        assert isinstance(value, int)
        assert not isinstance(value, bool)
        # Linux reports double the value it was given.
        assert size <= value <= 2 * size


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_error_is_none_when_nothing_is_pending(kind: Kind) -> None:
    async with make(kind) as obj:
        assert obj.getoption("error") == (None, None)


@pytest.mark.asyncio
async def test_error_after_a_failed_background_connect() -> None:
    # A connect with timeout 0 goes on after "timeout"; once select reports it
    # done, getoption("error") reads (and clears) why it failed (probe 07).
    probe = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    master, _ = socket.tcp4()
    assert master is not None
    try:
        master.settimeout(0)
        ok, err = await master.connect("127.0.0.1", port)
        if err == "connection refused":
            pytest.skip("the kernel refused the connect at once: no pending error to read")
        assert (ok, err) == (None, "timeout")
        _, writable, err = await socket.select(None, [master], 2)
        assert err is None
        assert writable == [master]
        assert master.getoption("error") == ("connection refused", None)
        assert master.getoption("error") == (None, None)  # reading cleared it
    finally:
        master.close()


@pytest.mark.asyncio
async def test_server_options() -> None:
    async with make("server") as server:
        # socket.bind sets reuseaddr, as LuaSocket's socket.bind does.
        assert server.getoption("reuseaddr") == (True, None)
        assert server.setoption("tcp-defer-accept", 3) == (1, None)
        assert server.getoption("tcp-defer-accept") == (3, None)
        assert server.setoption("tcp-defer-accept", 0) == (1, None)
        assert server.getoption("tcp-defer-accept") == (0, None)
        assert server.setoption("tcp-fastopen", 5) == (1, None)
        assert server.getoption("tcp-fastopen") == (5, None)


@pytest.mark.asyncio
async def test_fastopen_on_a_master() -> None:
    async with make("master") as master:
        assert master.setoption("tcp-fastopen", 5) == (1, None)
        assert master.getoption("tcp-fastopen") == (5, None)
        assert master.setoption("tcp-fastopen-connect", 1) == (1, None)
        assert master.getoption("tcp-fastopen-connect") == (1, None)
        assert master.setoption("tcp-fastopen-connect", 0) == (1, None)
        assert master.getoption("tcp-fastopen-connect") == (0, None)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["client", "accepted"])
async def test_fastopen_on_a_connected_client_fails(kind: Kind) -> None:
    # The kernel accepts these only before connecting / on a listener.
    async with make(kind) as client:
        assert client.setoption("tcp-fastopen", 5) == SETOPT_FAILED
        assert client.setoption("tcp-fastopen-connect", 1) == SETOPT_FAILED


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_ipv6_v6only_round_trip(kind: Kind) -> None:
    async with make(kind, "::1") as obj:
        assert obj.getfamily() == "inet6"
        # As LuaSocket: an IPv6 socket starts with IPV6_V6ONLY set.
        assert obj.getoption("ipv6-v6only") == (True, None)
        if kind != "master":
            # Linux refuses to change it once the socket is bound (EINVAL).
            assert obj.setoption("ipv6-v6only", False) == SETOPT_FAILED
            assert obj.getoption("ipv6-v6only") == (True, None)
            return
        assert obj.setoption("ipv6-v6only", False) == (1, None)
        assert obj.getoption("ipv6-v6only") == (False, None)
        assert obj.setoption("ipv6-v6only", True) == (1, None)
        assert obj.getoption("ipv6-v6only") == (True, None)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_ipv6_v6only_on_ipv4_fails(kind: Kind) -> None:
    async with make(kind) as obj:
        assert obj.setoption("ipv6-v6only", True) == SETOPT_FAILED
        assert obj.getoption("ipv6-v6only") == GETOPT_FAILED


@pytest.mark.asyncio
async def test_options_survive_connect() -> None:
    # connect turns the same object (and descriptor) into a client.
    async with make("server") as server:
        assert isinstance(server, socket.Server)
        _, port = server.getsockname()
        assert isinstance(port, int)
        master, _ = socket.tcp4()
        assert master is not None
        try:
            assert master.setoption("keepalive", True) == (1, None)
            assert master.setoption("tcp-keepidle", 42) == (1, None)
            assert await master.connect("127.0.0.1", port) == (1, None)
            peer, err = await server.accept()
            assert peer is not None, err
            try:
                assert master.getoption("keepalive") == (True, None)
                assert master.getoption("tcp-keepidle") == (42, None)
            finally:
                peer.close()
        finally:
            master.close()


@pytest.mark.asyncio
async def test_options_survive_listen() -> None:
    master, _ = socket.tcp4()
    assert master is not None
    try:
        assert master.setoption("reuseaddr", True) == (1, None)
        assert master.setoption("keepalive", True) == (1, None)
        assert await master.bind("127.0.0.1", 0) == (1, None)
        assert master.listen() == (1, None)
        assert master.getoption("reuseaddr") == (True, None)
        assert master.getoption("keepalive") == (True, None)
    finally:
        master.close()


# -- failures reported by the OS --------------------------------------------------------


ALL_SETTABLE: list[tuple[str, object]] = [
    ("keepalive", True),
    ("reuseaddr", True),
    ("reuseport", True),
    ("tcp-nodelay", True),
    ("tcp-keepidle", 30),
    ("tcp-keepcnt", 4),
    ("tcp-keepintvl", 7),
    ("linger", {"on": True, "timeout": 1}),
    ("recv-buffer-size", 65536),
    ("send-buffer-size", 65536),
    ("ipv6-v6only", True),
    ("tcp-defer-accept", 1),
    ("tcp-fastopen", 1),
    ("tcp-fastopen-connect", 1),
]
ALL_NAMES = [name for name, _ in ALL_SETTABLE] + ["error"]


@pytest.mark.parametrize(("name", "value"), ALL_SETTABLE)
def test_fdless_master_fails(name: str, value: object) -> None:
    # socket.tcp() has no descriptor until bind or connect (probe 07).
    master, _ = socket.tcp()
    try:
        assert master.getfd() == -1
        assert master.setoption(name, value) == SETOPT_FAILED  # type: ignore[arg-type]
        assert master.getoption(name) == GETOPT_FAILED
    finally:
        master.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_closed_object_fails(kind: Kind) -> None:
    async with make(kind) as obj:
        obj.close()
        for name, value in ALL_SETTABLE:
            assert obj.setoption(name, value) == SETOPT_FAILED  # type: ignore[arg-type]
        for name in ALL_NAMES:
            assert obj.getoption(name) == GETOPT_FAILED
        # Misuse still raises on a closed object.
        with pytest.raises(ValueError, match="unsupported option"):
            obj.setoption("bogus", True)
        with pytest.raises(TypeError):
            obj.setoption("keepalive", 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tcp-keepidle", -1),
        ("tcp-keepidle", 0),
        ("tcp-keepcnt", -5),
        ("tcp-keepintvl", 0),
        ("tcp-keepidle", 2**31),
        ("tcp-keepidle", 2**40),
        ("tcp-keepcnt", -(2**31) - 1),
        ("recv-buffer-size", 2**64),
    ],
)
def test_os_refusal_is_setsockopt_failed(name: str, value: int) -> None:
    master, _ = socket.tcp4()
    assert master is not None
    try:
        before = master.getoption(name)
        assert master.setoption(name, value) == SETOPT_FAILED
        assert master.getoption(name) == before  # unchanged
    finally:
        master.close()


def test_linger_timeout_is_an_unsigned_short() -> None:
    master, _ = socket.tcp4()
    assert master is not None
    try:
        assert master.setoption("linger", {"on": True, "timeout": 65536 + 7}) == (1, None)
        assert master.getoption("linger") == ({"on": True, "timeout": 7}, None)
        assert master.setoption("linger", {"on": False, "timeout": 0}) == (1, None)
    finally:
        master.close()


# -- misuse raises ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["bogus", "", "KEEPALIVE", "keep-alive", "bindtodevice", "dontroute", "broadcast"]
)
def test_unknown_option_raises(name: str) -> None:
    made, _ = socket.tcp4()
    assert made is not None
    try:
        with pytest.raises(ValueError, match="unsupported option"):
            made.setoption(name, True)
        with pytest.raises(ValueError, match="unsupported option"):
            made.getoption(name)
    finally:
        made.close()


def test_error_cannot_be_set() -> None:
    made, _ = socket.tcp4()
    assert made is not None
    try:
        with pytest.raises(ValueError, match="unsupported option"):
            made.setoption("error", None)
        with pytest.raises(ValueError, match="unsupported option"):
            made.setoption("error", "closed")
    finally:
        made.close()


@pytest.mark.parametrize("name", [42, None, b"keepalive"])
def test_option_name_must_be_str(name: object) -> None:
    made, _ = socket.tcp4()
    assert made is not None
    try:
        with pytest.raises(TypeError):
            made.setoption(name, True)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            made.getoption(name)  # type: ignore[arg-type]
    finally:
        made.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("keepalive", 1),
        ("keepalive", None),
        ("keepalive", "yes"),
        ("reuseaddr", 0),
        ("tcp-nodelay", 1.0),
        ("ipv6-v6only", 1),
        ("tcp-keepidle", "45"),
        ("tcp-keepidle", 2.9),
        ("tcp-keepidle", True),
        ("tcp-keepcnt", None),
        ("recv-buffer-size", b"1"),
        ("tcp-fastopen", False),
        ("linger", True),
        ("linger", 5),
        ("linger", (True, 0)),
        ("linger", {"on": 1, "timeout": 0}),
        ("linger", {"on": True}),
        ("linger", {"timeout": 0}),
        ("linger", {"on": True, "timeout": "5"}),
        ("linger", {"on": True, "timeout": 1.5}),
        ("linger", {"on": True, "timeout": False}),
    ],
)
def test_wrong_value_type_raises(name: str, value: object) -> None:
    made, _ = socket.tcp4()
    assert made is not None
    try:
        before = made.getoption(name)
        with pytest.raises(TypeError):
            made.setoption(name, value)  # type: ignore[arg-type]
        assert made.getoption(name) == before
    finally:
        made.close()


@pytest.mark.asyncio
async def test_nodelay_on_a_live_client() -> None:
    # Options are plain synchronous calls that work between awaits on a live
    # connection (the transport owns the descriptor on both loops).
    async with make("client") as client:
        assert isinstance(client, socket.Client)
        assert client.setoption("tcp-nodelay", True) == (1, None)
        await asyncio.sleep(0)
        assert await client.send(b"x") == (1, None)
        assert client.getoption("tcp-nodelay") == (True, None)
