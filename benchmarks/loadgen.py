"""The Python fallback of the load generator (loadgen.c), for machines without a C compiler.

    python benchmarks/loadgen.py MODE HOST PORT [conns=N] [size=B] [duration=S] [warmup=S] [window=B]

Same modes, phases, output lines ("START", "END", "IDLE n") and JSON as
loadgen.c (see there), except what only the load and leak benchmarks
(benchmarks/load.py, which need the C program) use: the "slow" mode and the
count, drain and interval options. It runs on uvloop when available. Being Python, it is
much more likely than the C program to be the bottleneck: the report names
which generator a run used.
"""

from __future__ import annotations

import asyncio
import functools
import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

MAX_CONNECTING = 64


def pattern_of(size: int) -> bytes:
    """Lines of `size` bytes (LF included), at least 256 KiB of them."""
    line = bytes(ord("a") + i % 26 for i in range(size - 1)) + b"\n"
    return line * ((256 * 1024 + size - 1) // size)


class Run:
    """Counters and phase of one run, shared by its connections."""

    def __init__(self, mode: str, size: int, window: int) -> None:
        self.mode = mode
        self.size = size
        self.window = window
        self.pattern = pattern_of(size)
        self.measuring = False
        self.running = False  # past setup
        self.count = 0
        self.bytes = 0
        self.errors = 0
        self.connect_errors = 0
        self.established = 0
        self.latencies: list[int] = []


class Conn(asyncio.Protocol):
    """One connection: ping-pong or streaming, checking every echoed byte."""

    def __init__(self, run: Run, ready: asyncio.Future[None]) -> None:
        self.run = run
        self.ready = ready  # resolved when the first echo completes
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.recvd = 0
        self.t0 = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.request()

    def request(self) -> None:
        assert self.transport is not None
        run = self.run
        self.recvd = 0
        self.t0 = time.perf_counter_ns()
        self.transport.write(run.pattern[: run.size])

    def pump(self) -> None:
        """Streaming: keep `window` bytes in flight."""
        assert self.transport is not None
        run = self.run
        while self.sent - self.recvd < run.window:
            offset = self.sent % len(run.pattern)
            chunk = run.pattern[offset : offset + run.window - (self.sent - self.recvd)]
            self.transport.write(chunk)
            self.sent += len(chunk)

    def data_received(self, data: bytes) -> None:
        run = self.run
        pattern = run.pattern
        offset = self.recvd % len(pattern)
        expected = (pattern[offset:] + pattern)[: len(data)] if offset + len(data) > len(pattern) else None
        if (expected if expected is not None else pattern[offset : offset + len(data)]) != data:
            run.errors += 1
            self.fail()
            return
        self.recvd += len(data)
        if run.mode == "stream":
            if run.measuring:
                run.bytes += len(data)
            if not self.ready.done() and self.recvd >= run.size:
                self.sent = self.recvd
                self.ready.set_result(None)
            if run.running:
                self.pump()
            return
        if self.recvd > run.size:
            run.errors += 1
            self.fail()
        elif self.recvd == run.size:
            if not self.ready.done():
                self.ready.set_result(None)
            if run.measuring:
                run.count += 1
                run.bytes += run.size
                if run.mode == "pingpong":
                    run.latencies.append(time.perf_counter_ns() - self.t0)
            if run.mode == "pingpong" and run.running:
                self.request()
            elif run.mode == "connrate" and self.transport is not None:
                self.transport.close()

    def fail(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the first echo"))
        if not self.closed.done():
            self.closed.set_result(None)


async def open_all(run: Run, host: str, port: int, count: int) -> list[Conn]:
    """Connect `count` connections, at most MAX_CONNECTING at a time, each with one echo."""
    loop = asyncio.get_running_loop()
    conns: list[Conn] = []
    limit = asyncio.Semaphore(MAX_CONNECTING)

    async def one() -> None:
        async with limit:
            ready: asyncio.Future[None] = loop.create_future()
            try:
                _, conn = await loop.create_connection(lambda: Conn(run, ready), host, port)
                await ready
            except OSError:
                run.connect_errors += 1
                return
            run.established += 1
            conns.append(conn)

    await asyncio.gather(*(one() for _ in range(count)))
    return conns


async def connrate_worker(run: Run, host: str, port: int, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        ready: asyncio.Future[None] = loop.create_future()
        try:
            _, conn = await loop.create_connection(functools.partial(Conn, run, ready), host, port)
            await ready
            await conn.closed
        except OSError:
            run.connect_errors += 1
            await asyncio.sleep(0.01)


async def main_async(mode: str, host: str, port: int, opts: dict[str, float]) -> dict[str, Any]:
    conns_n = int(opts.get("conns", 1))
    size = int(opts.get("size", 64))
    duration = float(opts.get("duration", 2.0))
    warmup = float(opts.get("warmup", 0.5))
    run = Run(mode, size, int(opts.get("window", 256 * 1024)))
    loop = asyncio.get_running_loop()
    conns = await open_all(run, host, port, conns_n)
    if mode == "idle":
        print(f"IDLE {run.established}", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        for conn in conns:
            conn.fail()
        return {
            "mode": "idle",
            "conns": conns_n,
            "established": run.established,
            "connect_errors": run.connect_errors,
        }
    run.running = True
    stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []
    if mode == "connrate":
        for conn in conns:
            conn.fail()
        workers = [asyncio.create_task(connrate_worker(run, host, port, stop)) for _ in range(conns_n)]
    else:
        for conn in conns:
            if mode == "pingpong":
                conn.request()
            else:
                conn.pump()
    await asyncio.sleep(warmup)
    run.measuring = True
    started = time.perf_counter()
    cpu_start = time.process_time()
    print("START", flush=True)
    await asyncio.sleep(duration)
    run.measuring = False
    seconds = time.perf_counter() - started
    cpu = (time.process_time() - cpu_start) / seconds
    print("END", flush=True)
    stop.set()
    run.running = False
    for worker in workers:
        worker.cancel()
    for conn in conns:
        conn.fail()
    if mode == "stream":
        run.count = run.bytes // size
    latencies = sorted(run.latencies)

    def pct(p: float) -> float:
        return latencies[int(p * (len(latencies) - 1))] / 1000 if latencies else 0.0

    return {
        "mode": mode,
        "conns": conns_n,
        "size": size,
        "seconds": seconds,
        "count": run.count,
        "rate": run.count / seconds,
        "mbps": run.bytes / seconds / 1e6,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "errors": run.errors,
        "connect_errors": run.connect_errors,
        "established": run.established,
        "loadgen_cpu": cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] not in ("pingpong", "stream", "connrate", "idle"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, host, port = args[0], args[1], int(args[2])
    opts = {key: float(value) for key, _, value in (arg.partition("=") for arg in args[3:])}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        result = uvloop.run(main_async(mode, host, port, opts))
    except ImportError:
        result = asyncio.run(main_async(mode, host, port, opts))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
