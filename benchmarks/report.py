"""Turn a raw results JSON into RESULTS.md (tables, ratios, targets) and a plot.

    python -m benchmarks.report benchmarks/results/results.json

Every number is a median over the interleaved rounds of one run; the spread is
(max - min) / median over those rounds; ratios divide medians measured in the
same run, so a slow minute of the shared machine cancels out as far as it can.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PINGPONG = ("pingpong-1", "pingpong-10", "pingpong-100", "pingpong-1000")
COLUMNS = (*PINGPONG, "pingpong-1k-100", "bulk", "pipeline", "connrate", "memory")
SHORT = {
    "pingpong-1": "1 conn",
    "pingpong-10": "10",
    "pingpong-100": "100",
    "pingpong-1000": "1000",
    "pingpong-1k-100": "1 KiB x 100",
    "bulk": "bulk MB/s",
    "pipeline": "pipelined MB/s",
    "connrate": "conn/s",
    "memory": "idle B/conn",
}


@dataclass
class Stat:
    median: float
    low: float
    high: float
    n: int
    values: list[float]

    @property
    def spread(self) -> float:
        return (self.high - self.low) / self.median if self.median else math.nan


def _stat(values: Iterable[float]) -> Stat | None:
    finite = [value for value in values if isinstance(value, (int, float)) and math.isfinite(value)]
    if not finite:
        return None
    return Stat(statistics.median(finite), min(finite), max(finite), len(finite), finite)


class Results:
    """Medians per (scenario, server) and the metadata of one run."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.meta: dict[str, Any] = raw["meta"]
        self.scenarios: dict[str, dict[str, Any]] = {s["name"]: s for s in raw["scenarios"]}
        self.records: list[dict[str, Any]] = raw["records"]
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for record in self.records:
            if record["scenario"] != "select":
                grouped[(record["scenario"], record["server"])].append(record)
        self.grouped = grouped
        self.servers: list[str] = [name for name in self.meta.get("servers", {}) if self._any(name)]

    def _any(self, server: str) -> bool:
        return any(key[1] == server for key in self.grouped)

    def stat(self, scenario: str, server: str, field: str = "value") -> Stat | None:
        records = self.grouped.get((scenario, server), [])
        if field in ("p50_us", "p99_us", "loadgen_cpu"):
            return _stat(r["loadgen"].get(field, math.nan) for r in records if r.get("loadgen"))
        return _stat(r.get(field, math.nan) for r in records)

    def cpu_us_per_op(self, scenario: str, server: str) -> Stat | None:
        """Server CPU microseconds per request (or per MB for stream scenarios)."""
        values = []
        for record in self.grouped.get((scenario, server), []):
            value, cpu = record.get("value", math.nan), record.get("server_cpu", math.nan)
            if isinstance(value, float) and value > 0 and math.isfinite(cpu):
                values.append(cpu / value * 1e6)
        return _stat(values)

    def errors(self) -> list[str]:
        seen = []
        for record in self.records:
            if record.get("error"):
                where = record.get("server") or record.get("loop")
                seen.append(
                    f"{record['scenario']} / {where} round {record.get('round', 0) + 1}: {record['error']}"
                )
        return seen

    def ratio(self, scenario: str, server: str, baseline: str) -> tuple[float, float, float] | None:
        """Ratio of medians, and the range of the per-round (paired) ratios."""
        mine, theirs = self.stat(scenario, server), self.stat(scenario, baseline)
        if mine is None or theirs is None or not theirs.median:
            return None
        by_round_a = {r["round"]: r.get("value") for r in self.grouped[(scenario, server)]}
        by_round_b = {r["round"]: r.get("value") for r in self.grouped[(scenario, baseline)]}
        paired = [
            a / b
            for k, a in by_round_a.items()
            if isinstance(a, float)
            and isinstance(b := by_round_b.get(k), float)
            and b > 0
            and math.isfinite(a)
        ]
        low, high = (min(paired), max(paired)) if paired else (math.nan, math.nan)
        return mine.median / theirs.median, low, high

    def select_stats(self) -> dict[str, dict[str, Stat]]:
        grouped: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for record in self.records:
            if record["scenario"] == "select" and "us_per_call" in record:
                key = f"{record['sockets']}" + (" (high fds)" if record.get("high_fds") else "")
                grouped[record["loop"]][key].append(record["us_per_call"])
        return {
            loop: {key: stat for key, values in points.items() if (stat := _stat(values)) is not None}
            for loop, points in grouped.items()
        }


