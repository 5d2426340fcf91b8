"""`select` (DESIGN.md "select"; SEMANTICS.md section 9) on both loops.

Readiness comes from the protocols and the loop's own callbacks, so there is
no FD_SETSIZE ceiling; a cancelled or finished select leaves nothing
registered with the loop or the objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket as pysocket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import cast

import pytest
from conftest import connected_pair

import aioluasock as socket
from aioluasock import _select
from aioluasock._select import Selectable

TIMEOUT: tuple[list[Selectable], list[Selectable], str] = ([], [], "timeout")


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[socket.Server, socket.Client, socket.Client]]:
    """A server, a client connected to it and the server's end of that connection."""
    server, err = await socket.bind("127.0.0.1", 0)
    assert server is not None, err
    client: socket.Client | None = None
    peer: socket.Client | None = None
    try:
        _, port = server.getsockname()
        assert isinstance(port, int)
        client, err = await socket.connect("127.0.0.1", port)
        assert client is not None, err
        peer, err = await server.accept()
        assert peer is not None, err
        yield server, client, peer
    finally:
        for obj in (peer, client, server):
            if obj is not None:
                obj.close()


def watch(*objects: Selectable) -> list[Selectable]:
    """A list of mixed objects, typed for select."""
    return list(objects)


class Foreign:
    """A non-aioluasock object that select accepts: `getfd()` and `dirty()`."""

    def __init__(self, sock: pysocket.socket | None, dirty: bool = False) -> None:
        self.sock = sock
        self.is_dirty = dirty

    def getfd(self) -> int:
        return -1 if self.sock is None else self.sock.fileno()

    def dirty(self) -> bool:
        return self.is_dirty


@contextlib.contextmanager
def socketpair() -> Iterator[tuple[pysocket.socket, pysocket.socket]]:
    a, b = pysocket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        yield a, b
    finally:
        a.close()
        b.close()


def _assert_nothing_registered(
    loop: asyncio.AbstractEventLoop,
    clients: list[socket.Client],
    fd_objects: list[socket.Server | socket.Client | socket.Master],
    foreign_fds: list[int],
) -> None:
    for client in clients:
        proto = client._proto
        assert proto is not None
        assert proto.watchers == []
    for obj in fd_objects:
        assert obj._fd_readers == []
        assert obj._fd_writers == []
        fd = obj.getfd()
        if fd >= 0:
            assert not loop.remove_reader(fd)
            assert not loop.remove_writer(fd)
    for fd in foreign_fds:
        assert not loop.remove_reader(fd)
        assert not loop.remove_writer(fd)


# -- writable --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connected_client_is_writable() -> None:
    async with connected() as (_, client, peer):
        assert await socket.select(None, [client, peer], 1) == ([], [client, peer], None)
        assert await socket.select([], [client], 0) == ([], [client], None)


@pytest.mark.asyncio
async def test_finished_background_connect_is_writable() -> None:
    server, err = await socket.bind("127.0.0.1", 0)
    assert server is not None, err
    master, _ = socket.tcp4()
    assert master is not None
    peer: socket.Client | None = None
    try:
        _, port = server.getsockname()
        assert isinstance(port, int)
        master.settimeout(0)
        ok, err = await master.connect("127.0.0.1", port)
        assert (ok, err) in ((1, None), (None, "timeout"))
        assert await socket.select(None, [master], 2) == ([], [master], None)
        peer, err = await server.accept()
        assert peer is not None, err
        master.settimeout(None)
        client = cast(socket.Client, master)  # connect made it a client
        assert await client.send(b"after\n") == (6, None)
        assert await peer.receive() == (b"after", None)
    finally:
        for obj in (peer, master, server):
            if obj is not None:
                obj.close()


# -- readable --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_client_with_buffered_bytes_is_readable() -> None:
    async with connected() as (_, client, peer):
        assert await socket.select([peer], None, 0) == TIMEOUT
        assert await client.send(b"hello\nworld") == (11, None)
        assert await socket.select([peer], None, 2) == ([peer], [], None)
        assert await peer.receive() == (b"hello", None)
        # "world" is still buffered: dirty, readable without waiting.
        assert peer.dirty()
        started = time.monotonic()
        assert await socket.select([client, peer], None, 5) == ([peer], [], None)
        assert await socket.select([peer], None, None) == ([peer], [], None)
        assert time.monotonic() - started < 1
        assert await peer.receive(5) == (b"world", None)
        assert not peer.dirty()
        assert await socket.select([peer], None, 0) == TIMEOUT


@pytest.mark.asyncio
async def test_zero_timeout_select_sees_bytes_already_in_the_kernel() -> None:
    # LuaSocket's select(..., 0) polls the kernel: bytes sent before it count,
    # though no transport has read them yet (issue 11).
    async with connected() as (_, client, peer):
        assert await client.send(b"hello\n") == (6, None)
        assert await socket.select([peer], None, 0) == ([peer], [], None)
        assert await peer.receive() == (b"hello", None)


@pytest.mark.asyncio
async def test_end_of_stream_is_readable() -> None:
    async with connected() as (_, client, peer):
        client.close()
        assert await socket.select([peer], None, 2) == ([peer], [], None)
        assert await socket.select([peer], None, 0) == ([peer], [], None)  # stays readable
        assert await peer.receive() == (b"", "closed")
        assert await peer.receive(1) == (b"", "closed")


