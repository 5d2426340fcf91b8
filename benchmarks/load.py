"""Load and leak benchmarks: aioluasock's `serve` under crowds, churn, floods and slow clients.

    python -m benchmarks.load [--quick] [--loop asyncio|uvloop] [--out DIR]

Five scenarios, each on a fresh server process (benchmarks/servers/load_server.py:
`aioluasock.serve` with a control channel) pinned to one core, the C load
generator on another:

- ``crowd``: N concurrent connections echoing 64-byte lines (10,000; quick
  1,000). Every echo must come back (the load generator checks every byte and
  drains the replies still owed); reports the server's RSS growth per
  connection, measured while they all echo, and (full mode) the peak RSS of a
  second crowd on the same server.
- ``cycles``: N connect / one echo / close cycles, 8 at a time (100,000; quick
  5,000): the server's descriptors before and after, tasks left pending, cycles/s.
- ``flood``: one client pushes up to 50 MB (quick too) into a connection whose
  handler does not call `receive`: the server's RSS growth (the receive buffer
  stops reading at its high-water mark; the rest waits in the kernel), then the
  handler reads and must count every byte the kernel accepted.
- ``stalled``: one client sends lines (up to 50 MB) to the echo and never
  reads the replies: the server's RSS growth (reported: the echo's sends stop
  at the write high-water mark, its receive buffer at the read one), and the
  descriptors still held one second after the server closed the connection
  while the client keeps it open (reported; they go once it does).
- ``slow``: 2,000 slow clients (quick 200), each sending one byte every 0.5 s
  (4-byte lines, quick 2: an echo every 2 s, quick 1 s, checked), and one
  normal client's p50 and p99 echo latency without and with them (their ratio
  is reported, never asserted).

Each scenario also reports the server's descriptors and pending tasks after
its clients are gone, compared with before (the tasks running at the start,
its own accept loop included, are the known ones). Results go to
benchmarks/results/load.json (quick: load-quick.json) and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/load.py` works too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness

LOAD_SERVER = str(harness.SERVERS_DIR / "load_server.py")
LOOPS = ("asyncio", "uvloop")
MB = 1_000_000
FLOOD_RSS_BOUND = 10 * MB
"""The most the server's RSS may grow while a client floods a handler that
does not read."""
SLOW_RATIO_BOUND = 10.0
"""The loaded p99 should stay below this many times the idle p99 (reported,
never asserted: latency on a shared machine is noise)."""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    crowd: int
    crowd_duration: float
    crowd_rounds: int
    cycles: int
    flood_bytes: int
    flood_stall: float
    """Seconds without progress after which the flooding client stops trying."""
    slow_clients: int
    slow_interval: float
    slow_line: int
    """Bytes per line of a slow client (LF included): an echo every
    `slow_line * slow_interval` seconds."""
    latency_duration: float
    latency_rounds: int


FULL = Sizes(
    crowd=10_000,
    crowd_duration=3.0,
    crowd_rounds=2,
    cycles=100_000,
    flood_bytes=50 * MB,
    flood_stall=2.0,
    slow_clients=2000,
    slow_interval=0.5,
    slow_line=4,
    latency_duration=3.0,
    latency_rounds=3,
)
QUICK = Sizes(
    crowd=1000,
    crowd_duration=0.5,
    crowd_rounds=1,
    cycles=5000,
    # The whole 50 MB: it costs no time (the client stops once the kernel's
    # buffers are full), and a server that did not pause would grow by 50 MB,
    # far past the bound, not by about the bound.
    flood_bytes=50 * MB,
    flood_stall=0.5,
    slow_clients=200,
    slow_interval=0.5,
    slow_line=2,
    latency_duration=0.5,
    latency_rounds=1,
)


class Context:
    """What every scenario needs: the load generator and the cores."""

    def __init__(self, loadgen: Sequence[str]) -> None:
        self.loadgen = list(loadgen)
        self.server_cpus, self.load_cpus = harness.cores()

    def start(self, loop: str, handler: str) -> harness.ServerProcess:
        return harness.start_server(
            f"load-{handler}-{loop}",
            [sys.executable, LOAD_SERVER, loop, handler, "0"],
            self.server_cpus,
            control=True,
        )


def _leaks(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The leak facts of one scenario from the server's stats before and after."""
    return {
        "fds_before": before["fds"],
        "fds_after": after["fds"],
        "rss_after": after["rss"],
        "clients_after": after["clients"],
        "pending_tasks": after["pending"],
    }