def _num(value: float, unit: str = "") -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "MB/s":
        return f"{value:,.0f}"
    if unit == "B":
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value / 1000:,.1f}k"
    return f"{value:,.1f}"


def _cell(stat: Stat | None, unit: str = "") -> str:
    if stat is None:
        return "—"
    return f"{_num(stat.median, unit)} ±{stat.spread * 50:.0f}%"


def _ratio_cell(ratio: tuple[float, float, float] | None) -> str:
    if ratio is None:
        return "—"
    value, low, high = ratio
    if math.isfinite(low):
        return f"**{value:.2f}x** ({low:.2f}-{high:.2f})"
    return f"**{value:.2f}x**"


@dataclass(frozen=True)
class Target:
    text: str
    scenario: str
    server: str
    baseline: str
    minimum: float | None = None  # ratio >= minimum
    maximum: float | None = None  # ratio <= maximum (memory)


def targets() -> list[Target]:
    found: list[Target] = []
    for conns in ("10", "100", "1000"):
        scenario = f"pingpong-{conns}"
        found += [
            Target(
                f"uvloop ping-pong {conns}: ≥ 0.9x line Protocol",
                scenario,
                "aioluasock-uvloop",
                "line-protocol-uvloop",
                0.9,
            ),
            Target(
                f"uvloop ping-pong {conns}: ≥ 1.3x streams",
                scenario,
                "aioluasock-uvloop",
                "streams-uvloop",
                1.3,
            ),
            Target(
                f"uvloop ping-pong {conns}: ≥ {1.5 if conns == '1000' else 1.2}x Copas",
                scenario,
                "aioluasock-uvloop",
                "copas",
                1.5 if conns == "1000" else 1.2,
            ),
        ]
    found += [
        Target(
            "uvloop bulk receive(65536): ≥ 0.8x raw Protocol",
            "bulk",
            "aioluasock-uvloop",
            "raw-protocol-uvloop",
            0.8,
        ),
        Target(
            "uvloop connection rate: ≥ 0.9x line Protocol",
            "connrate",
            "aioluasock-uvloop",
            "line-protocol-uvloop",
            0.9,
        ),
    ]
    for conns in ("10", "100", "1000"):
        scenario = f"pingpong-{conns}"
        found += [
            Target(
                f"asyncio ping-pong {conns}: ≥ 0.9x line Protocol",
                scenario,
                "aioluasock-asyncio",
                "line-protocol-asyncio",
                0.9,
            ),
            Target(
                f"asyncio ping-pong {conns}: ≥ 1.1x streams",
                scenario,
                "aioluasock-asyncio",
                "streams-asyncio",
                1.1,
            ),
        ]
    found += [
        Target(
            "idle memory per connection ≤ streams (uvloop)",
            "memory",
            "aioluasock-uvloop",
            "streams-uvloop",
            maximum=1.0,
        ),
        Target(
            "idle memory per connection ≤ streams (asyncio)",
            "memory",
            "aioluasock-asyncio",
            "streams-asyncio",
            maximum=1.0,
        ),
    ]
    return found


def _target_rows(results: Results) -> list[str]:
    rows = ["| target | measured (per-round range) | met |", "|---|---|:---:|"]
    for target in targets():
        ratio = results.ratio(target.scenario, target.server, target.baseline)
        if ratio is None:
            continue
        value = ratio[0]
        met = (target.minimum is None or value >= target.minimum) and (
            target.maximum is None or value <= target.maximum
        )
        rows.append(f"| {target.text} | {_ratio_cell(ratio)} | {'yes' if met else '**no**'} |")
    for loop, points in results.select_stats().items():
        small, large = points.get("10"), points.get("10000")
        if small and large:
            value = large.median / small.median
            rows.append(
                f"| select, {loop}: 10,000 sockets < 20x 10 sockets | **{value:.1f}x** "
                f"({_num(large.median)} vs {_num(small.median)} µs) | {'yes' if value < 20 else '**no**'} |"
            )
    return rows


def _label(results: Results, server: str) -> str:
    return str(results.meta.get("servers", {}).get(server, server))


