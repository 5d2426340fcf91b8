"""UDP objects (`udp`, `udp4`, `udp6`) against the Python contract.

Every test runs on asyncio and on uvloop (conftest.py). Loopback only; every
wait is bounded. LuaSocket 3.1's own answers are compared line for line by
the corpus script tests/lua/20_udp.lua (test_lua_differential.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket as std_socket
from collections.abc import AsyncIterator

import pytest
from conftest import needs_ipv6

import aioluasock as socket
from aioluasock import BusyError, UdpConnected, UdpUnconnected
from aioluasock._udp import QUEUE_MAX_DATAGRAMS

LOCAL = "127.0.0.1"


async def bound(host: str = LOCAL) -> tuple[UdpUnconnected, int]:
    """A UDP object bound to `host` and an ephemeral port, with a 5 s timeout."""
    made, err = socket.udp6() if ":" in host else socket.udp4()
    assert made is not None, err
    ok, err = await made.setsockname(host, 0)
    assert ok == 1, err
    made.settimeout(5)
    _, port = made.getsockname()
    assert isinstance(port, int)
    return made, port


@contextlib.asynccontextmanager
async def pair() -> AsyncIterator[tuple[UdpUnconnected, UdpUnconnected, int]]:
    """Two bound objects `(a, b)` and b's port; closed afterwards."""
    a, _ = await bound()
    b, port = await bound()
    try:
        yield a, b, port
    finally:
        a.close()
        b.close()


def connected(u: object) -> UdpConnected:
    """`u` after a `setpeername`: the same object, now of the connected class."""
    assert type(u) is UdpConnected, type(u)
    return u


def unconnected(u: object) -> UdpUnconnected:
    assert type(u) is UdpUnconnected, type(u)
    return u


async def receivefrom(u: UdpUnconnected) -> tuple[bytes, str, int]:
    """`u.receivefrom()`, which must succeed."""
    got = await u.receivefrom()
    if len(got) != 3:
        pytest.fail(f"receivefrom failed: {got}")
    return got


def closed_port() -> int:
    """A UDP port on 127.0.0.1 where nobody listens."""
    with std_socket.socket(std_socket.AF_INET, std_socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
    return port


# -- shapes ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sendto_receivefrom_shapes() -> None:
    async with pair() as (a, b, port):
        _, a_port = a.getsockname()
        assert await a.sendto(b"hello", LOCAL, port) == (5, None)
        assert await b.receivefrom() == (b"hello", LOCAL, a_port)
        assert await a.sendto(bytearray(b"second"), LOCAL, str(port)) == (6, None)
        assert await b.receive() == (b"second", None)
        assert await a.sendto(b"", LOCAL, port) == (0, None)
        assert await b.receive() == (b"", None)


@pytest.mark.asyncio
async def test_datagrams_keep_their_order_and_bytes() -> None:
    async with pair() as (a, b, port):
        payloads = [bytes([i]) * (i + 1) for i in range(256)]
        for i, data in enumerate(payloads):
            await a.sendto(data, LOCAL, port)
            if i % 16 == 0:
                # Let the transport read: the kernel's receive buffer of b
                # (not ours) would drop a burst of 256 unread datagrams.
                await asyncio.sleep(0.001)
        got = [(await b.receive(1000))[0] for _ in payloads]
        assert got == payloads


@pytest.mark.asyncio
async def test_size_truncates_and_the_rest_of_the_datagram_is_gone() -> None:
    async with pair() as (a, b, port):
        await a.sendto(b"0123456789", LOCAL, port)
        await a.sendto(b"abc", LOCAL, port)
        assert await b.receive(4) == (b"0123", None)
        assert await b.receive() == (b"abc", None)
        await a.sendto(b"x" * 10000, LOCAL, port)
        data, _ = await b.receive()
        assert data is not None and len(data) == socket._udp.DATAGRAMSIZE
        await a.sendto(b"gone", LOCAL, port)
        await a.sendto(b"kept", LOCAL, port)
        assert await b.receive(0) == (b"", None)
        assert await b.receive() == (b"kept", None)
        await a.sendto(b"y" * 65507, LOCAL, port)
        data, _ = await b.receive(65535)
        assert data == b"y" * 65507


@pytest.mark.asyncio
async def test_too_long_and_bad_addresses_are_error_strings() -> None:
    async with pair() as (a, _, port):
        assert await a.sendto(b"y" * 65508, LOCAL, port) == (None, "Message too long")
        assert await a.sendto(b"x", "localhost", port) == (None, "Name or service not known")
        assert await a.sendto(b"x", LOCAL, "echo") == (None, "Name or service not known")
        assert await a.sendto(b"x", "::1", port) == (None, "Address family for hostname not supported")
        assert await a.sendto(b"x", LOCAL, 0) == (None, "Invalid argument")


@pytest.mark.asyncio
async def test_misuse_raises() -> None:
    async with pair() as (a, _, port):
        with pytest.raises(TypeError):
            await a.sendto("text", LOCAL, port)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await a.sendto(b"x", 1, port)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="port"):
            await a.sendto(b"x", LOCAL, 65536)
        with pytest.raises(ValueError, match="NUL"):
            await a.sendto(b"x", "127.0.0.1\0", port)
        with pytest.raises(ValueError):
            await a.receive(-1)
        with pytest.raises(TypeError):
            await a.receive("8")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await a.setpeername(LOCAL)
        with pytest.raises(ValueError):
            a.settimeout(1, "x")
        with pytest.raises(ValueError, match="unsupported option"):
            a.setoption("tcp-nodelay", True)
        with pytest.raises(ValueError, match="unsupported option"):
            a.getoption("ip-add-membership")


