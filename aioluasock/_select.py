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
import functools
import select as _os_select
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final, Generic, Protocol, TypeVar, cast, runtime_checkable

from ._errors import TIMEOUT
from ._lifecycle import TcpSocket
from ._protocol import SelectMarks, StreamProtocol, Waiter, _wake
from ._tcp import Client
from ._timeout import parse_timeout
from ._udp import _Udp
from ._waits import let_io_in, wait_until

__all__ = ["KeptList", "KeptSelection", "Selectable", "Selection", "select"]


@runtime_checkable
class Selectable(Protocol):
    """A foreign object `select` accepts, as LuaSocket does: it has a
    descriptor (`getfd()`, -1 for none) and may hold buffered data (`dirty()`)."""

    def getfd(self) -> int: ...

    def dirty(self) -> bool: ...


S = TypeVar("S", bound=Selectable)
V = TypeVar("V")
Objects = list[Selectable]
SelectResult = tuple[Objects, Objects, str | None]


def _unique(objects: Iterable[S] | None) -> list[S]:
    if objects is None:
        return []
    # (A list is checked first: `Iterable` is an ABC, whose isinstance costs
    # about as much as the rest of a small select.)
    if type(objects) is not list and (
        isinstance(objects, (str, bytes)) or not isinstance(objects, Iterable)  # type: ignore[unreachable]
    ):
        raise TypeError(f"select expects iterables of sockets, not {type(objects).__name__}")
    seen: set[int] = set()
    result: list[S] = []
    for obj in objects:
        if id(obj) not in seen:
            if not isinstance(obj, (TcpSocket, _Udp)) and not callable(getattr(obj, "getfd", None)):
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
    """One pass over the objects: which are ready now.

    With `kernel`, a connection whose bytes the loop has not read yet is
    readable too: its descriptor is polled with the others (see
    `Selection.check_now`). `unaskable` then tells that the kernel's answer
    was not the socket's for some object: a TLS connection, or one whose
    writing is paused (room in the kernel reaches it through the loop).
    """

    __slots__ = ("fd_read", "fd_write", "readable", "unaskable", "writable")

    def __init__(self, recv: list[S], send: list[S], kernel: bool = False) -> None:
        self.readable: list[S] = []
        self.writable: list[S] = []
        self.unaskable = False
        self.fd_read: list[tuple[int, S]] = []  # objects whose readiness is their descriptor's
        self.fd_write: list[tuple[int, S]] = []
        for obj in recv:
            if isinstance(obj, _Udp):
                # Readable with a datagram (or an ICMP error) queued; else ask
                # the kernel (a zero-timeout poll; only watching the
                # descriptor is refused): one may be there that the transport
                # has not read yet.
                fd = obj._select_fd()
                if fd >= 0:
                    if obj._readable():
                        self.readable.append(obj)
                    else:
                        self.fd_read.append((fd, obj))
                continue
            if isinstance(obj, TcpSocket):
                if obj._closed:
                    continue
                proto = obj._proto
                # Readable when receive would not wait: bytes buffered, end of
                # stream, an error, or a local shutdown("receive").
                if obj._buffer._data or (
                    proto is not None and (proto.eof or proto.error is not None or proto.discard)
                ):
                    self.readable.append(obj)
                    continue
                if proto is not None and proto.transport is not None:
                    if not kernel or proto.reading_paused:
                        continue  # its protocol will tell
                    sock = proto.plain_socket
                    if sock is None:
                        self.unaskable = True
                        continue
                    fd = sock.fileno()
                else:
                    fd = obj._poll_fd()
            else:
                fd = _foreign_fd(obj)
                if fd >= 0 and _foreign_dirty(obj):
                    self.readable.append(obj)
                    continue
            if fd >= 0:
                self.fd_read.append((fd, obj))
        for obj in send:
            if isinstance(obj, _Udp):
                # A UDP socket can always send (LuaSocket's select says so
                # of every open one, bound or not).
                if obj._select_fd() >= 0:
                    self.writable.append(obj)
                continue
            if isinstance(obj, TcpSocket):
                if obj._closed:
                    continue
                proto = obj._proto
                if proto is not None:
                    # Writable when send would not wait: room below the
                    # high-water mark, or send fails at once (a reset, a local
                    # shutdown("send")), as the OS reports such a socket
                    # writable to LuaSocket's select; else a select-driven
                    # sender (copas) would wait forever on a dead connection.
                    # (Only a client has a protocol.)
                    if not proto.writing_paused or cast(Client, obj)._write_end(proto) is not None:
                        self.writable.append(obj)
                    elif kernel:
                        self.unaskable = True
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
_foreign_waiters: dict[tuple[asyncio.AbstractEventLoop, int, bool], list[Waiter]] = {}


