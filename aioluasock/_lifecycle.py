"""The life of a TCP object: its socket, bind, listen, connect, accept, and
the attach that puts a connected socket under a transport."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from typing import TYPE_CHECKING, ClassVar, Final, cast

from ._addresses import NONBLOCKING_STREAM, PlainSocket, check_address, check_port, new_socket, resolve
from ._attach import Attach
from ._errors import CLOSED, TIMEOUT, BusyError, errno_text, os_error_text
from ._protocol import StreamProtocol, protocol_class
from ._socket import BAD_FD, SocketBase
from ._timeout import CallDeadline
from ._waits import EXPIRED, EXPIRED_CALL, let_io_in, next_deadline, timed_out

if TYPE_CHECKING:
    from ._tcp import Client

_INT_MAX: Final = 2**31 - 1
# What makes connect wait (LuaSocket's socket_connect). EALREADY — connect
# again while an attempt is in progress — fails at once with its text, and
# dispatchers that poll a connect (Copas) rely on it.
_CONNECT_PENDING: Final = frozenset({errno.EINPROGRESS, errno.EAGAIN})


class TcpSocket(SocketBase):
    """Any TCP object, as the engine (and the Lua bridge) handles it: what
    every kind can do before it is a server or a client (not public)."""

    __slots__ = ()

    # The kinds `listen`, `connect` and `accept` make (set by `_tcp.py`,
    # which defines them on top of this class).
    _server_kind: ClassVar[type[TcpSocket]]
    _client_kind: ClassVar[type[TcpSocket]]

    def _new_socket_for(self, family: int) -> str | None:
        """Give the object a fresh socket of `family` (LuaSocket creates one
        whenever the family changes or there is none)."""
        if self._sock is not None and not self._closed and self._family == family:
            return None
        self._drop_socket()
        try:
            self._sock = new_socket(family)
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
        host = check_address(address)
        service = check_port(port)
        resolved = await resolve(None if host == "*" else host, service, self._family, passive=True)
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
            return BAD_FD
        try:
            # The kernel caps a backlog at somaxconn: a huge one means "as
            # many as allowed", not an OverflowError.
            self._sock.listen(max(min(backlog, _INT_MAX), -1))
        except OSError as exc:
            return os_error_text(exc)
        self.__class__ = self._server_kind
        return None

    async def _connect(self, address: str, port: int | str) -> str | None:
        host = check_address(address)
        service = check_port(port)
        # LuaSocket makes the object a client even when connecting fails.
        self.__class__ = self._client_kind
        resolved = await resolve(host, service, self._family, passive=False)
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
        self, loop: asyncio.AbstractEventLoop, sockaddr: tuple[object, ...] | bytes, call: CallDeadline
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
            deadline = next_deadline(loop, call)
            if deadline == EXPIRED:
                return await timed_out(False)
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
        the next loop iteration; an `Attach` runs that coroutine without a
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
        proto.plain_socket = sock
        # uvloop turns TCP_NODELAY on for every TCP transport (asyncio leaves
        # our sockets alone): keep the socket's own setting, as LuaSocket never
        # touches it, so "tcp-nodelay" reads the same on both loops.
        try:
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        except OSError:
            nodelay = None
        attach = self._attaching = Attach(self, proto, loop.connect_accepted_socket(lambda: proto, sock))
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
        finished later; `None` if the socket is not connected.

        A connect still in progress (a `settimeout(0)` connect whose
        handshake is not done) is waited for, within the object's timeout:
        LuaSocket's `recv`/`send` on such a socket say EAGAIN and wait for
        it like for any data. When `None` is returned, `_stream_error` says
        why ("timeout" while the connect goes on, its error once it failed).
        """
        waited = False
        while (attach := self._attaching) is None:
            if self._proto is not None or self._closed or self._sock is None:
                return self._proto
            self._stream_error = state = self._unconnected_state()
            if state is None:
                self._attach_start(asyncio.get_running_loop())
                attach = self._attaching
                break
            if state != TIMEOUT or waited:
                return None
            # Then look again from the top: another task (a receive and a
            # send both waiting) may have attached the transport meanwhile.
            loop = asyncio.get_running_loop()
            deadline = next_deadline(loop, self._start_call(loop))
            if deadline == EXPIRED:
                await let_io_in(loop)
            else:
                await self._wait_fd(loop, True, deadline)
            waited = True
        if attach is not None:
            # A caller cancelled while the transport comes up drops only its
            # own wait: the attach goes on.
            await attach.wait()
        return self._proto

    def _unconnected_state(self) -> str | None:
        """`None` when the socket is connected; otherwise what LuaSocket's
        `recv` on it answers: "timeout" while its connect is in progress
        (EAGAIN), the connect's error once it failed (reported once: the
        kernel clears it), "closed" or the OS text otherwise."""
        sock = self._sock
        if sock is None or self._closed:
            return CLOSED
        try:
            sock.getpeername()
        except OSError:
            pass
        else:
            return None
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return TIMEOUT
        except OSError as exc:
            return os_error_text(exc)
        return None if data else CLOSED

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
                done = self._accept_now(loop)
                if done is not None:
                    return done
                deadline = next_deadline(loop, call)
                if deadline == EXPIRED:
                    if waited:
                        return None, TIMEOUT
                    # A timeout of 0: yield once, then try `accept` again
                    # (the loop below), as for a receive (`_wait_readable`).
                    await asyncio.sleep(0)
                elif not await self._wait_fd(loop, False, deadline, linger=True):
                    # The timer fired: one more try, without waiting, for a
                    # connection that came in the same loop iteration.
                    call = EXPIRED_CALL
                waited = True
        finally:
            self._accept_busy = False

    def _accept_now(self, loop: asyncio.AbstractEventLoop) -> tuple[Client, None] | tuple[None, str] | None:
        """One accept, without waiting: the new client, the error, or None
        when no connection is pending."""
        sock = self._sock
        if sock is None or self._closed:
            return None, CLOSED
        try:
            # The C accept, without `socket.accept`'s enum conversions.
            fd, _ = sock._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        except OSError as exc:
            return None, os_error_text(exc)
        return self._adopt(loop, sock.family, fd)

    def _adopt(
        self, loop: asyncio.AbstractEventLoop, family: int, fd: int
    ) -> tuple[Client, None] | tuple[None, str]:
        try:
            conn = PlainSocket(family, NONBLOCKING_STREAM, 0, fd)
            if NONBLOCKING_STREAM == socket.SOCK_STREAM:  # pragma: no cover (no SOCK_NONBLOCK)
                conn.setblocking(False)
        except OSError as exc:
            os.close(fd)
            return None, os_error_text(exc)
        client = cast("Client", self._client_kind(conn, self._family))
        # A failure to attach shows in the client's first receive or send.
        client._attach_start(loop)
        return client, None
