"""Timeout state and per-call deadlines, with the clock passed in (pure).

DESIGN.md "Timeouts": block limits each single wait and restarts whenever the
call makes progress; total limits the whole call from its start; both can be
set; `None` or negative means no limit; 0 means never wait.
"""

from __future__ import annotations

import math

import pytest

import aioluasock as socket
from aioluasock._timeout import CallDeadline, TimeoutState, parse_timeout

# -- parse_timeout ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (-1, None),
        (-0.001, None),
        (-7, None),
        (0, 0.0),
        (0.0, 0.0),
        (1, 1.0),
        (2.5, 2.5),
        (10**6, 1e6),
    ],
)
def test_parse_timeout(value: float | None, expected: float | None) -> None:
    result = parse_timeout(value)
    assert result == expected
    if expected is not None:
        assert type(result) is float


@pytest.mark.parametrize("value", [True, False, "1", b"1", [1], object()])
def test_parse_timeout_wrong_type(value: object) -> None:
    with pytest.raises(TypeError):
        parse_timeout(value)  # type: ignore[arg-type]


def test_parse_timeout_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        parse_timeout(math.nan)


def test_parse_timeout_infinity_is_a_number() -> None:
    assert parse_timeout(math.inf) == math.inf
    assert parse_timeout(-math.inf) is None
    # An int too large for a float is infinity too, not an OverflowError.
    assert parse_timeout(10**400) == math.inf
    assert parse_timeout(-(10**400)) is None


# -- TimeoutState ----------------------------------------------------------------------


def test_default_is_unlimited() -> None:
    state = TimeoutState()
    assert state.block is None
    assert state.total is None
    assert state.unlimited
    call = state.start(100.0)
    assert call.wait_until(100.0) is None
    assert call.wait_until(1e9) is None


@pytest.mark.parametrize("mode", ["b", "block", "bogus"])
def test_block_modes(mode: str) -> None:
    # As LuaSocket, only the first character counts.
    state = TimeoutState()
    state.set(1.5, mode)
    assert (state.block, state.total) == (1.5, None)
    assert not state.unlimited


@pytest.mark.parametrize("mode", ["t", "total", "r"])
def test_total_modes(mode: str) -> None:
    state = TimeoutState()
    state.set(2, mode)
    assert (state.block, state.total) == (None, 2.0)
    assert not state.unlimited


def test_default_mode_is_block() -> None:
    state = TimeoutState()
    state.set(3)
    assert (state.block, state.total) == (3.0, None)


@pytest.mark.parametrize("mode", ["", "x", "B", "T", "abc", " b"])
def test_bad_mode(mode: str) -> None:
    state = TimeoutState()
    with pytest.raises(ValueError, match="invalid timeout mode"):
        state.set(1, mode)
    assert state.unlimited  # nothing changed


@pytest.mark.parametrize("mode", [5, None, b"b"])
def test_mode_not_a_str(mode: object) -> None:
    state = TimeoutState()
    with pytest.raises(TypeError):
        state.set(1, mode)  # type: ignore[arg-type]
    assert state.unlimited


@pytest.mark.parametrize("value", [True, False, "1", [1]])
def test_set_wrong_value_type(value: object) -> None:
    state = TimeoutState()
    state.set(4, "b")
    with pytest.raises(TypeError):
        state.set(value, "b")  # type: ignore[arg-type]
    assert state.block == 4.0  # unchanged


def test_set_nan_raises_and_keeps_value() -> None:
    state = TimeoutState()
    state.set(4, "t")
    with pytest.raises(ValueError, match="NaN"):
        state.set(math.nan, "t")
    assert state.total == 4.0


def test_setting_one_mode_leaves_the_other() -> None:
    state = TimeoutState()
    state.set(1, "b")
    state.set(5, "t")
    assert (state.block, state.total) == (1.0, 5.0)
    state.set(None, "b")
    assert (state.block, state.total) == (None, 5.0)
    state.set(-1, "t")
    assert (state.block, state.total) == (None, None)
    assert state.unlimited


def test_zero_is_a_limit() -> None:
    state = TimeoutState()
    state.set(0)
    assert state.block == 0.0
    assert not state.unlimited


