"""The load and leak benchmarks (benchmarks/load.py) in quick mode, as a test of the facts
that are not timings.

On each loop, against a fresh `aioluasock.serve` server process per scenario
(its memory is not the test runner's): 1,000 connections echoing at once get
every echo back; 5,000 connect/echo/close cycles leave the server's descriptor
count as it was and no task pending; a 50 MB flood into a handler that does
not read grows the server's RSS by less than 10 MB, and every byte the kernel
accepted is read afterwards; 200 slow clients get every echo back; a client
that never reads its echoes leaves nothing behind once it is gone. Latency
(idle and loaded p99) is never asserted, nor, in the stalled-reader scenario,
the RSS and the descriptor held while that client stays (known and reported).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, load  # noqa: E402

pytestmark = [pytest.mark.load, pytest.mark.timeout(180)]


def _loadgen() -> list[str]:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("no C compiler: the C load generator cannot be built")
        pytest.skip("no C compiler: the C load generator cannot be built")
    binary = harness.build_c(harness.HERE / "loadgen.c", "loadgen")
    assert binary is not None and binary.exists(), "loadgen.c did not compile"
    return [str(binary)]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_quick_load_scenarios(loop: str) -> None:
    sizes = load.QUICK
    records = load.run(load.Context(_loadgen()), [loop], sizes)
    by_name: dict[str, dict[str, Any]] = {record["scenario"]: record for record in records}
    assert set(by_name) == set(load.SCENARIOS)
    for name, record in by_name.items():
        assert record["error"] is None, (name, record["error"])
        # No descriptor, handler or task outlives its clients.
        assert record["fds_after"] == record["fds_before"], (name, record)
        assert record["clients_after"] == 0, (name, record)
        assert record["pending_tasks"] == [], (name, record["pending_tasks"])

    crowd = by_name["crowd"]
    assert crowd["established"] == sizes.crowd
    assert crowd["echo_errors"] == 0  # every echoed byte checked
    assert crowd["unanswered"] == 0
    assert crowd["replies"] == crowd["requests"] > sizes.crowd

    cycles = by_name["cycles"]
    assert cycles["cycles"] >= sizes.cycles
    assert cycles["echo_errors"] == 0
    assert cycles["connect_errors"] == 0
    assert cycles["handled"] >= sizes.cycles

    flood = by_name["flood"]
    assert flood["accepted_bytes"] > 0
    assert flood["rss_growth"] < load.FLOOD_RSS_BOUND, flood
    assert flood["received"] == flood["accepted_bytes"]  # nothing lost while reading was paused

    stalled = by_name["stalled"]
    assert stalled["accepted_bytes"] > 0
    assert stalled["clients_after_close"] == 0  # the server's close() ended its handler

    slow = by_name["slow"]
    assert slow["established"] == sizes.slow_clients
    assert slow["slow_bytes_echoed"] > 0  # (the slow clients are held until each could complete a line)
    assert slow["echo_errors"] == 0
    assert slow["slow_unanswered"] == 0
    # The p99 ratio is only reported (noise on a shared machine), but it was measured.
    assert slow["idle_p99_us"] > 0 and slow["loaded_p99_us"] > 0
