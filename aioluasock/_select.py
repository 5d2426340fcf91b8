"""`select` on the loop's readiness notifications.

Clients with a transport report readiness from their protocol's callbacks
(asyncio refuses `add_reader` on a transport's descriptor and uvloop breaks);
servers, connecting clients and foreign objects with `getfd()` are watched
with the loop's reader/writer callbacks on their own descriptor. Nothing
builds an fd_set, so there is no FD_SETSIZE ceiling, and the cost of a call
is proportional to the objects passed.
"""

from __future__ import annotations

import asyncio
import select as _os_select
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar, runtime_checkable

from ._errors import TIMEOUT
from ._protocol import _wake
from ._tcp import _Socket, _wait_until
from ._timeout import parse_timeout

__all__ = ["Selectable", "select"]


@runtime_checkable
class Selectable(Protocol):
    """A foreign object `select` accepts, as LuaSocket does: it has a
    descriptor (`getfd()`, -1 for none) and may hold buffered data (`dirty()`)."""

    def getfd(self) -> int: ...

    def dirty(self) -> bool: ...


S = TypeVar("S", bound=Selectable)


def _unique(objects: Iterable[S] | None) -> list[S]:
    if objects is None:
        return []
    if isinstance(objects, (str, bytes)) or not isinstance(objects, Iterable):  # type: ignore[unreachable]
        raise TypeError(f"select expects iterables of sockets, not {type(objects).__name__}")
    seen: set[int] = set()
    result: list[S] = []
    for obj in objects:
        if id(obj) not in seen:
            if not isinstance(obj, _Socket) and not callable(getattr(obj, "getfd", None)):
                raise TypeError(f"select: {type(obj).__name__} object has no getfd()")
            seen.add(id(obj))
            result.append(obj)
    return result


def _foreign_dirty(obj: Selectable) -> bool:
    # `dirty` is optional, as in LuaSocket (select.c looks it up and skips
    # objects that lack it): only `getfd` is required.
    dirty = getattr(obj, "dirty", None)
    return bool(dirty()) if callable(dirty) else False


def _foreign_fd(obj: Selectable) -> int:
    fd = obj.getfd()
    if isinstance(fd, bool) or not isinstance(fd, int):
        return -1
    return fd


def _in_order(objects: list[S], ready: list[S]) -> list[S]:
    """`ready` (a subset of the distinct `objects`) in the order of `objects`."""
    if len(ready) < 2:
        return ready
    chosen = {id(obj) for obj in ready}
    return [obj for obj in objects if id(obj) in chosen]


class _Scan(Generic[S]):
    """One pass over the objects: which are ready now."""

    __slots__ = ("fd_read", "fd_write", "readable", "writable")

    def __init__(self, recv: list[S], send: list[S]) -> None:
        self.readable: list[S] = []
        self.writable: list[S] = []
        self.fd_read: list[tuple[int, S]] = []  # objects whose readiness is their descriptor's
        self.fd_write: list[tuple[int, S]] = []
        for obj in recv:
            if isinstance(obj, _Socket):
                if obj._closed:
                    continue
                proto = obj._proto
                # Readable when receive would not wait: bytes buffered, end of
                # stream, an error, or a local shutdown("receive").
                if obj._buffer or (
                    proto is not None and (proto.eof or proto.error is not None or proto.discard)
                ):
                    self.readable.append(obj)
                    continue
                fd = obj._poll_fd()
            else:
                fd = _foreign_fd(obj)
                if fd >= 0 and _foreign_dirty(obj):
                    self.readable.append(obj)
                    continue
            if fd >= 0:
                self.fd_read.append((fd, obj))
        for obj in send:
            if isinstance(obj, _Socket):
                if obj._closed:
                    continue
                proto = obj._proto
                if proto is not None:
                    # Writable when send would not wait: room below the
                    # high-water mark, or send fails at once (a reset, a local
                    # shutdown("send")), as the OS reports such a socket
                    # writable to LuaSocket's select; else a select-driven
                    # sender (copas) would wait forever on a dead connection.
                    if not proto.writing_paused or obj._write_end(proto) is not None:
                        self.writable.append(obj)
                    continue
                fd = obj._select_fd()
            else:
                fd = _foreign_fd(obj)
            if fd >= 0:
                self.fd_write.append((fd, obj))
        if self.fd_read or self.fd_write:
            self._poll()
            # poll()'s finds were appended after the objects found ready
            # without it: give both lists back in the order the caller gave.
            self.readable = _in_order(recv, self.readable)
            self.writable = _in_order(send, self.writable)

    def _poll(self) -> None:
        # One zero-timeout poll() for every descriptor-watched object: poll
        # has no descriptor ceiling, unlike select().
        poller = _os_select.poll()
        events: dict[int, int] = {}
        for fd, _ in self.fd_read:
            events[fd] = events.get(fd, 0) | _os_select.POLLIN
        for fd, _ in self.fd_write:
            events[fd] = events.get(fd, 0) | _os_select.POLLOUT
        for fd, mask in events.items():
            poller.register(fd, mask)
        ready = dict(poller.poll(0))
        fail = _os_select.POLLERR | _os_select.POLLHUP | _os_select.POLLNVAL
        for fd, obj in self.fd_read:
            if ready.get(fd, 0) & (_os_select.POLLIN | fail):
                self.readable.append(obj)
        for fd, obj in self.fd_write:
            if ready.get(fd, 0) & (_os_select.POLLOUT | fail):
                self.writable.append(obj)

    @property
    def ready(self) -> bool:
        return bool(self.readable or self.writable)


