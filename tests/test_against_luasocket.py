"""aioluasock against real LuaSocket 3.1 (`lua5.4` + `lua-socket`), over loopback.

Two kinds of tests (CONVENTIONS.md #13):

* **Interop.** Lua peers (`tests/peers/peer.lua`, run as subprocesses) talk to
  aioluasock as clients and as servers: lines with CR/LF, every byte value,
  1 MB lines, a peer that closes mid-line or resets, echo both ways.
* **Differential.** One scenario (the same peer bytes, the same sequence of
  calls) runs twice: once in `tests/peers/subject.lua` with real LuaSocket, once
  in `run_python_subject` with aioluasock. The two transcripts go through
  `normalise` (the mapping rules below, the only place where the shapes of the
  two contracts are reconciled) and must be equal. No expected value is written
  by hand where the Lua side produces it.

Behaviour where DESIGN.md ("Two contracts") deliberately differs from 3.1 is
not compared: several patterns per `receive` and several strings per `send`;
`receive(0)`; `"*a"` on a stream that has already ended; receives after a local
`close()`; the per-wait meaning of a block timeout; result order of `select`.

Each scenario's Lua transcript is computed once per session and shared by the
asyncio and uvloop runs of the Python side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket as pysocket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import needs_ipv6

import aioluasock as socket
from aioluasock import Client, Master, Server

PEERS = Path(__file__).parent / "peers"
LOCAL = "127.0.0.1"
LIMIT = 20.0
"""Seconds any one read from (or wait for) a Lua subprocess may take."""
MB = 1024 * 1024

Json = Any
"""A value decoded from a Lua script's JSON line."""
Sock = Master | Server | Client


def h(data: bytes) -> str:
    """Hex, as the Lua scripts take bytes on their command lines."""
    return data.hex()


def psend(data: bytes) -> str:
    """The peer action (and subject operation) that sends `data`."""
    return f"send {data.hex()}"


def latin1(data: bytes) -> str:
    """Bytes as the Lua scripts print them (a str whose code points are the bytes)."""
    return data.decode("latin-1")


def closed_port() -> int:
    """A loopback port that was just bound and released: nobody listens on it."""
    with pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM) as probe:
        probe.bind((LOCAL, 0))
        port: int = probe.getsockname()[1]
    return port


# -- Lua subprocesses ---------------------------------------------------------------


class LuaProcess:
    """A Lua script that prints one JSON object per line on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self._report: asyncio.Task[list[dict[str, Json]]] | None = None

    def report(self) -> asyncio.Task[list[dict[str, Json]]]:
        """Read the peer's report (after its connection line) in the background,
        so that a script printing a large line never blocks on a full pipe."""
        if self._report is None:
            self._report = asyncio.ensure_future(peer_report(self))
        return self._report

    async def next(self) -> dict[str, Json] | None:
        """The next line, decoded; `None` at end of output."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), LIMIT)
        if not raw:
            return None
        value = json.loads(raw)
        assert isinstance(value, dict), raw
        return value

    async def line(self) -> dict[str, Json]:
        value = await self.next()
        if value is None:
            raise AssertionError(f"{self.name} ended early: {await self.stderr()}")
        return value

    async def finish(self) -> list[dict[str, Json]]:
        """Every remaining line; the script must exit with status 0."""
        lines = []
        while (value := await self.next()) is not None:
            lines.append(value)
        code = await asyncio.wait_for(self.proc.wait(), LIMIT)
        assert code == 0, f"{self.name} exited with {code}: {await self.stderr()}"
        return lines

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2)
        if self.proc.returncode is None:
            return "(still running)"
        return (await self.proc.stderr.read()).decode(errors="replace")


@contextlib.asynccontextmanager
async def lua_process(lua: str, script: str, *args: str) -> AsyncIterator[LuaProcess]:
    """Run `lua5.4 tests/peers/SCRIPT ARGS...`; it is killed if still running at exit."""
    proc = await asyncio.create_subprocess_exec(
        lua,
        str(PEERS / script),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=8 * MB,  # a 1 MB line printed as JSON
    )
    process = LuaProcess(proc, f"{script} {' '.join(args)[:200]}")
    try:
        yield process
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), LIMIT)
        task = process._report
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=LIMIT)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failing test reports its own error


