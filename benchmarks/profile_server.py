"""Profile one Python server of the suite under load from the load generator.

    python -m benchmarks.profile_server KIND LOOP [--bulk] [--mode pingpong] [--conns 100]
        [--size 64] [--seconds 5] [--top 30]

Runs ``servers/py_echo.py KIND LOOP`` (or, for a KIND ending in ``.lua``,
that script of ``servers/`` under the Lua bridge) under cProfile (pinned to the server
core), drives it with the load generator for `--seconds`, stops it with
SIGTERM and prints the profile's top functions by own time and by cumulative
time. cProfile slows Python code down several times and C code hardly at all,
so read shares of time, not absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import pstats
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind")
    parser.add_argument("loop", choices=("asyncio", "uvloop"))
    parser.add_argument("--bulk", action="store_true")
    parser.add_argument("--mode", default="pingpong", choices=("pingpong", "stream", "connrate"))
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--top", type=int, default=30)
    options = parser.parse_args(argv)
    harness.raise_nofile()
    server_cpus, load_cpus = harness.cores()
    loadgen, _ = harness.loadgen_command()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.out"
        if options.kind.endswith(".lua"):
            # A script of servers/ under the Lua bridge (its Lua time shows
            # as the driver's own time: cProfile sees only the Python side).
            script = harness.SERVERS_DIR / options.kind
            target = ["-m", "aioluasock", "run", "--loop", options.loop, str(script), "0"]
        else:
            target = [
                str(harness.SERVERS_DIR / "py_echo.py"),
                options.kind,
                options.loop,
                *(["--bulk"] if options.bulk else []),
                "0",
            ]
        argv_server = [sys.executable, "-m", "cProfile", "-o", str(out), *target]
        server = harness.start_server(options.kind, argv_server, server_cpus)
        try:
            harness.prime(server.port, line_size=65536 if options.bulk else 64)
            load = harness.run_load(
                loadgen,
                options.mode,
                server,
                load_cpus,
                {
                    "conns": options.conns,
                    "size": options.size,
                    "duration": options.seconds,
                    "warmup": 0.2,
                    "window": max(65536, 16 * options.size),
                },
                timeout=60 + options.seconds,
            )
        finally:
            if options.kind.endswith(".lua"):
                # The bridge's command ends on SIGINT (SIGTERM would kill it
                # before cProfile writes its file).
                server.process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.process.wait(timeout=10)
            server.stop()
        print(
            f"load: {load.data.get('rate', 0):,.0f}/s, {load.data.get('mbps', 0):.1f} MB/s under cProfile; "
            f"server CPU {load.server_cpu:.0%}; error: {load.error}"
        )
        stats = pstats.Stats(str(out))
        stats.sort_stats("tottime").print_stats(options.top)
        stats.sort_stats("cumulative").print_stats(options.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