@pytest.mark.asyncio
async def test_half_close_is_readable() -> None:
    async with connected() as (_, client, peer):
        assert client.shutdown("send") == 1
        assert await socket.select([peer], None, 2) == ([peer], [], None)
        assert await peer.receive("*a") == (b"", None)


@pytest.mark.asyncio
async def test_reset_is_readable() -> None:
    async with connected() as (_, client, peer):
        # linger on with timeout 0: close sends a reset.
        assert client.setoption("linger", {"on": True, "timeout": 0}) == (1, None)
        client.close()
        assert await socket.select([peer], None, 2) == ([peer], [], None)
        assert await peer.receive() == (b"", "closed")


@pytest.mark.asyncio
async def test_server_with_pending_connection_is_readable() -> None:
    server, err = await socket.bind("127.0.0.1", 0)
    assert server is not None, err
    client: socket.Client | None = None
    peer: socket.Client | None = None
    try:
        assert await socket.select([server], None, 0) == TIMEOUT
        _, port = server.getsockname()
        assert isinstance(port, int)
        client, err = await socket.connect("127.0.0.1", port)
        assert client is not None, err
        assert await socket.select([server], None, 2) == ([server], [], None)
        peer, err = await server.accept()
        assert peer is not None, err
        assert await socket.select([server], None, 0) == TIMEOUT
    finally:
        for obj in (peer, client, server):
            if obj is not None:
                obj.close()


# -- waking up -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_select_wakes_when_data_arrives_later() -> None:
    async with connected() as (_, client, peer):

        async def later() -> None:
            await asyncio.sleep(0.1)
            assert await client.send(b"late\n") == (5, None)

        task = asyncio.ensure_future(later())
        started = time.monotonic()
        assert await socket.select([peer], None, 5) == ([peer], [], None)
        elapsed = time.monotonic() - started
        await task
        assert 0.05 <= elapsed < 2
        assert await peer.receive() == (b"late", None)


@pytest.mark.asyncio
async def test_select_wakes_when_a_connection_arrives_later() -> None:
    server, err = await socket.bind("127.0.0.1", 0)
    assert server is not None, err
    _, port = server.getsockname()
    assert isinstance(port, int)
    made: list[socket.Client] = []

    async def later() -> None:
        await asyncio.sleep(0.1)
        client, err = await socket.connect("127.0.0.1", port)
        assert client is not None, err
        made.append(client)

    try:
        task = asyncio.ensure_future(later())
        started = time.monotonic()
        assert await socket.select([server], None, 5) == ([server], [], None)
        assert 0.05 <= time.monotonic() - started < 2
        await task
        peer, err = await server.accept()
        assert peer is not None, err
        made.append(peer)
    finally:
        for obj in made:
            obj.close()
        server.close()


@pytest.mark.asyncio
async def test_select_wakes_for_a_foreign_object() -> None:
    with socketpair() as (a, b):
        foreign = Foreign(a)
        asyncio.get_running_loop().call_later(0.1, b.send, b"x")
        started = time.monotonic()
        assert await socket.select([foreign], None, 5) == ([foreign], [], None)
        assert 0.05 <= time.monotonic() - started < 2


# -- timeouts ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_timeout() -> None:
    async with connected() as (_, _client, peer):
        started = time.monotonic()
        assert await socket.select([peer], None, 0.2) == TIMEOUT
        assert 0.15 <= time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_timeout_zero_polls_once_and_yields() -> None:
    loop = asyncio.get_running_loop()
    async with connected() as (_, _client, peer):
        ran: list[bool] = []
        loop.call_soon(ran.append, True)
        started = time.monotonic()
        result = await socket.select([peer], None, 0)
        assert result == TIMEOUT
        assert time.monotonic() - started < 0.5
        # A polling loop must not starve other tasks.
        assert ran == [True]


@pytest.mark.asyncio
async def test_nothing_to_watch_sleeps_for_the_timeout() -> None:
    started = time.monotonic()
    assert await socket.select(None, None, 0.1) == TIMEOUT
    assert 0.05 <= time.monotonic() - started < 2
    assert await socket.select([], [], 0) == TIMEOUT


@pytest.mark.asyncio
async def test_timeout_results_are_fresh_lists() -> None:
    first: tuple[list[Selectable], list[Selectable], str | None] = await socket.select(None, None, 0)
    second: tuple[list[Selectable], list[Selectable], str | None] = await socket.select(None, None, 0)
    assert first == second == TIMEOUT
    assert first[0] is not second[0]


@pytest.mark.asyncio
async def test_negative_timeout_means_no_limit() -> None:
    async with connected() as (_, client, _peer):
        assert await socket.select(None, [client], -1) == ([], [client], None)


@pytest.mark.asyncio
@pytest.mark.parametrize("timeout", [True, "1", [1]])
async def test_bad_timeout_raises(timeout: object) -> None:
    with pytest.raises(TypeError):
        await socket.select(None, None, timeout)  # type: ignore[arg-type]


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_duplicates_are_reported_once() -> None:
    async with connected() as (_, client, peer):
        assert await client.send(b"x") == (1, None)
        assert await socket.select([peer, peer], None, 2) == ([peer], [], None)
        assert await socket.select([peer, peer, peer], [client, client], 2) == ([peer], [client], None)