@contextlib.asynccontextmanager
async def lua_peer_listening(
    lua: str, *actions: str, host: str = LOCAL
) -> AsyncIterator[tuple[LuaProcess, int]]:
    """A Lua peer that listens on `host`, port 0, and runs `actions` on the
    one connection it accepts; yields it with its port."""
    async with lua_process(lua, "peer.lua", "listen", host, *actions) as peer:
        port = (await peer.line())["port"]
        assert isinstance(port, int)
        yield peer, port


@contextlib.asynccontextmanager
async def lua_peer_connecting(
    lua: str, port: int, *actions: str, host: str = LOCAL
) -> AsyncIterator[LuaProcess]:
    """A Lua peer that connects to `host:port` and runs `actions`."""
    async with lua_process(lua, "peer.lua", "connect", host, str(port), *actions) as peer:
        yield peer


async def peer_report(peer: LuaProcess) -> list[dict[str, Json]]:
    """The peer's report lines after its connection line, up to `done`."""
    lines = await peer.finish()
    assert lines and "addr" in lines[0], lines
    assert lines[-1] == {"done": True}, lines
    return lines[1:-1]


# -- differential scenarios ---------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One scenario, run by `subject.lua` and by `run_python_subject`.

    Attributes:
        ops: the subject's operations (the language is described in
            `tests/peers/subject.lua`); ``{peer}`` is replaced by the Lua
            peer's port and ``{closed}`` by a port nobody listens on.
        peer: the Lua peer's actions (`tests/peers/peer.lua`), or `None` for
            no peer.
        peer_listens: the peer listens and the subject connects to ``{peer}``;
            otherwise the peer connects to the subject's first server.
        host: the loopback address of everything.
    """

    ops: tuple[str, ...]
    peer: tuple[str, ...] | None = None
    peer_listens: bool = True
    host: str = LOCAL


@dataclass
class Transcript:
    """A normalised run: one `(op, values)` per operation, and the peer's report."""

    results: list[tuple[str, list[Json]]]
    peer: list[dict[str, Json]]


class Ports:
    """Symbolic names for the port numbers of one run (they differ between runs)."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def add(self, port: int, name: str) -> None:
        self.names.setdefault(port, name)

    def symbol(self, port: Json) -> str:
        number = int(port)
        assert 0 < number < 65536, port
        return self.names.get(number, "<other port>")


def _select_names(value: Json) -> list[str]:
    assert isinstance(value, list), value
    return sorted(value)


# The mapping rules: the only place where shapes of the two contracts meet.
# LuaSocket 3.1 returns a variable number of values (printed by subject.lua
# with every nil); aioluasock returns the tuples of DESIGN.md. Both become:
#
# - connect, bind, accept: 3.1 `obj` / `nil, err`; Python `(obj, None)` /
#   `(None, err)`; both -> [obj or None, err].
# - receive (one pattern): 3.1 `data, nil, nil` / `nil, err, partial`; Python
#   `(data, None)` / `(partial, err)`; both -> [data or partial, err].
# - send (one string, so i = 1 and the last index is the count): 3.1
#   `last, nil, nil` / `nil, err, last`; Python `(count, err)`; -> [count, err].
# - setoption, getoption: 3.1 `value` / `nil, err` (and a lone `nil` for
#   getoption("error") with no error pending); Python `(value, err)`; -> [value, err].
# - getsockname, getpeername: 3.1 `ip, port, family` (the port a str in
#   getsockname); Python `(ip, port)`; -> [ip, port symbol] (family dropped).
# - getstats: `received, sent, age` on both; -> [received, sent].
# - select: 3.1 `r, w` / `{}, {}, "timeout"` (tables in descriptor order);
#   Python `(r, w, err)` (given order); -> [sorted r, sorted w, err].
# - sleep: 3.1 returns nothing, Python None; -> [].
# - settimeout, close, shutdown, dirty, getfamily: the same value on both.
#
# Numbers: Lua floats with an integral value are printed as integers (1.0 -> 1),
# as aioluasock returns int for counts and ports. Bytes: both print strings as
# str of latin-1 code points. Ports are replaced by symbols (`Ports`); the age
# of getstats is checked to be a number >= 0 and then dropped.


def normalise(side: Literal["lua", "python"], op: str, v: list[Json], ports: Ports) -> list[Json]:
    """Bring one operation's returned values to the common shape (rules above)."""
    if op in ("connect", "bind", "accept", "setoption"):
        return [v[0], v[1] if len(v) > 1 else None]
    if op in ("receive", "send"):
        if side == "lua":
            assert len(v) == 3, v
            return [v[0], None] if v[1] is None else [v[2], v[1]]
        assert len(v) == 2, v
        return v
    if op == "getoption":
        return [v[0], v[1] if len(v) > 1 else None]
    if op in ("getsockname", "getpeername"):
        if v[0] is None:
            return [None, v[1]]
        return [v[0], ports.symbol(v[1])]
    if op == "getstats":
        assert isinstance(v[2], (int, float)) and v[2] >= 0, v
        return v[:2]
    if op == "select":
        return [_select_names(v[0]), _select_names(v[1]), v[2] if len(v) > 2 else None]
    if op == "sleep":
        return []
    return v


