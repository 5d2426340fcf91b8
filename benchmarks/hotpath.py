"""Microseconds of Python per echoed line, without the kernel: the hot path alone.

    python -m benchmarks.hotpath [asyncio|uvloop] [--lines N] [--profile] [--only VARIANT] [--repeats N]

A real connection is set up, then its transport is swapped for a stand-in
whose `write` only counts, and a loop callback feeds one 64-byte line at a
time as the loop's socket read would (`data_received` with a new `bytes` on
uvloop, `get_buffer`/`buffer_updated` on the stdlib loop). Each variant is
the same loop of "feed one line, let the server answer it":

- ``aioluasock``: a task doing ``receive("*l")`` + ``send(line + b"\\n")``;
- ``aioluasock-buffered``: the same, with 8 lines fed per read (the fast path
  with a line already buffered);
- ``line-protocol``: the suite's hand-written line `Protocol` (``data_received``);
- ``streams``: ``readline`` + ``write`` + ``drain`` on a `StreamReader`;
- ``lua-bridge``: ``servers/lua_echo.lua`` under the bridge (one spawned Lua
  task per client: ``receive("*l")`` + ``send(line .. "\\n")``);
- ``lua-bridge-unsliced``: the same without a time slice (no count hook:
  what the hook costs);
- ``copas-bridge``: ``servers/copas_echo.lua`` (Debian's Copas 1.x, waiting
  in ``socket.select``) under the bridge. With one connection Copas selects
  twice per line, so this one mostly measures the bridge's ``select``.

The feeding callback costs the same in every variant, so differences are the
servers' own Python. ``--profile`` prints a cProfile of the aioluasock variant.

Instructions per line, immune to the machine's noise: run one variant under
callgrind at two line counts and divide the difference, e.g.
``valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m
benchmarks.hotpath uvloop --only aioluasock --repeats 1 --lines 20000`` (and
40000): ("Collected" of the second - of the first) / 20000.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aioluasock as socket
from aioluasock._tcp import Client, Server
from aioluasock.lua import Script
from aioluasock.lua._runtime import DEFAULT_SLICE
from benchmarks.servers.py_echo import LineProtocol

LINE = b"x" * 63 + b"\n"
SERVERS = Path(__file__).resolve().parent / "servers"


class FakeTransport:
    """Takes writes without a socket: `write` only counts."""

    def __init__(self) -> None:
        self.written = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def writelines(self, lines: Sequence[bytes]) -> None:
        for data in lines:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


async def _drive(feed: Callable[[], None], lines: int, done: Callable[[], bool]) -> float:
    """Call `feed` from the loop `lines` times, each after the server answered.

    `done` counts bytes written, not writes: replies may be batched into fewer writes.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    fed = 0

    def tick() -> None:
        nonlocal fed
        if fed == lines:
            if done():
                finished.set_result(None)
            else:
                loop.call_soon(tick)
            return
        fed += 1
        feed()
        loop.call_soon(tick)

    started = time.perf_counter()
    loop.call_soon(tick)
    await finished
    return (time.perf_counter() - started) / lines * 1e6


async def _swap_transport(peer: Client) -> tuple[Any, Any, FakeTransport]:
    """The server side's protocol, its real transport, and the stand-in now in its place."""
    proto: Any = peer._proto
    for _ in range(100):  # accept may attach the transport in the background
        if proto is not None and proto.transport is not None:
            break
        await asyncio.sleep(0.01)
        proto = peer._proto
    real = proto.transport
    fake = FakeTransport()
    proto.transport = fake
    return proto, real, fake


def _feeder(proto: Any, chunk: bytes) -> Callable[[], None]:
    def feed() -> None:
        # As the loop would: uvloop hands a plain protocol a `bytes` of what
        # it read; the stdlib loop reads into the protocol's buffer.
        if isinstance(proto, asyncio.Protocol):
            proto.data_received(bytes(chunk))
        else:
            view = proto.get_buffer(-1)
            view[: len(chunk)] = chunk
            proto.buffer_updated(len(chunk))

    return feed


