"""Timeout state and per-call deadlines (pure: no loop, the clock is passed in).

`settimeout` keeps two limits per object (DESIGN.md, "Timeouts"):

* **block** limits each single wait, and restarts whenever the call makes
  progress (bytes in or out, a connection accepted);
* **total** limits the whole call, from its start.

This follows the LuaSocket manual (and LuaSocket on Windows) rather than the
Linux build, where a block timeout shrinks with the time the call has already
spent (SEMANTICS.md 7.4): a trickling peer that keeps sending should not time
out a reader that has a per-wait limit.
"""

from __future__ import annotations

import math
from typing import Final, final

__all__ = ["CallDeadline", "TimeoutState", "parse_timeout"]

NO_LIMIT: Final = None


def parse_timeout(value: float | None) -> float | None:
    """Normalise a `settimeout` value: `None` or negative means no limit.

    Raises:
        TypeError: if `value` is not an `int`, a `float` or `None` (a `bool`
            is refused: `settimeout(True)` is almost certainly a mistake).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number or None, not {type(value).__name__}")
    if value < 0:
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int past a float's range (10**400): as math.inf
        return math.inf
    if math.isnan(seconds):  # NaN would make every comparison false: refuse it
        raise ValueError("timeout must not be NaN")
    return seconds


@final
class TimeoutState:
    """The two limits of one object, as `settimeout` sets them."""

    __slots__ = ("block", "total")

    def __init__(self) -> None:
        self.block: float | None = None
        self.total: float | None = None

    def set(self, value: float | None, mode: str = "b") -> None:
        """Set one limit, as LuaSocket's `settimeout(value, mode)` does.

        Args:
            value: seconds; `None` or negative for no limit; 0 for "never wait".
            mode: ``"b"`` (block) or ``"t"`` (total). As in LuaSocket only the
                first character counts (``"block"``, ``"total"``; ``"r"`` is
                LuaSocket's old name for total).

        Raises:
            TypeError: `value` is not a number or `None`, or `mode` is not a `str`.
            ValueError: `mode` is not a known mode ("invalid timeout mode").
        """
        seconds = parse_timeout(value)
        if not isinstance(mode, str):
            raise TypeError(f"timeout mode must be a str, not {type(mode).__name__}")
        kind = mode[:1]
        if kind == "b":
            self.block = seconds
        elif kind in ("t", "r"):
            self.total = seconds
        else:
            raise ValueError(f"invalid timeout mode {mode!r}")

    def start(self, now: float) -> CallDeadline:
        """Begin a call at time `now`: the deadlines that govern its waits."""
        total = self.total
        return CallDeadline(self.block, None if total is None else now + total)

    @property
    def unlimited(self) -> bool:
        """True when neither limit is set: waits need no timer at all."""
        return self.block is None and self.total is None


@final
class CallDeadline:
    """The deadlines of one call: a per-wait block limit and a call deadline."""

    __slots__ = ("block", "total_deadline")

    def __init__(self, block: float | None, total_deadline: float | None) -> None:
        self.block = block
        self.total_deadline = total_deadline

    def wait_until(self, now: float) -> float | None:
        """Absolute deadline of a wait that starts at `now`.

        Returns:
            `None` when the wait has no limit; otherwise a time that may be
            `<= now`, which means the call must report "timeout" without
            waiting (a timeout of 0, or a total limit already spent).
        """
        block = self.block
        total_deadline = self.total_deadline
        if block is None:
            return total_deadline
        block_deadline = now + block
        if total_deadline is None or block_deadline < total_deadline:
            return block_deadline
        return total_deadline