# -- classes ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_setpeername_switches_the_class_and_back() -> None:
    async with pair() as (_, b, port):
        c, err = socket.udp4()
        assert c is not None, err
        try:
            assert await c.setpeername(LOCAL, port) == (1, None)
            cc = connected(c)
            assert cc.getpeername() == (LOCAL, port)
            _, c_port = cc.getsockname()
            assert isinstance(c_port, int)
            assert await cc.send(b"connected") == (9, None)
            assert await b.receivefrom() == (b"connected", LOCAL, c_port)
            await b.sendto(b"reply", LOCAL, c_port)
            cc.settimeout(5)
            assert await cc.receive() == (b"reply", None)
            assert not hasattr(cc, "sendto") and not hasattr(cc, "receivefrom")
            assert await cc.setpeername("*") == (1, None)
            cu = unconnected(cc)
            assert not hasattr(cu, "send") and not hasattr(cu, "getpeername")
            assert await cu.sendto(b"free", LOCAL, port) == (4, None)
            assert await b.receive() == (b"free", None)
        finally:
            c.close()


@pytest.mark.asyncio
async def test_a_connected_object_hears_only_its_peer() -> None:
    async with pair() as (a, b, port):
        c, _ = socket.udp4()
        assert c is not None
        try:
            await c.setpeername(LOCAL, port)
            _, c_port = c.getsockname()
            assert isinstance(c_port, int)
            c.settimeout(5)
            await a.sendto(b"stranger", LOCAL, c_port)
            await b.sendto(b"peer", LOCAL, c_port)
            assert await c.receive() == (b"peer", None)
        finally:
            c.close()


@pytest.mark.asyncio
async def test_lazy_udp_makes_its_socket_on_first_use() -> None:
    async with pair() as (_, b, port):
        lazy, err = socket.udp()
        assert lazy is not None, err
        try:
            assert lazy.getfd() == -1
            assert lazy.getsockname() == (None, "Bad file descriptor")
            assert await lazy.sendto(b"lazy", LOCAL, port) == (4, None)
            assert lazy.getfd() >= 0 and lazy.getfamily() == "inet4"
            data, ip, lazy_port = await receivefrom(b)
            assert (data, ip) == (b"lazy", LOCAL)
            assert isinstance(lazy_port, int)
            await b.sendto(b"back", LOCAL, lazy_port)
            lazy.settimeout(5)
            assert await lazy.receivefrom() == (b"back", LOCAL, port)
        finally:
            lazy.close()


