"""Master, server and client objects: the Python contract of DESIGN.md.

One class hierarchy with identical slots: `listen` turns a `Master` into a
`Server` and `connect` turns any object into a `Client` by reassigning
`__class__`, as LuaSocket swaps the metatable of the same userdata. Each kind
exposes only its own methods.

The client keeps its state in a `StreamProtocol` (buffer, end of stream,
waiters); the protocol never refers back to the client object, so an open
client that its owner forgets is garbage-collected (and closed, with a
`ResourceWarning`) even though the loop still holds its transport.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import os
import socket
import ssl
import time
import warnings
from collections.abc import Coroutine
from typing import Any, Final, cast, final, overload

from ._buffer import ALL, LINE, LINE_PATTERN, NUMBER, Pattern, ReceiveBuffer, parse_pattern
from ._errors import CLOSED, TIMEOUT, BusyError, errno_text, os_error_text, resolver_error_text
from ._options import OptionValue, get_option, lookup, set_option
from ._protocol import READ_LOW_WATER, WRITE_HIGH_WATER, WRITE_LOW_WATER, StreamProtocol, protocol_class
from ._timeout import CallDeadline, TimeoutState

__all__ = ["Client", "Master", "Server", "tcp", "tcp4", "tcp6"]

_BAD_FD: Final = errno_text(errno.EBADF)
_FAMILY_NAMES: Final[dict[int, str]] = {socket.AF_INET6: "inet6"}
_NO_LIMIT: Final = CallDeadline(None, None)
_EXPIRED_CALL: Final = CallDeadline(0.0, None)
"""A call whose time is up: its next wait times out at once."""
# What makes connect wait (LuaSocket's socket_connect). EALREADY — connect
# again while an attempt is in progress — fails at once with its text, and
# dispatchers that poll a connect (Copas) rely on it.
_CONNECT_PENDING: Final = frozenset({errno.EINPROGRESS, errno.EAGAIN})
_SHUTDOWN_MODES: Final = ("receive", "send", "both")

ReceiveResult = tuple[bytes | str | None, ...]
Buffer = bytes | bytearray | memoryview
"""What `send` takes (any object with the buffer protocol works at run time)."""


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


_EXPIRED: Final = -1.0
"""`_next_deadline`'s answer for "report timeout without waiting"."""


def _next_deadline(loop: asyncio.AbstractEventLoop, call: CallDeadline) -> float | None:
    """The deadline of the wait about to start: `None` for no limit (no clock
    reading, no timer), `_EXPIRED` when the call must time out at once."""
    if call is _NO_LIMIT:
        return None
    now = loop.time()
    deadline = call.wait_until(now)
    return _EXPIRED if deadline is not None and deadline <= now else deadline


async def _timed_out(waited: bool) -> str:
    """Report "timeout"; a call that never waited first yields to the loop
    once, so that a polling loop (timeout 0) cannot starve other tasks.

    Only for calls whose answer cannot change during that yield (connect:
    LuaSocket's timeout-0 connect reports "timeout" without looking again).
    Receive, send and accept use `_let_io_in` and try again instead.
    """
    if not waited:
        await asyncio.sleep(0)
    return TIMEOUT


async def _let_io_in(loop: asyncio.AbstractEventLoop) -> None:
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


