"""Process plumbing of the benchmark suite: building the C programs, starting
servers and the load generator pinned to their cores, reading CPU time and
memory from /proc, and naming the machine.

Every process here is started by us and stopped by its own pid; nothing is
killed by name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS_DIR = HERE / "servers"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- cores -----------------------------------------------------------------------


@functools.cache
def cores() -> tuple[set[int] | None, set[int] | None]:
    """The cores for the server and for the load generator: different ones when
    the machine has at least two, else `None` (no pinning).

    Read once per process: the runner then pins itself to the load
    generator's core, and a second reading would find one core and pin
    nothing, so that every server inherited the runner's core and shared it
    with the load generator (which every `benchmarks.run` before 2026-12-07
    did, while the server's core stood idle).
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[0]}, {available[1]}


def raise_nofile() -> None:
    """Raise the soft descriptor limit to the hard one; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _pinned(cpus: set[int] | None) -> Any:
    def setup() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return setup


# -- building the C programs -------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aioluasock-bench"


def build_c(source: Path, name: str) -> Path | None:
    """Compile `source` with the system compiler into the cache directory.

    The binary's name carries a hash of the source and flags, so an edited
    source is rebuilt and an unchanged one is not. Returns `None` when there is
    no compiler (or it fails): callers then fall back to Python.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    flags = ["-O2", "-Wall"]
    digest = hashlib.sha256(source.read_bytes() + " ".join([compiler, *flags]).encode()).hexdigest()[:12]
    target = cache_dir() / f"{name}-{digest}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".tmp{os.getpid()}")
    result = subprocess.run(
        [compiler, *flags, "-o", str(partial), str(source)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"note: building {source.name} failed:\n{result.stderr}", file=sys.stderr)
        return None
    partial.replace(target)
    return target


def loadgen_command() -> tuple[list[str], str]:
    """The load generator's command prefix and its kind ("C" or "Python fallback")."""
    binary = build_c(HERE / "loadgen.c", "loadgen")
    if binary is not None:
        return [str(binary)], "C (epoll)"
    return [sys.executable, str(HERE / "loadgen.py")], "Python fallback (asyncio)"


# -- /proc ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


# -- servers -------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server we started: its pid, port and output."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, command: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send one command line to a server started with `control=True` and
        return its one-line JSON answer."""
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError(f"server {self.name} has no control channel")
        stdin.write(command.encode() + b"\n")
        stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if ready:
                line = stdout.readline()
                if not line:
                    break
                if line.startswith(b"{"):
                    answer: dict[str, Any] = json.loads(line)
                    return answer
            elif self.process.poll() is not None:
                break
        raise RuntimeError(f"server {self.name} did not answer {command!r} (exit {self.process.poll()})")

    def stop(self) -> None:
        """Terminate this one process (by its pid) and reap it."""
        if self.process.stdin is not None:
            # A server with a control channel ends at the end of its stdin.
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_server(
    name: str, argv: Sequence[str], cpus: set[int] | None, timeout: float = 20.0, *, control: bool = False
) -> ServerProcess:
    """Start a server pinned to `cpus` and wait for its "READY <port>" line.

    With `control`, the server's stdin is a pipe for `ServerProcess.ask`
    (its stdout carries the answers).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if control else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if os.environ.get("BENCH_SERVER_STDERR") is None else None,
        preexec_fn=_pinned(cpus),  # noqa: PLW1509  # the runner is single-threaded
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            match = re.match(rb"READY (\d+)", line)
            if match:
                return ServerProcess(name, process, int(match.group(1)))
        elif process.poll() is not None:
            break
    server = ServerProcess(name, process, 0)
    server.stop()
    raise RuntimeError(f"server {name} did not print READY (last line {line!r}, exit {process.returncode})")


def prime(port: int, connections: int = 2, line_size: int = 64) -> None:
    """Open and close a few short connections, each with one echo: a fresh
    stock-asyncio server is slow until its first connection closes (glibc's
    mmap threshold; PERF-NOTES.md). A server that echoes 64 KiB blocks needs a
    line of `line_size` 65536."""
    import socket

    line = b"p" * (line_size - 1) + b"\n"
    for _ in range(connections):
        with socket.create_connection((HOST, port), timeout=10) as conn:
            conn.sendall(line)
            received = 0
            while received < len(line):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += len(chunk)


# -- the load generator --------------------------------------------------------------


@dataclass
class LoadResult:
    """One load generator run, with the server's CPU over the measured window
    and its resident memory at the window's end."""

    data: dict[str, Any]
    server_cpu: float = float("nan")  # CPU seconds per second (1.0 = one core busy)
    server_rss_end: int = 0  # bytes, read when the load generator printed "END"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children (a supervisor and its
    worker processes)."""
    total = cpu_seconds(pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def run_load(
    loadgen: Sequence[str],
    mode: str,
    server: ServerProcess,
    cpus: set[int] | None,
    options: dict[str, int | float],
    *,
    timeout: float,
    cpu: Callable[[int], float] = cpu_seconds,
) -> LoadResult:
    """Run one load generator scenario against `server` (`cpu(pid)` reads
    the server's CPU seconds: `tree_cpu_seconds` for a server with workers)."""
    argv = [*loadgen, mode, HOST, str(server.port), *(f"{key}={value}" for key, value in options.items())]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_pinned(cpus),  # noqa: PLW1509
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + timeout
    cpu_start = cpu_end = float("nan")
    rss_end = 0
    start_time = end_time = 0.0
    result: dict[str, Any] | None = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("START"):
                cpu_start, start_time = cpu(server.pid), time.monotonic()
            elif line.startswith("END"):
                cpu_end, end_time = cpu(server.pid), time.monotonic()
                rss_end = rss_bytes(server.pid)
            elif line.startswith("{"):
                result = json.loads(line)
        else:
            process.kill()
            return LoadResult({}, error=f"timed out after {timeout:.0f} s")
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    if result is None:
        return LoadResult(
            {}, error=f"load generator failed (exit {process.returncode}): {stderr.strip()[-300:]}"
        )
    load = LoadResult(result, server_rss_end=rss_end)
    if end_time > start_time:
        load.server_cpu = (cpu_end - cpu_start) / (end_time - start_time)
    if result.get("errors"):
        load.error = f"{result['errors']} connection errors"
    return load


@contextlib.contextmanager
def idle_connections(
    loadgen: Sequence[str],
    server: ServerProcess,
    cpus: set[int] | None,
    count: int,
    timeout: float = 120.0,
    *,
    mode: str = "idle",
    options: dict[str, int | float] | None = None,
    summary: dict[str, Any] | None = None,
) -> Iterator[int]:
    """Hold `count` connections to `server` (one echo each) while the block
    runs; yields how many were established.

    Mode "idle" holds them silent; "slow" makes each send one byte every
    `options["interval"]` seconds. The load generator's final JSON line (its
    errors, bytes sent and echoed) is stored into `summary` when given.
    """
    extra = [f"{key}={value}" for key, value in (options or {}).items()]
    process = subprocess.Popen(
        [*loadgen, mode, HOST, str(server.port), f"conns={count}", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pinned(cpus),  # noqa: PLW1509
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        deadline = time.monotonic() + timeout
        established = -1
        while time.monotonic() < deadline and process.poll() is None:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline()
                if line.startswith("IDLE"):
                    established = int(line.split()[1])
                    break
                if not line:
                    break
        if established < 0:
            raise RuntimeError("the load generator did not establish its idle connections")
        yield established
    finally:
        try:
            # (communicate closes stdin: the end of file that releases the connections)
            final, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            final, _ = process.communicate()
        if summary is not None:
            for line in final.splitlines():
                if line.startswith("{"):
                    summary.update(json.loads(line))


# -- the machine -----------------------------------------------------------------------


def _version_of(argv: Sequence[str]) -> str | None:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text and result.returncode == 0 else None


def machine_info(loadgen_kind: str) -> dict[str, Any]:
    """Name the machine, the loops, Python and the packages of this run."""
    from importlib import metadata

    def package(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = _version_of(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _version_of(["git", "-C", str(ROOT), "status", "--porcelain", "--", "aioluasock"])
    import aioluasock

    lua = shutil.which("lua5.4")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "aioluasock": aioluasock.__version__,
        # The servers are subprocesses with this environment: the same implementation.
        "implementation": aioluasock.IMPLEMENTATION,
        "git": (commit or "?") + (" (working tree changes in aioluasock/)" if dirty else ""),
        "uvloop": package("uvloop"),
        "libuv": _libuv_version(),
        "lupa": package("lupa"),
        "lua": _version_of([lua, "-v"]) if lua else None,
        "luasocket": _version_of([lua, "-e", "io.write(require('socket')._VERSION)"]) if lua else None,
        "copas": _copas_version(lua) if lua else None,
        "cc": _version_of([os.environ.get("CC") or "cc", "--version"]),
        "loadgen": loadgen_kind,
    }


def _libuv_version() -> str | None:
    try:
        import uvloop.loop
    except ImportError:
        return None
    version: object = getattr(uvloop.loop, "libuv_get_version", lambda: None)()
    if isinstance(version, int):
        return f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}"
    return None


def _copas_version(lua: str) -> str | None:
    script = (SERVERS_DIR / "copas_echo.lua").read_text().split("local socket", 1)[0]
    # (the script starts with a comment: "--..." as an argument would read as an option)
    return _version_of([lua, "-e", "local _\n" + script + "io.write(require('copas')._VERSION)"])
