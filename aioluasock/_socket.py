"""The state every TCP object shares, its common methods, and waiting on its
own descriptor (before a transport takes it over).

One class hierarchy with identical slots (`SocketBase`, then mixins with no
slots of their own): `listen` turns a `Master` into a `Server` and `connect`
turns any object into a `Client` by reassigning `__class__`, as LuaSocket
swaps the metatable of the same userdata. The other parts of an object:
`_lifecycle.py` (socket, bind, listen, connect, accept, attach),
`_receive.py`, `_send.py`, `_tls.py`, and the public kinds in `_tcp.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
import warnings
from typing import TYPE_CHECKING, ClassVar, Final

from ._addresses import describe, remove_made_file
from ._buffer import ReceiveBuffer
from ._errors import CLOSED, errno_text, os_error_text
from ._options import OPTIONS, Option, OptionValue, get_option, lookup, set_option
from ._protocol import StreamProtocol, Waiter
from ._timeout import CallDeadline, TimeoutState
from ._waits import NO_LIMIT, wait_until

if TYPE_CHECKING:
    from ._attach import Attach

BAD_FD: Final = errno_text(errno.EBADF)
FAMILY_NAMES: Final[dict[int, str]] = {socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}

CLOSE_FLUSH_LIMIT: Final = 60.0
"""Seconds a closed connection may go without its peer taking any of the
replies still queued for it before the rest is dropped and the descriptor
freed (LuaSocket's `close()` frees it at once; nginx's `send_timeout` is the
same idea, with the same default)."""


def _queued(transport: asyncio.WriteTransport) -> int:
    """The bytes a transport still holds for its peer (0 once it is gone:
    asyncio's TLS transport forgets its protocol then, and cannot tell)."""
    try:
        return transport.get_write_buffer_size()
    except AttributeError:
        return 0


def _end_stalled_close(transport: asyncio.WriteTransport, pending: int) -> None:
    """The flush of a closed connection's last replies: abort it when the
    peer took nothing in `CLOSE_FLUSH_LIMIT` seconds; look again later when it
    is still taking them. (A transport that finished has nothing queued.)"""
    left = _queued(transport)
    if not left:
        return
    if left >= pending:
        transport.abort()
    else:
        asyncio.get_running_loop().call_later(CLOSE_FLUSH_LIMIT, _end_stalled_close, transport, left)


class SocketBase:
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
        "_lua_buffered",
        "_made_file",
        "_proto",
        "_recv_busy",
        "_send_busy",
        "_send_shut",
        "_sent",
        "_sock",
        "_stream_error",
        "_timeout",
    )

    _kind: str = "tcp{any}"
    _options: ClassVar[dict[str, Option]] = OPTIONS

    def __init__(self, sock: socket.socket | None, family: int) -> None:
        self._sock = sock
        self._family = family
        self._timeout = TimeoutState()
        self._proto: StreamProtocol | None = None
        self._buffer = ReceiveBuffer()
        self._closed = False
        self._keep_buffer = False
        # The Lua bridge's model of LuaSocket's own buffer (see `_bridge._settle`).
        self._lua_buffered = 0
        self._made_file: tuple[bytes, int] | None = None
        self._recv_busy = False
        self._send_busy = False
        self._accept_busy = False
        self._attaching: Attach | None = None
        self._send_shut = False
        self._sent = 0
        # Why a client without a transport cannot carry data, as the kernel
        # answered `_ensure_stream`'s last look (`_unconnected_state`).
        self._stream_error: str | None = None
        self._birthday = time.monotonic()
        self._fd_readers: list[Waiter] = []
        self._fd_writers: list[Waiter] = []

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
        failure = set_option(
            self._sock if not self._closed else None, lookup(name, setting=True, table=self._options), value
        )
        return (None, failure) if failure else (1, None)

    def getoption(self, name: str) -> tuple[OptionValue, None] | tuple[None, str]:
        """Read a socket option.

        Returns:
            `(value, None)` (for ``"error"`` the pending error's text or
            `None`; reading clears it), or `(None, "getsockopt failed")`.

        Raises:
            ValueError: unknown option.
        """
        return get_option(
            self._sock if not self._closed else None, lookup(name, setting=False, table=self._options)
        )

    def getsockname(self) -> tuple[str, int] | tuple[None, str]:
        """Return the local `(ip, port)`, or `(None, err)`."""
        return self._address(peer=False)

    def _address(self, *, peer: bool) -> tuple[str, int] | tuple[None, str]:
        """The local or the peer's `(ip, port)`, or `(None, err)`."""
        if self._sock is None or self._closed:
            return None, BAD_FD
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
        return FAMILY_NAMES.get(self._family, "inet4")

    def dirty(self) -> bool:
        """True when received bytes are buffered, unconsumed."""
        return bool(self._buffer)

    def __repr__(self) -> str:
        return describe(self._kind, self._sock, self._closed, self.getfd(), peer=self._kind == "tcp{client}")

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
        if self._made_file is not None:
            remove_made_file(self._made_file)
            self._made_file = None
        if proto is not None:
            if proto.transport is not None:
                proto.flush()  # sends already counted as accepted still go out
                # The transport owns the descriptor now (uvloop detaches our
                # socket object when it closes): never close it twice.
                transport = proto.transport
                pending = _queued(transport)
                sock = proto.plain_socket
                if not pending and sock is not None:
                    # The transport lets the descriptor go in the loop's
                    # next iteration; the peer sees the end now, as after
                    # LuaSocket's close() (a script that polls its peer
                    # right after must find it).
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                transport.close()
                if pending:
                    # It closes once those bytes are out: a peer that stopped
                    # reading would hold the descriptor for good.
                    proto.loop.call_later(CLOSE_FLUSH_LIMIT, _end_stalled_close, transport, pending)
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
            return await wait_until(loop, waiter, deadline)
        finally:
            self._unwatch_fd(loop, waiter, write, linger)

    def _watch_fd(self, loop: asyncio.AbstractEventLoop, waiter: Waiter, write: bool) -> None:
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
        self, loop: asyncio.AbstractEventLoop, waiter: Waiter, write: bool, linger: bool = False
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

    def _end_linger(self, loop: asyncio.AbstractEventLoop, waiter: Waiter, write: bool) -> None:
        self._unwatch_fd(loop, waiter, write)

    @staticmethod
    def _fd_ready(waiters: list[Waiter]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def _start_call(self, loop: asyncio.AbstractEventLoop) -> CallDeadline:
        timeout = self._timeout
        if timeout.block is None and timeout.total is None:
            return NO_LIMIT
        return timeout.start(loop.time())

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
