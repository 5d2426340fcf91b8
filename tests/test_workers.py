"""`run_workers()` and ``--serve --workers``: worker processes sharing one port
under a supervisor that replaces the dead and stops them all on a signal.

The supervisors run as subprocesses in their own session (they handle
SIGINT and SIGTERM); every wait has a deadline and the whole process group
is killed in a `finally`, so a failing test leaves no process behind. The
workers' loop (asyncio or uvloop) is the parameter.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioluasock

APP = Path(__file__).with_name("workers_app.py")
LOCAL = "127.0.0.1"
LOOPS = ["asyncio", "uvloop"]


class Supervised:
    """A supervisor subprocess in its own process group, read line by line."""

    def __init__(self, argv: list[str], stderr: Path) -> None:
        self.stderr_path = stderr
        self._stderr = stderr.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._out = self.process.stdout
        os.set_blocking(self._out.fileno(), False)
        self.output = b""
        self._seen = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self, timeout: float) -> bool:
        with selectors.DefaultSelector() as selector:
            selector.register(self._out, selectors.EVENT_READ)
            if not selector.select(timeout):
                return True
        chunk = self._out.read()
        if not chunk:
            return False
        self.output += chunk
        return True

    def expect(self, pattern: bytes, timeout: float = 30.0) -> re.Match[bytes]:
        """The first match of `pattern` in the output after the previous match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.output, self._seen)
            if found is not None:
                self._seen = found.end()
                return found
            if time.monotonic() > deadline or not self._read(min(0.2, max(0.0, deadline - time.monotonic()))):
                raise AssertionError(f"no {pattern!r} in {self.output!r}; stderr: {self.errors()}")

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the exit, reading the rest of the output."""
        status = self.process.wait(timeout)
        while self._read(0.1):
            pass
        return status

    def errors(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._out.close()
        self._stderr.close()


@contextlib.contextmanager
def supervised(argv: list[str], tmp_path: Path) -> Iterator[Supervised]:
    supervisor = Supervised(argv, tmp_path / "stderr")
    try:
        yield supervisor
    finally:
        supervisor.close()


def group_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition: object, timeout: float = 20.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.02)


def served_by(port: int) -> tuple[socket.socket, int]:
    """Connect; the app's first line is the pid of the worker that took us."""
    conn = socket.create_connection((LOCAL, port), timeout=10)
    pid = b""
    while not pid.endswith(b"\n"):
        chunk = conn.recv(100)
        assert chunk, "the worker closed the connection before saying its pid"
        pid += chunk
    return conn, int(pid)