def markdown(results: Results, plot_name: str | None) -> str:
    meta = results.meta
    lines = [
        "# aioluasock benchmark results",
        "",
        f"Run of {meta['date']} ({meta['mode']} mode: {meta['rounds']} interleaved rounds, "
        f"{meta['duration']:g} s measured after {meta['warmup']:g} s of warm-up per point; "
        f"{meta.get('elapsed_s', 0) / 60:.0f} minutes in all).",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {meta['cpu']}, {meta['cores']} cores (usable: {meta['cores_usable']}) |",
        f"| pinning | servers on core {meta['server_cores']}, "
        f"load generator on core {meta['loadgen_cores']} |",
        f"| OS | {meta['os']} (kernel {meta['kernel']}) |",
        f"| Python | {meta['python']} |",
        f"| aioluasock | {meta['aioluasock']} (git {meta['git']}), "
        f"{meta.get('implementation', 'pure')} implementation |",
        f"| loops | asyncio (stdlib), uvloop {meta['uvloop']} (libuv {meta.get('libuv')}) |",
        f"| Lua | {meta.get('lua')}, {meta.get('luasocket')}, {meta.get('copas')}; lupa {meta.get('lupa')} |",
        f"| load generator | {meta['loadgen']}; {meta.get('cc') or 'no C compiler'} |",
        "",
        "Cells are medians with ± half the spread ((max - min) / median / 2) over the rounds. "
        "Ratios divide medians of the same run; in brackets, the range of the per-round ratios "
        "(servers measured back to back). Absolute numbers depend on a shared, noisy machine; "
        "compare ratios.",
        "",
    ]
    if plot_name:
        lines += [f"![results]({plot_name})", ""]
    lines += ["## Targets (issue 3)", "", *_target_rows(results), ""]

    present = [c for c in COLUMNS if any((c, s) in results.grouped for s in results.servers)]
    lines += [
        "## Throughput and memory",
        "",
        "Ping-pong columns are requests/s with 64-byte lines at 1 to 1000 concurrent connections; "
        "`1 KiB x 100` is 1 KiB lines at 100 connections; bulk is one connection streaming 64 KiB "
        "lines (aioluasock echoes with `receive(65536)`); pipelined is 64-byte lines on one connection "
        "with 64 KiB in flight; conn/s is connect + one echo + close, 8 at a time; idle B/conn is the "
        "server's RSS growth per idle connection.",
        "",
        "| server | " + " | ".join(SHORT[c] for c in present) + " |",
        "|---|" + "---:|" * len(present),
    ]
    for server in results.servers:
        cells = [
            _cell(
                results.stat(c, server), "MB/s" if c in ("bulk", "pipeline") else "B" if c == "memory" else ""
            )
            for c in present
        ]
        lines.append(f"| {_label(results, server)} | " + " | ".join(cells) + " |")
    memory_conns: set[int] = {
        int(r["conns"]) for r in results.records if r["scenario"] == "memory" and r.get("conns")
    }
    if memory_conns:
        lines += [
            "",
            f"Idle connections held: {', '.join(str(c) for c in sorted(memory_conns))} "
            "(Copas stops below FD_SETSIZE, its select() limit).",
        ]

    lines += ["", "## Ratios", ""]
    for loop in ("uvloop", "asyncio"):
        me = f"aioluasock-{loop}"
        if me not in results.servers:
            continue
        baselines = [
            b
            for b in (
                f"line-protocol-{loop}",
                f"streams-{loop}",
                f"raw-protocol-{loop}",
                "copas",
                "lua-bridge-uvloop",
                "c-epoll",
            )
            if b in results.servers
        ]
        lines += [
            f"aioluasock on {loop} divided by each baseline (above 1 = aioluasock faster; memory: above 1 = "
            "aioluasock uses more):",
            "",
            "| scenario | " + " | ".join(_label(results, b) for b in baselines) + " |",
            "|---|" + "---:|" * len(baselines),
        ]
        for column in present:
            cells = [_ratio_cell(results.ratio(column, me, b)) for b in baselines]
            lines.append(
                f"| {SHORT[column] if column not in PINGPONG else 'ping-pong ' + SHORT[column]} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")

    pingpong = [c for c in (*PINGPONG, "pingpong-1k-100") if c in present]
    if pingpong:
        lines += [
            "## Latency and CPU",
            "",
            "Ping-pong latency p50 / p99 in µs (medians over the rounds), and the server's CPU time per "
            "request in µs (from /proc: it shows a server's cost even where the load generator, not the "
            "server, is the bottleneck):",
            "",
            "| server | "
            + " | ".join(f"{SHORT[c]} p50/p99" for c in pingpong)
            + " | "
            + " | ".join(f"{SHORT[c]} CPU µs/req" for c in pingpong)
            + " |",
            "|---|" + "---:|" * (2 * len(pingpong)),
        ]
        for server in results.servers:
            cells = []
            for column in pingpong:
                p50, p99 = results.stat(column, server, "p50_us"), results.stat(column, server, "p99_us")
                cells.append(f"{_num(p50.median)} / {_num(p99.median)}" if p50 and p99 else "—")
            for column in pingpong:
                cpu = results.cpu_us_per_op(column, server)
                cells.append(f"{cpu.median:.1f}" if cpu else "—")
            lines.append(f"| {_label(results, server)} | " + " | ".join(cells) + " |")
        loadgen = [results.stat(c, s, "loadgen_cpu") for c in pingpong for s in results.servers]
        busiest = max((s.median for s in loadgen if s), default=math.nan)
        lines += [
            "",
            f"The load generator's own core was at most {busiest:.0%} busy in these scenarios "
            "(100% would mean it, not the server, set the pace).",
            "",
        ]

    select = results.select_stats()
    if select:
        keys = sorted(
            {k for points in select.values() for k in points}, key=lambda k: (int(k.split()[0]), "high" in k)
        )
        lines += [
            "## select",
            "",
            "µs per `await select(clients, None, 0)` call with exactly one ready socket among those passed; "
            "`10 (high fds)` passes 10 sockets whose descriptors are all above 10,000.",
            "",
            "| loop | " + " | ".join(f"{k} sockets" for k in keys) + " |",
            "|---|" + "---:|" * len(keys),
        ]
        for loop, points in select.items():
            lines.append(f"| {loop} | " + " | ".join(_cell(points.get(k)) for k in keys) + " |")
        lines.append("")

    errors = results.errors()
    if errors:
        lines += ["## Errors and skipped points", "", *(f"- {e}" for e in errors[:40]), ""]
    return "\n".join(lines) + "\n"


