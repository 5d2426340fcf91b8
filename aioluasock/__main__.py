"""The command line: a live demo of the library, and the Lua bridge's runner.

``python -m aioluasock`` starts a line echo server and a crowd of concurrent
clients on loopback, all through the public API (the same calls a LuaSocket
program makes: `bind`, `accept`, `connect`, `receive("*l")`, `send`), shows
progress while they run and prints a summary. ``--serve HOST:PORT`` runs just
the server (``--workers N``: in N processes sharing the port, `run_workers`).
``python -m aioluasock run SCRIPT.lua [ARGS...]`` runs a LuaSocket
Lua script on the asyncio loop (see `aioluasock.lua`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import resource
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import aioluasock as socket

T = TypeVar("T")

_LOOPS = ("asyncio", "uvloop")
_SHUTDOWN_GRACE = 5.0
"""Seconds the clients' handlers get to end on their own after SIGINT/SIGTERM."""


@dataclass
class _Stats:
    """Counters shared by the server, the clients and the progress display."""

    connections: int = 0
    open_connections: int = 0
    lines_served: int = 0
    lines_echoed: int = 0
    clients_done: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


async def _handle(client: socket.Client, stats: _Stats) -> None:
    """Echo lines until the peer goes away: the LuaSocket server idiom."""
    stats.connections += 1
    stats.open_connections += 1
    try:
        while True:
            line, err = await client.receive("*l")
            if err is not None:
                if err != "closed":
                    stats.error(f"server receive: {err}")
                return
            assert isinstance(line, bytes)
            _, err = await client.send(line + b"\n")
            if err is not None:
                if err != "closed":
                    stats.error(f"server send: {err}")
                return
            stats.lines_served += 1
    finally:
        stats.open_connections -= 1
        client.close()


async def _client(number: int, port: int, stop_at: float, stats: _Stats) -> None:
    """One client: send a line, read the echo, check it, until the deadline."""
    loop = asyncio.get_running_loop()
    client, err = await socket.connect("127.0.0.1", port)
    if client is None:
        stats.error(f"client {number} connect: {err}")
        return
    client.settimeout(10)  # a server that stops answering ends the demo, not hangs it
    try:
        sent = 0
        while loop.time() < stop_at:
            line = b"client %d says hello, line %d" % (number, sent)
            _, err = await client.send(line + b"\r\n")
            if err is not None:
                stats.error(f"client {number} send: {err}")
                return
            sent += 1
            echo, err = await client.receive("*l")
            if err is not None:
                stats.error(f"client {number} receive: {err}")
                return
            if echo != line:
                stats.error(f"client {number}: sent {line!r}, got back {echo!r}")
                return
            stats.lines_echoed += 1
        stats.clients_done += 1
    finally:
        client.close()