def _expand(ops: Sequence[str], peer_port: int | None) -> list[str]:
    closed = closed_port()
    expanded = []
    for op in ops:
        if "{peer}" in op:
            assert peer_port is not None, op
        expanded.append(op.replace("{peer}", str(peer_port)).replace("{closed}", str(closed)))
    return expanded


def _peer_lines(lines: list[dict[str, Json]], ports: Ports) -> list[dict[str, Json]]:
    """The peer's report without its addresses, whose ports become symbols."""
    assert lines and "addr" in lines[0], lines
    addr = lines[0]["addr"]
    ports.add(addr["sock"][1], "<peer port>")
    ports.add(addr["peer"][1], "<subject port>")
    assert lines[-1] == {"done": True}, lines
    return lines[1:-1]


def _transcript(
    side: Literal["lua", "python"], raw: list[dict[str, Json]], peer: list[dict[str, Json]], ports: Ports
) -> Transcript:
    results = []
    for entry in raw:
        assert "raised" not in entry, f"{side}: {entry['op']} raised {entry['raised']}"
        results.append((str(entry["op"]), normalise(side, entry["op"], entry["v"], ports)))
    return Transcript(results, _peer_lines(peer, ports) if peer else [])


PortHook = Callable[[int], Awaitable[None]]


async def _with_peer(
    lua: str,
    scenario: Scenario,
    subject: Callable[[list[str], PortHook], Awaitable[list[dict[str, Json]]]],
    side: Literal["lua", "python"],
) -> Transcript:
    """Run the scenario's subject with its Lua peer (started before the subject
    when it listens, at the subject's first server when it connects)."""
    ports = Ports()
    async with contextlib.AsyncExitStack() as stack:
        peer: LuaProcess | None = None
        peer_port = None
        if scenario.peer is not None and scenario.peer_listens:
            peer, peer_port = await stack.enter_async_context(
                lua_peer_listening(lua, *scenario.peer, host=scenario.host)
            )

        async def on_port(port: int) -> None:
            nonlocal peer
            ports.add(port, "<server port>")
            if scenario.peer is not None and peer is None:
                peer = await stack.enter_async_context(
                    lua_peer_connecting(lua, port, *scenario.peer, host=scenario.host)
                )

        raw = await subject(_expand(scenario.ops, peer_port), on_port)
        lines = await peer.finish() if peer is not None else []
        assert len(raw) == len(scenario.ops), raw
        return _transcript(side, raw, lines, ports)


async def run_lua_subject(lua: str, scenario: Scenario) -> Transcript:
    async def subject(ops: list[str], on_port: PortHook) -> list[dict[str, Json]]:
        raw = []
        async with lua_process(lua, "subject.lua", scenario.host, *ops) as proc:
            while (entry := await proc.next()) is not None:
                if "port" in entry:
                    await on_port(entry["port"])
                else:
                    raw.append(entry)
            code = await asyncio.wait_for(proc.proc.wait(), LIMIT)
            assert code == 0, await proc.stderr()
        return raw

    return await _with_peer(lua, scenario, subject, "lua")


