"""Run the benchmark suite and write benchmarks/results/ (RESULTS.md, results.png, raw JSON).

    python -m benchmarks.run            # the full run (about 20 minutes)
    python -m benchmarks.run --quick    # a smoke run of a small subset (under 2 minutes)

Each server runs as its own process pinned to one core, the load generator
(a C epoll program built at run time, or a Python fallback) on another. For
every scenario all its servers are started fresh, primed with two short
connections, and then measured in interleaved rounds (A B C ... A B C ...),
so that a slow minute of the shared machine hits every server alike; the report
gives medians, the spread and ratios between servers of the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py` works too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness, report

PY = sys.executable
PY_ECHO = str(harness.SERVERS_DIR / "py_echo.py")
LUA_ECHO = harness.SERVERS_DIR / "lua_echo.lua"
COPAS_FD_LIMIT = 1000
"""Copas waits with select(): descriptors past FD_SETSIZE (1024) make it fail (1000 connections fit)."""


@dataclass(frozen=True)
class Server:
    """A server of the suite: `argv(bulk)` is its command without the port."""

    name: str
    label: str
    argv: Callable[[bool], list[str]]
    max_conns: int = 1_000_000
    variant: bool = False
    """Run only in the scenarios that name it (a variant of another server)."""


def _python_server(kind: str, loop: str, *extra: str) -> Callable[[bool], list[str]]:
    def argv(bulk: bool) -> list[str]:
        return [PY, PY_ECHO, kind, loop, *(["--bulk"] if bulk else []), *extra]

    return argv


def all_servers(c_echo: Path | None) -> dict[str, Server]:
    """Every server this machine can run, in report order."""
    servers: list[Server] = []
    if c_echo is not None:
        servers.append(Server("c-epoll", "C epoll echo (machine limit)", lambda bulk: [str(c_echo)]))
    for loop in ("uvloop", "asyncio"):
        servers += [
            Server(f"aioluasock-{loop}", f"aioluasock, {loop}", _python_server("aioluasock", loop)),
            Server(
                f"line-protocol-{loop}",
                f"hand-written line Protocol, {loop}",
                _python_server("line-protocol", loop),
            ),
            Server(f"streams-{loop}", f"asyncio streams, {loop}", _python_server("streams", loop)),
            Server(
                f"raw-protocol-{loop}", f"raw Protocol echo, {loop}", _python_server("raw-protocol", loop)
            ),
        ]
    # The same line echo with tcp-nodelay on, replying with `send(line + b"\n")`
    # and with `send(line, b"\n")`: several strings must cost no more than
    # the caller's own concatenation (one write, one segment).
    servers += [
        Server(
            "aioluasock-nodelay-uvloop",
            "aioluasock, uvloop, tcp-nodelay, send(line + LF)",
            _python_server("aioluasock", "uvloop", "--nodelay"),
            variant=True,
        ),
        Server(
            "aioluasock-split-uvloop",
            "aioluasock, uvloop, tcp-nodelay, send(line, LF)",
            _python_server("aioluasock", "uvloop", "--nodelay", "--split"),
            variant=True,
        ),
    ]
    # The pure-Python modules of the same install, beside the compiled
    # accelerator (when it is built, `aioluasock-uvloop` runs it).
    servers.append(
        Server(
            "aioluasock-pure-uvloop",
            "aioluasock, uvloop, pure Python (AIOLUASOCK_NO_EXTENSIONS=1)",
            lambda bulk: ["env", "AIOLUASOCK_NO_EXTENSIONS=1", *_python_server("aioluasock", "uvloop")(bulk)],
            variant=True,
        )
    )
    lua = shutil.which("lua5.4")
    copas = harness.SERVERS_DIR / "copas_echo.lua"
    if lua is not None:
        servers.append(
            Server(
                "copas", "Copas 1.x on LuaSocket 3.1, Lua 5.4", lambda bulk: [lua, str(copas)], COPAS_FD_LIMIT
            )
        )
    # Copas 4.x when its source is given (it is not packaged): COPAS4_PATH is a
    # Lua path for copas.lua and timerwheel, e.g.
    # "/src/copas/src/?.lua;/src/timerwheel.lua/src/?.lua" (see README).
    copas4 = os.environ.get("COPAS4_PATH")
    copas4_env = [] if copas4 is None else ["env", f"LUA_PATH={copas4};;"]
    if lua is not None and copas4 is not None:
        servers.append(
            Server(
                "copas4",
                "Copas 4.x on LuaSocket 3.1, Lua 5.4",
                lambda bulk: [*copas4_env, lua, str(copas)],
                COPAS_FD_LIMIT,
            )
        )
    if LUA_ECHO.exists() and _lua_bridge_available():
        servers.append(
            Server(
                "lua-bridge-uvloop",
                "lua_echo.lua under the aioluasock bridge, uvloop",
                lambda bulk: [PY, "-m", "aioluasock", "run", "--loop", "uvloop", str(LUA_ECHO)],
            )
        )
        # The same Copas echo script, unmodified, under the bridge; and
        # without a time slice (what the count hook of its coroutines costs).
        servers.append(
            Server(
                "copas-bridge-uvloop",
                "copas_echo.lua (Copas 1.x) under the aioluasock bridge, uvloop",
                lambda bulk: [PY, "-m", "aioluasock", "run", "--loop", "uvloop", str(copas)],
            )
        )
        servers.append(
            Server(
                "copas-bridge-unsliced-uvloop",
                "copas_echo.lua (Copas 1.x) under the aioluasock bridge, uvloop, --slice 0",
                lambda bulk: [PY, "-m", "aioluasock", "run", "--loop", "uvloop", "--slice", "0", str(copas)],
                variant=True,
            )
        )
        if copas4 is not None:
            servers.append(
                Server(
                    "copas4-bridge-uvloop",
                    "copas_echo.lua (Copas 4.x) under the aioluasock bridge, uvloop",
                    lambda bulk: [*copas4_env, PY, "-m", "aioluasock", "run", "--loop", "uvloop", str(copas)],
                )
            )
    else:
        print(
            "note: the Lua bridge server is skipped "
            "(benchmarks/servers/lua_echo.lua or aioluasock.lua missing)"
        )
    return {server.name: server for server in servers}


def _lua_bridge_available() -> bool:
    probe = subprocess.run(
        [PY, "-c", "import aioluasock.lua, lupa"], capture_output=True, cwd=harness.ROOT, check=False
    )
    return probe.returncode == 0


@dataclass(frozen=True)
class Scenario:
    """One measured point: a load generator mode and its options."""

    name: str
    title: str
    mode: str
    options: dict[str, int | float]
    metric: str  # "rate" (per second) or "mbps"
    unit: str
    servers: tuple[str, ...] | None = None  # None = every server
    bulk: bool = False


def scenarios(quick: bool) -> list[Scenario]:
    line = {"size": 64}
    every = [
        Scenario(
            "pingpong-1", "ping-pong 64 B, 1 connection", "pingpong", {**line, "conns": 1}, "rate", "req/s"
        ),
        Scenario(
            "pingpong-10",
            "ping-pong 64 B, 10 connections",
            "pingpong",
            {**line, "conns": 10},
            "rate",
            "req/s",
        ),
        Scenario(
            "pingpong-100",
            "ping-pong 64 B, 100 connections",
            "pingpong",
            {**line, "conns": 100},
            "rate",
            "req/s",
        ),
        *(
            Scenario(
                f"send-split-{conns}",
                f"ping-pong 64 B, {conns} connections: send(line + LF) vs send(line, LF)",
                "pingpong",
                {**line, "conns": conns},
                "rate",
                "req/s",
                servers=("aioluasock-nodelay-uvloop", "aioluasock-split-uvloop"),
            )
            for conns in (10, 100)
        ),
        Scenario(
            "pingpong-1000",
            "ping-pong 64 B, 1000 connections",
            "pingpong",
            {**line, "conns": 1000},
            "rate",
            "req/s",
        ),
        Scenario(
            "pingpong-1k-100",
            "ping-pong 1 KiB, 100 connections",
            "pingpong",
            {"size": 1024, "conns": 100},
            "rate",
            "req/s",
        ),
        Scenario(
            "bulk",
            "bulk, 1 connection, 64 KiB lines (aioluasock: receive(65536))",
            "stream",
            {"size": 65536, "conns": 1, "window": 1 << 20},
            "mbps",
            "MB/s",
            bulk=True,
        ),
        Scenario(
            "pipeline",
            "pipelined 64 B lines, 1 connection (64 KiB in flight)",
            "stream",
            {"size": 64, "conns": 1, "window": 65536},
            "mbps",
            "MB/s",
        ),
        Scenario(
            "connrate",
            "connection rate (connect, one echo, close), 8 at a time",
            "connrate",
            {"size": 64, "conns": 8},
            "rate",
            "conn/s",
        ),
    ]
    if not quick:
        return every
    subset = ("c-epoll", "aioluasock-uvloop", "line-protocol-uvloop", "streams-uvloop")
    picked = {"pingpong-10", "pingpong-100", "bulk", "connrate"}
    result = []
    for scenario in every:
        if scenario.name in picked:
            names = (*subset, "raw-protocol-uvloop") if scenario.bulk else subset
            result.append(
                Scenario(
                    scenario.name,
                    scenario.title,
                    scenario.mode,
                    scenario.options,
                    scenario.metric,
                    scenario.unit,
                    names,
                    scenario.bulk,
                )
            )
    return result


@dataclass
class Progress:
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        print(f"[{self.done:3d}/{self.total}] {elapsed:5.0f}s elapsed, ~{eta:4.0f}s left  {text}", flush=True)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value / 1000:.1f}k {unit}" if unit != "MB/s" else f"{value:.0f} MB/s"


def run_scenario(
    scenario: Scenario,
    servers: Sequence[Server],
    loadgen: Sequence[str],
    *,
    rounds: int,
    duration: float,
    warmup: float,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Start the scenario's servers, then measure them in interleaved rounds."""
    server_cpus, load_cpus = harness.cores()
    conns = int(scenario.options.get("conns", 1))
    running: dict[str, harness.ServerProcess] = {}
    records: list[dict[str, Any]] = []
    try:
        for server in servers:
            if conns > server.max_conns:
                continue
            try:
                process = harness.start_server(server.name, [*server.argv(scenario.bulk), "0"], server_cpus)
            except RuntimeError as exc:
                print(f"note: {server.name} skipped in {scenario.name}: {exc}")
                continue
            running[server.name] = process
            try:
                harness.prime(process.port, line_size=65536 if scenario.bulk else 64)
            except OSError as exc:
                print(f"note: {server.name} skipped in {scenario.name}: priming failed: {exc}")
                running.pop(server.name).stop()
        options = {**scenario.options, "duration": duration, "warmup": warmup}
        for round_index in range(rounds):
            for name, process in running.items():
                if not process.alive():
                    records.append(
                        {
                            "scenario": scenario.name,
                            "server": name,
                            "round": round_index,
                            "error": "server died",
                        }
                    )
                    progress.step(f"{scenario.name} {name}: server died")
                    continue
                load = harness.run_load(
                    loadgen, scenario.mode, process, load_cpus, options, timeout=90 + duration
                )
                value = float(load.data.get(scenario.metric, math.nan)) if load.data else math.nan
                record: dict[str, Any] = {
                    "scenario": scenario.name,
                    "server": name,
                    "round": round_index,
                    "value": value,
                    "server_cpu": load.server_cpu,
                    "loadgen": load.data,
                    "error": load.error,
                }
                records.append(record)
                cpu = f", server CPU {load.server_cpu:.0%}" if not math.isnan(load.server_cpu) else ""
                lat = ""
                if scenario.mode == "pingpong" and load.data:
                    lat = f", p50 {load.data['p50_us']:.0f} us, p99 {load.data['p99_us']:.0f} us"
                note = f"  [{load.error}]" if load.error else ""
                progress.step(
                    f"{scenario.name} r{round_index + 1} {name}: {_fmt(value, scenario.unit)}{lat}{cpu}{note}"
                )
    finally:
        for process in running.values():
            process.stop()
    return records