@pytest.mark.asyncio
async def test_same_object_in_both_lists() -> None:
    async with connected() as (_, client, peer):
        assert await client.send(b"x") == (1, None)
        assert await socket.select([peer], [peer], 2) == ([peer], [peer], None)


@pytest.mark.asyncio
async def test_any_iterables_are_accepted() -> None:
    async with connected() as (_, client, peer):
        assert await client.send(b"x") == (1, None)
        readable, writable, err = await socket.select((peer,), iter([client]), 2)
        assert (readable, writable, err) == ([peer], [client], None)
        assert isinstance(readable, list)
        assert isinstance(writable, list)
        generated = await socket.select((obj for obj in [peer]), {client: 1}, 2)
        assert generated == ([peer], [client], None)


@pytest.mark.asyncio
async def test_results_follow_the_order_given() -> None:
    async with connected() as (server, client, peer):
        _, port = server.getsockname()
        assert isinstance(port, int)
        other, err = await socket.connect("127.0.0.1", port)  # pending on server
        assert other is not None, err
        try:
            assert await client.send(b"x") == (1, None)
            assert await peer.send(b"y") == (1, None)
            # Wait until all three are readable.
            for obj in (server, peer, client):
                assert await socket.select([obj], None, 2) == ([obj], [], None)
            assert await socket.select([server, peer, client], None, 0) == (
                [server, peer, client],
                [],
                None,
            )
            assert await socket.select([client, server, peer], None, 0) == (
                [client, server, peer],
                [],
                None,
            )
            assert await socket.select(None, [peer, client], 0) == ([], [peer, client], None)
        finally:
            other.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [5, "abc", b"abc"])
async def test_non_iterable_raises(bad: object) -> None:
    with pytest.raises(TypeError):
        await socket.select(bad, None, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await socket.select(None, bad, 0)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_element_without_getfd_raises() -> None:
    with pytest.raises(TypeError, match="getfd"):
        await socket.select([object()], None, 0)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="getfd"):
        await socket.select(None, [42], 0)  # type: ignore[type-var]


# -- foreign objects --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_foreign_object_readable_and_writable() -> None:
    with socketpair() as (a, b):
        foreign = Foreign(a)
        assert await socket.select([foreign], None, 0) == TIMEOUT
        assert await socket.select(None, [foreign], 1) == ([], [foreign], None)
        b.send(b"data")
        assert await socket.select([foreign], [foreign], 1) == ([foreign], [foreign], None)


@pytest.mark.asyncio
async def test_dirty_foreign_object_is_readable_at_once() -> None:
    with socketpair() as (a, _b):
        foreign = Foreign(a, dirty=True)
        started = time.monotonic()
        assert await socket.select([foreign], None, 5) == ([foreign], [], None)
        assert time.monotonic() - started < 1


@pytest.mark.asyncio
async def test_foreign_object_without_descriptor_is_ignored() -> None:
    # A negative descriptor means "ignore me", even when dirty (SEMANTICS 9.3).
    foreign = Foreign(None, dirty=True)
    assert await socket.select([foreign], [foreign], 0.05) == TIMEOUT


@pytest.mark.asyncio
async def test_foreign_and_own_objects_together() -> None:
    async with connected() as (_, client, peer):
        with socketpair() as (a, b):
            foreign = Foreign(a)
            b.send(b"z")
            assert await client.send(b"x") == (1, None)
            assert await socket.select([peer], None, 2) == ([peer], [], None)
            assert await socket.select(watch(foreign, peer), None, 2) == ([foreign, peer], [], None)


# -- closed objects ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_closed_objects_are_ignored() -> None:
    async with connected() as (server, client, peer):
        assert await client.send(b"buffered") == (8, None)
        assert await socket.select([peer], None, 2) == ([peer], [], None)
        peer.close()
        server.close()
        assert await socket.select([peer, server], [peer, server], 0.05) == TIMEOUT
        with socketpair() as (a, _b):
            alive = Foreign(a)
            assert await socket.select(watch(peer, server), watch(peer, alive), 1) == ([], [alive], None)


@pytest.mark.asyncio
async def test_object_closed_during_select_is_dropped() -> None:
    async with connected() as (server, _client, peer):
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, peer.close)
        loop.call_later(0.05, server.close)
        started = time.monotonic()
        assert await socket.select([peer, server], None, 0.3) == TIMEOUT
        assert 0.25 <= time.monotonic() - started < 2


# -- nothing left behind ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelled_select_leaves_nothing_registered() -> None:
    loop = asyncio.get_running_loop()
    async with connected() as (server, client, peer):
        with socketpair() as (a, b):
            foreign = Foreign(a)
            task = asyncio.ensure_future(socket.select(watch(peer, server, foreign), None, None))
            await asyncio.sleep(0.05)
            assert not task.done()
            assert peer._proto is not None
            assert len(peer._proto.watchers) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            _assert_nothing_registered(loop, [peer, client], [server], [a.fileno()])
            # What arrives now wakes nobody and breaks nothing.
            assert await client.send(b"x") == (1, None)
            b.send(b"y")
            await asyncio.sleep(0.05)
            assert await socket.select(watch(peer, foreign), None, 1) == ([peer, foreign], [], None)
            _assert_nothing_registered(loop, [peer, client], [server], [a.fileno()])