def _jsonable(value: object, names: dict[int, str]) -> Json:
    if isinstance(value, bytes):
        return latin1(value)
    if isinstance(value, list):
        return [_jsonable(item, names) for item in value]
    if isinstance(value, (Master, Server, Client)):
        return names[id(value)]
    return value


def _option_value(text: str) -> bool | int | dict[str, bool | int]:
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("linger:"):
        _, on, timeout = text.split(":")
        return {"on": on == "true", "timeout": int(timeout)}
    return int(text)


def _pattern(text: str) -> str | int:
    return text if text.startswith("*") else int(text)


async def run_python_subject(host: str, ops: list[str], on_port: PortHook) -> list[dict[str, Json]]:
    """aioluasock's side: the operations of `tests/peers/subject.lua`, in Python."""
    objs: dict[str, Sock] = {}
    names: dict[int, str] = {}

    def keep(name: str, result: tuple[Sock, None] | tuple[None, str]) -> tuple[object, ...]:
        if result[0] is not None:
            objs[name] = result[0]
            names[id(result[0])] = name
        return result

    def client(name: str) -> Client:
        obj = objs[name]
        assert isinstance(obj, Client), obj
        return obj

    def server(name: str) -> Server:
        obj = objs[name]
        assert isinstance(obj, Server), obj
        return obj

    def listed(spec: str) -> list[Sock]:
        return [] if spec == "-" else [objs[name] for name in spec.split(",")]

    async def run(w: list[str]) -> tuple[object, ...]:
        op = w[0]
        if op == "connect":
            return keep(w[1], await socket.connect(host, int(w[2])))
        if op == "bind":
            port = int(w[2]) if not w[2].startswith("@") else objs[w[2][1:]].getsockname()[1]
            assert isinstance(port, int)
            result = await socket.bind(host, port)
            keep(w[1], result)
            if result[0] is not None:
                bound = result[0].getsockname()[1]
                assert isinstance(bound, int)
                await on_port(bound)
            return result
        if op == "accept":
            return keep(w[1], await server(w[2]).accept())
        if op == "receive":
            prefix = bytes.fromhex(w[3]) if len(w) > 3 else b""
            return await client(w[1]).receive(_pattern(w[2]), prefix=prefix)
        if op == "send":
            return await client(w[1]).send(bytes.fromhex(w[2]))
        if op == "settimeout":
            return (objs[w[1]].settimeout(float(w[2]), *w[3:]),)
        if op == "setoption":
            return objs[w[1]].setoption(w[2], _option_value(w[3]))
        if op == "getoption":
            return objs[w[1]].getoption(w[2])
        if op == "select":
            return await socket.select(listed(w[1]), listed(w[2]), float(w[3]))
        if op == "getsockname":
            return objs[w[1]].getsockname()
        if op == "getpeername":
            return client(w[1]).getpeername()
        if op == "getstats":
            return client(w[1]).getstats()
        if op == "dirty":
            return (objs[w[1]].dirty(),)
        if op == "getfamily":
            return (objs[w[1]].getfamily(),)
        if op == "shutdown":
            return (client(w[1]).shutdown(w[2]),)
        if op == "close":
            return (objs[w[1]].close(),)
        if op == "sleep":
            await socket.sleep(float(w[1]))
            return ()
        raise AssertionError(f"unknown operation {op}")

    out: list[dict[str, Json]] = []
    try:
        for index, text in enumerate(ops, 1):
            words = text.split()
            try:
                values = await run(words)
            except Exception as exc:
                out.append({"i": index, "op": words[0], "raised": repr(exc)})
            else:
                out.append({"i": index, "op": words[0], "v": [_jsonable(v, names) for v in values]})
    finally:
        for obj in objs.values():
            obj.close()
    return out


async def run_python(lua: str, scenario: Scenario) -> Transcript:
    async def subject(ops: list[str], on_port: PortHook) -> list[dict[str, Json]]:
        return await run_python_subject(scenario.host, ops, on_port)

    return await _with_peer(lua, scenario, subject, "python")


def _ops(*ops: str) -> tuple[str, ...]:
    return ops