def run_memory(
    servers: Sequence[Server], loadgen: Sequence[str], rounds: int, count: int, progress: Progress
) -> list[dict[str, Any]]:
    """RSS growth per idle connection: fresh servers each round, primed, then
    `count` connections (one echo each) held while the RSS is read."""
    server_cpus, load_cpus = harness.cores()
    records: list[dict[str, Any]] = []
    for round_index in range(rounds):
        for server in servers:
            conns = min(count, server.max_conns)
            record: dict[str, Any] = {
                "scenario": "memory",
                "server": server.name,
                "round": round_index,
                "conns": conns,
            }
            try:
                process = harness.start_server(server.name, [*server.argv(False), "0"], server_cpus)
            except RuntimeError as exc:
                record["error"] = str(exc)
                records.append(record)
                progress.step(f"memory {server.name}: {exc}")
                continue
            try:
                harness.prime(process.port)
                time.sleep(0.3)
                before = harness.rss_bytes(process.pid)
                with harness.idle_connections(loadgen, process, load_cpus, conns) as established:
                    time.sleep(0.5)
                    after = harness.rss_bytes(process.pid)
                record.update(
                    rss_before=before,
                    rss_after=after,
                    established=established,
                    value=(after - before) / established if established else math.nan,
                    error=None if established == conns else f"{established} of {conns} established",
                )
            except (RuntimeError, OSError) as exc:
                record["error"] = str(exc)
            finally:
                process.stop()
            records.append(record)
            shown = f"{record['value']:.0f} B/conn" if "value" in record else record.get("error")
            progress.step(f"memory r{round_index + 1} {server.name} ({conns} idle): {shown}")
    return records