def _wake_all(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        _wake(waiter)


def _watch_foreign(loop: asyncio.AbstractEventLoop, fd: int, write: bool, waiter: Waiter) -> None:
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


def _unwatch_foreign(loop: asyncio.AbstractEventLoop, fd: int, write: bool, waiter: Waiter) -> None:
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

    def __init__(self, loop: asyncio.AbstractEventLoop, waiter: Waiter) -> None:
        self.loop = loop
        self.waiter = waiter
        self.undo: list[tuple[object, ...]] = []

    def add(self, recv: list[S], send: list[S]) -> None:
        waiter, loop = self.waiter, self.loop
        protos = set()
        for objects, write in ((recv, False), (send, True)):
            for obj in objects:
                if isinstance(obj, _Udp):
                    # Datagrams come through the protocol, which tells
                    # its watchers (a socket with no local address has
                    # none: nothing can arrive there).
                    udp_proto = obj._attach()
                    if udp_proto is not None and id(udp_proto) not in protos:
                        protos.add(id(udp_proto))
                        udp_proto.watchers.append(waiter)
                        self.undo.append((udp_proto,))
                    continue
                if isinstance(obj, TcpSocket):
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
            elif isinstance(target, TcpSocket):
                target._unwatch_fd(loop, waiter, bool(entry[1]))
            else:
                _unwatch_foreign(loop, target, bool(entry[1]), waiter)  # type: ignore[arg-type]
        self.undo.clear()


# -- cached lists ---------------------------------------------------------------
#
# A LuaSocket server built on select passes the same table of clients on every
# call. Scanning it costs every client each time, ready or not; for such a list
# the scan is done once and then only the clients whose protocol signalled a
# change since (`SelectMarks`) are looked at again. A list is recognised by
# identity and checked by content (`==` compares element identities in C, a
# few nanoseconds each), so a list changed in place or rebuilt is seen.

GROUP_MIN: Final = 32
"""Lists shorter than this (both together) are scanned: it is as cheap."""
GROUP_MAX: Final = 8
"""Cached lists kept per thread; the oldest goes first."""


class _Group:
    """One cached `(recvt, sendt)` pair: where each object is in it.

    Connections are checked through the marks; any other object (a server,
    a client still connecting, a foreign object) is few in such a list and
    is scanned on every call, as without a cache.
    """

    __slots__ = ("recv", "recvt", "send", "sendt")

    def __init__(
        self,
        recvt: list[Selectable] | None,
        sendt: list[Selectable] | None,
        recv: list[Selectable],
        send: list[Selectable],
    ) -> None:
        self.recvt = recvt  # copies of the caller's lists, to recognise them
        self.sendt = sendt
        self.recv = _Members(recv)
        self.send = _Members(send)

    def ready(self, marks: SelectMarks) -> tuple[list[Selectable], list[Selectable]]:
        """The ready objects, in order."""
        recv, send = self.recv, self.send
        readable = recv.check(marks, write=False)
        writable = send.check(marks, write=True)
        if recv.other or send.other:
            scan = _Scan(recv.other, send.other)
            readable += [recv.other_at[id(obj)] for obj in scan.readable]
            writable += [send.other_at[id(obj)] for obj in scan.writable]
        return recv.objects_at(readable), send.objects_at(writable)


class _Members:
    """The distinct objects of one list of a group, split by how they are checked."""

    __slots__ = ("at", "objects", "other", "other_at")

    def __init__(self, objects: list[Selectable]) -> None:
        self.objects = objects  # distinct, in order
        self.at: dict[StreamProtocol, int] = {}  # connections, by protocol
        self.other: list[Selectable] = []  # the rest, scanned
        self.other_at: dict[int, int] = {}  # by id()
        for index, obj in enumerate(objects):
            # A client keeps its protocol for good once it has one. One whose
            # transport is still coming up (just accepted) is scanned: bytes
            # that arrived are still in the kernel.
            proto = obj._proto if isinstance(obj, Client) and not obj._closed else None
            if proto is not None and proto.transport is not None:
                self.at[proto] = index
            else:
                self.other.append(obj)
                self.other_at[id(obj)] = index

    def check(self, marks: SelectMarks, *, write: bool) -> list[int]:
        """Positions of the marked connections that are ready; the others are
        no longer marked."""
        return _marked_ready(self.at, self.objects, marks, write)

    def objects_at(self, positions: list[int]) -> list[Selectable]:
        if len(positions) > 1:
            positions.sort()
        objects = self.objects
        return [objects[index] for index in positions]


def _marked_ready(
    at: dict[StreamProtocol, int], objects: list[Any], marks: SelectMarks, write: bool
) -> list[int]:
    """Positions (in `objects`, by `at`) of the marked connections that are
    ready, unsorted; the others are no longer marked."""
    marked = marks.send if write else marks.recv
    if not marked or not at:
        return []
    # C's set intersection walks the smaller side: the changes, usually.
    found = at.keys() & marked
    positions: list[int] = []
    for proto in found:
        index = at[proto]
        obj = cast(Client, objects[index])
        # (A closed client is no longer marked: `_close` forgets it.)
        if write:
            ready = not proto.writing_paused or obj._write_end(proto) is not None
        else:
            ready = bool(obj._buffer) or proto.eof or proto.error is not None or proto.discard
        if ready and not obj._closed:
            positions.append(index)
        else:
            marked.discard(proto)
    forgotten = len(found) - len(positions)
    if forgotten > 64 and len(marked) < forgotten:
        # A set keeps the table of its largest size, and walking it costs
        # that size: once most marks are gone, move the rest to a small one.
        if write:
            marks.send = set(marked)
        else:
            marks.recv = set(marked)
    return positions


class _Cache:
    """One thread's cached lists and the marks of their connections."""

    __slots__ = ("groups", "loop", "marks", "seen")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.marks = SelectMarks()
        self.groups: dict[tuple[int, int], _Group] = {}
        # Lists met once: cached when they come back unchanged.
        self.seen: dict[tuple[int, int], tuple[list[Selectable] | None, list[Selectable] | None]] = {}

    def lookup(self, recvt: object, sendt: object) -> _Group | None:
        """The group of this exact pair, if it was cached and is unchanged."""
        group = self.groups.get((id(recvt), id(sendt)))
        if group is not None and group.recvt == recvt and group.sendt == sendt:
            return group
        return None

    def offer(
        self,
        recvt: list[Selectable] | None,
        sendt: list[Selectable] | None,
        recv: list[Selectable],
        send: list[Selectable],
    ) -> _Group | None:
        """Remember a pair scanned once; make a group of it the second time."""
        key = (id(recvt), id(sendt))
        copy = (None if recvt is None else list(recvt), None if sendt is None else list(sendt))
        if self.seen.get(key) != copy:
            self.seen.pop(key, None)
            self.seen[key] = copy
            _trim(self.seen)
            return None
        del self.seen[key]
        group = _Group(copy[0], copy[1], recv, send)
        if len(group.recv.at) + len(group.send.at) < len(group.recv.other) + len(group.send.other):
            return None  # mostly objects to scan anyway: nothing to gain
        self.groups.pop(key, None)
        self.groups[key] = group
        _trim(self.groups)
        marks = self.marks
        for members in (group.recv, group.send):
            for proto in members.at:
                proto.marks = marks
                marks.recv.add(proto)  # checked once by the next call
                marks.send.add(proto)
        return group


def _trim(entries: dict[tuple[int, int], V]) -> None:
    while len(entries) > GROUP_MAX:
        del entries[next(iter(entries))]


_local = threading.local()


def _cacheable(recvt: object, sendt: object) -> bool:
    """Lists (or `None`) long enough to be worth it."""
    size = 0
    for objects in (recvt, sendt):
        if type(objects) is list:
            size += len(objects)
        elif objects is not None:
            return False
    return size >= GROUP_MIN


def _cache() -> _Cache:
    """The running loop's cache (a thread runs one loop at a time; a new
    loop starts afresh, so nothing of a finished loop is kept past it)."""
    loop = asyncio.get_running_loop()
    cache: _Cache | None = getattr(_local, "cache", None)
    if cache is None or cache.loop is not loop:
        cache = _local.cache = _Cache(loop)
    return cache


class Selection:
    """What one `select` call looks at: how to check its objects, and how
    to watch them for a change (`watch`/`unwatch` around each wait).

    Objects of `recv`/`send` are watched one by one (`_Watch`); the
    connections of a cached list are woken through `marks` instead.
    """

    __slots__ = ("check", "marks", "recv", "send")

    def __init__(self, recvt: Iterable[S] | None, sendt: Iterable[S] | None) -> None:
        cache = _cache() if _cacheable(recvt, sendt) else None
        group = None if cache is None else cache.lookup(recvt, sendt)
        if group is None:
            recv = cast(Objects, _unique(recvt))
            send = cast(Objects, _unique(sendt))
            if cache is not None:
                group = cache.offer(cast(Objects, recvt), cast(Objects | None, sendt), recv, send)
        self.check: Callable[[], tuple[Objects, Objects]]
        self.marks: SelectMarks | None
        if group is None:
            self.check = _scanner(recv, send)
            self.recv, self.send, self.marks = recv, send, None
        else:
            # Connections by their marks; any other object scanned and watched.
            marks = cast(_Cache, cache).marks
            self.check = functools.partial(group.ready, marks)
            self.recv, self.send, self.marks = group.recv.other, group.send.other, marks

    def check_now(self) -> tuple[Objects, Objects] | None:
        """`check` with the kernel asked too, for a select that must answer
        without letting the loop run (LuaSocket's `select` with a timeout of
        0 polls the descriptors once): a connection whose bytes the loop has
        not read yet is readable. One zero-timeout poll() for those.

        Returns None where the kernel's answer is not the socket's, or where
        asking it would undo what the list's marks save: a TLS connection
        (bytes in the kernel are not yet data), a connection whose writing
        is paused (room in the kernel reaches it through the loop), a cached
        list (its check costs the changes only; a poll would cost every
        connection). The caller then lets the loop poll instead.
        """
        if self.marks is not None:
            return None
        scan = _Scan(self.recv, self.send, kernel=True)
        return None if scan.unaskable else (scan.readable, scan.writable)

    def watch(self, loop: asyncio.AbstractEventLoop, waiter: Waiter) -> _Watch:
        """Have any change that may make an object ready wake `waiter`."""
        if self.marks is not None:
            self.marks.waiters.append(waiter)
        watch = _Watch(loop, waiter)
        watch.add(self.recv, self.send)
        return watch

    def unwatch(self, watch: _Watch) -> None:
        """Undo `watch`."""
        watch.remove()
        marks = self.marks
        if marks is not None and watch.waiter in marks.waiters:
            marks.waiters.remove(watch.waiter)


# -- lists kept up to date by their owner ---------------------------------------
#
# The Lua bridge passes a Lua table's contents across on every call; a
# dispatcher such as Copas changes its table on nearly every call (a socket
# that became ready is removed, and added back when it waits again), so a
# list recognised by identity and content (`_Cache`) is new each time. A
# `KeptList` mirrors one such table instead: its owner sends only what
# changed (position by position), and the list keeps, as a cached group
# does, the connections by protocol (checked through the marks) apart from
# the other objects (scanned).


class KeptList:
    """A `select` list its owner keeps up to date with `update`.

    A list that holds one connection twice is checked by a scan of the
    whole list (`whole`), as without it.
    """

    __slots__ = ("at", "by_index", "marks", "objects", "other", "whole")

    def __init__(self) -> None:
        self.objects: list[Any] = []  # by position (0-based)
        self.at: dict[StreamProtocol, int] = {}  # connections with a transport
        self.by_index: dict[int, StreamProtocol] = {}
        self.other: dict[int, Any] = {}  # the rest, by position: scanned
        self.marks = _cache().marks
        self.whole = False

    def update(self, size: int, changes: tuple[Any, ...]) -> None:
        """Cut the list to `size`, then set the objects at the 1-based
        positions of `changes` (pairs of position and object; past the end
        only in order). Applying the same changes twice changes nothing.

        Every changed position is let go of before any is filled, so that an
        object moved (Copas moves the last entry into a hole) is never seen
        twice on the way.
        """
        objects = self.objects
        while len(objects) > size:
            self._forget(len(objects) - 1)
            objects.pop()
        pairs = [(changes[k] - 1, changes[k + 1]) for k in range(0, len(changes), 2)]
        count = len(objects)
        for index, obj in pairs:
            if index < count and objects[index] is not obj:
                self._forget(index)
        for index, obj in pairs:
            if index < len(objects):
                if objects[index] is obj:
                    continue
                objects[index] = obj
            else:
                objects.append(obj)
            self._learn(index, obj)

    def _learn(self, index: int, obj: Any) -> bool:
        """Place a new object; False when the list has to be scanned whole."""
        if self.whole:
            return False
        proto = obj._proto if isinstance(obj, Client) and not obj._closed else None
        if proto is None or proto.transport is None:
            self.other[index] = obj
            return True
        if proto in self.at:
            self._give_up()
            return False
        self.at[proto] = index
        self.by_index[index] = proto
        marks = self.marks
        proto.marks = marks
        marks.recv.add(proto)  # checked once by the next call
        marks.send.add(proto)
        return True

    def _forget(self, index: int) -> None:
        proto = self.by_index.pop(index, None)
        if proto is not None:
            del self.at[proto]
        else:
            self.other.pop(index, None)

    def _give_up(self) -> None:
        self.whole = True
        self.at.clear()
        self.by_index.clear()
        self.other.clear()

    def check(self, write: bool) -> list[int]:
        """The 0-based positions of the ready objects, in order."""
        objects = self.objects
        if self.whole:
            # An object given twice counts at its last position.
            last = {id(obj): index for index, obj in enumerate(objects)}
            distinct = _unique(objects)
            scan = _Scan([], distinct) if write else _Scan(distinct, [])
            return sorted(last[id(obj)] for obj in (scan.writable if write else scan.readable))
        positions = _marked_ready(self.at, objects, self.marks, write)
        other = self.other
        if other:
            # A client whose transport came up since goes with the marks.
            for index, obj in list(other.items()):
                if isinstance(obj, Client) and not obj._closed:
                    up = obj._proto
                    if up is not None and up.transport is not None:
                        del other[index]
                        if not self._learn(index, obj):
                            return self.check(write)  # a connection twice: scan it all
            if other:
                listed = list(other.values())
                scan = _Scan([], listed) if write else _Scan(listed, [])
                index_of = {id(obj): index for index, obj in other.items()}
                positions += [index_of[id(obj)] for obj in (scan.writable if write else scan.readable)]
        if len(positions) > 1:
            positions.sort()
        return positions

    def scanned(self) -> list[Any]:
        """The objects watched one by one while a select waits."""
        return list(self.objects) if self.whole else list(self.other.values())


class KeptSelection:
    """A `select` over two kept lists (either may be None): as `Selection`,
    with positions."""

    __slots__ = ("marks", "recv", "send")

    def __init__(self, recv: KeptList | None, send: KeptList | None) -> None:
        self.recv = recv
        self.send = send
        self.marks = _cache().marks

    def check(self) -> tuple[list[int], list[int]]:
        """The 0-based positions of the ready objects in each list."""
        readable = [] if self.recv is None else self.recv.check(False)
        writable = [] if self.send is None else self.send.check(True)
        return readable, writable

    def watch(self, loop: asyncio.AbstractEventLoop, waiter: Waiter) -> _Watch:
        self.marks.waiters.append(waiter)
        watch = _Watch(loop, waiter)
        watch.add(
            [] if self.recv is None else self.recv.scanned(), [] if self.send is None else self.send.scanned()
        )
        return watch

    def unwatch(self, watch: _Watch) -> None:
        watch.remove()
        waiters = self.marks.waiters
        if watch.waiter in waiters:
            waiters.remove(watch.waiter)


async def _until_ready(selection: Selection, limit: float | None) -> SelectResult:
    """Check; if nothing is ready, wait for a change and check again, until
    `limit`."""
    check = selection.check
    readable, writable = check()
    if readable or writable:
        return readable, writable, None
    loop = asyncio.get_running_loop()
    if limit == 0:
        # LuaSocket's select(..., 0) is one poll of the kernel: bytes already
        # there count. Here they reach the protocols once the loop polled, so
        # let it, then look again (as a timeout-0 receive does).
        await let_io_in(loop)
        readable, writable = check()
        if readable or writable:
            return readable, writable, None
        return [], [], TIMEOUT
    deadline = None if limit is None else loop.time() + limit
    while True:
        waiter: asyncio.Future[bool] = loop.create_future()
        watch = selection.watch(loop, waiter)
        try:
            woken = await wait_until(loop, waiter, deadline)
        finally:
            selection.unwatch(watch)
        readable, writable = check()
        if readable or writable:
            return readable, writable, None
        if not woken:
            return [], [], TIMEOUT


def _scanner(recv: list[Selectable], send: list[Selectable]) -> Callable[[], tuple[Objects, Objects]]:
    def check() -> tuple[Objects, Objects]:
        scan = _Scan(recv, send)
        return scan.readable, scan.writable

    return check


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
            error; a server when a connection is pending; a UDP object
            when a datagram (or an ICMP error) is there to receive.
        sendt: objects to watch for writing: a connected client below its
            write high-water mark, or one whose connect finished; any UDP
            object that has a socket.
        timeout: seconds; `None` or negative waits without limit; 0 polls once.

    Returns:
        `(readable, writable, None)`, in the order given; or
        `([], [], "timeout")`. Closed objects are ignored.

    Raises:
        TypeError: an argument is not an iterable of selectable objects.
    """
    limit = parse_timeout(timeout)
    result = await _until_ready(Selection(recvt, sendt), limit)
    return result  # type: ignore[return-value]  # the objects given, in order