def _per_op(cpu: float, rate: float | None) -> float:
    """Server CPU microseconds per operation: steadier than the rate on a
    shared machine, where the server gets only part of its core."""
    return cpu / rate * 1e6 if rate else math.nan


def crowd(ctx: Context, loop: str, sizes: Sizes) -> dict[str, Any]:
    """N connections echoing at once: every echo back, RSS per connection.

    With several rounds, each is a new crowd on the same server: its peak RSS
    against the first one's tells memory the allocator keeps for reuse (flat)
    from memory lost per connection (growing)."""
    server = ctx.start(loop, "echo")
    loads: list[harness.LoadResult] = []
    try:
        harness.prime(server.port)
        before = server.ask("mark 10", timeout=20)
        for _ in range(sizes.crowd_rounds):
            loads.append(
                harness.run_load(
                    ctx.loadgen,
                    "pingpong",
                    server,
                    ctx.load_cpus,
                    {
                        "conns": sizes.crowd,
                        "size": 64,
                        "duration": sizes.crowd_duration,
                        "warmup": 0.2,
                        "drain": 10,
                    },
                    timeout=120 + sizes.crowd_duration,
                )
            )
            after = server.ask("settle 30", timeout=40)
    finally:
        server.stop()
    first = loads[0]
    data = first.data
    established = min(int(load.data.get("established", 0)) for load in loads)
    rss_growth = first.server_rss_end - before["rss"]

    def total(key: str) -> int | None:
        values = [load.data.get(key) for load in loads]
        return None if None in values else sum(int(value) for value in values if value is not None)

    return {
        "connections": sizes.crowd,
        "rounds": sizes.crowd_rounds,
        "established": established,
        "requests": total("requests"),
        "replies": total("replies"),
        "unanswered": total("unanswered"),
        "echo_errors": total("errors"),
        "echoes_per_s": data.get("rate"),
        "server_cpu": first.server_cpu,
        "server_cpu_us_per_echo": _per_op(first.server_cpu, data.get("rate")),
        "loadgen_cpu": data.get("loadgen_cpu"),
        "p99_us": data.get("p99_us"),
        "rss_before": before["rss"],
        "rss_loaded": first.server_rss_end,
        "rss_loaded_rounds": [load.server_rss_end for load in loads],
        "rss_per_conn": rss_growth / established if established else math.nan,
        "error": "; ".join(load.error for load in loads if load.error) or None,
        **_leaks(before, after),
    }


def cycles(ctx: Context, loop: str, sizes: Sizes) -> dict[str, Any]:
    """N connect/echo/close cycles: descriptors and tasks do not grow."""
    server = ctx.start(loop, "echo")
    try:
        harness.prime(server.port)
        before = server.ask("mark 10", timeout=20)
        load = harness.run_load(
            ctx.loadgen,
            "connrate",
            server,
            ctx.load_cpus,
            # `count` ends the run; the duration is only a ceiling (100 cycles/s)
            {"conns": 8, "size": 64, "warmup": 0, "count": sizes.cycles, "duration": sizes.cycles / 100},
            timeout=60 + sizes.cycles / 100,
        )
        after = server.ask("settle 30", timeout=40)
    finally:
        server.stop()
    data = load.data
    return {
        "cycles": data.get("count"),
        "cycles_per_s": data.get("rate"),
        "server_cpu": load.server_cpu,
        "server_cpu_us_per_cycle": _per_op(load.server_cpu, data.get("rate")),
        "loadgen_cpu": data.get("loadgen_cpu"),
        "rss_before": before["rss"],
        "echo_errors": data.get("errors"),
        "connect_errors": data.get("connect_errors"),
        "handled": after["handled"] - before["handled"],
        "error": load.error,
        **_leaks(before, after),
    }


def _flood(port: int, total: int, stall: float, line: bytes | None = None) -> tuple[socket.socket, int]:
    """Send up to `total` bytes on a new connection without reading; stop when
    `stall` seconds pass without progress. Returns the socket (still open) and
    how many bytes the kernel accepted. The bytes are 256-byte lines (`line`)
    or, by default, every byte value in turn."""
    conn = socket.create_connection((harness.HOST, port), timeout=10)
    conn.setblocking(False)
    block = (line or bytes(range(256))) * 4096  # 1 MiB
    sent = 0
    while sent < total:
        _, writable, _ = select.select([], [conn], [], stall)
        if not writable:
            break
        try:
            sent += conn.send(block[: total - sent])
        except BlockingIOError:
            continue
    return conn, sent