# The select calls waiting on each foreign descriptor, per loop and direction.
# The loop keeps one reader (writer) callback per descriptor, so concurrent
# selects on one foreign object share it: a second select must not replace
# the first one's callback, nor the first remove the second's when it ends.
# An entry lives only while some select waits on it (no state is left behind).
_foreign_waiters: dict[tuple[asyncio.AbstractEventLoop, int, bool], list[asyncio.Future[bool]]] = {}


def _wake_all(waiters: list[asyncio.Future[bool]]) -> None:
    for waiter in waiters:
        _wake(waiter)


def _watch_foreign(
    loop: asyncio.AbstractEventLoop, fd: int, write: bool, waiter: asyncio.Future[bool]
) -> None:
    key = (loop, fd, write)
    waiters = _foreign_waiters.get(key)
    if waiters is None:
        waiters = []
        if write:
            loop.add_writer(fd, _wake_all, waiters)
        else:
            loop.add_reader(fd, _wake_all, waiters)
        _foreign_waiters[key] = waiters
    waiters.append(waiter)


def _unwatch_foreign(
    loop: asyncio.AbstractEventLoop, fd: int, write: bool, waiter: asyncio.Future[bool]
) -> None:
    key = (loop, fd, write)
    waiters = _foreign_waiters.get(key)
    if waiters is None:
        return
    if waiter in waiters:
        waiters.remove(waiter)
    if not waiters:
        del _foreign_waiters[key]
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class _Watch:
    """Registers one waiter with every object of a select call, and undoes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool]) -> None:
        self.loop = loop
        self.waiter = waiter
        self.undo: list[tuple[object, ...]] = []

    def add(self, recv: list[S], send: list[S]) -> None:
        waiter, loop = self.waiter, self.loop
        protos = set()
        for objects, write in ((recv, False), (send, True)):
            for obj in objects:
                if isinstance(obj, _Socket):
                    if obj._closed:
                        continue
                    proto = obj._proto
                    if proto is not None:
                        if id(proto) not in protos:
                            protos.add(id(proto))
                            proto.watchers.append(waiter)
                            self.undo.append((proto,))
                    elif obj._select_fd() >= 0:
                        obj._watch_fd(loop, waiter, write)
                        self.undo.append((obj, write))
                else:
                    fd = _foreign_fd(obj)
                    if fd >= 0:
                        _watch_foreign(loop, fd, write, waiter)
                        self.undo.append((fd, write))

    def remove(self) -> None:
        waiter, loop = self.waiter, self.loop
        for entry in self.undo:
            target = entry[0]
            if len(entry) == 1:
                watchers = target.watchers  # type: ignore[attr-defined]
                if waiter in watchers:
                    watchers.remove(waiter)
            elif isinstance(target, _Socket):
                target._unwatch_fd(loop, waiter, bool(entry[1]))
            else:
                _unwatch_foreign(loop, target, bool(entry[1]), waiter)  # type: ignore[arg-type]
        self.undo.clear()


async def select(
    recvt: Iterable[S] | None,
    sendt: Iterable[S] | None,
    timeout: float | None = None,
) -> tuple[list[S], list[S], None] | tuple[list[S], list[S], str]:
    """Wait until some objects are ready to receive from or send to.

    Args:
        recvt: objects to watch for reading (`None` for none): aioluasock
            objects or foreign objects with `getfd()` and `dirty()`. A client
            is readable when bytes are buffered, at end of stream or after an
            error; a server when a connection is pending.
        sendt: objects to watch for writing: a connected client below its
            write high-water mark, or one whose connect finished.
        timeout: seconds; `None` or negative waits without limit; 0 polls once.

    Returns:
        `(readable, writable, None)`, in the order given; or
        `([], [], "timeout")`. Closed objects are ignored.

    Raises:
        TypeError: an argument is not an iterable of selectable objects.
    """
    limit = parse_timeout(timeout)
    recv = _unique(recvt)
    send = _unique(sendt)
    scan = _Scan(recv, send)
    if scan.ready:
        return scan.readable, scan.writable, None
    loop = asyncio.get_running_loop()
    if limit == 0:
        await asyncio.sleep(0)
        return [], [], TIMEOUT
    deadline = None if limit is None else loop.time() + limit
    while True:
        waiter: asyncio.Future[bool] = loop.create_future()
        watch = _Watch(loop, waiter)
        try:
            watch.add(recv, send)
            woken = await _wait_until(loop, waiter, deadline)
        finally:
            watch.remove()
        scan = _Scan(recv, send)
        if scan.ready:
            return scan.readable, scan.writable, None
        if not woken:
            return [], [], TIMEOUT