def _raise_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _progress(stats: _Stats, started: float, duration: float | None, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    live = out.isatty()
    last_lines, last_time = 0, started
    while True:
        await asyncio.sleep(0.25 if live else 1.0)
        now = loop.time()
        total = stats.lines_echoed or stats.lines_served
        rate = (total - last_lines) / max(now - last_time, 1e-9)
        last_lines, last_time = total, now
        left = f", {max(duration - (now - started), 0):4.1f} s left" if duration is not None else ""
        text = (
            f"{now - started:5.1f} s: {stats.open_connections} connections open, "
            f"{total} lines echoed ({rate:,.0f} lines/s){left}"
        )
        print(f"\r{text}   " if live else text, end="" if live else "\n", file=out, flush=True)


async def demo(clients: int, duration: float, loop_name: str, out: TextIO | None = None) -> int:
    """Run the echo server and `clients` clients for `duration` seconds.

    Returns:
        The exit status: 0 when every client got every line back intact.
    """
    out = out or sys.stdout
    _raise_descriptor_limit(2 * clients + 64)
    stats = _Stats()

    async def handler(client: socket.Client) -> None:
        await _handle(client, stats)

    service, err = await socket.serve(handler, "127.0.0.1", 0, backlog=max(clients, 32))
    if service is None:
        print(f"bind failed: {err}", file=sys.stderr)
        return 1
    _, port = service.getsockname()
    assert isinstance(port, int)
    print(
        f"aioluasock {socket.__version__} on {loop_name}: echo server on 127.0.0.1:{port}, "
        f"{clients} clients for {duration:g} s",
        file=out,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    progress = asyncio.create_task(_progress(stats, started, duration, out))
    try:
        crowd = [asyncio.create_task(_client(n, port, started + duration, stats)) for n in range(clients)]
        await asyncio.gather(*crowd)
        elapsed = loop.time() - started
    finally:
        progress.cancel()
        # The clients closed their ends: the handlers end on "closed".
        await service.close(grace=_SHUTDOWN_GRACE)
        await asyncio.gather(progress, return_exceptions=True)
    if out.isatty():
        print(file=out)
    print(
        f"served {stats.connections} clients ({stats.clients_done} ran to the end), "
        f"{stats.lines_echoed} lines echoed in {elapsed:.1f} s: "
        f"{stats.lines_echoed / elapsed:,.0f} lines/s on {loop_name}",
        file=out,
    )
    for text in stats.errors:
        print(f"error: {text}", file=out)
    return 0 if not stats.errors and stats.clients_done == clients else 1


async def serve_forever(
    host: str, port: int, loop_name: str, out: TextIO | None = None, grace: float = 5.0
) -> int:
    """Run only the echo server (`serve()`), until SIGINT or SIGTERM: then
    stop accepting, let the clients' handlers end on "closed", and exit 0."""
    out = out or sys.stdout
    _raise_descriptor_limit(65536)
    stats = _Stats()

    async def handler(client: socket.Client) -> None:
        await _handle(client, stats)

    service, err = await socket.serve(handler, host, port, backlog=1024)
    if service is None:
        print(f"bind {host}:{port} failed: {err}", file=sys.stderr)
        return 1
    ip, bound = service.getsockname()
    print(
        f"aioluasock {socket.__version__} on {loop_name}: echo server on {ip}:{bound}", file=out, flush=True
    )
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop(signum: int) -> None:
        if not stopping:
            print(f"\n{signal.Signals(signum).name}: shutting down", file=out, flush=True)
            stopping.append(loop.create_task(service.close(grace=grace)))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    progress = asyncio.create_task(_progress(stats, loop.time(), None, out))
    try:
        await service.serve_forever()
        if stopping:
            await stopping[0]
    finally:
        progress.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await service.close(grace=0)
    print(f"served {stats.connections} clients, {stats.lines_served} lines", file=out, flush=True)
    return 0


async def _serve_lines(client: socket.Client) -> None:
    """The echo handler of ``--serve --workers``: importable by name, as
    worker processes need it (each counts its clients itself)."""
    await _handle(client, _Stats())


def serve_workers(host: str, port: int, workers: int, loop_name: str, grace: float = 5.0) -> int:
    """Run the echo server in `workers` processes (`run_workers`) until SIGINT
    or SIGTERM, logging the workers' comings and goings to stdout."""
    _raise_descriptor_limit(65536)  # the workers inherit it
    log = logging.getLogger("aioluasock.serve")
    output = logging.StreamHandler(sys.stdout)
    output.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(output)
    log.setLevel(logging.INFO)

    def ready(ip: str, bound: int) -> None:
        print(
            f"aioluasock {socket.__version__} on {loop_name}: echo server on {ip}:{bound}, {workers} workers",
            flush=True,
        )

    # The workers import the handler by name; under ``python -m aioluasock``
    # this module is ``__main__``, which multiprocessing does not import in
    # the workers for a package's ``__main__``: name it by its package path.
    handler = importlib.import_module("aioluasock.__main__")._serve_lines
    try:
        _, err = socket.run_workers(
            handler, host, port, workers=workers, loop=loop_name, grace=grace, backlog=1024, ready=ready
        )
    finally:
        log.removeHandler(output)
    if err is not None:
        print(f"serve {host}:{port} failed: {err}", file=sys.stderr)
        return 1
    return 0


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _duration(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aioluasock",
        description=(
            "Run an aioluasock line echo server and a crowd of clients on loopback and report "
            "what they did. 'python -m aioluasock run SCRIPT.lua [ARGS...]' runs a LuaSocket Lua "
            "script on the asyncio loop instead."
        ),
    )
    parser.add_argument("--clients", type=_positive, default=500, help="concurrent clients (default 500)")
    parser.add_argument("--duration", type=_duration, default=5.0, help="seconds to run (default 5)")
    parser.add_argument(
        "--loop", choices=_LOOPS, default=None, help="event loop (default: uvloop when installed)"
    )
    parser.add_argument(
        "--serve", type=_address, metavar="HOST:PORT", help="run only the echo server, until Ctrl-C"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="--serve: N worker processes sharing the port, restarted when they die (default: one process)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="--serve: on SIGINT/SIGTERM, how long clients may stay before they are closed (default 5)",
    )
    parser.add_argument("--version", action="version", version=f"aioluasock {socket.__version__}")
    return parser


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_on(loop_name: str, main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on a new loop of the named kind."""
    if loop_name == "uvloop":
        import uvloop

        runner: Callable[[Coroutine[Any, Any, T]], T] = uvloop.run
        return runner(main)
    return asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aioluasock`` (and the ``aioluasock`` script)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from .lua import cli_main

        return cli_main(args[1:])
    options = _parser().parse_args(args)
    loop_name = options.loop or _default_loop()
    try:
        if options.serve is not None:
            host, port = options.serve
            if options.workers is not None:
                return serve_workers(host, port, options.workers, loop_name, grace=options.grace)
            return run_on(loop_name, serve_forever(host, port, loop_name, grace=options.grace))
        return run_on(loop_name, demo(options.clients, options.duration, loop_name))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