_BOOL_OPTIONS = ("keepalive", "reuseaddr", "reuseport")
_INT_OPTIONS = (("tcp-keepidle", 30), ("tcp-keepcnt", 4), ("tcp-keepintvl", 7))

SCENARIOS: dict[str, Scenario] = {
    # "*l": LF ends a line, every CR is dropped (also from the partial of "closed").
    "line_cr_handling": Scenario(
        ops=(
            "connect c {peer}",
            *["receive c *l"] * 9,
            "getstats c",
        ),
        peer=(psend(b"a\r\nb\none\r\ntwo\nthr\ree\r\r\n\r\nx\r\r\ny\nabc\r"), "close"),
    ),
    # "*a" returns everything, CRs kept, with no error at end of stream.
    "all_until_end_of_stream": Scenario(
        ops=("connect c {peer}", "receive c *a", "getstats c"),
        peer=(psend(b"line1\r\nrest\x00\xff"), "close"),
    ),
    "line_then_all": Scenario(
        ops=("connect c {peer}", "receive c *l", "receive c *a", "getstats c"),
        peer=(psend(b"first\r\nsecond\r\n"), psend(b"tail"), "close"),
    ),
    # A count, a count with a prefix (counted; one of n bytes or more is
    # returned without reading), then the peer closes mid-count.
    "count_then_close": Scenario(
        ops=(
            "connect c {peer}",
            "receive c 3",
            f"receive c 4 {h(b'ab')}",
            f"receive c 2 {h(b'abcd')}",
            f"receive c 3 {h(b'xyz')}",
            "receive c 10",
            f"receive c 10 {h(b'pre')}",
            "receive c *l",
            "receive c 1",
            "getstats c",
        ),
        peer=(psend(b"1234567"), "close"),
    ),
    # "timeout" with the partial, resumed with the partial as prefix.
    "timeout_then_resume": Scenario(
        ops=(
            "connect c {peer}",
            "settimeout c 0.3",
            "receive c *l",
            "receive c 3",
            "receive c *a",
            "settimeout c 5",
            f"receive c *l {h(b'partial')}",
            "getstats c",
        ),
        peer=(psend(b"partial"), "sleep 1.2", psend(b" done\n"), "wait"),
    ),
    "timeout_zero_and_total": Scenario(
        ops=(
            "connect c {peer}",
            "settimeout c 0",
            "receive c *l",
            "receive c 5",
            "settimeout c -1",
            "settimeout c 0.2 t",
            "receive c *a",
            "send c 78",
        ),
        peer=("wait",),
    ),
    "closed_objects_in_select": Scenario(
        ops=("connect c {peer}", "bind s 0", "close c", "close s", "select c,s c 0.2", "close c"),
        peer=("wait",),
    ),
    "connection_refused": Scenario(ops=("connect c {closed}",)),
    "address_already_in_use": Scenario(ops=("bind s 0", "bind s2 @s", "getoption s reuseaddr")),
    "accept_timeout": Scenario(
        ops=("bind s 0", "settimeout s 0.2", "accept a s", "settimeout s 0", "accept a s")
    ),
    # A reset (linger 0, close) reads as "closed" on both sides.
    "peer_reset": Scenario(
        ops=("connect c {peer}", "sleep 0.5", "receive c *l", "send c 78", "receive c 5"),
        peer=("sleep 0.2", "linger0", "close"),
    ),
    # A clean close: the first send is accepted by the kernel, the next one
    # (after the reset that answered it) fails with "closed".
    "send_after_peer_close": Scenario(
        ops=("connect c {peer}", "sleep 0.3", "send c 78", "sleep 0.3", "send c 78", "receive c *l"),
        peer=("close",),
    ),
    # Bytes that arrived before the reset.
    "peer_reset_after_data": Scenario(
        ops=("connect c {peer}", "sleep 0.5", "receive c *l", "receive c *l", "send c 78"),
        peer=(psend(b"hello\nwor"), "sleep 0.2", "linger0", "close"),
    ),
    "shutdown_receive_with_data_waiting": Scenario(
        ops=("connect c {peer}", "sleep 0.3", "shutdown c receive", "receive c *l", "receive c *l"),
        peer=(psend(b"queued\nmore\n"), "wait"),
    ),
    "shutdown_both": Scenario(
        ops=("connect c {peer}", "shutdown c both", "receive c *l", "send c 78", "shutdown c both"),
        peer=("wait",),
    ),
    "shutdown_send": Scenario(
        ops=("connect c {peer}", f"send c {h(b'hello')}", "shutdown c send", "send c 78", "receive c *a"),
        peer=("wait", psend(b"bye"), "close"),
    ),
    "shutdown_receive": Scenario(
        ops=("connect c {peer}", "shutdown c receive", "receive c *l", f"send c {h(b'still')}"),
        peer=("wait",),
    ),
    "options_client": Scenario(
        ops=(
            "connect c {peer}",
            *[
                op
                for name in (*_BOOL_OPTIONS, "tcp-nodelay")
                for op in (
                    f"setoption c {name} true",
                    f"getoption c {name}",
                    f"setoption c {name} false",
                    f"getoption c {name}",
                )
            ],
            *[
                op
                for name, value in _INT_OPTIONS
                for op in (f"setoption c {name} {value}", f"getoption c {name}")
            ],
            "setoption c recv-buffer-size 65536",
            "getoption c recv-buffer-size",
            "setoption c send-buffer-size 32768",
            "getoption c send-buffer-size",
            "getoption c linger",
            "setoption c linger linger:true:3",
            "getoption c linger",
            "setoption c linger linger:false:0",
            "getoption c linger",
            "getoption c error",
        ),
        peer=("wait",),
    ),
    "option_defaults_client": Scenario(
        ops=(
            "connect c {peer}",
            *[f"getoption c {name}" for name in (*_BOOL_OPTIONS, "tcp-nodelay", "linger", "error")],
            *[f"getoption c {name}" for name, _ in _INT_OPTIONS],
        ),
        peer=("wait",),
    ),
    "options_server": Scenario(
        ops=(
            "bind s 0",
            "getoption s reuseaddr",
            "getoption s keepalive",
            "setoption s keepalive true",
            "getoption s keepalive",
            "getoption s linger",
            "getoption s error",
        ),
    ),
    "select_client": Scenario(
        ops=(
            "connect c {peer}",
            "select c - 0",
            "select - c 2",
            "select c c 0",
            "select c - 5",
            "receive c *l",
            "dirty c",
            "select c - 5",
            "receive c 5",
            "dirty c",
            "select c - 0.2",
            "select c - 5",
            "receive c *l",
        ),
        peer=("sleep 0.5", psend(b"hello\nworld"), "sleep 0.6", "close"),
    ),
    "select_server": Scenario(
        ops=(
            "bind s 0",
            "select s - 5",
            "accept a s",
            "select s - 0.2",
            "select - a 2",
            "getsockname s",
            "getsockname a",
            "getpeername a",
            "getfamily a",
            f"send a {h(b'to the peer')}",
            "getstats a",
        ),
        peer=("sleep 0.2", "wait"),
        peer_listens=False,
    ),
    "names_ipv4": Scenario(
        ops=("connect c {peer}", "getsockname c", "getpeername c", "getfamily c"),
        peer=("wait",),
    ),
    "names_ipv6": Scenario(
        ops=("connect c {peer}", "getsockname c", "getpeername c", "getfamily c"),
        peer=("wait",),
        host="::1",
    ),
    "server_names_ipv6": Scenario(
        ops=("bind s 0", "accept a s", "getsockname s", "getsockname a", "getpeername a", "getfamily a"),
        peer=("wait",),
        peer_listens=False,
        host="::1",
    ),
    # getstats: "*l" counts its CR and LF, a prefix never counts, sends count.
    "stats": Scenario(
        ops=(
            "connect c {peer}",
            "receive c *l",
            "getstats c",
            f"receive c 2 {h(b'PREFIX')}",
            "getstats c",
            f"receive c 3 {h(b'Z')}",
            f"send c {h(b'0123456789')}",
            f"send c {h(bytes(range(256)))}",
            "getstats c",
        ),
        peer=(psend(b"ab\r\ncdefgh"), "wait"),
    ),
}