@needs_ipv6
@pytest.mark.asyncio
async def test_ipv6() -> None:
    six, port = await bound("::1")
    other, _ = socket.udp()
    assert other is not None
    try:
        assert six.getfamily() == "inet6"
        assert six.getoption("ipv6-v6only") == (True, None)
        assert await other.sendto(b"six", "::1", port) == (3, None)
        assert other.getfamily() == "inet6"
        data, ip, _ = await receivefrom(six)
        assert (data, ip) == (b"six", "::1")
        assert await six.sendto(b"x", LOCAL, port) == (None, "Address family for hostname not supported")
    finally:
        six.close()
        other.close()


# -- timeouts and polling ------------------------------------------------------------


@pytest.mark.asyncio
async def test_block_and_total_timeouts() -> None:
    async with pair() as (_, b, _):
        b.settimeout(0)
        assert await b.receive() == (None, "timeout")
        b.settimeout(0.05)
        start = asyncio.get_running_loop().time()
        assert await b.receivefrom() == (None, "timeout")
        assert asyncio.get_running_loop().time() - start >= 0.04
        b.settimeout(None)
        b.settimeout(0.05, "t")
        assert await b.receive() == (None, "timeout")


@pytest.mark.asyncio
async def test_polling_with_timeout_zero_sees_a_datagram_at_once() -> None:
    async with pair() as (a, b, port):
        b.settimeout(0)
        await a.sendto(b"polled", LOCAL, port)
        results = []
        for _ in range(3):
            results.append(await b.receive())
            if results[-1][0] is not None:
                break
        assert results[-1] == (b"polled", None), results


@pytest.mark.asyncio
async def test_a_waiting_receive_is_woken_by_a_datagram() -> None:
    async with pair() as (a, b, port):
        waiter = asyncio.ensure_future(b.receivefrom())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        await a.sendto(b"wake", LOCAL, port)
        assert (await asyncio.wait_for(waiter, 5))[0] == b"wake"


@pytest.mark.asyncio
async def test_cancelled_receive_loses_nothing() -> None:
    async with pair() as (a, b, port):
        for _ in range(20):
            waiter = asyncio.ensure_future(b.receive())
            await asyncio.sleep(0)
            await a.sendto(b"kept", LOCAL, port)
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                result = await waiter
                assert result == (b"kept", None)
                continue
            assert await b.receive() == (b"kept", None)


@pytest.mark.asyncio
async def test_two_receivers_are_refused() -> None:
    async with pair() as (a, b, port):
        first = asyncio.ensure_future(b.receive())
        await asyncio.sleep(0)
        with pytest.raises(BusyError):
            await b.receive()
        await a.sendto(b"one", LOCAL, port)
        assert await asyncio.wait_for(first, 5) == (b"one", None)


@pytest.mark.asyncio
async def test_close_wakes_a_waiting_receive() -> None:
    b, _ = await bound()
    waiter = asyncio.ensure_future(b.receive())
    await asyncio.sleep(0.01)
    b.close()
    assert await asyncio.wait_for(waiter, 5) == (None, "closed")
    assert await b.receive() == (None, "closed")
    assert await b.sendto(b"x", LOCAL, 9) == (None, "closed")
    assert b.getfd() == -1


@pytest.mark.asyncio
async def test_a_full_queue_drops_as_the_kernel_would() -> None:
    async with pair() as (a, b, port):
        # Nobody reads b: past the queue's limit datagrams are dropped, and
        # what was queued comes out in order. The sender waits until each
        # datagram has reached b's queue (or been dropped by it), so the
        # kernel's own receive buffer never fills and drops in our place.
        proto = b._proto
        assert proto is not None
        sent = QUEUE_MAX_DATAGRAMS + 200
        for i in range(sent):
            before = len(proto.queue) + proto.dropped
            await a.sendto(str(i).encode(), LOCAL, port)
            for _ in range(1000):
                if len(proto.queue) + proto.dropped > before:
                    break
                await asyncio.sleep(0.001)
            else:
                pytest.fail(f"datagram {i} never reached the queue")
        assert proto.dropped == 200
        b.settimeout(0)
        got = []
        while True:
            data, _ = await b.receive()
            if data is None:
                break
            got.append(int(data))
        assert got == list(range(QUEUE_MAX_DATAGRAMS))


