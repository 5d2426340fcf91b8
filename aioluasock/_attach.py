"""Putting a connected socket under a transport without a task.

Why this exists: the loops make a transport for a socket we already hold
(accepted, or connected by us: LuaSocket's `connect` and `accept` own the
socket calls) only through the coroutine `loop.connect_accepted_socket`.
Run as a task, it costs a loop iteration before the transport exists and two
more before its result reaches the caller, on every accepted connection.
`Attach` steps that coroutine by hand instead: its first step (made inside
`accept` or `connect`) creates the transport; the rest (waiting for
`connection_made`) finishes in a done callback, and whoever needs the
transport up (`send`, a `receive` with no timeout after an accept) awaits
`Attach.wait()`. It came with the other accept work (no enum conversions,
the listener's reader kept between accepts) that together took the
connection rate from 0.55x to 0.75x of the hand-written line Protocol
(uvloop, this project's benchmarks); a task per attach is the simpler design
it replaced, at three loop iterations per connection.

The coroutine must be run to its end (closing it half-way closes the
transport), and what it raises must reach someone: the waiters, or the
loop's exception handler. `TcpSocket._attach_start` (`_lifecycle.py`) starts
one; `_close` leaves the descriptor to the transport from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, final

from ._errors import CLOSED, os_error_text
from ._protocol import StreamProtocol

if TYPE_CHECKING:
    from ._socket import SocketBase


@final
class Attach:
    """Runs the loop's `connect_accepted_socket` coroutine without a task.

    A task would cost a loop iteration before the transport exists and
    another two before its result reaches the caller; stepped by hand, the
    first step (inside `accept`) makes the transport and the rest, waiting
    for `connection_made`, finishes in a done callback. The coroutine must be
    run to its end: closing it half-way closes the transport.

    Attributes:
        error: the attach failed: the loop's error text (the loop closed
            the half-made transport and the socket with it).
    """

    __slots__ = ("_coro", "_owner", "_proto", "_waiters", "error")

    def __init__(self, owner: SocketBase, proto: StreamProtocol, coro: Coroutine[Any, Any, object]) -> None:
        self._owner: SocketBase | None = owner
        self._proto = proto
        self._coro = coro
        self._waiters: list[asyncio.Future[None]] | None = None
        self.error: str | None = None

    def wait(self) -> asyncio.Future[None]:
        """A future done when the attach has finished (one per waiter, so
        that cancelling one wait leaves the others alone)."""
        waiter: asyncio.Future[None] = self._proto.loop.create_future()
        if self._owner is None:
            waiter.set_result(None)
        elif self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        return waiter

    def step(self, _: object = None) -> None:
        """Run the coroutine to its next suspension (as a task step would)."""
        try:
            awaited = self._coro.send(None)
        except StopIteration as stop:
            if self._proto.error is not None:
                # Closed while the transport came up (a loop that did not call
                # connection_made, which closes it in that case).
                stop.value[0].close()
            self._finish(None)
        except OSError as exc:
            self._fail(os_error_text(exc))
            self._finish(None)
        except Exception as exc:
            # Unexpected: surfaces in the callers waiting, else in the loop's handler.
            self._fail(CLOSED)
            if not self._finish(exc):
                raise
        else:
            if awaited is None:  # a bare yield: go on at the next iteration
                self._proto.loop.call_soon(self.step)
            else:  # a future, as a task handles it
                awaited._asyncio_future_blocking = False
                awaited.add_done_callback(self.step)

    def _fail(self, error: str) -> None:
        self.error = error
        proto = self._proto
        if proto.error is None:
            proto.error = error
        proto.wake_reader()
        proto.wake_writer()
        proto.notify()

    def _finish(self, exc: Exception | None) -> bool:
        """Detach from the owner and wake the waiters; False when an
        exception found nobody to raise it in."""
        owner, self._owner = self._owner, None
        if owner is not None and owner._attaching is self:
            owner._attaching = None
        waiters, self._waiters = self._waiters, None
        delivered = False
        for waiter in waiters or ():
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
                    delivered = True
        return exc is None or delivered