_IPV6 = {"names_ipv6", "server_names_ipv6"}
_lua_transcripts: dict[str, Transcript] = {}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=needs_ipv6) if name in _IPV6 else name for name in SCENARIOS]
)
async def test_same_answers_as_luasocket(lua: str, name: str) -> None:
    scenario = SCENARIOS[name]
    expected = _lua_transcripts.get(name)
    if expected is None:
        expected = _lua_transcripts[name] = await run_lua_subject(lua, scenario)
    actual = await run_python(lua, scenario)
    assert len(actual.results) == len(expected.results)
    for index, (want, got) in enumerate(zip(expected.results, actual.results, strict=True), 1):
        assert got == want, (
            f"operation {index} ({scenario.ops[index - 1]!r}): LuaSocket {want}, aioluasock {got}"
        )
    assert actual.peer == expected.peer


# -- interop ------------------------------------------------------------------------


def ok_result(result: tuple[Any, ...]) -> Any:
    """The value of a successful `(value, None)` result."""
    assert len(result) == 2 and result[1] is None, result
    return result[0]


@contextlib.asynccontextmanager
async def aioluasock_server(host: str = LOCAL) -> AsyncIterator[tuple[Server, int]]:
    server = ok_result(await socket.bind(host, 0))
    assert isinstance(server, Server)
    try:
        port = server.getsockname()[1]
        assert isinstance(port, int)
        server.settimeout(LIMIT)
        yield server, port
    finally:
        server.close()


