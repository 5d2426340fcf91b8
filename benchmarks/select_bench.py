"""The `select` micro-benchmark: microseconds per call with one ready socket.

    python -m benchmarks.select_bench LOOP SIZE [SIZE ...]

Opens max(SIZE) aioluasock clients to an echo server in another process (the C
epoll echo when a compiler exists), sends one line on the last client so that
exactly one socket has buffered data, and times ``await select(clients, None, 0)``
over the last SIZE clients (the ready one included, so the call cannot stop
early). A last point passes 10 sockets whose descriptors are all above the
largest SIZE: its cost should match 10 low descriptors, as `select` grows with
the sockets passed, not with a descriptor ceiling. Prints a JSON list.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aioluasock as socket
from benchmarks import harness

MIN_BATCH_SECONDS = 0.05
BATCHES = 7


async def _connect_all(port: int, count: int) -> list[socket.Client]:
    clients: list[socket.Client] = []
    batch = 200
    for start in range(0, count, batch):
        results = await asyncio.gather(
            *(socket.connect(harness.HOST, port) for _ in range(min(batch, count - start)))
        )
        for client, err in results:
            if client is None:
                for opened in clients:
                    opened.close()
                raise SystemExit(f"connect failed after {len(clients)} clients: {err}")
            clients.append(client)
    return clients


async def _time_select(sockets: list[socket.Client]) -> float:
    """Median microseconds per call over several timed batches."""
    calls = 1
    while True:  # size a batch to last at least MIN_BATCH_SECONDS
        started = time.perf_counter()
        for _ in range(calls):
            readable, _, err = await socket.select(sockets, None, 0)
        elapsed = time.perf_counter() - started
        if len(readable) != 1 or err is not None:
            raise SystemExit(f"expected exactly one readable socket, got {len(readable)} ({err})")
        if elapsed >= MIN_BATCH_SECONDS:
            break
        calls *= 4
    samples = []
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(calls):
            await socket.select(sockets, None, 0)
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


async def bench(port: int, sizes: Sequence[int]) -> list[dict[str, Any]]:
    largest = max(sizes)
    clients = await _connect_all(port, largest + 10)
    try:
        ready = clients[largest - 1]
        await ready.send(b"ready\n")
        for _ in range(500):  # wait for the echo to be buffered
            if ready.dirty():
                break
            await asyncio.sleep(0.01)
        points: list[dict[str, Any]] = []
        for size in sorted(sizes):
            chosen = clients[largest - size : largest]  # ends with the ready one
            us = await _time_select(chosen)
            points.append({"sockets": size, "us_per_call": us, "max_fd": max(c.getfd() for c in chosen)})
        # 10 sockets with the highest descriptors (the ready one among them).
        high = [*clients[largest + 1 :], ready]
        us = await _time_select(high)
        points.append(
            {
                "sockets": len(high),
                "high_fds": True,
                "us_per_call": us,
                "min_fd": min(c.getfd() for c in high),
            }
        )
        return points
    finally:
        for client in clients:
            client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in ("asyncio", "uvloop"):
        print(__doc__, file=sys.stderr)
        return 2
    loop_name, sizes = args[0], [int(size) for size in args[1:]]
    harness.raise_nofile()
    _, peer_cpus = harness.cores()
    c_echo = harness.build_c(harness.SERVERS_DIR / "c_echo.c", "c_echo")
    argv_peer = (
        [str(c_echo), "0"]
        if c_echo is not None
        else [sys.executable, str(harness.SERVERS_DIR / "py_echo.py"), "raw-protocol", "uvloop", "0"]
    )
    peer = harness.start_server("select-peer", argv_peer, peer_cpus)
    try:
        if loop_name == "uvloop":
            import uvloop

            points = uvloop.run(bench(peer.port, sizes))
        else:
            points = asyncio.run(bench(peer.port, sizes))
    finally:
        peer.stop()
    print(json.dumps(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