@pytest.mark.asyncio
async def test_select_under_asyncio_timeout_leaves_nothing_registered() -> None:
    loop = asyncio.get_running_loop()
    async with connected() as (server, client, peer):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await socket.select([peer, server], None, None)
        _assert_nothing_registered(loop, [peer, client], [server], [])
        # The server still accepts through its own reader callback.
        _, port = server.getsockname()
        assert isinstance(port, int)
        other, err = await socket.connect("127.0.0.1", port)
        assert other is not None, err
        server.settimeout(2)
        accepted, err = await server.accept()
        try:
            assert accepted is not None, err
        finally:
            other.close()
            if accepted is not None:
                accepted.close()


@pytest.mark.asyncio
async def test_timed_out_select_leaves_nothing_registered() -> None:
    loop = asyncio.get_running_loop()
    async with connected() as (server, client, peer):
        with socketpair() as (a, _b):
            foreign = Foreign(a)
            assert await socket.select(watch(peer, server, foreign), None, 0.05) == TIMEOUT
            _assert_nothing_registered(loop, [peer, client], [server], [a.fileno()])


@pytest.mark.asyncio
async def test_concurrent_selects_on_one_object() -> None:
    async with connected() as (_, client, peer):
        first = asyncio.ensure_future(socket.select([peer], None, 5))
        second = asyncio.ensure_future(socket.select([peer], None, 5))
        await asyncio.sleep(0.05)
        assert await client.send(b"x") == (1, None)
        assert await first == ([peer], [], None)
        assert await second == ([peer], [], None)
        assert peer._proto is not None
        assert peer._proto.watchers == []


@pytest.mark.asyncio
async def test_select_and_accept_share_the_server() -> None:
    async with connected() as (server, _client, _peer):
        _, port = server.getsockname()
        assert isinstance(port, int)
        server.settimeout(5)
        accepting = asyncio.ensure_future(server.accept())
        selecting = asyncio.ensure_future(socket.select([server], None, 0.3))
        await asyncio.sleep(0.05)
        other, err = await socket.connect("127.0.0.1", port)
        assert other is not None, err
        try:
            accepted, err = await accepting
            assert accepted is not None, err
            accepted.close()
            # The select woke too; the connection is gone by now, so it may
            # either report the server or time out later: it must end cleanly.
            result = await selecting
            assert result[2] in (None, "timeout")
        finally:
            other.close()
        assert server._fd_readers == []


# -- no descriptor ceiling ----------------------------------------------------------------------

PAIRS = 1100  # 2200 client sockets plus the server: well past FD_SETSIZE (1024)


