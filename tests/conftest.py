"""Shared test setup: every async test runs on asyncio and on uvloop, and leaks fail.

- `pytest_asyncio_loop_factories` parametrises each async test over both loops.
- Every loop gets an exception handler that records what it is given; a test
  that leaves anything there (a callback that raised, a task whose exception
  was never retrieved, a transport closed with an error) fails.
- `filterwarnings = error` (pyproject.toml) turns ResourceWarnings of unclosed
  sockets and transports into failures; a `gc.collect()` after each test makes
  them surface in the test that caused them.
- `lua` gives the path of the real `lua5.4` with LuaSocket; without it tests
  that need it are skipped locally and fail under `CI=true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest
import uvloop

import aioluasock

_loop_errors: list[dict[str, Any]] = []


def _record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    _loop_errors.append(context)


def _factory(make: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[], asyncio.AbstractEventLoop]:
    def new_loop() -> asyncio.AbstractEventLoop:
        loop = make()
        loop.set_exception_handler(_record)
        return loop

    return new_loop


LOOP_FACTORIES: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": _factory(asyncio.new_event_loop),
    "uvloop": _factory(uvloop.new_event_loop),
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return LOOP_FACTORIES


@pytest.fixture(autouse=True)
def _no_loop_errors() -> Iterator[None]:
    _loop_errors.clear()
    yield
    gc.collect()
    errors = list(_loop_errors)
    _loop_errors.clear()
    assert not errors, f"the event loop reported errors: {errors}"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="this machine has no IPv6 loopback (::1)")


def _find_lua() -> str | None:
    lua = shutil.which("lua5.4")
    if lua is None:
        return None
    probe = subprocess.run(
        [lua, "-e", "require 'socket'; io.write(require'socket'._VERSION)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return lua if probe.returncode == 0 and "LuaSocket 3" in probe.stdout else None


_LUA = _find_lua()


@pytest.fixture(scope="session")
def lua() -> str:
    """Path of a `lua5.4` that has LuaSocket 3; required under `CI=true`."""
    if _LUA is None:
        message = "lua5.4 with LuaSocket 3 is not installed (apt-get install -y lua5.4 lua-socket)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return _LUA


@contextlib.asynccontextmanager
async def connected_pair() -> AsyncIterator[tuple[aioluasock.Client, aioluasock.Client]]:
    """A connected `(client, peer)` pair on 127.0.0.1 (the peer with a 5 s
    timeout); both are closed afterwards."""
    server, err = await aioluasock.bind("127.0.0.1", 0)
    assert server is not None, err
    _, port = server.getsockname()
    assert isinstance(port, int)
    client, err = await aioluasock.connect("127.0.0.1", port)
    assert client is not None, err
    server.settimeout(5)
    peer, err = await server.accept()
    assert peer is not None, err
    server.close()
    peer.settimeout(5)
    try:
        yield client, peer
    finally:
        client.close()
        peer.close()