async def accepted(server: Server) -> Client:
    client = ok_result(await server.accept())
    assert isinstance(client, Client)
    client.settimeout(LIMIT)
    return client


async def connected(port: int, host: str = LOCAL) -> Client:
    client = ok_result(await socket.connect(host, port))
    assert isinstance(client, Client)
    client.settimeout(LIMIT)
    return client


EVERY_BYTE = bytes(range(256))


@pytest.mark.asyncio
async def test_lua_client_lines_with_cr_and_lf(lua: str) -> None:
    data = b"a\r\nb\nx\r\r\ny\nthr\ree\r\r\n\r\n\x00\xff\n"
    async with (
        aioluasock_server() as (server, port),
        lua_peer_connecting(lua, port, psend(data), "close") as peer,
    ):
        client = await accepted(server)
        try:
            assert await client.receive("*l") == (b"a", None)
            assert await client.receive() == (b"b", None)
            assert await client.receive("*l", "*l", "*l", "*l", "*l") == (
                b"x",
                b"y",
                b"three",
                b"",
                b"\x00\xff",
                None,
            )
            assert await client.receive("*l") == (b"", "closed")
        finally:
            client.close()
        assert await peer.report() == [{"send": [len(data), None, None]}]


@pytest.mark.asyncio
async def test_every_byte_value_both_ways(lua: str) -> None:
    data = EVERY_BYTE * 4
    actions = (f"recv {len(data)}", f"sendrep {h(EVERY_BYTE)} 4", "wait")
    async with lua_peer_listening(lua, *actions) as (peer, port):
        report = peer.report()
        client = await connected(port)
        try:
            assert await client.send(data) == (len(data), None)
            assert await client.receive(len(data)) == (data, None)
        finally:
            client.close()
        assert await report == [
            {"recv": [latin1(data), None, None]},
            {"send": [len(data), None, None]},
            {"wait": [None, "closed", ""]},
        ]