def echoes(conn: socket.socket, line: bytes) -> bool:
    conn.sendall(line + b"\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = conn.recv(100)
        if not chunk:
            return False
        got += chunk
    return got == line + b"\n"


def ended(conn: socket.socket) -> bool:
    """The server's end is gone: end of stream or reset."""
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("loop", LOOPS)
def test_workers_share_the_port_a_killed_one_is_replaced_and_sigterm_stops_all(
    loop: str, tmp_path: Path
) -> None:
    with supervised([sys.executable, str(APP), loop, "2", "0.5"], tmp_path) as supervisor:
        port = int(supervisor.expect(rb"READY (\d+)").group(1))
        first = {int(m) for m in re.findall(rb"LOG worker (\d+) serving", supervisor.output)}
        assert len(first) == 2
        held: list[tuple[socket.socket, int]] = []
        try:
            # SO_REUSEPORT hashes each connection's addresses: 40 connections
            # all going to one of two workers would be a 1-in-2^39 chance.
            held = [served_by(port) for _ in range(40)]
            assert {pid for _, pid in held} == first
            assert all(echoes(conn, b"line %d" % n) for n, (conn, _) in enumerate(held))
            assert set(group_members(supervisor.pid)) >= first | {supervisor.pid}

            victim, survivor = sorted(first)
            os.kill(victim, signal.SIGKILL)
            supervisor.expect(rb"LOG worker %d died \(killed by SIGKILL\)" % victim)
            replacement = int(supervisor.expect(rb"LOG worker (\d+) serving").group(1))
            assert replacement not in first
            assert not running(victim)  # reaped by the supervisor
            for conn, pid in held:
                if pid == victim:
                    assert ended(conn)
                else:
                    assert echoes(conn, b"still here")
            # The port was served all along, and the new worker takes its share.
            seen: set[int] = set()
            deadline = time.monotonic() + 20
            while seen != {survivor, replacement}:
                assert time.monotonic() < deadline, seen
                conn, pid = served_by(port)
                held.append((conn, pid))
                seen.add(pid)

            os.kill(supervisor.pid, signal.SIGTERM)
            assert supervisor.finish(30) == 0, supervisor.errors()
            # The connections still open were closed after the grace period.
            assert all(ended(conn) for conn, pid in held if pid != victim)
        finally:
            for conn, _ in held:
                conn.close()
        output = supervisor.output.decode()
        assert "LOG SIGTERM: stopping 2 workers (grace 0.5 s)" in output
        assert f"LOG worker {survivor} stopped: served " in output
        assert f"LOG worker {replacement} stopped: served " in output
        assert "DONE (1, None)" in output
        assert "Traceback" not in supervisor.errors()
        # No orphan: multiprocessing's resource tracker, the last, ends with us.
        wait_for(lambda: group_members(supervisor.pid) == [], 10)


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    with supervised([sys.executable, str(APP), "asyncio", "2", "0.2"], tmp_path) as supervisor:
        port = int(supervisor.expect(rb"READY (\d+)").group(1))
        workers = {int(m) for m in re.findall(rb"LOG worker (\d+) serving", supervisor.output)}
        conn, pid = served_by(port)
        with conn:
            assert pid in workers
            os.kill(supervisor.pid, signal.SIGKILL)
            supervisor.finish(10)
            # Each worker sees its parent go, closes gracefully and exits.
            wait_for(lambda: not any(running(pid) for pid in workers))
            assert ended(conn)
        # (multiprocessing's resource tracker, ours too, ends once they have.)
        wait_for(lambda: group_members(supervisor.pid) == [])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_command_line_serves_with_workers_until_a_signal(signum: int, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "aioluasock", "--serve", "127.0.0.1:0", "--workers", "2", "--grace", "0.2"]
    with supervised([*argv, "--loop", "uvloop"], tmp_path) as supervisor:
        port = int(supervisor.expect(rb"echo server on 127\.0\.0\.1:(\d+), 2 workers").group(1))
        for n in range(20):
            with socket.create_connection((LOCAL, port), timeout=10) as conn:
                assert echoes(conn, b"hello %d" % n)
        os.kill(supervisor.pid, signum)
        assert supervisor.finish(30) == 0, supervisor.errors()
        output = supervisor.output.decode()
        assert f"{signal.Signals(signum).name}: stopping 2 workers" in output
        served = [int(n) for n in re.findall(r"worker \d+ stopped: served (\d+) clients", output)]
        assert len(served) == 2 and sum(served) == 20
        assert "Traceback" not in supervisor.errors()
        wait_for(lambda: group_members(supervisor.pid) == [], 10)


async def _module_level_echo(client: aioluasock.Client) -> None:
    await client.send(b"hi\n")


def test_misuse_and_bind_failure() -> None:
    async def nested(client: aioluasock.Client) -> None:
        client.close()

    with pytest.raises(TypeError, match="importable by name"):
        aioluasock.run_workers(nested, LOCAL, 0, workers=1)
    with pytest.raises(TypeError, match="handler"):
        aioluasock.run_workers("echo", LOCAL, 0, workers=1)  # type: ignore[arg-type]
    for bad in ({"workers": 0}, {"workers": 1, "loop": "trio"}, {"workers": 1, "grace": -1.0}):
        with pytest.raises(ValueError):
            aioluasock.run_workers(_module_level_echo, LOCAL, 0, **bad)
    with pytest.raises(ValueError, match="port out of range"):
        aioluasock.run_workers(_module_level_echo, LOCAL, 70000, workers=1)
    with pytest.raises(TypeError, match="backlog"):
        aioluasock.run_workers(_module_level_echo, LOCAL, 0, workers=1, backlog=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_clients"):
        aioluasock.run_workers(_module_level_echo, LOCAL, 0, workers=1, max_clients=0)
    with socket.socket() as taken:  # a listener without SO_REUSEPORT owns the port
        taken.bind((LOCAL, 0))
        taken.listen()
        assert aioluasock.run_workers(_module_level_echo, LOCAL, taken.getsockname()[1], workers=1) == (
            None,
            "address already in use",
        )
    raised: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            aioluasock.run_workers(_module_level_echo, LOCAL, 0, workers=1)
        except RuntimeError as exc:
            raised.append(exc)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert len(raised) == 1 and "main thread" in str(raised[0])


def test_a_worker_that_cannot_start_stops_everything(capfd: pytest.CaptureFixture[str]) -> None:
    # Picklable here, but the workers cannot import its module: they die
    # before listening, and restarting them would fail the same way.
    ghost = types.ModuleType("aioluasock_test_ghost")
    exec("async def handler(client):\n    pass\n", ghost.__dict__)
    sys.modules[ghost.__name__] = ghost
    try:
        result = aioluasock.run_workers(ghost.handler, LOCAL, 0, workers=2)
    finally:
        del sys.modules[ghost.__name__]
    assert result == (None, "a worker failed to start (exit code 1)")
    assert "aioluasock_test_ghost" in capfd.readouterr().err
