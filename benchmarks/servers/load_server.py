"""The server of the load and leak benchmarks (benchmarks/load.py): `aioluasock.serve`
with a control channel on stdin.

    python benchmarks/servers/load_server.py LOOP HANDLER PORT

HANDLER is ``echo`` (``receive("*l")`` then ``send(line + "\\n")``, the LuaSocket
idiom) or ``sink``: a handler that does not call `receive` until the ``release``
command, then reads and counts everything until the peer closes.

It prints ``READY <port>`` once it listens on 127.0.0.1, then answers each
command line on stdin with one JSON line on stdout:

- ``mark SECONDS``: `settle` (the priming connections' handlers end), then
  remember the tasks running now as the known ones; answers `stats`.
- ``stats``: ``rss`` (bytes), ``fds`` (entries of /proc/self/fd), ``clients``
  (handlers running), ``handled`` (handlers finished), ``received`` (bytes the
  sink handlers read), ``pending`` (the tasks not done that are neither known
  nor this command's own).
- ``settle SECONDS``: wait (at most that long) until no handler has run for a
  while and the descriptor count stopped falling, then answer `stats`.
- ``release``: let the sink handlers running now read (later ones wait for
  the next ``release``).
- ``drop``: close every client a handler is running for, from this side.

It ends at the end of stdin or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from typing import Any

HOST = "127.0.0.1"
BACKLOG = 4096
"""Generous, so that a crowd of connects is not dropped (and retried a second later)."""
QUIET = 0.2
"""Seconds without a running handler before `settle` counts descriptors."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def open_fds() -> int:
    """Descriptors open in this process (the one `listdir` opens is not counted)."""
    return len(os.listdir("/proc/self/fd")) - 1


class LoadServer:
    """The service, its counters and the command interpreter."""

    def __init__(self, handler: str) -> None:
        self.handler_name = handler
        self.released = asyncio.Event()
        self.known: set[asyncio.Task[Any]] = set()
        self.handled = 0
        self.received = 0
        self.running: set[Any] = set()  # the clients of the running handlers
        self.last_busy = time.monotonic()

    async def echo(self, client: Any) -> None:
        self.running.add(client)
        try:
            while True:
                line, err = await client.receive("*l")
                if err is not None:
                    return
                _, err = await client.send(line + b"\n")
                if err is not None:
                    return
        finally:
            self.running.discard(client)
            self.handled += 1
            self.last_busy = time.monotonic()

    async def sink(self, client: Any) -> None:
        released = self.released  # this handler waits for the next `release`
        self.running.add(client)
        try:
            await released.wait()
            while True:
                data, err = await client.receive(65536)
                self.received += len(data)
                if err is not None:
                    return
        finally:
            self.running.discard(client)
            self.handled += 1
            self.last_busy = time.monotonic()

    def stats(self, service: Any) -> dict[str, Any]:
        this = asyncio.current_task()
        pending = [repr(task) for task in asyncio.all_tasks() if task not in self.known and task is not this]
        return {
            "rss": rss_bytes(),
            "fds": open_fds(),
            "clients": service.clients,
            "handled": self.handled,
            "received": self.received,
            "pending": pending,
        }

    async def settle(self, service: Any, limit: float) -> dict[str, Any]:
        """Wait until no handler runs and none ran for `QUIET` seconds (a
        connection still in the accept backlog is accepted meanwhile), then
        until the descriptor count stops falling (transports close theirs a
        loop iteration or two after `close`)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if service.clients == 0 and time.monotonic() - self.last_busy >= QUIET:
                break
            if service.clients:
                self.last_busy = time.monotonic()
            await asyncio.sleep(0.02)
        fds = open_fds()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = open_fds()
            if now >= fds:
                break
            fds = now
        return self.stats(service)

    async def run(self, port: int) -> None:
        import aioluasock

        handler = self.echo if self.handler_name == "echo" else self.sink
        service, err = await aioluasock.serve(handler, HOST, port, backlog=BACKLOG)
        if service is None:
            raise SystemExit(f"serve: {err}")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        _, bound = service.getsockname()
        print(f"READY {bound}", flush=True)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                command, *args = line.decode().split()
                answer: dict[str, Any]
                if command == "mark":
                    await self.settle(service, float(args[0]))
                    self.known = set(asyncio.all_tasks())
                    answer = self.stats(service)
                elif command == "stats":
                    answer = self.stats(service)
                elif command == "settle":
                    answer = await self.settle(service, float(args[0]))
                elif command == "drop":
                    for client in list(self.running):
                        client.close()
                    answer = {"dropped": len(self.running)}
                elif command == "release":
                    self.released.set()
                    self.released = asyncio.Event()
                    answer = {}
                else:
                    answer = {"error": f"unknown command {command!r}"}
                print(json.dumps(answer), flush=True)
        finally:
            await service.close(grace=0)


async def until_terminated(server: LoadServer, port: int) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server.run(port)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in ("asyncio", "uvloop") or args[1] not in ("echo", "sink"):
        print(__doc__, file=sys.stderr)
        return 2
    loop, handler, port = args[0], args[1], int(args[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # 10,000 connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = LoadServer(handler)
    if loop == "uvloop":
        import uvloop

        uvloop.run(until_terminated(server, port))
    else:
        asyncio.run(until_terminated(server, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