def run_select(sizes: Sequence[int], rounds: int, progress: Progress) -> list[dict[str, Any]]:
    """The select micro-benchmark, in its own process on the server core."""
    server_cpus, _ = harness.cores()
    records: list[dict[str, Any]] = []
    for round_index in range(rounds):
        for loop in ("uvloop", "asyncio"):
            argv = [PY, "-m", "benchmarks.select_bench", loop, *map(str, sizes)]
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                cwd=harness.ROOT,
                timeout=300,
                preexec_fn=(lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None,
                check=False,
            )
            if result.returncode != 0:
                records.append(
                    {
                        "scenario": "select",
                        "loop": loop,
                        "round": round_index,
                        "error": result.stderr.strip()[-300:],
                    }
                )
                progress.step(f"select {loop}: failed")
                continue
            for point in json.loads(result.stdout):
                records.append({"scenario": "select", "loop": loop, "round": round_index, **point})
            shown = ", ".join(f"{p['sockets']}: {p['us_per_call']:.1f} us" for p in json.loads(result.stdout))
            progress.step(f"select r{round_index + 1} {loop}: {shown}")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small subset, for a smoke run (< 2 minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="repeats of each point (default 3; quick 2)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per point (default 2)")
    parser.add_argument(
        "--warmup", type=float, default=None, help="unmeasured seconds before each (default 0.5)"
    )
    parser.add_argument("--only", default=None, help="comma-separated scenario names to run")
    parser.add_argument("--servers", default=None, help="comma-separated server names to run")
    parser.add_argument("--out", type=Path, default=harness.HERE / "results", help="output directory")
    options = parser.parse_args(argv)
    quick = options.quick
    rounds = options.rounds or (2 if quick else 3)
    duration = options.duration or (1.0 if quick else 2.0)
    warmup = options.warmup if options.warmup is not None else (0.3 if quick else 0.5)
    idle_count = 2000 if quick else 10_000
    select_sizes = (10, 1000) if quick else (10, 1000, 10_000)

    harness.raise_nofile()
    server_cpus, load_cpus = harness.cores()
    cores_usable = len(os.sched_getaffinity(0))
    if load_cpus is not None:
        os.sched_setaffinity(0, load_cpus)  # keep the runner off the server's core
    loadgen, loadgen_kind = harness.loadgen_command()
    c_echo = harness.build_c(harness.SERVERS_DIR / "c_echo.c", "c_echo")
    servers = all_servers(c_echo)
    if options.servers:
        wanted = options.servers.split(",")
        servers = {name: server for name, server in servers.items() if name in wanted}
    meta = harness.machine_info(loadgen_kind)
    meta.update(
        cores_usable=cores_usable,
        mode="quick" if quick else "full",
        rounds=rounds,
        duration=duration,
        warmup=warmup,
        server_cores=sorted(server_cpus or []),
        loadgen_cores=sorted(load_cpus or []),
        servers={name: server.label for name, server in servers.items()},
    )
    print(
        f"aioluasock benchmarks ({meta['mode']}, {meta['implementation']} implementation): "
        f"load generator {loadgen_kind}, "
        f"server on cores {meta['server_cores']}, load on {meta['loadgen_cores']}"
    )

    todo = scenarios(quick)
    only = set(options.only.split(",")) if options.only else None
    if only is not None:
        todo = [scenario for scenario in todo if scenario.name in only]
    plan = []
    for scenario in todo:
        # Variants run where a scenario names them, or when --servers does.
        default = [name for name, server in servers.items() if not server.variant or options.servers]
        names = [name for name in (scenario.servers or default) if name in servers]
        plan.append((scenario, [servers[name] for name in names]))
    memory_servers = [
        servers[name]
        for name in servers
        if not quick or name in ("c-epoll", "aioluasock-uvloop", "line-protocol-uvloop", "streams-uvloop")
    ]
    do_memory = only is None or "memory" in only
    do_select = only is None or "select" in only
    total = sum(rounds * len(names) for _, names in plan)
    total += rounds * len(memory_servers) if do_memory else 0
    total += rounds * 2 if do_select else 0
    progress = Progress(total)

    records: list[dict[str, Any]] = []
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / ("results-quick.json" if quick else "results.json")

    def save() -> None:
        scenario_meta = [
            {"name": s.name, "title": s.title, "metric": s.metric, "unit": s.unit, "options": s.options}
            for s, _ in plan
        ]
        raw_path.write_text(
            json.dumps({"meta": meta, "scenarios": scenario_meta, "records": records}, indent=1)
        )

    started = time.monotonic()
    for scenario, scenario_servers in plan:
        records += run_scenario(
            scenario,
            scenario_servers,
            loadgen,
            rounds=rounds,
            duration=duration,
            warmup=warmup,
            progress=progress,
        )
        save()
    if do_memory:
        records += run_memory(memory_servers, loadgen, rounds, idle_count, progress)
        save()
    if do_select:
        records += run_select(select_sizes, rounds, progress)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    save()
    paths = report.write(raw_path, out, quick=quick)
    print(f"done in {meta['elapsed_s']:.0f} s: " + ", ".join(str(path) for path in [raw_path, *paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