def test_start_does_not_change_state() -> None:
    state = TimeoutState()
    state.set(1, "b")
    state.set(5, "t")
    state.start(10.0)
    state.start(20.0)
    assert (state.block, state.total) == (1.0, 5.0)


# -- CallDeadline: the deadline of each wait -------------------------------------------


def _call(block: float | None, total: float | None, start: float) -> CallDeadline:
    state = TimeoutState()
    state.set(block, "b")
    state.set(total, "t")
    return state.start(start)


def test_block_restarts_with_every_wait() -> None:
    # A block limit is per wait: a call that keeps making progress never
    # runs out, however long it lasts in total.
    call = _call(0.5, None, start=100.0)
    assert call.wait_until(100.0) == 100.5
    assert call.wait_until(100.4) == pytest.approx(100.9)
    assert call.wait_until(1000.0) == 1000.5


def test_total_is_fixed_from_the_start_of_the_call() -> None:
    call = _call(None, 2.0, start=100.0)
    assert call.total_deadline == 102.0
    assert call.wait_until(100.0) == 102.0
    assert call.wait_until(101.5) == 102.0
    # Spent: the deadline is in the past, so the call reports "timeout".
    late = call.wait_until(103.0)
    assert late is not None
    assert late <= 103.0


def test_both_take_the_earlier() -> None:
    call = _call(0.5, 2.0, start=100.0)
    assert call.wait_until(100.0) == 100.5  # block first
    assert call.wait_until(101.0) == 101.5
    assert call.wait_until(101.7) == 102.0  # total first
    assert call.wait_until(102.5) == 102.0


def test_block_longer_than_total() -> None:
    # b = 5, t = 1 (SEMANTICS 7.4): the total wins.
    call = _call(5.0, 1.0, start=0.0)
    assert call.wait_until(0.0) == 1.0
    assert call.wait_until(0.9) == 1.0


def test_block_zero_never_waits() -> None:
    call = _call(0, None, start=50.0)
    for now in (50.0, 50.001, 60.0):
        deadline = call.wait_until(now)
        assert deadline is not None
        assert deadline <= now


def test_total_zero_never_waits() -> None:
    call = _call(None, 0, start=50.0)
    deadline = call.wait_until(50.0)
    assert deadline is not None
    assert deadline <= 50.0


def test_block_zero_with_total_never_waits() -> None:
    call = _call(0, 10, start=0.0)
    deadline = call.wait_until(1.0)
    assert deadline is not None
    assert deadline <= 1.0


def test_negative_means_no_limit_in_calls() -> None:
    call = _call(-1, -2.5, start=0.0)
    assert call.block is None
    assert call.total_deadline is None
    assert call.wait_until(0.0) is None


def test_each_call_starts_its_own_total() -> None:
    state = TimeoutState()
    state.set(1, "t")
    first = state.start(10.0)
    second = state.start(20.0)
    assert first.wait_until(10.5) == 11.0
    assert second.wait_until(20.5) == 21.0


def test_call_deadline_direct() -> None:
    assert CallDeadline(None, None).wait_until(5.0) is None
    assert CallDeadline(1.0, None).wait_until(5.0) == 6.0
    assert CallDeadline(None, 7.0).wait_until(5.0) == 7.0
    assert CallDeadline(1.0, 5.5).wait_until(5.0) == 5.5


# -- the object methods over the state -----------------------------------------------


def test_settimeout_and_gettimeout_on_an_object() -> None:
    master, err = socket.tcp()
    assert master is not None
    assert err is None
    try:
        assert master.gettimeout() == (None, None)
        assert master.settimeout(1.5) == 1
        assert master.gettimeout() == (1.5, None)
        assert master.settimeout(3, "t") == 1
        assert master.gettimeout() == (1.5, 3.0)
        assert master.settimeout(-1) == 1
        assert master.settimeout(None, "total") == 1
        assert master.gettimeout() == (None, None)
        assert master.settimeout(0, "r") == 1
        assert master.gettimeout() == (None, 0.0)
        with pytest.raises(TypeError):
            master.settimeout(True)
        with pytest.raises(ValueError, match="invalid timeout mode"):
            master.settimeout(1, "x")
        with pytest.raises(ValueError, match="NaN"):
            master.settimeout(math.nan)
        assert master.gettimeout() == (None, 0.0)
    finally:
        master.close()
