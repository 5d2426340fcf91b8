"""Line echo at many connections: `run_workers` with 2 worker processes vs 1.

    python -m benchmarks.workers [--loop uvloop] [--conns 1000] [--rounds 5] [--duration 5]

Both servers are ``benchmarks/servers/py_echo.py aioluasock-workers`` (a
supervisor and N workers sharing the port with SO_REUSEPORT), started fresh,
primed, and measured in interleaved rounds (1, 2, 1, 2, ...) by the C load
generator in ping-pong mode (64-byte lines). The load generator is pinned to
the last usable core; the servers are not pinned, so the workers can use
every core, the load generator's included: on a 2-core machine two workers
share the machine with the load generator, which needs most of a core
itself, so the ratio there is bounded well below 2. Prints, per round and
as medians, requests per second and the servers' CPU (supervisor and
workers together, 1.0 = one core busy), and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/workers.py` works too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness

PY_ECHO = str(harness.SERVERS_DIR / "py_echo.py")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    options = parser.parse_args(argv)
    harness.raise_nofile()
    loadgen, kind = harness.loadgen_command()
    usable = sorted(os.sched_getaffinity(0))
    load_cpus = {usable[-1]} if len(usable) > 1 else None
    print(f"machine: {usable and len(usable)} usable cores, load generator {kind} on core {load_cpus}")
    print(f"loop {options.loop}, {options.conns} connections, ping-pong 64 B lines")
    servers: dict[int, harness.ServerProcess] = {}
    rates: dict[int, list[float]] = {count: [] for count in options.workers}
    cpus: dict[int, list[float]] = {count: [] for count in options.workers}
    try:
        for count in options.workers:
            argv_ = [
                sys.executable,
                PY_ECHO,
                "aioluasock-workers",
                options.loop,
                "0",
                "--workers",
                str(count),
            ]
            servers[count] = harness.start_server(f"{count} workers", argv_, None, timeout=60)
            harness.prime(servers[count].port)
        for round_index in range(options.rounds):
            for count, server in servers.items():
                load = harness.run_load(
                    loadgen,
                    "pingpong",
                    server,
                    load_cpus,
                    {
                        "conns": options.conns,
                        "size": 64,
                        "duration": options.duration,
                        "warmup": options.warmup,
                    },
                    timeout=120 + options.duration,
                    cpu=harness.tree_cpu_seconds,
                )
                rate = float(load.data.get("rate", math.nan)) if load.data else math.nan
                if load.error is None:
                    rates[count].append(rate)
                    cpus[count].append(load.server_cpu)
                note = f"  [{load.error}]" if load.error else ""
                print(
                    f"round {round_index + 1}, {count} workers: {rate:,.0f} req/s, "
                    f"server CPU {load.server_cpu:.2f}, load generator CPU "
                    f"{load.data.get('loadgen_cpu', math.nan):.2f}{note}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    medians = {count: statistics.median(values) for count, values in rates.items() if values}
    for count, median in medians.items():
        cpu = statistics.median(cpus[count])
        print(
            f"median, {count} workers: {median:,.0f} req/s, server CPU {cpu:.2f} ({len(rates[count])} rounds)"
        )
    if len(medians) >= 2:
        base = min(medians)
        for count, median in medians.items():
            if count != base:
                per_round = [b / a for a, b in zip(rates[base], rates[count], strict=False)]
                spread = f" (per round {min(per_round):.2f}-{max(per_round):.2f})" if per_round else ""
                print(f"ratio {count} workers / {base}: {median / medians[base]:.2f}{spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