# -- ICMP errors ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connected_object_reports_a_closed_port_once() -> None:
    r, _ = socket.udp4()
    assert r is not None
    try:
        r.settimeout(1)
        await r.setpeername(LOCAL, closed_port())
        rc = connected(r)
        assert await rc.send(b"anyone?") == (7, None)
        assert await rc.receive() == (None, "connection refused")
        rc.settimeout(0.05)
        assert await rc.receive() == (None, "timeout")
    finally:
        r.close()


@pytest.mark.asyncio
async def test_unconnected_object_ignores_icmp() -> None:
    r, _ = socket.udp4()
    assert r is not None
    try:
        r.settimeout(0.1)
        assert await r.sendto(b"anyone?", LOCAL, closed_port()) == (7, None)
        assert await r.receivefrom() == (None, "timeout")
    finally:
        r.close()


# -- options -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_options() -> None:
    o, _ = socket.udp4()
    assert o is not None
    try:
        for name in ("broadcast", "dontroute", "reuseaddr", "reuseport"):
            assert o.setoption(name, True) == (1, None)
            assert o.getoption(name) == (True, None)
        assert o.setoption("ip-multicast-ttl", 3) == (1, None)
        assert o.getoption("ip-multicast-ttl") == (3, None)
        assert o.setoption("ip-multicast-loop", False) == (1, None)
        assert o.getoption("ip-multicast-loop") == (False, None)
        assert o.setoption("ip-multicast-if", LOCAL) == (1, None)
        assert o.getoption("ip-multicast-if") == (LOCAL, None)
        group = {"multiaddr": "239.255.1.2", "interface": LOCAL}
        assert o.setoption("ip-add-membership", group) == (1, None)
        assert o.setoption("ip-drop-membership", group) == (1, None)
        assert o.setoption("ip-drop-membership", group) == (None, "setsockopt failed")
        with pytest.raises(ValueError, match="multiaddr"):
            o.setoption("ip-add-membership", {"multiaddr": "x", "interface": LOCAL})
        with pytest.raises(TypeError):
            o.setoption("broadcast", 1)
        assert o.getoption("error") == (None, None)
    finally:
        o.close()
    assert o.setoption("broadcast", True) == (None, "setsockopt failed")


# -- select --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_select_reports_a_datagram_and_wakes_on_one() -> None:
    async with pair() as (a, b, port):
        assert await socket.select([b], None, 0) == ([], [], "timeout")
        readable, writable, err = await socket.select(None, [b], 0)
        assert (readable, writable, err) == ([], [b], None)
        waiter = asyncio.ensure_future(socket.select([b], None, 5))
        await asyncio.sleep(0.02)
        assert not waiter.done()
        await a.sendto(b"wake", LOCAL, port)
        assert await asyncio.wait_for(waiter, 5) == ([b], [], None)
        assert await b.receive() == (b"wake", None)
        assert await socket.select([b], None, 0.02) == ([], [], "timeout")


@pytest.mark.asyncio
async def test_select_sees_a_datagram_at_once_with_timeout_zero() -> None:
    async with pair() as (a, b, port):
        await a.sendto(b"now", LOCAL, port)
        assert await socket.select([b], None, 0) == ([b], [], None)


@pytest.mark.asyncio
async def test_select_skips_closed_objects() -> None:
    c, _ = socket.udp4()
    assert c is not None
    c.close()
    assert await socket.select([c], [c], 0.02) == ([], [], "timeout")


# -- resources ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_descriptor_leaks() -> None:
    import os

    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        async with pair() as (a, b, port):
            await a.sendto(b"x", LOCAL, port)
            assert await b.receive() == (b"x", None)
        lazy, _ = socket.udp()
        assert lazy is not None
        await lazy.sendto(b"x", LOCAL, closed_port())
        lazy.close()
    await asyncio.sleep(0.01)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before + 2


@pytest.mark.asyncio
async def test_unclosed_object_warns() -> None:
    u, _ = await bound()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del u
        gc.collect()
    await asyncio.sleep(0)


def test_repr() -> None:
    u, _ = socket.udp()
    assert repr(u) == "<udp{unconnected} fd=-1>"
    assert u is not None
    u.close()
    assert "closed" in repr(u)
