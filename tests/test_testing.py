"""`aioluasock.testing`: the stream conformance kit and the fault-injecting proxy.

The kit passes on aioluasock pairs, directly and through `FaultyProxy`, with
seeds drawn by hypothesis; and it fails on streams that break the contract
(a dropped, a duplicated or a lost-on-cancel byte, a line returned with its
LF as a partial, a wrong error string, a send count that lies). The proxy's
faults are checked on their own with plain sockets. Both loops, loopback
only, every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket as std_socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aioluasock.testing as kit
from aioluasock import Client
from aioluasock._receive import ReceiveResult
from aioluasock._send import Buffer
from aioluasock.testing import (
    Faults,
    FaultyProxy,
    Loopback,
    StreamCheckFailed,
    StreamClient,
    check_pair,
    check_stream,
)

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
# Seeds are cheap and each example runs several scenarios: few examples,
# no deadline (scenarios sleep), and hypothesis's own health checks do not
# apply to a test whose time is mostly the loop's.
FEW = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)


# -- the kit passes on aioluasock ---------------------------------------------------------


@pytest.mark.asyncio
@FEW
@given(seed=SEEDS)
async def test_kit_passes_on_direct_pairs(seed: int) -> None:
    async with Loopback() as loopback:
        report = await check_stream(loopback.pair, seed=seed, scenarios=4, max_bytes=300_000)
    assert report.scenarios == 4
    assert report.calls > 0


@pytest.mark.asyncio
@FEW
@given(seed=SEEDS)
async def test_kit_passes_with_small_kernel_buffers(seed: int) -> None:
    # 4 KiB buffers: writers meet flow control, timeouts and cancellation
    # in the middle of a send.
    async with Loopback(buffer_size=4096) as loopback:
        report = await check_stream(loopback.pair, seed=seed, scenarios=4, max_bytes=600_000)
    assert report.scenarios == 4


@pytest.mark.asyncio
@FEW
@given(seed=SEEDS)
async def test_kit_passes_through_a_slicing_delaying_proxy(seed: int) -> None:
    # One direction byte by byte, the other in pieces of up to 100 with stalls.
    upstream = Faults(segment=100, stall_every=1000, stall=0.005)
    downstream = Faults(segment=1)
    async with (
        Loopback() as loopback,
        FaultyProxy(loopback.address, upstream=upstream, downstream=downstream, seed=seed) as proxy,
    ):
        report = await check_stream(
            lambda: loopback.pair(via=proxy.address), seed=seed, scenarios=3, max_bytes=3000
        )
    assert report.scenarios == 3
    assert proxy.connections == 3


@pytest.mark.asyncio
@FEW
@given(seed=SEEDS, cut=st.integers(min_value=0, max_value=5000), reset=st.booleans())
async def test_kit_passes_through_a_proxy_that_cuts_streams(seed: int, cut: int, reset: bool) -> None:
    faults = Faults(segment=500, reset_after=cut) if reset else Faults(segment=500, half_close_after=cut)
    async with (
        Loopback() as loopback,
        FaultyProxy(loopback.address, downstream=faults, seed=seed) as proxy,
    ):
        await check_stream(
            lambda: loopback.pair(via=proxy.address), seed=seed, scenarios=3, max_bytes=10_000, reliable=False
        )


@pytest.mark.asyncio
async def test_report_counts_what_was_checked() -> None:
    report = kit.StreamReport()
    seed = 7
    async with Loopback() as loopback:
        # Every kind of event happens within a few dozen scenarios.
        while report.scenarios < 300 and not (report.timeouts and report.interrupted and report.disrupted):
            report.add(await check_stream(loopback.pair, seed=seed, scenarios=10, max_bytes=50_000))
            seed += 10
    assert report.timeouts > 0
    assert report.interrupted > 0
    assert report.disrupted > 0
    assert report.scenarios % 10 == 0
    assert report.bytes_checked > 0
    assert report.calls > report.scenarios
    assert report.elapsed > 0


@pytest.mark.asyncio
async def test_check_pair_closes_the_pair() -> None:
    async with Loopback() as loopback:
        a, b = await loopback.pair()
        report = await check_pair(a, b, seed=3, max_bytes=1000)
    assert report.scenarios == 1
    assert a.getfd() == -1
    assert b.getfd() == -1


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_kit_under_anyio_interrupts_with_fail_after(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    used: list[str] = []
    real_fail_after = anyio.fail_after

    def spy(delay: float | None, shield: bool = False) -> Any:
        used.append("anyio.fail_after")
        return real_fail_after(delay, shield)

    async def main() -> kit.StreamReport:
        async with Loopback() as loopback:
            return await check_stream(loopback.pair, seed=11, scenarios=10, max_bytes=50_000, anyio=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(anyio, "fail_after", spy)
        report = anyio.run(main, backend="asyncio", backend_options={"loop_factory": loop_factory})
    assert report.scenarios == 10
    assert used  # some calls were interrupted by anyio's cancel scopes


# -- the kit detects broken streams ---------------------------------------------------------


class Wrapper:
    """A `StreamClient` that forwards to a real client; subclasses break it."""

    def __init__(self, inner: Client) -> None:
        self.inner = inner

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        return await self.inner.receive(*patterns, prefix=prefix)

    async def send(self, *data: Buffer) -> tuple[int, str | None]:
        return await self.inner.send(*data)

    def settimeout(self, value: float | None, mode: str = "b") -> int:
        return self.inner.settimeout(value, mode)

    def close(self) -> int:
        return self.inner.close()

    def shutdown(self, mode: str = "both") -> int:
        return self.inner.shutdown(mode)

    def getstats(self) -> tuple[int, int, float]:
        return self.inner.getstats()

    def setoption(self, name: str, value: Any) -> tuple[int, None] | tuple[None, str]:
        return self.inner.setoption(name, value)


def _edit(result: ReceiveResult, change: Callable[[bytes], bytes]) -> ReceiveResult:
    """Apply `change` to the first bytes value of a receive result."""
    values = list(result)
    for index, value in enumerate(values):
        if isinstance(value, bytes) and value:
            values[index] = change(value)
            break
    return tuple(values)


class DropsAByte(Wrapper):
    """Loses the 1000th byte it receives."""

    seen = 0

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        result = await self.inner.receive(*patterns, prefix=prefix)
        before, self.seen = self.seen, self.seen + sum(len(v) for v in result if isinstance(v, bytes))
        if before < 1000 <= self.seen:
            return _edit(result, lambda value: value[:-1])
        return result


class DuplicatesAByte(Wrapper):
    """Returns one byte twice, once."""

    done = False

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        result = await self.inner.receive(*patterns, prefix=prefix)
        if not self.done and any(isinstance(v, bytes) and len(v) > 3 for v in result):
            self.done = True
            return _edit(result, lambda value: value[:2] + value[1:])
        return result


class LineWithLFAsPartial(Wrapper):
    """On a timeout, hands out a complete line with its LF as the partial."""

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        if patterns == ("*l",):
            self.inner.settimeout(0.001, "t")
            line, err = await self.inner.receive("*l", prefix=prefix)
            if err is None:
                return line + b"\n", "timeout"
            return line, err
        return await self.inner.receive(*patterns, prefix=prefix)


class LosesBytesOnCancel(Wrapper):
    """A cancelled receive drops what was buffered."""

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        try:
            return await self.inner.receive(*patterns, prefix=prefix)
        except asyncio.CancelledError:
            self.inner._buffer.clear()
            raise


class ResetIsNotClosed(Wrapper):
    """Reports a reset with the C library's text instead of LuaSocket's."""

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        result = await self.inner.receive(*patterns, prefix=prefix)
        if result[-1] == "closed":
            return (*result[:-1], "Connection reset by peer")
        return result


class RaisesInsteadOfClosed(Wrapper):
    """Raises where it should return "closed"."""

    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> Any:
        result = await self.inner.receive(*patterns, prefix=prefix)
        if result[-1] == "closed":
            raise ConnectionResetError("the peer went away")
        return result


class SendCountLies(Wrapper):
    """Claims one byte fewer than it sent, once (the caller sends it again)."""

    done = False

    async def send(self, *data: Buffer) -> tuple[int, str | None]:
        count, err = await self.inner.send(*data)
        if not self.done and count > 1:
            self.done = True
            return count - 1, "timeout"
        return count, err


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        (DropsAByte, ""),
        (DuplicatesAByte, ""),
        (LineWithLFAsPartial, ""),
        (LosesBytesOnCancel, ""),
        (ResetIsNotClosed, "LuaSocket's would be 'closed' or 'timeout'"),
        (RaisesInsteadOfClosed, "a call raised ConnectionResetError('the peer went away')"),
        (SendCountLies, ""),
    ],
)
async def test_kit_detects_a_broken_stream(broken: type[Wrapper], complaint: str) -> None:
    async with Loopback() as loopback:

        async def make_pair() -> tuple[StreamClient, StreamClient]:
            a, b = await loopback.pair()
            return broken(a), broken(b)

        with pytest.raises(StreamCheckFailed) as caught:
            await check_stream(make_pair, seed=100, scenarios=40, max_bytes=50_000)
    message = str(caught.value)
    assert complaint in message
    seed = caught.value.seed
    assert f"seed={seed}" in message
    assert f"check_stream(make_pair, seed={seed}, scenarios=1)" in message
    assert "state and last calls" in message
    if broken is RaisesInsteadOfClosed:
        assert isinstance(caught.value.__cause__, ConnectionResetError)  # the traceback is kept


@pytest.mark.asyncio
async def test_kit_detects_a_select_that_lies(monkeypatch: pytest.MonkeyPatch) -> None:
    # A select that says "readable" at once: the receive(1) with timeout 0
    # that follows finds nothing.
    async def lying_select(recvt: Any, sendt: Any, timeout: float | None = None) -> Any:
        await asyncio.sleep(0)
        return list(recvt or []), list(sendt or []), None

    monkeypatch.setattr(kit, "select", lying_select)
    async with Loopback() as loopback:
        with pytest.raises(StreamCheckFailed, match="select said readable"):
            await check_stream(loopback.pair, seed=40, scenarios=60, max_bytes=20_000, disrupt=False)


@pytest.mark.asyncio
async def test_a_failure_reruns_from_its_seed() -> None:
    async with Loopback() as loopback:

        async def make_pair() -> tuple[StreamClient, StreamClient]:
            a, b = await loopback.pair()
            return DropsAByte(a), DropsAByte(b)

        with pytest.raises(StreamCheckFailed) as first:
            await check_stream(make_pair, seed=500, scenarios=40, max_bytes=50_000, disrupt=False)
        with pytest.raises(StreamCheckFailed) as again:
            await check_stream(make_pair, seed=first.value.seed, scenarios=1, max_bytes=50_000, disrupt=False)
    assert again.value.seed == first.value.seed

    def scenario(message: str) -> str:
        return next(line for line in message.splitlines() if line.startswith("scenario:"))

    assert scenario(str(again.value)) == scenario(str(first.value))  # the same data, the same plan


@pytest.mark.asyncio
async def test_a_hang_is_reported_with_the_seed() -> None:
    class NeverSends(Wrapper):
        async def send(self, *data: Buffer) -> tuple[int, str | None]:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    async with Loopback() as loopback:

        async def make_pair() -> tuple[StreamClient, StreamClient]:
            a, b = await loopback.pair()
            return NeverSends(a), NeverSends(b)

        started = time.monotonic()
        with pytest.raises(StreamCheckFailed, match=r"did not finish in 0\.2 s") as caught:
            # Seed 1 sends bytes (a scenario sending nothing would not hang).
            await check_stream(make_pair, seed=1, scenarios=5, time_limit=0.2)
    assert time.monotonic() - started < 5
    assert "rerun this scenario" in str(caught.value)


# -- the proxy's faults, seen with plain sockets ---------------------------------------------


@contextlib.asynccontextmanager
async def raw_pair(
    faults_up: Faults, faults_down: Faults
) -> AsyncIterator[tuple[std_socket.socket, std_socket.socket]]:
    """`(client, server)` plain non-blocking sockets connected through a FaultyProxy."""
    loop = asyncio.get_running_loop()
    listener = std_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    client = std_socket.socket()
    client.setblocking(False)
    server: std_socket.socket | None = None
    try:
        async with FaultyProxy(listener.getsockname(), upstream=faults_up, downstream=faults_down) as proxy:
            await loop.sock_connect(client, proxy.address)
            accepted, _ = await asyncio.wait_for(loop.sock_accept(listener), 5)
            server = accepted
            accepted.setblocking(False)
            yield client, accepted
    finally:
        client.close()
        if server is not None:
            server.close()
        listener.close()


async def read_all(sock: std_socket.socket) -> tuple[list[bytes], str]:
    """Every recv until the end: the pieces and how it ended ("eof" or "reset")."""
    loop = asyncio.get_running_loop()
    pieces: list[bytes] = []
    try:
        while True:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            if not data:
                return pieces, "eof"
            pieces.append(data)
    except ConnectionResetError:
        return pieces, "reset"


@pytest.mark.asyncio
async def test_proxy_slices_into_single_bytes() -> None:
    loop = asyncio.get_running_loop()
    async with raw_pair(Faults(segment=1, delay=0.001), Faults()) as (client, server):
        await loop.sock_sendall(client, b"0123456789")
        client.shutdown(std_socket.SHUT_WR)
        pieces, end = await read_all(server)
    assert b"".join(pieces) == b"0123456789"
    assert end == "eof"
    assert max(len(piece) for piece in pieces) == 1  # each byte its own segment


@pytest.mark.asyncio
async def test_proxy_half_closes_one_direction_and_keeps_the_other() -> None:
    loop = asyncio.get_running_loop()
    async with raw_pair(Faults(half_close_after=5), Faults()) as (client, server):
        await loop.sock_sendall(client, b"0123456789")
        pieces, end = await read_all(server)
        assert (b"".join(pieces), end) == (b"01234", "eof")
        # The sender may go on: the proxy drops what it sends.
        await loop.sock_sendall(client, b"more")
        # The other direction still works.
        await loop.sock_sendall(server, b"back")
        server.shutdown(std_socket.SHUT_WR)
        pieces, end = await read_all(client)
    assert (b"".join(pieces), end) == (b"back", "eof")


@pytest.mark.asyncio
async def test_proxy_resets_both_connections() -> None:
    loop = asyncio.get_running_loop()
    async with raw_pair(Faults(reset_after=3), Faults()) as (client, server):
        await loop.sock_sendall(client, b"0123456789")
        pieces, end = await read_all(server)
        assert end == "reset"
        assert b"012".startswith(b"".join(pieces))
        pieces, end = await read_all(client)
    assert (pieces, end) == ([], "reset")


@pytest.mark.asyncio
async def test_proxy_passes_a_reset_on() -> None:
    async with raw_pair(Faults(), Faults()) as (client, server):
        client.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        pieces, end = await read_all(server)
    assert (pieces, end) == ([], "reset")


async def _stalled_transfer(stall: float) -> float:
    """Eight bytes through a proxy that stalls `stall` s after the first 4:
    the seconds they took (each arrived, in order)."""
    loop = asyncio.get_running_loop()
    async with raw_pair(Faults(stall_every=4, stall=stall), Faults()) as (client, server):
        started = time.monotonic()
        await loop.sock_sendall(client, b"01234567")
        client.shutdown(std_socket.SHUT_WR)
        pieces, _ = await read_all(server)
    assert b"".join(pieces) == b"01234567"
    return time.monotonic() - started


@pytest.mark.asyncio
async def test_proxy_stalls() -> None:
    # One stall after the first 4 bytes. A floor, with no slack: the proxy
    # waits by the monotonic clock, not by the loop's timer alone.
    assert await _stalled_transfer(0.1) >= 0.1


@pytest.mark.asyncio
async def test_proxy_stalls_last_their_time_when_timers_fire_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvloop runs a timer up to a millisecond before its deadline; here every
    # sleep falls 20 ms short.
    real_sleep = asyncio.sleep

    async def early_sleep(delay: float, result: Any = None) -> Any:
        return await real_sleep(max(0.0, delay - 0.02), result)

    monkeypatch.setattr(asyncio, "sleep", early_sleep)
    assert await _stalled_transfer(0.05) >= 0.05


def test_faults_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="segment"):
        Faults(segment=0)
    with pytest.raises(ValueError, match="delay"):
        Faults(delay=-1)


@pytest.mark.asyncio
async def test_loopback_needs_its_context() -> None:
    with pytest.raises(RuntimeError, match="async context manager"):
        await Loopback().pair()


# -- engine bugs the kit found ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_shutdown_after_the_peer_reset_is_quiet_and_receive_says_closed() -> None:
    # The peer closed (FIN); our send then drew its reset. shutdown("send")
    # raised ENOTCONN out of asyncio's write_eof, and on uvloop made the
    # next receive fail with "Transport endpoint is not connected".
    async with Loopback() as loopback:
        a, b = await loopback.pair()
        try:
            a.close()
            await asyncio.sleep(0.05)
            assert await b.send(b"x" * 20_000) == (20_000, None)
            await asyncio.sleep(0.05)  # the reset comes back
            assert b.shutdown("send") == 1
            await asyncio.sleep(0.05)
            b.settimeout(1)
            assert await b.receive(100) == (b"", "closed")
            assert await b.send(b"y") == (0, "closed")
        finally:
            b.close()
