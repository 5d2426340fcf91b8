"""The namespace's small functions: `gettime`, `sleep`, `skip`, and `try_` /
`newtry` / `protect` used the way LuaSocket programs use them, over real sockets.

(The helpers' own edge cases are in test_errors.py; `bind` and `connect` are
in test_tcp.py.)
"""

from __future__ import annotations

import asyncio
import time

import pytest

import aioluasock as socket
from aioluasock import Client, Error

LOCAL = "127.0.0.1"


def test_gettime_is_the_wall_clock() -> None:
    before = time.time()
    now = socket.gettime()
    after = time.time()
    assert isinstance(now, float)
    assert before <= now <= after
    assert now > 1_600_000_000  # seconds since the epoch, not a monotonic clock


@pytest.mark.asyncio
async def test_sleep_waits_without_blocking_the_loop() -> None:
    loop = asyncio.get_running_loop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        start = loop.time()
        await socket.sleep(0.2)
        spent = loop.time() - start
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert 0.19 <= spent < 1.0
    assert ticks >= 5  # other tasks ran while we slept


@pytest.mark.asyncio
async def test_sleep_zero_or_negative_returns_at_once() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await socket.sleep(0)
    await socket.sleep(-5)
    await socket.sleep(-0.5)
    assert loop.time() - start < 0.05


@pytest.mark.asyncio
async def test_sleep_refuses_non_numbers() -> None:
    for wrong in (True, "1", None, b"1"):
        with pytest.raises(TypeError):
            await socket.sleep(wrong)  # type: ignore[arg-type]


def test_skip() -> None:
    assert socket.skip(1, "a", "b", "c") == ("b", "c")
    assert socket.skip(0, "a", "b") == ("a", "b")
    assert socket.skip(2, "a", "b") == ()
    assert socket.skip(5, "a") == ()
    assert socket.skip(0) == ()
    # The common use: drop the leading values of a result.
    assert socket.skip(1, None, "closed") == ("closed",)
    with pytest.raises(ValueError):
        socket.skip(-1, "a")
    for wrong in (True, 1.0, "1", None):
        with pytest.raises(TypeError):
            socket.skip(wrong, "a")  # type: ignore[arg-type]


async def _echo_once(server: socket.Server) -> None:
    peer = socket.try_(await server.accept())
    assert isinstance(peer, Client)
    try:
        line = socket.try_(await peer.receive())
        socket.try_(await peer.send(b"echo " + line + b"\n"))
    finally:
        peer.close()


@pytest.mark.asyncio
async def test_try_and_protect_over_a_conversation() -> None:
    server = socket.try_(await socket.bind(LOCAL, 0))
    server.settimeout(5)
    _, port = socket.try_(server.getsockname())
    assert isinstance(port, int)

    @socket.protect
    async def ask(question: bytes) -> bytes:
        client = socket.try_(await socket.connect(LOCAL, port))
        assert isinstance(client, Client)
        try_ = socket.newtry(client.close)
        client.settimeout(5)
        try_(await client.send(question, b"\n"))
        answer = try_(await client.receive())
        assert isinstance(answer, bytes)
        # The server has closed: the next receive fails and the finalizer closes the client.
        try_(await client.receive())
        raise AssertionError("unreachable: the receive above must fail")

    echo = asyncio.create_task(_echo_once(server))
    result = await asyncio.wait_for(ask(b"hello"), 5)
    await asyncio.wait_for(echo, 5)
    # protect turned the try_ failure ("closed") into a returned (None, err).
    assert result == (None, "closed")
    server.close()
    # Nobody listens any more: connect fails, and protect returns its text.
    assert await asyncio.wait_for(ask(b"again"), 5) == (None, "connection refused")


@pytest.mark.asyncio
async def test_try_returns_values_and_raises_error() -> None:
    server = socket.try_(await socket.bind(LOCAL, 0))
    try:
        # One value alone, several as a tuple without the trailing None.
        ip, port = socket.try_(server.getsockname())
        assert (ip, port) == server.getsockname()
        assert socket.try_((1, None)) == 1
        server.settimeout(0)
        with pytest.raises(Error) as info:
            socket.try_(await server.accept())
        assert info.value.message == "timeout"
        assert str(info.value) == "timeout"
    finally:
        server.close()


@pytest.mark.asyncio
async def test_protect_lets_other_exceptions_through() -> None:
    @socket.protect
    async def broken() -> int:
        raise KeyError("not a try_ failure")

    with pytest.raises(KeyError):
        await broken()

    @socket.protect
    async def fine(value: int) -> int:
        await socket.sleep(0)
        return value * 2

    assert await fine(21) == 42