async def _wait_until(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], deadline: float | None
) -> bool:
    """Await `waiter` until `deadline`: its result, or False on timeout."""
    if deadline is None:
        return await waiter
    timer = loop.call_at(deadline, _expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


def _as_bytes(data: object, what: str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        raise TypeError(f"{what} must be bytes, not str: encode it first (e.g. s.encode())")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}") from None
    return view.tobytes()


def _check_address(address: object) -> str | None:
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, not {type(address).__name__}")
    return address


def _check_port(port: object) -> str:
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        raise TypeError(f"port must be an int or a str, not {type(port).__name__}")
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ValueError(f"port out of range 0-65535: {port}")
    return str(port)


# The Python API's checks are stricter than the engine's, which the Lua bridge
# shares: LuaSocket hands C strings to getaddrinfo, so under the bridge
# "127.0.0.1\0x" is "127.0.0.1" and the service "99999" is port 34463 (glibc
# keeps the low 16 bits), as in real LuaSocket; in Python both are mistakes.


def _public_address(address: object) -> str:
    """`_check_address` for the Python API: a NUL is refused, not cut at."""
    host = _check_address(address)
    assert host is not None
    if "\0" in host:
        raise ValueError(f"address must not contain a NUL character: {host!r}")
    return host


def _public_port(port: object) -> int | str:
    """`_check_port` for the Python API: a numeric string is range-checked
    like an int, an empty one refused; other strings are service names."""
    _check_port(port)
    if isinstance(port, str):
        if not port:
            raise ValueError("port must not be empty: use 0 for an ephemeral port")
        if port.isascii() and port.isdigit() and not 0 <= int(port) <= 65535:
            raise ValueError(f"port out of range 0-65535: {port!r}")
        if "\0" in port:
            raise ValueError(f"port must not contain a NUL character: {port!r}")
    assert isinstance(port, (int, str))
    return port


class _PlainSocket(socket.socket):
    """A `socket.socket` whose `family` and `type` are the plain ints of the
    C socket: `socket.socket` converts them to enums on every read (about a
    microsecond each), and the loops read them several times per connection
    (`accept`, `connect_accepted_socket`)."""

    __slots__ = ()

    family = _socket.socket.family  # type: ignore[assignment]
    type = _socket.socket.type  # type: ignore[assignment]


_NONBLOCKING_STREAM: Final = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
"""The socket type that makes a socket object non-blocking from the start,
where the platform has the flag (it only sets the object's own mode: the
descriptor itself is made non-blocking by the loop that takes it)."""


def _new_socket(family: int) -> socket.socket:
    sock = _PlainSocket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            # As LuaSocket: an IPv6 socket never accepts IPv4-mapped peers.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def _resolve(
    address: str | None, port: str, family: int, *, passive: bool, socktype: int = socket.SOCK_STREAM
) -> list[tuple[int, tuple[object, ...]]] | str:
    """Resolve with the loop's resolver (never blocking the loop): a list of
    `(family, sockaddr)` or LuaSocket's text for the failure. `socktype` is
    the hint LuaSocket gives (UDP objects resolve for SOCK_DGRAM)."""
    flags = socket.AI_PASSIVE if passive else 0
    if not port.isdigit():
        # A service name ("http", " 80", "-1"): translated here, with the C
        # library's rules as LuaSocket has them, so that both loops agree
        # (uvloop's resolver accepts "-1"). Only the local services database
        # is read; no host is looked up.
        try:
            port = str(socket.getaddrinfo(None, port or "0", socket.AF_INET, socktype)[0][4][1])
        except (OSError, UnicodeError) as exc:
            return os_error_text(exc) if isinstance(exc, OSError) else str(exc)
    if port.isdigit():
        # A numeric address (or the wildcard) needs no lookup: answer it here
        # instead of queueing it behind real lookups on the resolver's few
        # threads, which would make a crowd of connects crawl.
        try:
            infos = socket.getaddrinfo(
                address,
                port,
                family,
                socktype,
                0,
                flags | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
        except (OSError, UnicodeError):
            pass
        else:
            return [(info[0], info[4]) for info in infos]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            address,
            port,
            family=family,
            type=socktype,
            flags=flags,
        )
    except OSError as exc:
        return os_error_text(exc)
    except UnicodeError:
        # The IDNA codec refuses the name (a label over 63 characters, say):
        # the C resolver, which LuaSocket calls, answers "not known" for it.
        return resolver_error_text(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    if not infos:
        return "no info on address"
    return [(info[0], info[4]) for info in infos]


@final
class _Attach:
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

    def __init__(self, owner: _Socket, proto: StreamProtocol, coro: Coroutine[Any, Any, object]) -> None:
        self._owner: _Socket | None = owner
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


class _Socket:
    """State and methods common to every kind (not public)."""

    __slots__ = (
        "__weakref__",
        "_accept_busy",
        "_attaching",
        "_birthday",
        "_buffer",
        "_closed",
        "_family",
        "_fd_readers",
        "_fd_writers",
        "_keep_buffer",
        "_proto",
        "_recv_busy",
        "_send_busy",
        "_send_shut",
        "_sent",
        "_sock",
        "_timeout",
    )

    _kind: str = "tcp{any}"

    def __init__(self, sock: socket.socket | None, family: int) -> None:
        self._sock = sock
        self._family = family
        self._timeout = TimeoutState()
        self._proto: StreamProtocol | None = None
        self._buffer = ReceiveBuffer()
        self._closed = False
        self._keep_buffer = False
        self._recv_busy = False
        self._send_busy = False
        self._accept_busy = False
        self._attaching: _Attach | None = None
        self._send_shut = False
        self._sent = 0
        self._birthday = time.monotonic()
        self._fd_readers: list[asyncio.Future[bool]] = []
        self._fd_writers: list[asyncio.Future[bool]] = []

    # -- common methods -------------------------------------------------------

    def close(self) -> int:
        """Close the object; every task waiting on it returns "closed".

        Buffered bytes are discarded with the socket. Closing again is harmless.

        Returns:
            1, always.
        """
        self._close()
        return 1

    def settimeout(self, value: float | None, mode: str = "b") -> int:
        """Set the block (`"b"`) or total (`"t"`) timeout, in seconds.

        Args:
            value: seconds (`int` or `float`); `None` or negative for no limit;
                0 for "try once, never wait".
            mode: ``"b"``: the limit of each single wait, restarted by progress;
                ``"t"``: the limit of a whole call. Both can be set.

        Returns:
            1.

        Raises:
            TypeError: `value` is not a number or `None` (`bool` included).
            ValueError: unknown mode.
        """
        self._timeout.set(value, mode)
        return 1

    def gettimeout(self) -> tuple[float | None, float | None]:
        """Return `(block, total)`; `None` means no limit."""
        return self._timeout.block, self._timeout.total

    def setoption(self, name: str, value: OptionValue) -> tuple[int, None] | tuple[None, str]:
        """Set a socket option (see the README's option table).

        Returns:
            `(1, None)`, or `(None, "setsockopt failed")` when the OS refuses.

        Raises:
            ValueError: unknown option; TypeError: a value of the wrong type.
        """
        failure = set_option(self._sock if not self._closed else None, lookup(name, setting=True), value)
        return (None, failure) if failure else (1, None)

    def getoption(self, name: str) -> tuple[OptionValue, None] | tuple[None, str]:
        """Read a socket option.

        Returns:
            `(value, None)` (for ``"error"`` the pending error's text or
            `None`; reading clears it), or `(None, "getsockopt failed")`.

        Raises:
            ValueError: unknown option.
        """
        return get_option(self._sock if not self._closed else None, lookup(name, setting=False))

    def getsockname(self) -> tuple[str, int] | tuple[None, str]:
        """Return the local `(ip, port)`, or `(None, err)`."""
        return self._address(peer=False)

    def _address(self, *, peer: bool) -> tuple[str, int] | tuple[None, str]:
        """The local or the peer's `(ip, port)`, or `(None, err)`."""
        if self._sock is None or self._closed:
            return None, _BAD_FD
        try:
            address = self._sock.getpeername() if peer else self._sock.getsockname()
        except OSError as exc:
            return None, os_error_text(exc)
        return address[0], address[1]

    def getfd(self) -> int:
        """Return the descriptor, or -1 when there is none (closed, or a
        `tcp()` master not yet bound or connected)."""
        if self._sock is None or self._closed:
            return -1
        return self._sock.fileno()

    def getfamily(self) -> str:
        """Return ``"inet6"`` for an IPv6 object, else ``"inet4"``."""
        return _FAMILY_NAMES.get(self._family, "inet4")

    def dirty(self) -> bool:
        """True when received bytes are buffered, unconsumed."""
        return bool(self._buffer)

    def __repr__(self) -> str:
        where = ""
        sock = self._sock
        if self._closed:
            where = " closed"
        elif sock is not None:
            try:
                local = sock.getsockname()
                where = f" {local[0]}:{local[1]}"
                if self._kind == "tcp{client}":
                    peer = sock.getpeername()
                    where += f" -> {peer[0]}:{peer[1]}"
            except OSError:
                pass
        return f"<{self._kind}{where} fd={self.getfd()}>"

    def __del__(self) -> None:
        if self._closed or (self._sock is None and self._proto is None):
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._close()

    # -- engine (shared with the Lua bridge) ---------------------------------

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        proto, sock = self._proto, self._sock
        self._wake_fd_waiters()
        if proto is not None:
            if proto.transport is not None:
                proto.flush()  # sends already counted as accepted still go out
                # The transport owns the descriptor now (uvloop detaches our
                # socket object when it closes): never close it twice.
                proto.transport.close()
            elif sock is not None:
                # Still coming up: the transport closes the descriptor once it
                # is (it finds the protocol closed). End the connection now,
                # so that the peer sees it at once, as after LuaSocket's close().
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if proto.error is None:
                proto.error = CLOSED
            proto.wake_reader()
            proto.wake_writer()
            proto.notify()
            if proto.marks is not None:  # never ready again: out of select's marks for good
                proto.marks.forget(proto)
                proto.marks = None
        elif sock is not None:
            sock.close()
        # A receive waiting right now returns what it got as its partial
        # (DESIGN: close wakes waiters "with their partial data"); it clears
        # the rest when it returns.
        if not self._keep_buffer and not self._recv_busy:
            self._buffer.clear()

    def _wake_fd_waiters(self) -> None:
        sock = self._sock
        for waiters, remove in ((self._fd_readers, "remove_reader"), (self._fd_writers, "remove_writer")):
            if waiters:
                for waiter in waiters:
                    loop = waiter.get_loop()
                    if sock is not None and sock.fileno() >= 0:
                        getattr(loop, remove)(sock.fileno())
                    if not waiter.done():
                        waiter.set_result(True)
                waiters.clear()

    async def _wait_fd(
        self, loop: asyncio.AbstractEventLoop, write: bool, deadline: float | None, *, linger: bool = False
    ) -> bool:
        """Wait until our own descriptor (not a transport's) is ready.

        Args:
            linger: keep the loop's callback until the next loop iteration
                when this was the last waiter (see `_unwatch_fd`).

        Returns:
            False on timeout; True when ready or when the object was closed.
        """
        sock = self._sock
        assert sock is not None
        waiter: asyncio.Future[bool] = loop.create_future()
        self._watch_fd(loop, waiter, write)
        try:
            return await _wait_until(loop, waiter, deadline)
        finally:
            self._unwatch_fd(loop, waiter, write, linger)

    def _watch_fd(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], write: bool) -> None:
        # Several waiters (an accept and a select, say) share one reader
        # callback: the loop allows only one per descriptor and direction.
        waiters = self._fd_writers if write else self._fd_readers
        if not waiters:
            assert self._sock is not None
            fd = self._sock.fileno()
            if write:
                loop.add_writer(fd, self._fd_ready, self._fd_writers)
            else:
                loop.add_reader(fd, self._fd_ready, self._fd_readers)
        waiters.append(waiter)

    def _unwatch_fd(
        self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], write: bool, linger: bool = False
    ) -> None:
        waiters = self._fd_writers if write else self._fd_readers
        if waiter in waiters:
            if linger and len(waiters) == 1 and waiter.done():
                # An accept loop is about to wait again in this same step,
                # once it has taken what is pending: the (done) waiter keeps
                # the loop's callback until the next iteration, instead of
                # removing it now and adding it back (on uvloop a poll handle
                # made and closed, and seven system calls, per wait).
                loop.call_soon(self._end_linger, loop, waiter, write)
                return
            waiters.remove(waiter)
            if not waiters and self._sock is not None and self._sock.fileno() >= 0:
                if write:
                    loop.remove_writer(self._sock.fileno())
                else:
                    loop.remove_reader(self._sock.fileno())

    def _end_linger(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], write: bool) -> None:
        self._unwatch_fd(loop, waiter, write)

    @staticmethod
    def _fd_ready(waiters: list[asyncio.Future[bool]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def _start_call(self, loop: asyncio.AbstractEventLoop) -> CallDeadline:
        timeout = self._timeout
        if timeout.block is None and timeout.total is None:
            return _NO_LIMIT
        return timeout.start(loop.time())

    def _new_socket_for(self, family: int) -> str | None:
        """Give the object a fresh socket of `family` (LuaSocket creates one
        whenever the family changes or there is none)."""
        if self._sock is not None and not self._closed and self._family == family:
            return None
        self._drop_socket()
        try:
            self._sock = _new_socket(family)
        except OSError as exc:
            self._sock = None
            return os_error_text(exc)
        self._family = family
        self._closed = False
        return None

    def _drop_socket(self) -> None:
        proto = self._proto
        if proto is not None:
            if proto.transport is not None:
                proto.transport.close()
            elif proto.error is None:
                proto.error = CLOSED  # still coming up: closed once it is up
            self._proto = None
        elif self._sock is not None and not self._closed:
            self._wake_fd_waiters()
            self._sock.close()
        self._sock = None

    async def _bind(self, address: str, port: int | str) -> str | None:
        host = _check_address(address)
        service = _check_port(port)
        resolved = await _resolve(None if host == "*" else host, service, self._family, passive=True)
        if isinstance(resolved, str):
            return resolved
        err: str | None = None
        for family, sockaddr in resolved:
            err = self._new_socket_for(family)
            if err is not None:
                continue
            assert self._sock is not None
            try:
                self._sock.bind(sockaddr)
            except OSError as exc:
                err = os_error_text(exc)
            else:
                return None
        return err

    def _listen(self, backlog: int) -> str | None:
        if isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int, not {type(backlog).__name__}")
        if self._sock is None or self._closed:
            return _BAD_FD
        try:
            self._sock.listen(backlog)
        except OSError as exc:
            return os_error_text(exc)
        self.__class__ = Server
        return None

    async def _connect(self, address: str, port: int | str) -> str | None:
        host = _check_address(address)
        service = _check_port(port)
        # LuaSocket makes the object a client even when connecting fails.
        self.__class__ = Client
        resolved = await _resolve(host, service, self._family, passive=False)
        if isinstance(resolved, str):
            return resolved
        loop = asyncio.get_running_loop()
        err: str | None = None
        for family, sockaddr in resolved:
            err = self._new_socket_for(family)
            if err is not None:
                continue
            # Each address gets a full timeout, as in LuaSocket.
            err = await self._connect_to(loop, sockaddr, self._start_call(loop))
            if err is None or self._timeout.block == 0:
                break
        if err is None:
            err = await self._attach(loop)
        return err

    async def _connect_to(
        self, loop: asyncio.AbstractEventLoop, sockaddr: tuple[object, ...], call: CallDeadline
    ) -> str | None:
        sock = self._sock
        assert sock is not None
        code = sock.connect_ex(sockaddr)
        if code == 0:
            return None
        if code not in _CONNECT_PENDING:
            return errno_text(code)
        # The attempt goes on in the kernel; a timeout leaves it going, as in
        # LuaSocket: `select` reports the socket writable once it is done.
        try:
            deadline = _next_deadline(loop, call)
            if deadline == _EXPIRED:
                return await _timed_out(False)
            if not await self._wait_fd(loop, True, deadline):
                return TIMEOUT
        except asyncio.CancelledError:
            # A connect cancelled half-way leaves no half-open socket behind.
            self._close()
            raise
        if self._closed:
            return CLOSED
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return errno_text(code) if code else None

    def _attach_start(self, loop: asyncio.AbstractEventLoop) -> str | None:
        """Put a connected socket under a transport and our protocol, now.

        The loop's `connect_accepted_socket` makes the transport before its
        first suspension and calls `connection_made` (which starts reading) on
        the next loop iteration; an `_Attach` runs that coroutine without a
        task and finishes it in the background. No caller waits for it: a
        receive waits for bytes, which only come once reading started; a send
        waits for the transport (`_ensure_stream`).

        `_proto` is set before the transport exists (its `transport` is
        `None` until `connection_made`): from then on the transport owns the
        descriptor, and `_close` must leave the socket to it.

        Returns:
            The error text when the loop refused the socket at once.
        """
        sock = self._sock
        if sock is None or self._closed:
            return CLOSED
        # The transport takes over the descriptor's reader/writer callbacks:
        # a select watching it directly must rescan (it will watch the protocol).
        self._wake_fd_waiters()
        proto = self._proto = protocol_class(loop)(self._buffer, loop)
        # uvloop turns TCP_NODELAY on for every TCP transport (asyncio leaves
        # our sockets alone): keep the socket's own setting, as LuaSocket never
        # touches it, so "tcp-nodelay" reads the same on both loops.
        try:
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        except OSError:
            nodelay = None
        attach = self._attaching = _Attach(self, proto, loop.connect_accepted_socket(lambda: proto, sock))
        attach.step()  # both loops make the transport (and set TCP_NODELAY) in this first step
        if attach.error is not None:
            return attach.error
        if nodelay == 0:
            # Turned off again without asking first: one system call, not
            # two, and harmless where the loop left the option alone.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        return None

    async def _attach(self, loop: asyncio.AbstractEventLoop) -> str | None:
        """Attach (`_attach_start`) and wait until the transport is up."""
        err = self._attach_start(loop)
        attach = self._attaching
        if err is None and attach is not None:
            try:
                await attach.wait()
            except asyncio.CancelledError:
                # A connect cancelled half-way leaves no half-open socket behind.
                self._close()
                raise
            err = attach.error
        if self._closed:  # closed by another task while the transport came up
            return CLOSED
        return err

    async def _ensure_stream(self) -> StreamProtocol | None:
        """The client's protocol once its transport is up: waits for an
        attach in progress, or starts one after a connect that timed out and
        finished later; `None` if the socket is not connected."""
        attach = self._attaching
        if attach is None:
            if self._proto is not None or self._closed or self._sock is None:
                return self._proto
            try:
                self._sock.getpeername()
            except OSError:
                return None
            self._attach_start(asyncio.get_running_loop())
            attach = self._attaching
        if attach is not None:
            # A caller cancelled while the transport comes up drops only its
            # own wait: the attach goes on.
            await attach.wait()
        return self._proto

    # receive -----------------------------------------------------------------

    def _read_end(self, proto: StreamProtocol | None) -> tuple[str | None, bool]:
        """Why no more bytes will arrive, if so: `(error text, "*a" succeeds)`."""
        if self._closed:
            # A local close is not an end of stream: a waiting "*a" fails with
            # its partial (the Lua bridge keeps the buffer, and 3.1's "*a"
            # then succeeds with what was buffered).
            return CLOSED, self._keep_buffer and bool(self._buffer)
        if proto is None or proto.discard:
            return CLOSED, bool(self._buffer)
        if proto.error is not None:
            # "*a" succeeds only at a clean end of stream, not after a reset
            # (LuaSocket: recv's ECONNRESET is an error, a 0-byte read is not).
            return proto.error, proto.eof
        if proto.eof:
            return CLOSED, True
        return None, False

    async def _read(self, pattern: Pattern, prefix: bytes, call: CallDeadline) -> tuple[bytes, str | None]:
        """Run one reader until it completes or fails: `(data, None)` or
        `(partial, err)`; the partial includes `prefix` and is consumed."""
        kind, count = pattern
        if kind == NUMBER:
            if prefix and len(prefix) >= count:
                return prefix, None
            if count == 0:
                return b"", None
            pattern = (NUMBER, count - len(prefix))
        buffer = self._buffer
        waited = False
        while True:
            proto = self._proto
            err, all_ok = self._read_end(proto)
            data = buffer.read(pattern, all_ok)
            if data is not None:
                if proto is not None and proto.reading_paused and len(buffer) <= READ_LOW_WATER:
                    proto.resume_reading()
                return (prefix + data if prefix else data), None
            if err is None:
                assert proto is not None
                err = await self._wait_readable(proto, pattern, call, waited)
                waited = True
            if err is not None:
                # The partial holds no more than the pattern could take: the
                # last look found no LF ("*l") and fewer than n bytes (n), and
                # nothing arrived since (no await in between).
                partial = buffer.take_partial(kind)
                proto = self._proto
                if proto is not None and proto.reading_paused:
                    # The buffer paused reading while nobody read; consuming
                    # it as a partial must restart reading, or the next call
                    # (or a select) would wait for bytes that never come.
                    proto.resume_reading()
                return prefix + partial, err

    async def _wait_readable(
        self, proto: StreamProtocol, pattern: Pattern, call: CallDeadline, waited: bool
    ) -> str | None:
        """Wait for a change on the read side: `None` when the caller should
        run its reader again, "timeout" when nothing came in time.

        A wait that times out still returns `None` if something came in the
        meantime (bytes, end of stream, an error, a close): on a timeout of 0
        the "wait" is `_let_io_in`'s yield, during which bytes already in the
        kernel arrive; on a timer, bytes may arrive in the very loop
        iteration the timer fires, after it set the waiter's result. Either
        way the reader must look at them before the call fails, or a complete
        line would go out as the partial of a "timeout".
        """
        loop = proto.loop
        deadline = _next_deadline(loop, call)
        size = len(self._buffer)
        # A call that needs more than the high-water mark must keep reading.
        if proto.reading_paused:
            proto.resume_reading()
        if deadline == _EXPIRED:
            if waited:
                return TIMEOUT  # this call already waited its turn
            attach = self._attaching
            if attach is not None:
                # The transport is still coming up (just connected or
                # accepted): it starts reading once it is, and what the kernel
                # holds (bytes, the peer's FIN) only comes in after that.
                await attach.wait()
            await _let_io_in(loop)
        else:
            waiter: asyncio.Future[bool] = loop.create_future()
            proto.read_waiter = waiter
            proto.keep_reading = True
            try:
                if await _wait_until(loop, waiter, deadline):
                    return None
            finally:
                proto.keep_reading = False
                if proto.read_waiter is waiter:
                    proto.read_waiter = None
        if len(self._buffer) != size or self._read_end(self._proto)[0] is not None:
            return None
        return TIMEOUT

    async def _receive(self, patterns: list[Pattern], prefix: bytes) -> ReceiveResult:
        if self._recv_busy:
            raise BusyError("another task is already receiving on this object")
        loop = asyncio.get_running_loop()
        results: list[bytes | str | None] = []
        buffer = self._buffer
        # Several patterns consume as they complete: record it, so that a
        # cancelled call puts those bytes back ("no data lost").
        several = len(patterns) > 1
        # Busy from the start: a second receiver while the transport comes up
        # must not slip in and steal the read waiter.
        self._recv_busy = True
        try:
            if (self._proto is None or self._attaching is not None) and not self._closed:
                await self._ensure_stream()
            call = self._start_call(loop)
            if several:
                buffer.checkpoint()
            for index, pattern in enumerate(patterns):
                data, err = await self._read(pattern, prefix if index == 0 else b"", call)
                results.append(data)
                if err is not None:
                    results.extend([None] * (len(patterns) - index - 1))
                    results.append(err)
                    return tuple(results)
        except BaseException:
            if several:
                buffer.rollback()
                if buffer and self._proto is not None:
                    # Bytes are back in the buffer: readable for a select.
                    self._proto.notify()
            raise
        finally:
            if several:
                buffer.commit()
            self._recv_busy = False
            if self._closed and not self._keep_buffer:
                buffer.clear()
        results.append(None)
        return tuple(results)

    # send --------------------------------------------------------------------

    def _write_end(self, proto: StreamProtocol | None) -> str | None:
        if self._closed or proto is None or self._send_shut:
            return CLOSED
        if proto.error is not None:
            return proto.error
        transport = proto.transport
        if transport is None or transport.is_closing():
            return CLOSED
        return None

    async def _send(self, chunks: list[bytes]) -> tuple[int, str | None]:
        if self._send_busy:
            raise BusyError("another task is already sending on this object")
        # Busy from the start: a second sender while the transport comes up
        # must not interleave its bytes with ours.
        self._send_busy = True
        if (self._proto is None or self._attaching is not None) and not self._closed:
            try:
                await self._ensure_stream()
            except BaseException:
                self._send_busy = False
                raise
        loop = asyncio.get_running_loop()
        call = self._start_call(loop)
        total = 0
        waited = False
        if self._proto is not None:
            self._proto.flush()  # replies batched by the fast path go first
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                offset, size = 0, len(chunk)
                while offset < size:
                    proto = self._proto
                    err = self._write_end(proto)
                    if err is not None:
                        return total, err
                    assert proto is not None and proto.transport is not None
                    if proto.writing_paused:
                        err = await self._wait_writable(loop, proto, call, waited)
                        waited = True
                        if err is not None:
                            return total, err
                        continue
                    transport = proto.transport
                    # Hand over no more than fits below the high-water mark
                    # (plus one byte, so that a full buffer pauses us and a
                    # resume_writing is sure to follow): the count returned on
                    # timeout is then exactly what the transport took.
                    room = WRITE_HIGH_WATER + 1 - transport.get_write_buffer_size()
                    piece = min(size - offset, max(room, 1))
                    transport.write(chunk if piece == size else view[offset : offset + piece].tobytes())
                    if transport.is_closing():
                        # The write failed at once (the transport met a reset
                        # or a broken pipe and closed): it took none of it.
                        return total, proto.error or CLOSED
                    offset += piece
                    total += piece
                    self._sent += piece
        finally:
            self._send_busy = False
        return total, None

    async def _wait_writable(
        self, loop: asyncio.AbstractEventLoop, proto: StreamProtocol, call: CallDeadline, waited: bool
    ) -> str | None:
        """Wait until the transport takes more (or the connection ends):
        `None` when the caller should try again, "timeout" when it must fail.

        As on the read side (`_wait_readable`), a timed-out wait (the yield
        of a timeout of 0, or a timer that fired in the iteration the
        transport drained) looks again before it fails: a `send` polled with
        `settimeout(0)` must make progress once the peer reads.
        """
        deadline = _next_deadline(loop, call)
        if deadline == _EXPIRED:
            if waited:
                return TIMEOUT
            await _let_io_in(loop)
        else:
            waiter: asyncio.Future[bool] = loop.create_future()
            proto.write_waiter = waiter
            try:
                if await _wait_until(loop, waiter, deadline):
                    return None
            finally:
                if proto.write_waiter is waiter:
                    proto.write_waiter = None
        if not proto.writing_paused or self._write_end(self._proto) is not None:
            return None
        return TIMEOUT

    # accept ------------------------------------------------------------------

    async def _accept(self) -> tuple[Client, None] | tuple[None, str]:
        if self._accept_busy:
            raise BusyError("another task is already accepting on this object")
        loop = asyncio.get_running_loop()
        call = self._start_call(loop)
        waited = False
        self._accept_busy = True
        try:
            while True:
                sock = self._sock
                if sock is None or self._closed:
                    return None, CLOSED
                try:
                    # The C accept, without `socket.accept`'s enum conversions.
                    fd, _ = sock._accept()  # type: ignore[attr-defined]
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    pass
                except OSError as exc:
                    return None, os_error_text(exc)
                else:
                    return self._adopt(loop, sock.family, fd)
                deadline = _next_deadline(loop, call)
                if deadline == _EXPIRED:
                    if waited:
                        return None, TIMEOUT
                    # A timeout of 0: yield once, then try `accept` again
                    # (the loop below), as for a receive (`_wait_readable`).
                    await asyncio.sleep(0)
                elif not await self._wait_fd(loop, False, deadline, linger=True):
                    # The timer fired: one more try, without waiting, for a
                    # connection that came in the same loop iteration.
                    call = _EXPIRED_CALL
                waited = True
        finally:
            self._accept_busy = False

    def _adopt(
        self, loop: asyncio.AbstractEventLoop, family: int, fd: int
    ) -> tuple[Client, None] | tuple[None, str]:
        try:
            conn = _PlainSocket(family, _NONBLOCKING_STREAM, 0, fd)
            if _NONBLOCKING_STREAM == socket.SOCK_STREAM:  # pragma: no cover (no SOCK_NONBLOCK)
                conn.setblocking(False)
        except OSError as exc:
            os.close(fd)
            return None, os_error_text(exc)
        client = Client(conn, self._family)
        # A failure to attach shows in the client's first receive or send.
        client._attach_start(loop)
        return client, None

    # select support ----------------------------------------------------------

    def _select_fd(self) -> int:
        """The descriptor `select` watches with the loop's reader/writer
        callbacks, or -1 when readiness comes from the protocol instead."""
        if self._closed or self._sock is None or self._proto is not None:
            return -1
        return self._sock.fileno()

    def _poll_fd(self) -> int:
        """The descriptor `select`'s immediate check polls for reading:
        `_select_fd`'s, or the socket's own while its transport is coming up
        (after an accept): bytes that arrived are still in the kernel, as the
        transport has not started reading. The wait itself watches the protocol."""
        proto = self._proto
        if proto is not None and proto.transport is None and proto.error is None and not self._closed:
            assert self._sock is not None
            return self._sock.fileno()
        return self._select_fd()


@final
class Master(_Socket):
    """A TCP object that is neither listening nor connected (`tcp{master}`)."""

    __slots__ = ()
    _kind = "tcp{master}"

    async def bind(self, address: str, port: int | str) -> tuple[int, None] | tuple[None, str]:
        """Bind to a local address.

        Args:
            address: a host name or numeric address, or ``"*"`` for the
                wildcard of the object's family.
            port: a number (0 for an ephemeral port) or a service name.

        Returns:
            `(1, None)` or `(None, err)`: "address already in use",
            "Invalid argument" (already bound), "permission denied",
            "Cannot assign requested address", resolver texts.
        """
        err = await self._bind(_public_address(address), _public_port(port))
        return (None, err) if err is not None else (1, None)

    def listen(self, backlog: int = 32) -> tuple[int, None] | tuple[None, str]:
        """Listen for connections; the object becomes a `Server`.

        Connections nobody accepts yet wait in the kernel's queue, bounded by
        `backlog`.

        Returns:
            `(1, None)` or `(None, err)` ("Bad file descriptor" when not bound).
        """
        err = self._listen(backlog)
        return (None, err) if err is not None else (1, None)

    async def connect(self, address: str, port: int | str) -> tuple[int, None] | tuple[None, str]:
        """Connect; the object becomes a `Client`, even when connecting fails.

        Every resolved address is tried in order, each with the full timeout.
        With a timeout of 0 the attempt goes on after "timeout" is returned:
        `select` reports the client writable when it finishes.

        Returns:
            `(1, None)` or `(None, err)`: "connection refused", "timeout",
            "already connected", resolver texts, other OS texts.
        """
        err = await self._connect(_public_address(address), _public_port(port))
        return (None, err) if err is not None else (1, None)


@final
class Server(_Socket):
    """A listening TCP object (`tcp{server}`)."""

    __slots__ = ()
    _kind = "tcp{server}"

    async def accept(self) -> tuple[Client, None] | tuple[None, str]:
        """Wait for a connection and return it as a new `Client`.

        The new client has no timeout (it does not inherit the server's).

        Returns:
            `(client, None)`, or `(None, err)`: "timeout", "closed", or an OS
            text such as "Too many open files".

        Raises:
            BusyError: another task is accepting on this server.
        """
        return await self._accept()


@final
class Client(_Socket):
    """A connected TCP object (`tcp{client}`)."""

    __slots__ = ()
    _kind = "tcp{client}"

    # One pattern (the common case) types as `(data, None) | (partial, err)`.
    @overload
    async def receive(
        self, pattern: str | int = ..., /, *, prefix: Buffer = ...
    ) -> tuple[bytes, None] | tuple[bytes, str]: ...
    @overload
    async def receive(
        self, pattern: str | int, pattern2: str | int, /, *patterns: str | int, prefix: Buffer = ...
    ) -> ReceiveResult: ...
    async def receive(self, *patterns: str | int, prefix: Buffer = b"") -> ReceiveResult:
        """Receive data, one value per pattern.

        Args:
            *patterns: ``"*l"``: a line (ended by LF; the LF and every CR are
                dropped); ``"*a"``: everything until the peer closes; an `int`
                n: exactly n bytes. No pattern means ``"*l"``.
            prefix: bytes put in front of the first result; a number pattern
                counts them (`receive(10, prefix=six_bytes)` reads 4 more).

        Returns:
            `(v1, ..., vN, None)` on success. When pattern k fails:
            `(v1, ..., partial_k, None, ..., err)` where `partial_k` is the
            bytes it got (consumed) and err is "closed", "timeout" or an OS
            text.

        Raises:
            ValueError / TypeError: an invalid pattern or prefix.
            BusyError: another task is receiving on this client.
        """
        # Fast path: one pattern whose answer is already buffered costs no
        # future, no timer and no clock reading.
        if not prefix and len(patterns) <= 1 and not self._recv_busy and not self._closed:
            if not patterns:
                pattern = LINE_PATTERN
            else:
                first = patterns[0]
                if type(first) is int and first >= 0:  # a count (a bool is no int here)
                    pattern = (NUMBER, first)
                else:
                    pattern = _PATTERNS.get(first) or parse_pattern(first)
            kind = pattern[0]
            if kind != ALL:
                buffer = self._buffer
                data = self._receive_now(kind, pattern[1])
                if data is None:
                    timeout = self._timeout
                    if self._proto is None or timeout.block is not None or timeout.total is not None:
                        return await self._receive([pattern], b"")
                    # No timeout and a protocol (its transport may still be
                    # coming up after an accept: bytes only arrive once it
                    # is, so there is nothing else to wait for): wait right here.
                    # These are the steps of `_receive` -> `_read` ->
                    # `_wait_readable` with no deadline (the result, the
                    # partial on failure, the busy guard, the read waiter and
                    # `keep_reading`, the clear after a close), inlined: no
                    # clock reading, no timer, and one coroutine to resume per
                    # wake instead of four.
                    new_future = self._proto.loop.create_future
                    self._recv_busy = True
                    try:
                        while data is None:
                            waiting = self._proto
                            if (
                                self._closed
                                or waiting is None
                                or waiting.discard
                                or waiting.error is not None
                                or waiting.eof
                            ):
                                err, ended = self._read_end(waiting)
                                data = buffer.read(pattern, ended)
                                if data is None:
                                    return buffer.take_partial(kind), err or CLOSED
                                break
                            waiter: asyncio.Future[bool] = new_future()
                            waiting.read_waiter = waiter
                            # A call that needs more than the high-water mark must keep reading.
                            waiting.keep_reading = True
                            if waiting.reading_paused:
                                waiting.resume_reading()
                            try:
                                await waiter
                            finally:
                                waiting.keep_reading = False
                                if waiting.read_waiter is waiter:
                                    waiting.read_waiter = None
                            data = buffer.take_line() if kind == LINE else buffer.take(pattern[1])
                    finally:
                        self._recv_busy = False
                        # mypy keeps the narrowing of `self._closed` from before the await.
                        if self._closed and not self._keep_buffer:  # type: ignore[unreachable]
                            buffer.clear()  # type: ignore[unreachable]
                proto = self._proto
                if proto is not None and proto.reading_paused and len(buffer) <= READ_LOW_WATER:
                    proto.resume_reading()
                return data, None
            return await self._receive([pattern], b"")
        parsed = [parse_pattern(p) for p in patterns] if patterns else [LINE_PATTERN]
        return await self._receive(parsed, _as_bytes(prefix, "prefix"))

    def _receive_now(self, kind: int, count: int) -> bytes | None:
        """The answer of a `"*l"` (`kind` LINE) or `count`-byte receive when
        the buffer already holds it, consumed; `None` when the call would
        have to wait. For callers that have checked there is no prefix, no
        other receiver and no close (the Lua bridge calls it before yielding
        to its driver: a buffered line costs no round trip through the loop)."""
        buffer = self._buffer
        if buffer._data:  # (an empty buffer answers only receive(0))
            data = buffer.take_line() if kind == LINE else buffer.take(count)
            if data is not None:
                proto = self._proto
                if proto is not None and proto.reading_paused and len(buffer) <= READ_LOW_WATER:
                    proto.resume_reading()
            return data
        if kind == NUMBER and count == 0:
            return b""
        return None

    def _send_now(self, chunk: bytes) -> tuple[int, str | None] | None:
        """`send(chunk)` when the transport can take it without waiting:
        the result, or `None` when the call has to wait (no transport yet,
        writing paused, above the high-water mark, another sender)."""
        proto = self._proto
        if self._send_busy or proto is None or proto.writing_paused:
            return None
        transport = proto.transport
        size = len(chunk)
        # `_write_end(proto) is None`, inlined.
        if (
            transport is None
            or self._closed
            or self._send_shut
            or proto.error is not None
            or transport.is_closing()
        ):
            return None
        room = WRITE_HIGH_WATER + 1 - transport.get_write_buffer_size() - proto.pending_size
        if size > room and proto.pending is not None:
            # The batch is full (a bulk echo of more than one read's worth
            # of blocks): it goes out now, as `_send` would send it first,
            # and this send may fit after it.
            proto.flush()
            room = (
                -1
                if proto.writing_paused or transport.is_closing()
                else WRITE_HIGH_WATER + 1 - transport.get_write_buffer_size()
            )
        if size > room:
            return None
        self._sent += size
        if self._buffer._data:
            # More received bytes wait to be handled (pipelined requests, or
            # the next blocks of a bulk echo): batch this reply with the next
            # ones into one transport write at the end of the loop iteration,
            # instead of a system call per reply.
            proto.defer_write(chunk)
            return size, None
        if proto.pending is not None:
            proto.defer_write(chunk)
            proto.flush()
        else:
            transport.write(chunk)
        if transport.is_closing():  # failed at once: see `_send`
            self._sent -= size
            return 0, proto.error or CLOSED
        return size, None

    async def send(self, *data: Buffer) -> tuple[int, str | None]:
        """Send the byte strings in order.

        Returns:
            `(total, None)`, or `(accepted, err)` where `accepted` is exactly
            the number of bytes handed to the transport before the failure
            ("closed", "timeout" or an OS text).

        Raises:
            TypeError: an argument is a `str` or not bytes-like.
            BusyError: another task is sending on this client.
        """
        if len(data) > 1:
            # Several strings go out as one: one transport write (one segment
            # where they fit), at the cost of the caller's own concatenation.
            # Written one by one, `send(line, b"\n")` made two system calls
            # and, with TCP_NODELAY, two segments per reply. The count on
            # failure is unchanged: bytes handed over, in order.
            try:
                data = (b"".join(data),)  # takes any bytes-like object, refuses a str
            except TypeError:
                data = (b"".join([_as_bytes(item, "data") for item in data]),)  # raises the clear error
        if len(data) == 1:
            chunk = data[0]
            if type(chunk) is bytes:
                done = self._send_now(chunk)
                if done is not None:
                    return done
                return await self._send([chunk])
        return await self._send([_as_bytes(item, "data") for item in data])

    def shutdown(self, mode: str = "both") -> int:
        """Shut down one or both directions.

        ``"send"`` sends end-of-stream once queued bytes are written; later
        sends return "closed". ``"receive"`` drops what arrives from now on;
        receives still return the bytes already buffered (no data lost, as
        LuaSocket 3.1 on Linux returns what the kernel had queued), then
        "closed".

        Returns:
            1.

        Raises:
            ValueError: mode is not "receive", "send" or "both".
        """
        if mode not in _SHUTDOWN_MODES:
            raise ValueError(f"invalid shutdown mode {mode!r}: use 'receive', 'send' or 'both'")
        proto = self._proto
        if mode != "receive" and not self._send_shut:
            self._send_shut = True
            # uvloop's transport socket cannot shutdown(); write_eof() is
            # the transport's own way to do SHUT_WR on both loops.
            transport = None if proto is None else proto.transport
            if proto is not None and transport is not None and not transport.is_closing():
                proto.flush()
                # A TLS transport has no half-close (asyncio and uvloop): our
                # sends stop, and the peer sees the end of stream at close.
                if transport.can_write_eof():
                    # asyncio's write_eof raises ENOTCONN when the peer has
                    # reset the connection since its FIN; LuaSocket's
                    # shutdown returns 1 whatever the system call said.
                    with contextlib.suppress(OSError):
                        transport.write_eof()
            if proto is not None:
                proto.wake_writer()
                proto.notify()  # a select waiting to write: send now fails at once
            elif self._sock is not None and not self._closed:
                # No transport (yet): the socket is still ours to shut down.
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)
        if mode != "send" and proto is not None and not proto.discard:
            proto.discard = True
            proto.wake_reader()
            proto.notify()
        return 1

    async def _receive_some(self, max_bytes: int) -> tuple[bytes, str | None]:
        """What arrives first, up to `max_bytes` (the `recv` of stream
        adapters, `aioluasock.interop`): `(data, None)` with at least one
        byte, or `(b"", err)`: "closed" at end of stream, after a reset or a
        local close; "timeout"; an OS text. Nothing is lost on cancel."""
        if self._recv_busy:
            raise BusyError("another task is already receiving on this object")
        self._recv_busy = True
        buffer = self._buffer
        try:
            if (self._proto is None or self._attaching is not None) and not self._closed:
                await self._ensure_stream()
            loop = asyncio.get_running_loop()
            call = self._start_call(loop)
            waited = False
            while True:
                if buffer._data and not self._closed:
                    data = buffer.take(min(len(buffer), max_bytes))
                    assert data is not None
                    proto = self._proto
                    if proto is not None and proto.reading_paused and len(buffer) <= READ_LOW_WATER:
                        proto.resume_reading()
                    return data, None
                proto = self._proto
                err, _ = self._read_end(proto)
                if err is None:
                    assert proto is not None
                    err = await self._wait_readable(proto, (NUMBER, 1), call, waited)
                    waited = True
                    if err is None:
                        continue
                return b"", err
        finally:
            self._recv_busy = False
            if self._closed and not self._keep_buffer:
                buffer.clear()

    # TLS ------------------------------------------------------------------------

    async def starttls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> tuple[int, None] | tuple[None, str]:
        """Switch the live connection to TLS (the STARTTLS of SMTP, IMAP...).

        After the handshake every call works as before, on the decrypted
        stream: patterns, partials, timeouts, `select`, `getstats` (which
        counts decrypted bytes), `close`. Bytes the peer sent after the plain
        part and that were already buffered are handed to the handshake, not
        lost. One difference: on TLS, `shutdown("send")` stops our sends but
        cannot half-close (the loops' TLS transports have no end-of-stream
        without closing); the peer sees the end of stream at `close`.

        Args:
            context: the TLS settings (certificates, verification, ALPN).
            server_side: this end is the TLS server.
            server_hostname: the name to send (SNI) and to check the peer's
                certificate against, client side.

        Returns:
            `(1, None)`, or `(None, err)`: "timeout" (the handshake took
            longer than the object's timeout allows; 0 allows no handshake),
            "closed", OpenSSL's reason ("wrong version number", "sslv3 alert
            handshake failure", ...), or "certificate verify failed: " and
            the reason. After a failure the connection is closed.

        Raises:
            TypeError: `context` is not an `ssl.SSLContext`.
            BusyError: a task is receiving or sending on this client.
            RuntimeError: the connection already uses TLS.
        """
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__}")
        if self._recv_busy or self._send_busy:
            raise BusyError("starttls needs the connection to itself: a task is receiving or sending on it")
        self._recv_busy = self._send_busy = True
        try:
            return await self._starttls(context, server_side, server_hostname)
        finally:
            self._recv_busy = self._send_busy = False

    async def _starttls(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> tuple[int, None] | tuple[None, str]:
        if (self._proto is None or self._attaching is not None) and not self._closed:
            await self._ensure_stream()
        proto = self._proto
        err = self._write_end(proto)
        if err is not None:
            return None, err
        assert proto is not None and proto.transport is not None
        transport = proto.transport
        if transport.get_extra_info("ssl_object") is not None:
            raise RuntimeError("the connection already uses TLS")
        loop = proto.loop
        deadline = _next_deadline(loop, self._start_call(loop))
        if deadline == _EXPIRED:
            await asyncio.sleep(0)  # a handshake cannot finish without waiting
            return None, TIMEOUT
        proto.flush()
        # Stop the plain reads now (start_tls pauses only in its first step,
        # an iteration later): what is buffered then is all the TLS layer
        # must be given on top of what it reads itself.
        transport.pause_reading()
        leftover = bytes(self._buffer._data)
        self._buffer.clear()
        limit = _HANDSHAKE_NO_LIMIT if deadline is None else max(deadline - loop.time(), 0.001)
        handshake = loop.create_task(
            loop.start_tls(
                transport,
                proto,
                context,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=limit,
            )
        )
        try:
            if leftover:
                # start_tls's first step (next in the ready queue) swaps in
                # the TLS protocol and schedules its connection_made and the
                # resumed reading; the leftover is fed right after those,
                # before the loop polls the socket again.
                await asyncio.sleep(0)
                tls_proto = transport.get_protocol()
                if tls_proto is not proto:
                    loop.call_soon(_feed, tls_proto, leftover)
            tls = await handshake
        except asyncio.CancelledError:
            handshake.cancel()
            self._close()  # half a handshake leaves no usable connection
            raise
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            err = _tls_error_text(exc, limited=deadline is not None)
            # The reason is the result of this call; what comes after is
            # "closed" (the loop may have reported its own error already).
            proto.error = CLOSED
            if not transport.is_closing():
                transport.abort()
            proto.wake_reader()
            proto.wake_writer()
            proto.notify()
            return None, err
        assert tls is not None
        proto.transport = tls
        tls.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        proto.reading_paused = False  # start_tls resumed the plain transport's reading
        proto.writing_paused = False
        return 1, None

    def tlsinfo(self) -> dict[str, object] | None:
        """What the TLS handshake agreed, or `None` on a plain connection.

        Returns:
            ``{"version": "TLSv1.3", "cipher": name, "bits": int,
            "alpn": protocol or None, "server_hostname": str or None,
            "peercert": the peer's certificate as `ssl.SSLSocket.getpeercert`
            gives it (empty when it was not verified), or None}``.
        """
        sslobj = self._ssl_object()
        if sslobj is None:
            return None
        cipher = sslobj.cipher()
        return {
            "version": sslobj.version(),
            "cipher": None if cipher is None else cipher[0],
            "bits": None if cipher is None else cipher[2],
            "alpn": sslobj.selected_alpn_protocol(),
            "server_hostname": sslobj.server_hostname,
            "peercert": sslobj.getpeercert(),
        }

    def getpeercertificate(self) -> bytes | None:
        """The peer's certificate in DER form (`None`: no TLS, or the peer
        sent none)."""
        sslobj = self._ssl_object()
        return None if sslobj is None else sslobj.getpeercert(binary_form=True)

    def _ssl_object(self) -> ssl.SSLObject | None:
        proto = self._proto
        if proto is None or proto.transport is None or self._closed:
            return None
        sslobj: ssl.SSLObject | None = proto.transport.get_extra_info("ssl_object")
        return sslobj

    def getpeername(self) -> tuple[str, int] | tuple[None, str]:
        """Return the peer's `(ip, port)`, or `(None, err)`."""
        return self._address(peer=True)

    def getstats(self) -> tuple[int, int, float]:
        """Return `(received, sent, age)`: bytes consumed by receives (CRs and
        LFs dropped by "*l" included), bytes handed to the transport, and
        seconds since the object was created."""
        return self._buffer.consumed, self._sent, time.monotonic() - self._birthday

    def setstats(self, received: int | None = None, sent: int | None = None, age: float | None = None) -> int:
        """Reset the counters; an argument left `None` keeps its value.

        Returns:
            1.
        """
        for value in (received, sent, age):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TypeError(f"setstats expects numbers, not {type(value).__name__}")
        if received is not None:
            self._buffer.consumed = int(received)
        if sent is not None:
            self._sent = int(sent)
        if age is not None:
            self._birthday = time.monotonic() - age
        return 1


_PATTERNS: Final[dict[object, Pattern]] = {"*l": LINE_PATTERN, "*a": (ALL, 0)}


_HANDSHAKE_NO_LIMIT: Final = 24 * 3600.0
"""The handshake limit for an object without a timeout: the loops take only
finite, positive handshake timeouts (and default to 60 s)."""


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand `data` to a buffered protocol as if its transport had read it."""
    buffered = cast(asyncio.BufferedProtocol, protocol)
    view = memoryview(data)
    while view:
        area = memoryview(buffered.get_buffer(len(view)))
        count = min(len(area), len(view))
        area[:count] = view[:count]
        buffered.buffer_updated(count)
        view = view[count:]


def _tls_error_text(exc: BaseException, *, limited: bool) -> str:
    """LuaSocket-style text for a failed handshake (`limited`: it had a
    timeout, which the loops enforce with a ConnectionAbortedError with no
    errno: "SSL handshake is taking longer than ...")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # OpenSSL's own reason strings are its reason codes, spelled out.
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, TimeoutError) or (
        limited and isinstance(exc, ConnectionAbortedError) and exc.errno is None
    ):
        return TIMEOUT
    if isinstance(exc, OSError):
        return os_error_text(exc)
    return CLOSED


def _make(family: int) -> tuple[Master, None] | tuple[None, str]:
    try:
        sock = _new_socket(family)
    except OSError as exc:
        return None, os_error_text(exc)
    return Master(sock, family), None


def tcp() -> tuple[Master, None]:
    """Make a master with no descriptor yet; the first `bind` or `connect`
    creates one of the family its address resolves to.

    Returns:
        `(master, None)`.
    """
    return Master(None, socket.AF_UNSPEC), None


def tcp4() -> tuple[Master, None] | tuple[None, str]:
    """Make an IPv4 master. Returns `(master, None)` or `(None, err)`."""
    return _make(socket.AF_INET)


def tcp6() -> tuple[Master, None] | tuple[None, str]:
    """Make an IPv6 master (IPV6_V6ONLY set). Returns `(master, None)` or `(None, err)`."""
    return _make(socket.AF_INET6)