def _wait_clients(server: harness.ServerProcess, count: int, limit: float = 10.0) -> None:
    """Wait until `count` handlers run (their connections were accepted)."""
    deadline = time.monotonic() + limit
    while server.ask("stats")["clients"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not accept {count} connections")
        time.sleep(0.02)


def flood(ctx: Context, loop: str, sizes: Sizes) -> dict[str, Any]:
    """A flood nobody reads: the server's RSS stays bounded, no byte is lost."""
    server = ctx.start(loop, "sink")
    try:
        # Priming: two short connections whose handlers read once released.
        for _ in range(2):
            with socket.create_connection((harness.HOST, server.port), timeout=10) as conn:
                conn.sendall(b"p" * 64)
        _wait_clients(server, 2)  # (a handler started after `release` would wait for the next one)
        server.ask("release")
        primed = server.ask("settle 10", timeout=20)
        if primed["clients"] or primed["received"] != 128:
            raise RuntimeError(f"the sink's priming connections did not end as expected: {primed}")
    except BaseException:
        server.stop()
        raise
    try:
        before = server.ask("mark 10", timeout=20)
        started = time.monotonic()
        conn, sent = _flood(server.port, sizes.flood_bytes, sizes.flood_stall)
        seconds = time.monotonic() - started
        try:
            time.sleep(0.3)
            loaded = server.ask("stats")
            conn.shutdown(socket.SHUT_WR)
            _wait_clients(server, 1)
            server.ask("release")
            after = server.ask("settle 30", timeout=40)
        finally:
            conn.close()
    finally:
        server.stop()
    return {
        "flood_bytes": sizes.flood_bytes,
        "accepted_bytes": sent,
        "seconds": seconds,
        "rss_before": before["rss"],
        "rss_flooded": loaded["rss"],
        "rss_growth": loaded["rss"] - before["rss"],
        "rss_bound": FLOOD_RSS_BOUND,
        "received": after["received"] - before["received"],
        "error": None,
        **_leaks(before, after),
    }


def stalled(ctx: Context, loop: str, sizes: Sizes) -> dict[str, Any]:
    """A client that sends lines to the echo and never reads the replies: the
    server's RSS growth, then whether `close()` from the server's side frees
    the descriptor while that client still holds the connection open."""
    server = ctx.start(loop, "echo")
    try:
        harness.prime(server.port)
        before = server.ask("mark 10", timeout=20)
        line = bytes(ord("a") + i % 26 for i in range(255)) + b"\n"
        conn, sent = _flood(server.port, sizes.flood_bytes, sizes.flood_stall, line)
        try:
            time.sleep(0.3)
            loaded = server.ask("stats")
            server.ask("drop")
            time.sleep(1.0)
            dropped = server.ask("stats")
        finally:
            conn.close()
        after = server.ask("settle 30", timeout=40)
    finally:
        server.stop()
    return {
        "flood_bytes": sizes.flood_bytes,
        "accepted_bytes": sent,
        "rss_before": before["rss"],
        "rss_flooded": loaded["rss"],
        "rss_growth": loaded["rss"] - before["rss"],
        "clients_after_close": dropped["clients"],
        "fds_held_after_close": dropped["fds"] - before["fds"],
        "error": None,
        **_leaks(before, after),
    }


def slow(ctx: Context, loop: str, sizes: Sizes) -> dict[str, Any]:
    """One normal client's echo latency, idle and among slow clients, in
    alternating rounds (idle, loaded, idle, loaded...) after an unmeasured one."""
    server = ctx.start(loop, "echo")
    idle: list[tuple[float, float]] = []  # (p50, p99) of each round
    loaded: list[tuple[float, float]] = []
    slow_totals = {"bytes_sent": 0, "bytes_echoed": 0, "unanswered": 0, "errors": 0}
    established: list[int] = []
    errors: list[str] = []
    options: dict[str, int | float] = {
        "conns": 1,
        "size": 64,
        "duration": sizes.latency_duration,
        "warmup": 0.2,
    }

    def measure(into: list[tuple[float, float]] | None) -> None:
        run_options = options if into is not None else {**options, "duration": 0.3}
        load = harness.run_load(
            ctx.loadgen, "pingpong", server, ctx.load_cpus, run_options, timeout=60 + sizes.latency_duration
        )
        if load.error:
            errors.append(load.error)
        elif into is not None and load.data.get("count"):
            into.append((float(load.data["p50_us"]), float(load.data["p99_us"])))

    try:
        harness.prime(server.port)
        before = server.ask("mark 10", timeout=20)
        measure(None)  # unmeasured: the first run of a fresh server is slower
        for _ in range(sizes.latency_rounds):
            measure(idle)
            summary: dict[str, Any] = {}
            with harness.idle_connections(
                ctx.loadgen,
                server,
                ctx.load_cpus,
                sizes.slow_clients,
                mode="slow",
                options={"size": sizes.slow_line, "interval": sizes.slow_interval, "drain": 5},
                summary=summary,
            ) as count:
                held = time.monotonic()
                established.append(count)
                time.sleep(sizes.slow_interval)  # every slow client sent a byte
                measure(loaded)
                # Hold them until each could complete a line and get its echo.
                time.sleep(max(0.0, (sizes.slow_line + 1) * sizes.slow_interval - (time.monotonic() - held)))
            for key in slow_totals:
                slow_totals[key] += int(summary.get(key, 0))
        after = server.ask("settle 30", timeout=40)
    finally:
        server.stop()

    def median(points: list[tuple[float, float]], index: int) -> float:
        return statistics.median(point[index] for point in points) if points else math.nan

    idle_p99, loaded_p99 = median(idle, 1), median(loaded, 1)
    return {
        "slow_clients": sizes.slow_clients,
        "rounds": sizes.latency_rounds,
        "established": min(established, default=0),
        "slow_bytes_sent": slow_totals["bytes_sent"],
        "slow_bytes_echoed": slow_totals["bytes_echoed"],
        "slow_unanswered": slow_totals["unanswered"],
        "echo_errors": slow_totals["errors"],
        "idle_p50_us": median(idle, 0),
        "loaded_p50_us": median(loaded, 0),
        "idle_p99_us": idle_p99,
        "loaded_p99_us": loaded_p99,
        "ratio": loaded_p99 / idle_p99 if idle_p99 else math.nan,
        "ratio_bound": SLOW_RATIO_BOUND,
        "error": "; ".join(errors) or None,
        **_leaks(before, after),
    }


SCENARIOS: dict[str, Callable[[Context, str, Sizes], dict[str, Any]]] = {
    "crowd": crowd,
    "cycles": cycles,
    "flood": flood,
    "stalled": stalled,
    "slow": slow,
}


def run(
    ctx: Context, loops: Sequence[str], sizes: Sizes, only: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every scenario on every loop; one record each (an exception becomes its error)."""
    records: list[dict[str, Any]] = []
    for name, scenario in SCENARIOS.items():
        if only is not None and name not in only:
            continue
        for loop in loops:
            started = time.monotonic()
            try:
                record = scenario(ctx, loop, sizes)
            except (RuntimeError, OSError) as exc:
                record = {"error": f"{type(exc).__name__}: {exc}"}
            record = {
                "scenario": name,
                "loop": loop,
                **record,
                "elapsed_s": round(time.monotonic() - started, 2),
            }
            records.append(record)
            print(f"  {name} on {loop}: {summary(record)}", flush=True)
    return records


def _num(value: Any, fmt: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def _leak_text(record: dict[str, Any]) -> str:
    pending = record.get("pending_tasks")
    tasks = "no task pending" if not pending else f"{len(pending)} tasks pending"
    return f"fds {record.get('fds_before')} -> {record.get('fds_after')}, {tasks}"


def summary(record: dict[str, Any]) -> str:
    """One line about one record."""
    if record.get("error") and len(record) <= 4:
        return f"ERROR {record['error']}"
    error = f"  [{record['error']}]" if record.get("error") else ""
    return f"{_result_text(record)}; {_leak_text(record)}{error}"


def _result_text(record: dict[str, Any]) -> str:
    name = record["scenario"]
    if name == "crowd":
        peaks = ", ".join(f"{rss / MB:.0f}" for rss in record["rss_loaded_rounds"])
        text = (
            f"{record['established']:,}/{record['connections']:,} connections, "
            f"{_num(record['replies'])}/{_num(record['requests'])} echoes back "
            f"({_num(record['unanswered'])} unanswered, {_num(record['echo_errors'])} wrong), "
            f"{_num(record['echoes_per_s'])} echoes/s "
            f"({_num(record['server_cpu_us_per_echo'], '.1f')} us server CPU each), "
            f"RSS {_num(record['rss_per_conn'])} B/conn"
            + (f" (peak of each crowd: {peaks} MB)" if record["rounds"] > 1 else "")
        )
    elif name == "cycles":
        text = (
            f"{_num(record['cycles'])} cycles at {_num(record['cycles_per_s'])}/s "
            f"({_num(record['server_cpu_us_per_cycle'], '.0f')} us server CPU each), "
            f"{_num(record['echo_errors'])} wrong echoes, "
            f"RSS {(record['rss_after'] - record['rss_before']) / MB:+.2f} MB after them"
        )
    elif name == "flood":
        text = (
            f"{record['accepted_bytes'] / MB:.1f} of {record['flood_bytes'] / MB:.0f} MB "
            "accepted by the kernel, "
            f"RSS +{record['rss_growth'] / MB:.2f} MB (bound {record['rss_bound'] / MB:.0f} MB), "
            f"{record['received'] / MB:.1f} MB read afterwards"
        )
    elif name == "stalled":
        text = (
            f"{record['accepted_bytes'] / MB:.1f} MB of lines accepted, replies unread: "
            f"RSS +{record['rss_growth'] / MB:.2f} MB; 1 s after the server closed it, "
            f"{record['fds_held_after_close']} descriptor(s) still held"
        )
    else:
        text = (
            f"{record['established']}/{record['slow_clients']} slow clients "
            f"({_num(record['slow_bytes_echoed'])}/{_num(record['slow_bytes_sent'])} bytes echoed, "
            f"{_num(record['slow_unanswered'])} unanswered, {_num(record['echo_errors'])} wrong), "
            f"p50 idle {_num(record['idle_p50_us'])} us, loaded {_num(record['loaded_p50_us'])} us; "
            f"p99 idle {_num(record['idle_p99_us'])} us, loaded {_num(record['loaded_p99_us'])} us, "
            f"x{_num(record['ratio'], '.2f')}"
        )
    return text


def table(records: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = ["| scenario | loop | result | leaks after |", "|---|---|---|---|"]
    for record in records:
        if record.get("error"):
            result, leaks = summary(record), ""
        else:
            result, leaks = _result_text(record), _leak_text(record)
        lines.append(f"| {record['scenario']} | {record['loop']} | {result} | {leaks} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short runs (< 60 s for both loops)"
    )
    parser.add_argument("--loop", choices=LOOPS, default=None, help="one loop only (default: both)")
    parser.add_argument("--only", default=None, help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=harness.HERE / "results", help="output directory")
    options = parser.parse_args(argv)
    sizes = QUICK if options.quick else FULL
    loops = [options.loop] if options.loop else list(LOOPS)
    harness.raise_nofile()
    loadgen, kind = harness.loadgen_command()
    if not kind.startswith("C"):
        print("the load benchmarks need the C load generator (no C compiler found)", file=sys.stderr)
        return 2
    ctx = Context(loadgen)
    if ctx.load_cpus is not None:
        os.sched_setaffinity(0, ctx.load_cpus)  # keep the runner (the flooding client) off the server's core
    meta = harness.machine_info(kind)
    meta.update(
        mode="quick" if options.quick else "full",
        sizes=asdict(sizes),
        server_cores=sorted(ctx.server_cpus or []),
        loadgen_cores=sorted(ctx.load_cpus or []),
    )
    print(f"aioluasock load benchmarks ({meta['mode']}), loops: {', '.join(loops)}", flush=True)
    started = time.monotonic()
    records = run(ctx, loops, sizes, options.only.split(",") if options.only else None)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("load-quick.json" if options.quick else "load.json")
    path.write_text(json.dumps({"meta": meta, "records": records}, indent=1, default=str))
    print()
    print(table(records))
    print(f"\ndone in {meta['elapsed_s']:.0f} s: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