@contextlib.contextmanager
def enough_descriptors(needed: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.asyncio
async def test_thousands_of_sockets() -> None:
    with enough_descriptors(2 * PAIRS + 512):
        server, err = await socket.bind("127.0.0.1", 0, 2 * PAIRS)
        assert server is not None, err
        clients: list[socket.Client] = []
        peers: list[socket.Client] = []
        try:
            _, port = server.getsockname()
            assert isinstance(port, int)

            async def accept_all() -> None:
                server.settimeout(10)
                while len(peers) < PAIRS:
                    peer, err = await server.accept()
                    assert peer is not None, err
                    peers.append(peer)

            acceptor = asyncio.ensure_future(accept_all())
            for start in range(0, PAIRS, 100):
                batch = await asyncio.gather(
                    *(socket.connect("127.0.0.1", port) for _ in range(start, min(start + 100, PAIRS)))
                )
                for client, err in batch:
                    assert client is not None, err
                    clients.append(client)
            await acceptor
            everyone = clients + peers
            assert max(obj.getfd() for obj in everyone) > 1024

            assert await socket.select(everyone, None, 0) == TIMEOUT
            target = peers[-1]
            assert await clients[-1].send(b"ping\n") == (5, None)
            assert await socket.select(everyone, None, 2) == ([target], [], None)
            assert await target.receive() == (b"ping", None)

            readable, writable, err = await socket.select(None, everyone, 2)
            assert err is None
            assert readable == []
            assert writable == everyone

            # A server and a foreign object with descriptors past 1024.
            high, err = await socket.bind("127.0.0.1", 0)
            assert high is not None, err
            try:
                assert high.getfd() > 1024
                _, high_port = high.getsockname()
                assert isinstance(high_port, int)
                with socketpair() as (a, b):
                    assert a.fileno() > 1024
                    foreign = Foreign(a)
                    late, err = await socket.connect("127.0.0.1", high_port)
                    assert late is not None, err
                    clients.append(late)
                    b.send(b"!")
                    watched = watch(*everyone, high, foreign)
                    assert await socket.select([high], None, 2) == ([high], [], None)
                    assert await socket.select(watched, None, 2) == ([high, foreign], [], None)
            finally:
                high.close()
        finally:
            for obj in clients + peers:
                obj.close()
            server.close()
            await asyncio.sleep(0)


# -- several selects on one object -------------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrent_selects_on_one_foreign_object() -> None:
    # The loop keeps one reader callback per descriptor: a second select must
    # not steal the first one's wake-up.
    with socketpair() as (a, b):
        foreign = Foreign(a)
        first = asyncio.ensure_future(socket.select([foreign], None, 3))
        second = asyncio.ensure_future(socket.select([foreign], None, 3))
        await asyncio.sleep(0.05)
        b.send(b"x")
        started = time.monotonic()
        one, two = await asyncio.gather(first, second)
        assert time.monotonic() - started < 1
        assert one == ([foreign], [], None)
        assert two == ([foreign], [], None)
        _assert_nothing_registered(asyncio.get_running_loop(), [], [], [a.fileno()])


@pytest.mark.asyncio
@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
async def test_cancelled_select_keeps_another_selects_foreign_watch(write: bool) -> None:
    with socketpair() as (a, b):
        foreign = Foreign(a)
        if write:
            # Fill a's send buffer so that it is not writable.
            with contextlib.suppress(BlockingIOError):
                while True:
                    a.send(b"\0" * 65536)
        recvt, sendt = ([], [foreign]) if write else ([foreign], [])
        first = asyncio.ensure_future(socket.select(recvt, sendt, 3))
        second = asyncio.ensure_future(socket.select(recvt, sendt, 3))
        await asyncio.sleep(0.05)
        assert not first.done()
        assert not second.done()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        if write:
            with contextlib.suppress(BlockingIOError):
                while b.recv(1 << 20):
                    pass
        else:
            b.send(b"x")
        started = time.monotonic()
        expected = ([], [foreign], None) if write else ([foreign], [], None)
        assert await second == expected
        assert time.monotonic() - started < 1
        _assert_nothing_registered(asyncio.get_running_loop(), [], [], [a.fileno()])


@pytest.mark.asyncio
async def test_cancelled_select_keeps_another_selects_server_watch() -> None:
    async with connected() as (server, _client, _peer):
        _, port = server.getsockname()
        assert isinstance(port, int)
        first = asyncio.ensure_future(socket.select([server], None, 3))
        second = asyncio.ensure_future(socket.select([server], None, 3))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        other, err = await socket.connect("127.0.0.1", port)
        assert other is not None, err
        try:
            started = time.monotonic()
            assert await second == ([server], [], None)
            assert time.monotonic() - started < 1
        finally:
            other.close()
        assert server._fd_readers == []


class OnlyGetfd:
    """LuaSocket's `dirty` is optional: an object with `getfd()` alone."""

    def __init__(self, sock: pysocket.socket) -> None:
        self.sock = sock

    def getfd(self) -> int:
        return self.sock.fileno()


@pytest.mark.asyncio
async def test_foreign_object_without_dirty() -> None:
    with socketpair() as (a, b):
        # (Selectable asks for dirty() too: the type is stricter than the runtime.)
        only = cast(Selectable, OnlyGetfd(a))
        assert await socket.select([only], None, 0) == TIMEOUT
        b.send(b"x")
        assert await socket.select([only], [only], 1) == ([only], [only], None)


# -- ready means "the call would not wait" -----------------------------------------------------


@pytest.mark.asyncio
async def test_local_receive_shutdown_is_readable() -> None:
    async with connected() as (_, client, _peer):
        assert await socket.select([client], None, 0) == TIMEOUT
        assert client.shutdown("receive") == 1
        assert await socket.select([client], None, 1) == ([client], [], None)
        assert await client.receive() == (b"", "closed")


@pytest.mark.asyncio
async def test_local_send_shutdown_is_writable() -> None:
    # send returns "closed" at once: it would not wait (the OS reports a
    # socket shut down for writing as writable to LuaSocket's select).
    async with connected() as (_, client, _peer):
        assert client.shutdown("send") == 1
        assert await socket.select(None, [client], 1) == ([], [client], None)
        assert await client.send(b"x") == (0, "closed")


async def _fill(client: socket.Client) -> int:
    """Send until nothing more fits anywhere (the peer does not read); return the count.

    The peer's protocol pauses reading past its high-water mark, the kernel
    buffers fill, then the transport's buffer passes its own mark: a send
    that makes no progress for 0.2 s returns "timeout" with all of them full.
    """
    client.settimeout(0.2)
    total = 0
    for _ in range(16):
        sent, err = await client.send(b"\0" * (8 * 1024 * 1024))
        total += sent
        if err == "timeout":
            break
        assert err is None
    else:
        pytest.fail("the connection never filled up")
    client.settimeout(None)
    return total


@pytest.mark.asyncio
async def test_full_transport_is_not_writable_until_it_drains() -> None:
    async with connected() as (_, client, peer):
        sent = await _fill(client)
        assert await socket.select(None, [client], 0.1) == TIMEOUT

        async def drain() -> None:
            await asyncio.sleep(0.05)
            data, err = await peer.receive(sent)
            assert err is None
            assert data is not None
            assert len(data) == sent

        task = asyncio.ensure_future(drain())
        assert await socket.select(None, [client], 5) == ([], [client], None)
        await task


@pytest.mark.asyncio
async def test_reset_wakes_a_select_waiting_to_write() -> None:
    async with connected() as (_, client, peer):
        await _fill(client)
        waiting = asyncio.ensure_future(socket.select(None, [client], 5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert peer.setoption("linger", {"on": True, "timeout": 0}) == (1, None)
        peer.close()
        started = time.monotonic()
        assert await waiting == ([], [client], None)
        assert time.monotonic() - started < 2
        assert await client.send(b"x") == (0, "closed")
        # And readable: receive returns "closed" at once too.
        assert await socket.select([client], None, 0) == ([client], [], None)


@pytest.mark.asyncio
async def test_nan_timeout_raises() -> None:
    with pytest.raises(ValueError, match="NaN"):
        await socket.select(None, None, float("nan"))


# -- cached lists (the same list passed again and again) ---------------------------------------

GROUP = 40  # above GROUP_MIN: such a list is cached from its second call on


@contextlib.asynccontextmanager
async def many_connected(
    count: int = GROUP,
) -> AsyncIterator[tuple[list[socket.Client], list[socket.Client]]]:
    """`count` connections: the clients' ends and the server's ends, in order."""
    server, err = await socket.bind("127.0.0.1", 0, count)
    assert server is not None, err
    clients: list[socket.Client] = []
    peers: list[socket.Client] = []
    try:
        _, port = server.getsockname()
        assert isinstance(port, int)
        for _ in range(count):
            client, err = await socket.connect("127.0.0.1", port)
            assert client is not None, err
            clients.append(client)
            peer, err = await server.accept()
            assert peer is not None, err
            peers.append(peer)
        yield clients, peers
    finally:
        for obj in clients + peers:
            obj.close()
        server.close()


async def cached_idle(watched: Sequence[Selectable]) -> None:
    """Pass `watched` (nothing ready in it) until select has cached it."""

    for _ in range(3):
        assert await socket.select(watched, None, 0) == TIMEOUT
    assert _select._cache().lookup(watched, None) is not None  # the fast path is in use


async def _settle(client: socket.Client, size: int) -> None:
    """Wait (bounded) until `size` bytes are buffered on `client`."""
    for _ in range(500):
        if len(client._buffer) >= size:
            return
        await asyncio.sleep(0.002)
    pytest.fail("the bytes never arrived")


async def _same_as_scan(recvt: list[socket.Client], sendt: list[socket.Client] | None) -> None:
    """A cached list answers as a fresh scan of the same objects (a tuple is never cached)."""
    cached = await socket.select(recvt, sendt, 0)
    scanned = await socket.select(tuple(recvt), None if sendt is None else tuple(sendt), 0)
    assert cached == scanned


@pytest.mark.asyncio
async def test_zero_timeout_select_on_a_cached_list_sees_bytes_already_in_the_kernel() -> None:
    async with many_connected() as (clients, peers):
        watched = list(peers)
        await cached_idle(watched)
        assert await clients[7].send(b"hello\n") == (6, None)
        assert await socket.select(watched, None, 0) == ([peers[7]], [], None)


@pytest.mark.asyncio
async def test_cached_list_follows_every_change() -> None:
    async with many_connected() as (clients, peers):
        watched = list(peers)
        await cached_idle(watched)

        # Bytes arrive on some, in any order: reported in the list's order.
        for index in (31, 2, 17):
            assert await clients[index].send(b"line\n") == (5, None)
        for index in (2, 17, 31):
            await _settle(peers[index], 5)
        assert await socket.select(watched, None, 0) == ([peers[2], peers[17], peers[31]], [], None)
        await _same_as_scan(watched, None)

        # Consumed: no longer readable; a partial line is still readable (dirty).
        assert await peers[17].receive() == (b"line", None)
        assert await peers[2].receive(3) == (b"lin", None)
        assert await socket.select(watched, None, 0) == ([peers[2], peers[31]], [], None)
        assert await peers[2].receive() == (b"e", None)
        assert await peers[31].receive() == (b"line", None)
        assert await socket.select(watched, None, 0) == TIMEOUT

        # End of stream, a reset-free close by the peer, a local shutdown("receive").
        clients[5].close()
        assert peers[9].shutdown("receive") == 1
        for _ in range(500):
            if peers[5]._proto is not None and peers[5]._proto.eof:
                break
            await asyncio.sleep(0.002)
        assert await socket.select(watched, None, 0) == ([peers[5], peers[9]], [], None)
        await _same_as_scan(watched, None)

        # Closed objects are ignored.
        peers[5].close()
        assert await socket.select(watched, None, 0) == ([peers[9]], [], None)
        await _same_as_scan(watched, None)


@pytest.mark.asyncio
async def test_cached_list_changed_in_place_is_seen() -> None:
    async with many_connected(GROUP + 1) as (clients, peers):
        watched = peers[:GROUP]
        late = peers[GROUP]
        await cached_idle(watched)
        assert await clients[GROUP].send(b"x\n") == (2, None)
        await _settle(late, 2)
        assert await socket.select(watched, None, 0) == TIMEOUT  # not in the list
        watched.append(late)
        assert await socket.select(watched, None, 0) == ([late], [], None)
        watched[3] = watched.pop()  # the same length, another content
        assert await socket.select(watched, None, 0) == ([late], [], None)
        del watched[3]
        assert await socket.select(watched, None, 0) == TIMEOUT
        # A list built afresh with the same content gives the same answers.
        assert await socket.select([*watched, late], None, 0) == ([late], [], None)
        assert await socket.select([*watched, late], None, 0) == ([late], [], None)


@pytest.mark.asyncio
async def test_cached_list_wakes_a_waiting_select() -> None:
    async with many_connected() as (clients, peers):
        watched = list(peers)
        await cached_idle(watched)
        assert await socket.select(watched, None, 0.05) == TIMEOUT  # waits, then times out

        async def later() -> None:
            await asyncio.sleep(0.05)
            assert await clients[23].send(b"wake\n") == (5, None)

        task = asyncio.ensure_future(later())
        assert await socket.select(watched, None, 5) == ([peers[23]], [], None)
        await task
        # A cancelled waiting select leaves no waiter behind.

        assert await peers[23].receive() == (b"wake", None)
        waiting = asyncio.ensure_future(socket.select(watched, None, 5))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert _select._cache().marks.waiters == []


@pytest.mark.asyncio
async def test_cached_list_sees_bytes_put_back_by_a_cancelled_receive() -> None:
    # A cancelled multi-pattern receive puts what it consumed back: the
    # connection is readable again although no byte arrived.
    async with many_connected() as (clients, peers):
        watched = list(peers)
        await cached_idle(watched)
        assert await clients[7].send(b"first\n") == (6, None)
        await _settle(peers[7], 6)
        receiving = asyncio.ensure_future(peers[7].receive("*l", "*l"))
        await asyncio.sleep(0.01)  # took the first line, waits for the second
        assert await socket.select(watched, None, 0) == TIMEOUT
        selecting = asyncio.ensure_future(socket.select(watched, None, 5))
        await asyncio.sleep(0.01)
        receiving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await receiving
        assert await selecting == ([peers[7]], [], None)
        assert await peers[7].receive() == (b"first", None)


@pytest.mark.asyncio
async def test_cached_send_list() -> None:
    async with many_connected() as (clients, peers):
        everyone = [*clients, *peers]
        for _ in range(3):
            readable, writable, err = await socket.select(None, everyone, 0)
            assert (readable, writable, err) == ([], everyone, None)
        sent = await _fill(clients[4])
        readable, writable, err = await socket.select(None, everyone, 0)
        assert err is None
        assert writable == [obj for obj in everyone if obj is not clients[4]]

        async def drain() -> None:
            await asyncio.sleep(0.05)
            data, err = await peers[4].receive(sent)
            assert err is None
            assert data is not None
            assert len(data) == sent

        task = asyncio.ensure_future(drain())
        alone = [clients[4], *clients[5:]]
        for _ in range(2):  # cached, with clients[4] not writable
            readable, writable, err = await socket.select(None, alone, 0)
            assert clients[4] not in writable
        # Once the peer drained it, all of them are writable again.
        await task
        for _ in range(500):
            readable, writable, err = await socket.select(None, alone, 0)
            if writable == alone:
                break
            await asyncio.sleep(0.002)
        assert writable == alone
        # Both lists at once, the same object in both.
        assert await clients[6].send(b"x\n") == (2, None)
        await _settle(peers[6], 2)
        for _ in range(3):
            readable, writable, err = await socket.select(peers, [peers[6]], 0)
            assert (readable, writable, err) == ([peers[6]], [peers[6]], None)


@pytest.mark.asyncio
async def test_cached_list_forgets_closed_connections() -> None:
    async with many_connected() as (clients, peers):
        watched = list(peers)
        await cached_idle(watched)
        marks = _select._cache().marks
        for index in range(GROUP):
            assert await clients[index].send(b"x\n") == (2, None)
        for peer in peers:
            await _settle(peer, 2)
        assert len(marks.recv) == GROUP
        for peer in peers:
            peer.close()
        await asyncio.sleep(0.05)  # the transports report the end
        # Closed: no longer marked, so nothing of them is kept for select.
        assert marks.recv == set()
        assert marks.send == set()
        assert await socket.select(watched, None, 0) == TIMEOUT


@pytest.mark.asyncio
async def test_many_cached_lists_at_once() -> None:
    # More lists than the cache keeps, used in turn: each answers right.

    async with many_connected(GROUP + _select.GROUP_MAX + 2) as (clients, peers):
        lists = [peers[start : start + GROUP] for start in range(_select.GROUP_MAX + 3)]
        for _ in range(3):
            for watched in lists:
                assert await socket.select(watched, None, 0) == TIMEOUT
        assert await clients[GROUP].send(b"x\n") == (2, None)
        await _settle(peers[GROUP], 2)

        def expected(start: int) -> object:
            return ([peers[GROUP]], [], None) if start <= GROUP < start + GROUP else TIMEOUT

        for _ in range(3):
            for start, watched in enumerate(lists):
                assert await socket.select(watched, None, 0) == expected(start)
        assert len(_select._cache().groups) <= _select.GROUP_MAX
        # As many lists as the cache keeps: all cached.
        for _ in range(3):
            for start, watched in enumerate(lists[: _select.GROUP_MAX]):
                assert await socket.select(watched, None, 0) == expected(start)
        assert all(_select._cache().lookup(watched, None) for watched in lists[: _select.GROUP_MAX])


@pytest.mark.asyncio
async def test_cached_list_with_other_objects() -> None:
    # Servers and foreign objects are watched on their descriptors: they are
    # scanned on every call, the connections of the same list go by marks.

    async with many_connected() as (clients, peers), connected() as (server, _client, _peer):
        with socketpair() as (a, b):
            foreign = Foreign(a)
            watched = watch(*peers, server, foreign)
            await cached_idle(watched)
            b.send(b"!")
            assert await clients[0].send(b"x\n") == (2, None)
            await _settle(peers[0], 2)
            for _ in range(3):
                assert await socket.select(watched, None, 1) == ([peers[0], foreign], [], None)
            assert a.recv(1) == b"!"
            assert await peers[0].receive() == (b"x", None)
            assert await socket.select(watched, None, 0) == TIMEOUT

            # A waiting select wakes for a connection to the server...
            _, port = server.getsockname()
            assert isinstance(port, int)

            async def connect_later() -> socket.Client:
                await asyncio.sleep(0.05)
                late, err = await socket.connect("127.0.0.1", port)
                assert late is not None, err
                return late

            task = asyncio.ensure_future(connect_later())
            assert await socket.select(watched, None, 5) == ([server], [], None)
            late = await task
            accepted, err = await server.accept()
            assert accepted is not None, err
            # ... and for a foreign object, and leaves nothing registered.
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, b.send, b"?")
            assert await socket.select(watched, None, 5) == ([foreign], [], None)
            _assert_nothing_registered(loop, peers, [server], [a.fileno()])
            for obj in (late, accepted):
                obj.close()


@pytest.mark.asyncio
async def test_luasocket_style_server_loop() -> None:
    # The classic LuaSocket server: one table with the server and its
    # clients, passed to select again and again, grown by accept and shrunk
    # by closes. Every line is answered.
    server, err = await socket.bind("127.0.0.1", 0, 64)
    assert server is not None, err
    _, port = server.getsockname()
    assert isinstance(port, int)
    recvt: list[socket.Server | socket.Client] = [server]
    users: list[socket.Client] = []
    served = 0

    async def serve() -> None:
        nonlocal served
        while served < 3 * GROUP:
            readable, _, err = await socket.select(recvt, None, 5)
            assert err is None
            for obj in readable:
                if obj is server:
                    client, err = await server.accept()
                    assert client is not None, err
                    recvt.append(client)
                    continue
                assert isinstance(obj, socket.Client)
                line, err = await obj.receive()
                if err is not None:
                    recvt.remove(obj)
                    obj.close()
                    continue
                assert await obj.send(b"re: " + line + b"\n") == (len(line) + 5, None)
                served += 1

    serving = asyncio.ensure_future(serve())
    try:
        for _ in range(GROUP):
            user, err = await socket.connect("127.0.0.1", port)
            assert user is not None, err
            users.append(user)
        for round_ in range(3):
            for index, user in enumerate(users):
                assert await user.send(b"%d.%d\n" % (round_, index)) == (
                    len(b"%d.%d\n" % (round_, index)),
                    None,
                )
            for index, user in enumerate(users):
                assert await user.receive() == (b"re: %d.%d" % (round_, index), None)
        await asyncio.wait_for(serving, 10)
        assert len(recvt) == GROUP + 1
        for user in users[: GROUP // 2]:
            user.close()
        for _ in range(500):  # the server sees the ends and drops them
            readable, _, _ = await socket.select(recvt, None, 0)
            for obj in readable:
                if obj is not server:
                    assert isinstance(obj, socket.Client)
                    assert await obj.receive() == (b"", "closed")
                    recvt.remove(obj)
                    obj.close()
            if len(recvt) == GROUP - GROUP // 2 + 1:
                break
            await asyncio.sleep(0.002)
        assert len(recvt) == GROUP - GROUP // 2 + 1
    finally:
        serving.cancel()
        for obj in [*recvt, *users]:
            obj.close()


@pytest.mark.asyncio
async def test_list_of_mostly_other_objects_is_not_cached() -> None:
    # Closed objects (ignored by select) stand for any object that is scanned.
    masters = [socket.tcp4()[0] for _ in range(GROUP)]
    for master in masters:
        if master is not None:
            master.close()
    try:
        async with connected() as (_, client, peer):
            watched = watch(*(m for m in masters if m is not None), peer)
            assert await client.send(b"x\n") == (2, None)
            await _settle(peer, 2)
            for _ in range(3):
                assert await socket.select(watched, None, 1) == ([peer], [], None)
            assert _select._cache().lookup(watched, None) is None
    finally:
        for master in masters:
            if master is not None:
                master.close()


@pytest.mark.asyncio
async def test_a_kept_list_follows_moves_without_rescanning() -> None:
    """A kept list (the Lua bridge's mirror of a table given to select
    again and again) applies what changed; a dispatcher's removal, which
    moves the last entry into the hole, must not look like an entry listed
    twice (that sends the list back to a scan of every entry per call)."""
    from aioluasock._select import KeptList

    async with contextlib.AsyncExitStack() as stack:
        pairs = [await stack.enter_async_context(connected_pair()) for _ in range(4)]
        await asyncio.sleep(0.05)  # every transport is up
        a, b, c, d = (peer for _, peer in pairs)
        kept = KeptList()
        kept.update(4, (1, a, 2, b, 3, c, 4, d))
        assert kept.check(False) == [] and not kept.whole
        kept.update(3, (2, d))  # b removed: d moved into its place
        assert not kept.whole and kept.objects == [a, d, c]
        kept.update(3, (1, c, 3, a))  # a and c swapped
        assert not kept.whole and kept.objects == [c, d, a]
        kept.update(3, (1, c, 3, a))  # the same changes again: nothing changes
        assert kept.objects == [c, d, a]
        await pairs[3][0].send(b"for d\n")
        await pairs[0][0].send(b"for a\n")
        await asyncio.sleep(0.05)
        assert kept.check(False) == [1, 2]  # 0-based: d, then a
        assert kept.check(True) == [0, 1, 2]
        kept.update(4, (4, d))  # d listed twice: every entry is scanned
        assert kept.scanned() == [c, d, a, d]  # every entry is watched one by one
        assert kept.check(False) == [2, 3]  # a, and d at its last position