def plot(results: Results, path: Path) -> bool:
    """Bar charts per scenario (median, min-max whiskers) and the select curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot", file=sys.stderr)
        return False
    columns = [c for c in COLUMNS if any((c, s) in results.grouped for s in results.servers)]
    panels = len(columns) + (1 if results.select_stats() else 0)
    ncols = 3
    nrows = max(1, math.ceil(panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(18, 4.2 * nrows), squeeze=False)
    colors = plt.get_cmap("tab20")
    server_color = {s: colors(i % 20) for i, s in enumerate(results.servers)}
    for ax, column in zip(axes.flat, columns, strict=False):
        names, medians, lows, highs, shades = [], [], [], [], []
        for server in results.servers:
            stat = results.stat(column, server)
            if stat is None:
                continue
            names.append(_label(results, server))
            medians.append(stat.median)
            lows.append(stat.median - stat.low)
            highs.append(stat.high - stat.median)
            shades.append(server_color[server])
        y = range(len(names))
        ax.barh(list(y), medians, xerr=[lows, highs], color=shades, capsize=2)
        ax.set_yticks(list(y), names, fontsize=7)
        ax.invert_yaxis()
        unit = results.scenarios.get(column, {}).get("unit", "bytes per connection")
        title = results.scenarios.get(column, {}).get("title", "idle memory (RSS growth per connection)")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    select = results.select_stats()
    used = len(columns)
    if select:
        ax = axes.flat[used]
        for loop, points in select.items():
            sizes = sorted(int(k) for k in points if "high" not in k)
            ax.plot(sizes, [points[str(s)].median for s in sizes], marker="o", label=loop)
            if "10 (high fds)" in points:
                ax.plot(
                    [10],
                    [points["10 (high fds)"].median],
                    marker="x",
                    linestyle="none",
                    label=f"{loop}, 10 high fds",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sockets passed (one ready)", fontsize=8)
        ax.set_ylabel("µs per call", fontsize=8)
        ax.set_title("select cost", fontsize=9)
        ax.legend(fontsize=7)
        used += 1
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    meta = results.meta
    fig.suptitle(
        f"aioluasock {meta['aioluasock']} ({meta.get('implementation', 'pure')}) benchmarks, "
        f"{meta['date']}: {meta['cpu']} ({meta['cores']} cores), "
        f"{meta['python']}, uvloop {meta['uvloop']}; medians of {meta['rounds']} rounds, whiskers min-max",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(raw_path: Path, out: Path, quick: bool = False) -> list[Path]:
    """Write RESULTS.md and results.png (the -quick variants for a quick run)."""
    results = Results(json.loads(raw_path.read_text()))
    suffix = "-quick" if quick else ""
    png = out / f"results{suffix}.png"
    drawn = plot(results, png)
    md = out / f"RESULTS{suffix}.md"
    md.write_text(markdown(results, png.name if drawn else None))
    return [md, png] if drawn else [md]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    raw = Path(args[0])
    quick = json.loads(raw.read_text())["meta"].get("mode") == "quick"
    for path in write(raw, raw.parent, quick):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
