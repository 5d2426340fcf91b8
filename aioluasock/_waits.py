"""Waiting on the loop: a call's deadline turned into one timer per wait.

Pure plumbing shared by every object (TCP, UDP, select): the answer of
`TimeoutState` (`_timeout.py`) for the wait about to start, the yield of a
timeout-0 call, and a future awaited until a deadline.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ._errors import TIMEOUT
from ._timeout import CallDeadline

NO_LIMIT: Final = CallDeadline(None, None)
EXPIRED_CALL: Final = CallDeadline(0.0, None)
"""A call whose time is up: its next wait times out at once."""


def expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


EXPIRED: Final = -1.0
"""`next_deadline`'s answer for "report timeout without waiting"."""


def next_deadline(loop: asyncio.AbstractEventLoop, call: CallDeadline) -> float | None:
    """The deadline of the wait about to start: `None` for no limit (no clock
    reading, no timer), `EXPIRED` when the call must time out at once."""
    if call is NO_LIMIT:
        return None
    now = loop.time()
    deadline = call.wait_until(now)
    return EXPIRED if deadline is not None and deadline <= now else deadline


async def timed_out(waited: bool) -> str:
    """Report "timeout"; a call that never waited first yields to the loop
    once, so that a polling loop (timeout 0) cannot starve other tasks.

    Only for calls whose answer cannot change during that yield (connect:
    LuaSocket's timeout-0 connect reports "timeout" without looking again).
    Receive, send and accept use `let_io_in` and try again instead.
    """
    if not waited:
        await asyncio.sleep(0)
    return TIMEOUT


async def let_io_in(loop: asyncio.AbstractEventLoop) -> None:
    """Yield until what the kernel already holds for this loop's transports
    has been handed to their protocols: the wait of a timeout-0 call.

    LuaSocket's timeout-0 `receive` is one `recv()`: it sees bytes that are in
    the kernel. Here a transport reads them when the loop polls, so a call
    that found nothing yields, then looks again before it reports "timeout".
    How long "until the loop polled" is depends on the loop: a task's step
    resumed by `sleep(0)` runs in the next iteration *before* that
    iteration's I/O callbacks on the selector loop (its ready queue holds the
    step ahead of the callbacks its poll appends), and *after* them on
    uvloop (libuv polls before it runs the idle handle that runs the ready
    queue). So it takes two bare yields on the one and one on the other.
    """
    await asyncio.sleep(0)
    if type(loop).__module__.partition(".")[0] != "uvloop":
        await asyncio.sleep(0)


async def wait_until(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], deadline: float | None
) -> bool:
    """Await `waiter` until `deadline`: its result, or False on timeout."""
    if deadline is None:
        return await waiter
    timer = loop.call_at(deadline, expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()
