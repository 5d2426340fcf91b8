"""The Python echo servers of the benchmark suite, one per process.

    python benchmarks/servers/py_echo.py KIND LOOP PORT [--bulk]

KIND is one of:

- ``aioluasock``: the LuaSocket idiom, ``receive("*l")`` then ``send(line .. "\\n")``,
  one task per client (with ``--bulk``: ``receive(65536)`` then ``send``; with
  ``--split``: ``send(line, "\\n")``; ``--nodelay`` sets tcp-nodelay);
- ``line-protocol``: a hand-written `asyncio.Protocol` that splits lines itself and
  writes all the replies of one read at once;
- ``raw-protocol``: an `asyncio.Protocol` that writes back whatever it reads;
- ``streams``: `asyncio.start_server` with ``readline``/``write``/``drain``;
- ``aioluasock-workers``: ``aioluasock``'s line echo as a `serve()` handler in
  ``--workers N`` processes sharing the port (`aioluasock.run_workers`).

LOOP is ``asyncio`` or ``uvloop``; PORT 0 picks an ephemeral port. The server
prints ``READY <port>`` on stdout once it listens on 127.0.0.1 and runs until
it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

HOST = "127.0.0.1"
BACKLOG = 4096
"""Generous, so that a crowd of connects is not dropped (and retried a second later)."""


def raise_nofile() -> None:
    """Raise the soft descriptor limit to the hard one (10,000 idle connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ready(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


# -- aioluasock ------------------------------------------------------------------


async def aioluasock_server(port: int, bulk: bool, nodelay: bool = False, split: bool = False) -> None:
    import aioluasock as socket

    server, err = await socket.bind(HOST, port, BACKLOG)
    if server is None:
        raise SystemExit(f"bind: {err}")
    handlers: set[asyncio.Task[None]] = set()

    async def echo_lines(client: socket.Client) -> None:
        try:
            while True:
                line, err = await client.receive("*l")
                if err is not None:
                    return
                assert isinstance(line, bytes)
                if split:
                    _, err = await client.send(line, b"\n")
                else:
                    _, err = await client.send(line + b"\n")
                if err is not None:
                    return
        finally:
            client.close()

    async def echo_blocks(client: socket.Client) -> None:
        try:
            while True:
                block, err, *_ = await client.receive(65536)
                if err is not None:
                    # The partial block of a failed receive comes back too.
                    if isinstance(block, bytes) and block:
                        await client.send(block)
                    return
                assert isinstance(block, bytes)
                _, err = await client.send(block)
                if err is not None:
                    return
        finally:
            client.close()

    handle = echo_blocks if bulk else echo_lines
    _, bound = server.getsockname()
    assert isinstance(bound, int)
    ready(bound)
    while True:
        client, err = await server.accept()
        if client is None:
            if err == "closed":
                return
            await asyncio.sleep(0.01)  # out of descriptors, say
            continue
        if nodelay:
            client.setoption("tcp-nodelay", True)
        task = asyncio.create_task(handle(client))
        handlers.add(task)
        task.add_done_callback(handlers.discard)


async def worker_echo_lines(client: Any) -> None:
    """The line echo of ``aioluasock-workers``: a module-level function, as
    worker processes import it by name."""
    while True:
        line, err = await client.receive("*l")
        if err is not None:
            return
        if (await client.send(line + b"\n"))[1] is not None:
            return


def workers_server(loop: str, port: int, workers: int) -> int:
    """`run_workers` until SIGTERM (the supervisor stops the workers gracefully)."""
    import aioluasock as socket

    _, err = socket.run_workers(
        worker_echo_lines,
        HOST,
        port,
        workers=workers,
        loop=loop,
        grace=1.0,
        backlog=BACKLOG,
        ready=lambda _ip, bound: ready(bound),
    )
    if err is not None:
        raise SystemExit(f"run_workers: {err}")
    return 0


# -- hand-written protocols --------------------------------------------------------


class LineProtocol(asyncio.Protocol):
    """Splits lines itself; the replies produced by one read go out in one write."""

    __slots__ = ("pending", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
        lines = data.split(b"\n")
        self.pending = lines.pop()  # the incomplete tail (b"" after a complete line)
        if lines:
            # One reply per line, as a real line protocol makes them; all the
            # replies of one read go out in one write.
            assert self.transport is not None
            self.transport.write(b"".join([line + b"\n" for line in lines]))


class RawProtocol(asyncio.Protocol):
    """Writes back whatever it reads."""

    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def protocol_server(port: int, factory: Callable[[], asyncio.Protocol]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, HOST, port, backlog=BACKLOG)
    ready(server.sockets[0].getsockname()[1])
    await server.serve_forever()


# -- asyncio streams -----------------------------------------------------------------


async def streams_server(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    return
                writer.write(line)
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    # 64 KiB lines in the bulk scenario: the default 64 KiB limit is too tight.
    server = await asyncio.start_server(handle, HOST, port, backlog=BACKLOG, limit=1 << 20)
    ready(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "kind", choices=("aioluasock", "line-protocol", "raw-protocol", "streams", "aioluasock-workers")
    )
    parser.add_argument("loop", choices=("asyncio", "uvloop"))
    parser.add_argument("port", type=int)
    parser.add_argument("--bulk", action="store_true", help="aioluasock: receive(65536) instead of lines")
    parser.add_argument("--nodelay", action="store_true", help="aioluasock: tcp-nodelay on every client")
    parser.add_argument("--split", action="store_true", help='aioluasock: reply with send(line, b"\\n")')
    parser.add_argument("--workers", type=int, default=2, help="aioluasock-workers: how many processes")
    options = parser.parse_args(argv)
    raise_nofile()
    if options.kind == "aioluasock-workers":
        return workers_server(options.loop, options.port, options.workers)
    main_coro: Coroutine[Any, Any, None]
    if options.kind == "aioluasock":
        main_coro = aioluasock_server(options.port, options.bulk, options.nodelay, options.split)
    elif options.kind == "line-protocol":
        main_coro = protocol_server(options.port, LineProtocol)
    elif options.kind == "raw-protocol":
        main_coro = protocol_server(options.port, RawProtocol)
    else:
        main_coro = streams_server(options.port)
    try:
        if options.loop == "uvloop":
            import uvloop

            uvloop.run(until_terminated(main_coro))
        else:
            asyncio.run(until_terminated(main_coro))
    except KeyboardInterrupt:
        pass
    return 0


async def until_terminated(main_coro: Coroutine[Any, Any, None]) -> None:
    """Run the server until SIGTERM, then return normally (so that a profiler
    wrapping the process writes its output)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await main_coro


if __name__ == "__main__":
    sys.exit(main())
