"""Smoke test of the benchmark suite: the C load generator builds and counts real echoes.

It runs one tiny ping-pong scenario (about a second) against the aioluasock
echo server of `benchmarks/servers/py_echo.py`; it never asserts on speed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402


def _loadgen() -> list[str]:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the C load generator cannot be built")
    binary = harness.build_c(harness.HERE / "loadgen.c", "loadgen")
    assert binary is not None and binary.exists(), "loadgen.c did not compile"
    return [str(binary)]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loadgen_counts_echoes_from_aioluasock(loop: str) -> None:
    loadgen = _loadgen()
    server_cpus, load_cpus = harness.cores()
    server = harness.start_server(
        "aioluasock",
        [sys.executable, str(harness.SERVERS_DIR / "py_echo.py"), "aioluasock", loop, "0"],
        server_cpus,
    )
    try:
        harness.prime(server.port)
        load = harness.run_load(
            loadgen,
            "pingpong",
            server,
            load_cpus,
            {"conns": 4, "size": 64, "duration": 0.7, "warmup": 0.1},
            timeout=15,
        )
    finally:
        server.stop()
    assert load.error is None, load.error
    assert load.data["established"] == 4
    assert load.data["errors"] == 0
    # Every counted request was a 64-byte line echoed back byte for byte.
    assert load.data["count"] > 0
    assert load.data["mbps"] > 0
    assert load.data["p50_us"] > 0


def test_a_server_keeps_its_own_core_after_the_runner_pins_itself() -> None:
    # `benchmarks.run` reads the cores, then pins itself to the load
    # generator's: the servers it starts afterwards must still go to the
    # server's core, not inherit the runner's.
    code = """
import os, subprocess, sys
from benchmarks import harness
server, load = harness.cores()
if server is None or load is None:
    print("one core")
    sys.exit()
os.sched_setaffinity(0, load)
again = harness.cores()
child = subprocess.run(
    [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
    preexec_fn=harness._pinned(again[0]), capture_output=True, text=True, check=True,
)
print(again == (server, load), child.stdout.strip() == str(sorted(server)))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() in (["one", "core"], ["True", "True"]), result.stdout
