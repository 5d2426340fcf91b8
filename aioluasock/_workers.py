"""`run_workers()`: `serve()` on every core, one process and one loop per worker.

A supervisor process binds the port first (so that port 0 becomes a real
port, and the port stays ours while workers come and go), then starts the
workers with multiprocessing's *spawn* context: each is a fresh interpreter
that runs its own loop (asyncio's or uvloop's) and its own `serve()` on the
same address with SO_REUSEPORT, so the kernel spreads new connections over
the workers' listening sockets. The supervisor restarts a worker that dies,
and on SIGINT or SIGTERM stops them all gracefully.

Why *spawn*, not *fork*: the caller's process may hold threads, a running
loop or open connections that a forked child would inherit half-alive; a
spawned worker starts clean and imports the handler by name (as a
multiprocessing target, or uvicorn's "module:app" with workers). Why a
supervisor at all, rather than N independent `serve()` processes: someone
has to restart a crashed worker, own the port while none listens, and turn
one Ctrl-C into one orderly shutdown.

The supervisor's own socket is bound but never listens: on Linux a TCP
socket joins the SO_REUSEPORT group that receives connections only when it
listens, so it takes none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, TypeVar

from ._addresses import public_address, public_port
from ._errors import os_error_text
from ._serve import _CANCEL_WAIT, Handler, logger, serve
from ._tcp import Client

__all__ = ["run_workers"]

T = TypeVar("T")

LOOPS: Final = ("asyncio", "uvloop")

_BOOT_FAILED: Final = 3
"""A worker's exit status when `serve()` failed in it: the supervisor stops
everything instead of restarting it (as gunicorn's WORKER_BOOT_ERROR)."""
_RESTART_DELAY: Final = 0.05
"""Seconds before a dead worker is replaced; doubled for each worker in a row
that died within `_QUICK_DEATH` of starting, up to `_RESTART_MAX`, so that
a handler that crashes its process at once does not make a fork bomb."""
_RESTART_MAX: Final = 5.0
_QUICK_DEATH: Final = 1.0
_KILL_MARGIN: Final = 5.0
"""Seconds past the grace period (and `serve()`'s cancel wait) that a worker
gets to exit after SIGTERM before the supervisor kills it."""
_AGAIN: Final = 1.0
"""A second SIGINT or SIGTERM kills the workers at once, if it comes this
many seconds after the first: one event often sends two (`timeout` signals
its child and then the child's process group; a terminal's Ctrl-C reaches
every process of the group)."""
_BOOT_TIMEOUT: Final = 60.0
"""Seconds a worker of the first round gets to start listening."""

_FORWARDED: Final = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class _Spec:
    """What a worker needs to run its `serve()` (pickled to it)."""

    handler: Handler
    host: str
    port: int
    loop: str
    grace: float
    backlog: int
    max_clients: int | None


def run_on(loop_name: str, main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on a new loop of the named kind ("asyncio" or "uvloop")."""
    if loop_name == "uvloop":
        import uvloop

        runner: Callable[[Coroutine[Any, Any, T]], T] = uvloop.run
        return runner(main)
    return asyncio.run(main)


# -- the worker ---------------------------------------------------------------------


def _send(conn: Connection, message: tuple[object, ...]) -> None:
    with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
        conn.send(message)


def _worker_main(spec: _Spec, conn: Connection) -> None:
    """A worker process: serve until SIGTERM, SIGINT or the supervisor's death."""
    status = run_on(spec.loop, _worker(spec, conn))
    conn.close()
    if status:
        raise SystemExit(status)


async def _worker(spec: _Spec, conn: Connection) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in _FORWARDED:
        loop.add_signal_handler(signum, stop.set)
    # The supervisor started us with SIGINT blocked (see `_Supervisor._start`):
    # a Ctrl-C during our start-up is delivered now, to the handler above.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    parent = multiprocessing.parent_process()
    watched = -1
    if parent is not None and parent.sentinel is not None:
        # Readable once the supervisor is gone (even killed by SIGKILL): stop
        # then, rather than serve on as an orphan nobody can stop.
        watched = parent.sentinel
        loop.add_reader(watched, stop.set)
    served = 0

    async def counted(client: Client) -> None:
        nonlocal served
        served += 1
        await spec.handler(client)

    try:
        service, err = await serve(
            counted,
            spec.host,
            spec.port,
            backlog=spec.backlog,
            max_clients=spec.max_clients,
            reuse_port=True,
        )
        if service is None:
            _send(conn, ("error", err))
            return _BOOT_FAILED
        _send(conn, ("ready", os.getpid()))
        try:
            await stop.wait()
        finally:
            await service.close(grace=spec.grace)
        _send(conn, ("stopped", served))
        return 0
    finally:
        if watched >= 0:
            loop.remove_reader(watched)
        for signum in _FORWARDED:
            loop.remove_signal_handler(signum)


# -- the supervisor -------------------------------------------------------------------


class _Slot:
    """One worker place: the process in it now and its restart bookkeeping."""

    __slots__ = ("conn", "failures", "number", "process", "ready", "restart_at", "started")

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready = False
        self.started = 0.0
        self.failures = 0  # quick deaths in a row
        self.restart_at: float | None = None


def _reserve(host: str, port: int | str) -> tuple[socket.socket, str, int] | str:
    """Bind (without listening) a SO_REUSEPORT socket on the address `serve()`
    would pick: `(socket, numeric ip, port)` or the error text."""
    try:
        infos = socket.getaddrinfo("0.0.0.0" if host == "*" else host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return os_error_text(exc)
    err = "no info on address"
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            err = os_error_text(exc)
            continue
        bound = sock.getsockname()
        return sock, str(bound[0]), int(bound[1])
    return err


class _Supervisor:
    def __init__(
        self, spec: _Spec, count: int, ready: Callable[[str, int], object] | None, wake: int
    ) -> None:
        self.spec = spec
        self.ready_callback = ready
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(number) for number in range(count)]
        self.wake = wake
        self.signals: list[int] = []
        self.announced = False
        self.stopping_since: float | None = None
        self.killed = False
        self.error: str | None = None

    # starting and stopping workers

    def _start(self, slot: _Slot) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main,
            args=(self.spec, writer),
            name=f"aioluasock worker {slot.number}",
        )
        # SIGINT stays blocked in the new process until its loop handles it:
        # a Ctrl-C (sent to the whole process group) while the worker imports
        # would otherwise end it with a KeyboardInterrupt traceback. The mask
        # survives exec; the disposition (our Python handler) does not.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        writer.close()  # the worker's copy is the only one: EOF when it dies
        slot.process, slot.conn, slot.ready = process, reader, False
        slot.started, slot.restart_at = time.monotonic(), None

    def _signal_workers(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None and slot.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)

    def stop(self) -> None:
        """Begin the graceful shutdown: SIGTERM to every worker, none restarted."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            for slot in self.slots:
                slot.restart_at = None
            self._signal_workers(signal.SIGTERM)

    # the loop

    def run(self) -> None:
        for slot in self.slots:
            self._start(slot)
        boot_deadline = time.monotonic() + _BOOT_TIMEOUT
        while True:
            now = time.monotonic()
            live = [slot for slot in self.slots if slot.process is not None]
            if self.stopping_since is not None and not live:
                return
            waits = [now + 1.0]
            waits += [slot.restart_at for slot in self.slots if slot.restart_at is not None]
            ready = multiprocessing.connection.wait(
                [self.wake]
                + [slot.conn for slot in live if slot.conn is not None]
                + [slot.process.sentinel for slot in live if slot.process is not None],
                timeout=max(0.0, min(waits) - now),
            )
            if self.wake in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake, 512)
            self._take_signals()
            for slot in live:
                self._read(slot)
                assert slot.process is not None
                if slot.process.sentinel in ready or not slot.process.is_alive():
                    self._reap(slot)
            now = time.monotonic()
            if self.stopping_since is None:
                if not self.announced and now > boot_deadline:
                    self.error = f"the workers did not start listening within {_BOOT_TIMEOUT:g} s"
                    self.stop()
                for slot in self.slots:
                    if slot.restart_at is not None and now >= slot.restart_at:
                        self._start(slot)
            elif (
                not self.killed and now > self.stopping_since + self.spec.grace + _CANCEL_WAIT + _KILL_MARGIN
            ):
                logger.warning(
                    "workers still running %.0f s after SIGTERM: killing them", now - self.stopping_since
                )
                self.killed = True
                self._signal_workers(signal.SIGKILL)

    def _take_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name
            if self.stopping_since is None:
                logger.info(
                    "%s: stopping %d workers (grace %g s)",
                    name,
                    sum(slot.process is not None for slot in self.slots),
                    self.spec.grace,
                )
                self.stop()
            elif not self.killed and time.monotonic() > self.stopping_since + _AGAIN:
                logger.warning("%s again: killing the workers", name)
                self.killed = True
                self._signal_workers(signal.SIGKILL)

    def _read(self, slot: _Slot) -> None:
        conn = slot.conn
        if conn is None:
            return
        try:
            while conn.poll():
                kind, value = conn.recv()
                pid = slot.process.pid if slot.process is not None else None
                if kind == "ready":
                    slot.ready = True
                    logger.info("worker %s serving on %s:%d", pid, self.spec.host, self.spec.port)
                    self._announce()
                elif kind == "error":
                    if self.error is None:
                        self.error = str(value)
                    logger.error("worker %s could not serve: %s", pid, value)
                    self.stop()
                elif kind == "stopped":
                    logger.info("worker %s stopped: served %d clients", pid, value)
        except (EOFError, OSError):
            conn.close()
            slot.conn = None

    def _announce(self) -> None:
        if not self.announced and all(slot.ready for slot in self.slots):
            self.announced = True
            if self.ready_callback is not None:
                self.ready_callback(self.spec.host, self.spec.port)

    def _reap(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        process.join()
        self._read(slot)  # its last words ("stopped") may have come with its end
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        pid, exitcode = process.pid, process.exitcode
        process.close()
        slot.process = None
        if exitcode is not None and exitcode < 0:
            code = f"killed by {signal.Signals(-exitcode).name}"
        else:
            code = f"exit code {exitcode}"
        if self.stopping_since is not None:
            return
        if not self.announced and not slot.ready:
            # Never served in the first round: an import error, say. Restarting
            # would fail the same way.
            if self.error is None:
                self.error = f"a worker failed to start ({code})"
            logger.error("worker %s failed to start (%s)", pid, code)
            self.stop()
            return
        lived = time.monotonic() - slot.started
        slot.failures = slot.failures + 1 if lived < _QUICK_DEATH else 0
        delay = min(_RESTART_MAX, _RESTART_DELAY * 2 ** max(0, slot.failures - 1))
        slot.restart_at = time.monotonic() + delay
        logger.warning("worker %s died (%s): starting another in %.2f s", pid, code, delay)


def run_workers(
    handler: Handler,
    host: str,
    port: int | str,
    *,
    workers: int,
    loop: str = "asyncio",
    grace: float = 10.0,
    backlog: int = 128,
    max_clients: int | None = None,
    ready: Callable[[str, int], object] | None = None,
) -> tuple[int, None] | tuple[None, str]:
    """Serve `handler` from `workers` processes sharing one port, until SIGINT or SIGTERM.

    A blocking call for a program's main thread (it handles SIGINT and
    SIGTERM), not a coroutine: `serve()` runs inside the caller's loop,
    while this starts `workers` new processes, each with its own loop and
    its own `serve(handler, host, port, reuse_port=True)`. The kernel spreads
    new connections over the workers (SO_REUSEPORT hashes each connection's
    addresses); a connection stays with the worker that accepted it.

    A worker that dies (a crash, SIGKILL, out of memory) is replaced at once
    (later and later when replacements keep dying within a second); the
    connections it held, and those waiting in its accept queue, are lost,
    as with any process that dies. On SIGINT or SIGTERM every worker stops
    accepting, gives its handlers `grace` seconds, closes the rest (their
    calls return "closed") and exits; a second signal (a second or more
    after the first) kills the workers at once. Progress is logged to the ``aioluasock.serve`` logger at INFO
    level (workers serving, stopped, died).

    The workers are started with multiprocessing's "spawn" method: `handler`
    must be importable by name (a module-level async function; in a script,
    start it under ``if __name__ == "__main__":``), as for any
    multiprocessing target. Each worker starts with a fresh interpreter, so
    set up what the handler needs (logging, TLS contexts, connections to
    other services) at module level or lazily inside the handler.

    Args:
        handler: an async function taking a `Client`, importable by name.
        host, port: as `serve()` takes them; port 0 picks a free port for
            all workers (`ready` receives it).
        workers: how many worker processes (usually the number of cores).
        loop: "asyncio" or "uvloop", for every worker.
        grace: on shutdown, seconds the handlers get to finish (as
            `Service.close`).
        backlog: each worker's listen backlog.
        max_clients: at most this many handlers at once in each worker.
        ready: called in this process with `(ip, port)` once every worker
            of the first round listens.

    Returns:
        `(1, None)` after a shutdown by signal; `(None, err)` when the port
        could not be bound ("address already in use", resolver texts...) or
        the workers could not start (the worker's bind error, or "a worker
        failed to start (exit code N)" when it died before listening: its
        traceback is on stderr).

    Raises:
        TypeError: `handler` is not callable or cannot be pickled by name;
            `host`, `port` or `backlog` of the wrong type.
        ValueError: `workers` below 1, an unknown `loop`, a negative `grace`,
            `max_clients` below 1, a port out of range.
        RuntimeError: not called from the main thread, or a system without
            SO_REUSEPORT (Windows). (On Linux the kernel spreads connections
            over the workers; other systems may give them all to one.)
    """
    if not callable(handler):
        raise TypeError(f"handler must be an async function taking a Client, not {type(handler).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int of at least 1, not {workers!r}")
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {loop!r}")
    if not grace >= 0:
        raise ValueError(f"grace must be 0 or more seconds, not {grace!r}")
    if max_clients is not None and (isinstance(max_clients, bool) or max_clients < 1):
        raise ValueError(f"max_clients must be at least 1 (or None), not {max_clients!r}")
    host = public_address(host)
    port = public_port(port)
    if isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int, not {type(backlog).__name__}")
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(signal, "pthread_sigmask"):
        raise RuntimeError("run_workers needs SO_REUSEPORT and POSIX signals (Linux, BSD, macOS)")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_workers handles SIGINT and SIGTERM: call it from the main thread")
    try:
        pickle.dumps(handler)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise TypeError(
            f"handler {handler!r} cannot be sent to worker processes: it must be importable "
            f"by name (a module-level async function), not a lambda or a nested function ({exc})"
        ) from None
    reserved = _reserve(host, port)
    if isinstance(reserved, str):
        return None, reserved
    sock, ip, bound = reserved
    spec = _Spec(handler, ip, bound, loop, float(grace), backlog, max_clients)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    supervisor = _Supervisor(spec, workers, ready, wake_read)

    def on_signal(signum: int, _frame: object) -> None:
        supervisor.signals.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(wake_write, b"\0")

    previous = {signum: signal.signal(signum, on_signal) for signum in _FORWARDED}
    try:
        supervisor.run()
    finally:
        # Whatever went wrong here, no worker outlives us.
        supervisor._signal_workers(signal.SIGKILL)
        for slot in supervisor.slots:
            if slot.process is not None:
                slot.process.join()
                slot.process.close()
            if slot.conn is not None:
                slot.conn.close()
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
        os.close(wake_read)
        os.close(wake_write)
        sock.close()
    if supervisor.error is not None:
        return None, supervisor.error
    return 1, None