@pytest.mark.asyncio
async def test_one_megabyte_line_both_ways(lua: str) -> None:
    line = bytes(range(32, 127)) * (MB // 95 + 1)
    line = line[:MB]
    actions = (
        "recv *l",
        f"sendrep {h(line[:95])} {MB // 95}",
        psend(line[: MB % 95] + b"\r\n"),
        "close",
    )
    async with lua_peer_listening(lua, *actions) as (peer, port):
        report = peer.report()
        client = await connected(port)
        try:
            assert await client.send(line + b"\r\n") == (MB + 2, None)
            assert await client.receive() == (line, None)
            assert await client.receive("*a") == (b"", None)  # DESIGN: "*a" at end of stream
        finally:
            client.close()
        lines = await report
        assert lines[0] == {"recv": [latin1(line), None, None]}


@pytest.mark.asyncio
async def test_lua_peer_closes_mid_line(lua: str) -> None:
    async with aioluasock_server() as (server, port):
        async with lua_peer_connecting(lua, port, psend(b"abc\r\ndef\r"), "close") as peer:
            client = await accepted(server)
            try:
                assert await client.receive("*l", "*l") == (b"abc", b"def", "closed")
            finally:
                client.close()
            await peer.report()
        async with lua_peer_connecting(lua, port, psend(b"12345"), "close") as peer:
            client = await accepted(server)
            try:
                assert await client.receive(3) == (b"123", None)
                assert await client.receive(10) == (b"45", "closed")
            finally:
                client.close()
            await peer.report()
        async with lua_peer_connecting(lua, port, psend(b"tail\r\n\r"), "close") as peer:
            client = await accepted(server)
            try:
                assert await client.receive("*a") == (b"tail\r\n\r", None)
            finally:
                client.close()
            await peer.report()


@pytest.mark.asyncio
async def test_lua_peer_reset_reads_as_closed(lua: str) -> None:
    async with lua_peer_listening(lua, "sleep 0.2", "linger0", "close") as (peer, port):
        client = await connected(port)
        try:
            assert await client.receive() == (b"", "closed")
            assert await client.send(b"x") == (0, "closed")
        finally:
            client.close()
        assert await peer.report() == []


@pytest.mark.asyncio
async def test_lua_clients_echo_through_aioluasock_server(lua: str) -> None:
    lines = [b"hello\r\n", EVERY_BYTE.replace(b"\n", b"") + b"\n", b"\n", b"last\n"]
    actions = [action for line in lines for action in (psend(line), "recv *l")]

    async def echo(client: Client) -> tuple[bytes, str, tuple[int, int]]:
        try:
            while True:
                line, err = await client.receive()
                if err is not None:
                    return line, err, client.getstats()[:2]
                assert await client.send(line, b"\n") == (len(line) + 1, None)
        finally:
            client.close()

    async with aioluasock_server() as (server, port), contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(lua_peer_connecting(lua, port, *actions)) for _ in range(3)]
        clients = [await accepted(server) for _ in peers]
        results = await asyncio.wait_for(asyncio.gather(*(echo(client) for client in clients)), LIMIT)
        total = sum(len(line) for line in lines)
        sent = sum(len(line.replace(b"\r", b"")) for line in lines)
        assert results == [(b"", "closed", (total, sent))] * 3
        expected = [
            report
            for line in lines
            for report in (
                {"send": [len(line), None, None]},
                {"recv": [latin1(line.replace(b"\r", b"")[:-1]), None, None]},
            )
        ]
        for peer in peers:
            assert await peer.report() == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("host", [LOCAL, pytest.param("::1", marks=needs_ipv6)])
async def test_aioluasock_client_with_lua_echo_server(lua: str, host: str) -> None:
    async with lua_peer_listening(lua, "echo", host=host) as (peer, port):
        client = await connected(port, host)
        try:
            assert client.getpeername() == (host, port)
            for line in (b"one\r\n", b"two\n", EVERY_BYTE.replace(b"\n", b"") + b"\n"):
                assert await client.send(line) == (len(line), None)
                assert await client.receive("*l") == (line.replace(b"\r", b"")[:-1], None)
            assert await client.send(b"a\n", b"b\n", memoryview(b"c\n")) == (6, None)
            assert await client.receive("*l", 2, "*l") == (b"a", b"b\n", b"c", None)
        finally:
            client.close()
        assert await peer.report() == [{"echo": [6, "closed", ""]}]


@pytest.mark.asyncio
async def test_half_close_with_lua_peer(lua: str) -> None:
    data = EVERY_BYTE * 1000
    async with lua_peer_listening(lua, "wait", psend(b"reply\r\n"), "close") as (peer, port):
        report = peer.report()
        client = await connected(port)
        try:
            assert await client.send(data) == (len(data), None)
            assert client.shutdown("send") == 1
            assert await client.send(b"x") == (0, "closed")
            assert await client.receive("*a") == (b"reply\r\n", None)
        finally:
            client.close()
        assert await report == [{"wait": [latin1(data), None, None]}, {"send": [7, None, None]}]