async def bench_aioluasock(lines: int, per_read: int = 1) -> float:
    server, err = await socket.bind("127.0.0.1", 0)
    assert server is not None, err
    port = server.getsockname()[1]
    assert isinstance(port, int)
    client, err = await socket.connect("127.0.0.1", port)
    assert client is not None, err
    peer, err = await server.accept()
    assert peer is not None, err
    proto, real, fake = await _swap_transport(peer)

    async def echo() -> None:
        while True:
            line, err = await peer.receive("*l")
            if err is not None:
                return
            await peer.send(line + b"\n")

    task = asyncio.create_task(echo())
    await asyncio.sleep(0)
    feed = _feeder(proto, LINE * per_read)
    try:
        us = await _drive(feed, lines // per_read, lambda: fake.written >= lines * len(LINE))
    finally:
        proto.transport = real
        task.cancel()
        for obj in (peer, client, server):
            obj.close()
    return us * (lines // per_read) / lines


def _live(kind: type[Any]) -> list[Any]:
    # The bridge keeps a script's sockets to itself: find them as objects.
    return [obj for obj in gc.get_objects() if type(obj) is kind and not obj._closed]


async def _appearing(kind: type[Any], known: set[int]) -> Any:
    """The first open `kind` object not in `known` (ids), within 5 s."""
    for _ in range(500):
        await asyncio.sleep(0.01)
        for obj in _live(kind):
            if id(obj) not in known:
                return obj
    return None


async def bench_lua(lines: int, script: str, slice: float | None = DEFAULT_SLICE) -> float:
    """`script` (a server of servers/) under the bridge, with its time slice."""
    before = {id(obj) for obj in _live(Server)}
    task = Script.from_file(str(SERVERS / script), ("0",), slice=slice).start()
    try:
        server = await _appearing(Server, before)
        assert server is not None, "the script did not listen"
        port = server.getsockname()[1]
        assert isinstance(port, int)
        others = {id(obj) for obj in _live(Client)}
        client, err = await socket.connect("127.0.0.1", port)
        assert client is not None, err
        peer = await _appearing(Client, others | {id(client)})
        assert peer is not None, "the script did not accept"
        proto, real, fake = await _swap_transport(peer)
        try:
            return await _drive(_feeder(proto, LINE), lines, lambda: fake.written >= lines * len(LINE))
        finally:
            proto.transport = real
            client.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def bench_line_protocol(lines: int) -> float:
    proto = LineProtocol()
    fake = FakeTransport()
    proto.connection_made(fake)  # type: ignore[arg-type]
    return await _drive(lambda: proto.data_received(LINE), lines, lambda: fake.written >= lines * len(LINE))


async def bench_streams(lines: int) -> float:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    protocol = asyncio.StreamReaderProtocol(reader)
    fake = FakeTransport()
    protocol.connection_made(fake)  # type: ignore[arg-type]
    writer = asyncio.StreamWriter(fake, protocol, reader, loop)  # type: ignore[arg-type]

    async def echo() -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            writer.write(line)
            await writer.drain()

    task = asyncio.create_task(echo())
    try:
        return await _drive(
            lambda: protocol.data_received(LINE), lines, lambda: fake.written >= lines * len(LINE)
        )
    finally:
        task.cancel()


async def run_all(lines: int, profile: bool, only: str | None = None, repeats: int = 5) -> None:
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    variants: list[tuple[str, Callable[[], Any]]] = [
        ("aioluasock", lambda: bench_aioluasock(lines)),
        ("aioluasock-buffered", lambda: bench_aioluasock(lines, 8)),
        ("line-protocol", lambda: bench_line_protocol(lines)),
        ("streams", lambda: bench_streams(lines)),
        ("lua-bridge", lambda: bench_lua(lines, "lua_echo.lua")),
        ("lua-bridge-unsliced", lambda: bench_lua(lines, "lua_echo.lua", None)),
        ("copas-bridge", lambda: bench_lua(lines, "copas_echo.lua")),
        ("copas-bridge-unsliced", lambda: bench_lua(lines, "copas_echo.lua", None)),
    ]
    if only is not None:
        variants = [(name, make) for name, make in variants if name == only]
        if not variants:
            raise SystemExit(f"no variant {only!r}")
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(repeats):  # interleaved repeats; the best is the least disturbed
        for name, make in variants:
            results[name].append(await make())
    print(f"aioluasock implementation: {socket.IMPLEMENTATION}")
    for name, values in results.items():
        print(f"{loop_name:8s} {name:20s} {min(values):6.2f} us/line (best of {len(values)})")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await bench_aioluasock(lines)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("loop", nargs="?", default="uvloop", choices=("asyncio", "uvloop"))
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", default=None, help="run one variant (for callgrind, say)")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args(argv)
    main_coro = run_all(options.lines, options.profile, options.only, options.repeats)
    if options.loop == "uvloop":
        import uvloop

        uvloop.run(main_coro)
    else:
        asyncio.run(main_coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
