"""Bad input, table-driven, on the Python façade: every public call with wrong
types, out-of-range numbers, bad hosts and closed objects.

Each call must either raise a clear misuse exception (`TypeError`,
`ValueError`) or return LuaSocket's `(None, err)` shape with an error string,
within a bounded time, and leave no descriptor open and nothing in the loop's
exception handler (conftest checks that). A few answers are pinned exactly.
The Lua façade's table is `tests/lua/22_bad_input.lua`, compared with real
LuaSocket line for line.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any, Final

import pytest

import aioluasock as socket

LOCAL: Final = "127.0.0.1"

VALUES: Final[list[tuple[str, object]]] = [
    ("None", None),
    ("True", True),
    ("list", []),
    ("object", object()),
    ("-1", -1),
    ("65536", 65536),
    ("1.5", 1.5),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("10**400", 10**400),
    ("'99999'", "99999"),
    ("''", ""),
    ("'x'", "x"),
    ("300 chars", "a" * 300),
    ("NUL", "127.0.0.1\x00"),
    ("'1.2.3.4.5'", "1.2.3.4.5"),
    ("bytes", b"abc"),
    ("surrogate", "\udcff"),
]


async def _master() -> Any:
    master, err = socket.tcp4()
    assert master is not None, err
    return master


async def _server() -> Any:
    server, err = await socket.bind(LOCAL, 0)
    assert server is not None, err
    server.settimeout(0)
    return server


async def _client() -> Any:
    server = await _server()
    _, port = server.getsockname()
    client, err = await socket.connect(LOCAL, port)
    assert client is not None, err
    peer, _ = await server.accept()
    server.close()
    assert peer is not None
    peer.close()
    client.settimeout(0)
    return client


async def _closed_client() -> Any:
    client = await _client()
    client.close()
    return client


async def _udp() -> Any:
    udp, err = socket.udp4()
    assert udp is not None, err
    udp.settimeout(0)
    return udp


MAKERS: Final[dict[str, Callable[[], Awaitable[Any]]]] = {
    "master": _master,
    "server": _server,
    "client": _client,
    "closed client": _closed_client,
    "udp": _udp,
}

# (label, method, arguments around the bad value). Calls whose bad value is
# a host never get a number-like string there: "1.5" is an IPv4 address.
CALLS: Final[list[tuple[str, str, Callable[[object], tuple[object, ...]]]]] = [
    ("bind(host)", "bind", lambda v: (v, 0)),
    ("bind(port)", "bind", lambda v: (LOCAL, v)),
    ("connect(port)", "connect", lambda v: (LOCAL, v)),
    ("listen(backlog)", "listen", lambda v: (v,)),
    ("settimeout(value)", "settimeout", lambda v: (v,)),
    ("settimeout(1, mode)", "settimeout", lambda v: (1, v)),
    ("receive(pattern)", "receive", lambda v: (v,)),
    ("receive(prefix=)", "receive", lambda v: ("*l", {"prefix": v})),
    ("send(data)", "send", lambda v: (v,)),
    ("setoption(name)", "setoption", lambda v: (v, True)),
    ("setoption('linger', v)", "setoption", lambda v: ("linger", v)),
    ("setoption('keepalive', v)", "setoption", lambda v: ("keepalive", v)),
    ("getoption(name)", "getoption", lambda v: (v,)),
    ("shutdown(how)", "shutdown", lambda v: (v,)),
    ("setstats(received)", "setstats", lambda v: (v, 0, 0)),
    ("setsockname(host)", "setsockname", lambda v: (v, 0)),
    ("setpeername(port)", "setpeername", lambda v: (LOCAL, v)),
    ("sendto(port)", "sendto", lambda v: (b"x", LOCAL, v)),
    ("receivefrom(size)", "receivefrom", lambda v: (v,)),
]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _outcome(method: Callable[..., Any], args: tuple[object, ...]) -> str:
    kwargs: dict[str, object] = {}
    if args and isinstance(args[-1], dict):
        kwargs = args[-1]
        args = args[:-1]
    try:
        result = method(*args, **kwargs)
        if asyncio.iscoroutine(result):
            async with asyncio.timeout(5):
                result = await result
    except (TypeError, ValueError) as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return type(exc).__name__
    # A result reports failure exactly when its last element is a str.
    if isinstance(result, tuple) and result and isinstance(result[-1], str):
        assert result[-1], result
        return f"err {result[-1]}"
    return "ok"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", list(MAKERS))
async def test_every_call_with_bad_values_fails_cleanly(kind: str) -> None:
    # The loop opens descriptors of its own on first use (uvloop's resolver
    # wake-up): make one object before counting.
    (await MAKERS[kind]()).close()
    for _ in range(10):
        await asyncio.sleep(0)
    before = _open_fds()
    seen: dict[str, str] = {}
    for label, name, arguments in CALLS:
        for value_label, value in VALUES:
            obj = await MAKERS[kind]()
            method = getattr(obj, name, None)
            if method is not None:
                seen[f"{label} {value_label}"] = await _outcome(method, arguments(value))
            obj.close()
    assert seen, "no call applied"
    # A transport closes its socket in the loop iteration after close().
    for _ in range(10):
        await asyncio.sleep(0)
    assert _open_fds() == before
    # Pinned answers: misuse raises, I/O failures are LuaSocket strings.
    expected = {
        "master": {
            "bind(port) '99999'": "ValueError",
            "bind(port) -1": "ValueError",
            "bind(port) 1.5": "TypeError",
            "bind(host) NUL": "ValueError",
            "bind(host) 300 chars": "err host or service not provided, or not known",
            "settimeout(value) nan": "ValueError",
            "listen(backlog) list": "TypeError",
        },
        "client": {
            "receive(pattern) -1": "ValueError",
            "receive(pattern) nan": "TypeError",
            "receive(pattern) 'x'": "ValueError",
            "send(data) None": "TypeError",
            "setoption(name) 'x'": "ValueError",
            "shutdown(how) 'x'": "ValueError",
        },
        "closed client": {
            "receive(pattern) 1.5": "TypeError",
            "send(data) bytes": "err closed",
        },
        "udp": {
            "sendto(port) -1": "ValueError",
            "receivefrom(size) -1": "ValueError",
        },
    }.get(kind, {})
    for key, want in expected.items():
        assert seen.get(key) == want, (key, seen.get(key))


@pytest.mark.asyncio
async def test_select_with_bad_arguments() -> None:
    client = await _client()
    closed = await _closed_client()
    try:
        assert await socket.select([closed], [closed], 0) == ([], [], "timeout")
        assert await socket.select([client, client], None, 0) == ([client], [], None)
        cases: list[tuple[object, object, object, type[Exception]]] = [
            ("x", None, 0, TypeError),
            ([1], None, 0, TypeError),
            ([object()], None, 0, TypeError),
            ([], [], math.nan, ValueError),
            ([], [], "x", TypeError),
        ]
        for recvt, sendt, timeout, error in cases:
            with pytest.raises(error):
                await socket.select(recvt, sendt, timeout)  # type: ignore[arg-type]
    finally:
        client.close()
