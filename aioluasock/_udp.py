"""UDP objects: LuaSocket's `udp{unconnected}` and `udp{connected}`.

One class pair with identical slots: `setpeername` turns an `UdpUnconnected`
into an `UdpConnected` (and `setpeername("*")` back) by reassigning
`__class__`, as LuaSocket swaps the metatable of the same userdata.

Datagrams arrive through an asyncio datagram transport
(`loop.create_datagram_endpoint(sock=...)`) made as soon as the socket has a
local address; its `DatagramQueue` protocol only queues datagrams, records
the ICMP errors the kernel reports, wakes the one receiver and tells `select`.
Sends go straight to our own socket with `sendto`/`send`, so that their
errors ("Message too long", "Invalid argument", "connection refused") come
back to the caller, as LuaSocket returns them: a transport's `sendto` would
only hand them to `error_received` later.

The socket is created lazily by `udp()` (on the first `sendto`,
`setsockname` or `setpeername`, with the family of the address), at once by
`udp4()` and `udp6()`, as in LuaSocket 3.1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import socket
import warnings
from typing import Any, ClassVar, Final, final

from ._addresses import describe, public_address, public_port, remove_made_file, resolve
from ._errors import CLOSED, TIMEOUT, BusyError, errno_text, os_error_text
from ._options import UDP_OPTIONS, Option, OptionValue, get_option, lookup, set_option
from ._protocol import Waiter
from ._send import Buffer, as_bytes
from ._timeout import CallDeadline, TimeoutState
from ._waits import EXPIRED, NO_LIMIT, next_deadline, wait_until

__all__ = [
    "DATAGRAMSIZE",
    "QUEUE_MAX_BYTES",
    "QUEUE_MAX_DATAGRAMS",
    "DatagramQueue",
    "UdpConnected",
    "UdpUnconnected",
    "udp",
    "udp4",
    "udp6",
]

DATAGRAMSIZE: Final = 8192
"""The default `receive` size (LuaSocket's `socket._DATAGRAMSIZE`): a longer
datagram is truncated to it, the rest is lost, as `recv` does it."""
QUEUE_MAX_DATAGRAMS: Final = 1024
QUEUE_MAX_BYTES: Final = 1024 * 1024
"""The queue of received datagrams nobody has read yet holds at most this many
datagrams and bytes; a datagram arriving past either is dropped, as the
kernel drops datagrams when a socket's receive buffer is full."""

_MAX_READ: Final = 65536
"""Largest read that can be needed: no UDP payload is larger."""
_BAD_FD: Final = errno_text(errno.EBADF)
_FAMILY_NAMES: Final[dict[int, str]] = {socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}

Address = tuple[str, int]


def _wake(waiter: Waiter | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(True)


@final
class DatagramQueue(asyncio.DatagramProtocol):
    """Queues datagrams and signals; nothing more.

    Attributes:
        queue: `(datagram, sender)` in arrival order, not yet received (the
            sender as the loop gives it: `(ip, port)`, or a Unix path).
        queued_bytes: the bytes in `queue`.
        dropped: datagrams dropped because the queue was full.
        pending_error: an error the kernel reported (an ICMP "port
            unreachable" on a connected socket: "connection refused"), for
            the next receive or send, which consumes it as the kernel's
            pending socket error is consumed.
        error: the transport is gone (closed, or lost with this text).
        read_waiter: the one future a receive waits on.
        watchers: futures of `select` calls waiting for any change.
        transport: set by `connection_made`.
    """

    __slots__ = (
        "dropped",
        "error",
        "loop",
        "pending_error",
        "queue",
        "queued_bytes",
        "read_waiter",
        "transport",
        "watchers",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self.queued_bytes = 0
        self.dropped = 0
        self.pending_error: str | None = None
        self.error: str | None = None
        self.read_waiter: asyncio.Future[bool] | None = None
        self.watchers: list[Waiter] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.DatagramTransport
        if self.error is not None:
            # Closed while the transport came up: the transport owns the
            # descriptor now, so close it.
            transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        size = len(data)
        if len(self.queue) >= QUEUE_MAX_DATAGRAMS or self.queued_bytes + size > QUEUE_MAX_BYTES:
            self.dropped += 1
            return
        self.queue.append((data, addr))
        self.queued_bytes += size
        self.wake_reader()
        self.notify()

    def error_received(self, exc: Exception) -> None:
        self.pending_error = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
        self.wake_reader()
        self.notify()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = os_error_text(exc) if isinstance(exc, OSError) else CLOSED
        self.wake_reader()
        self.notify()

    def take(self) -> tuple[bytes, Any] | None:
        """The oldest queued datagram, removed from the queue."""
        if not self.queue:
            return None
        entry = self.queue.popleft()
        self.queued_bytes -= len(entry[0])
        return entry

    def wake_reader(self) -> None:
        waiter, self.read_waiter = self.read_waiter, None
        _wake(waiter)

    def notify(self) -> None:
        """Tell every `select` watching this socket that its readiness may have changed."""
        for waiter in self.watchers:
            _wake(waiter)


def _new_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            # As LuaSocket (inet_trycreate): no IPv4-mapped traffic on IPv6 objects.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


_libc: ctypes.CDLL | None = None


def _disconnect(sock: socket.socket) -> None:
    """Dissolve a UDP association: connect to an AF_UNSPEC address, as
    LuaSocket's `inet_trydisconnect` does. Python's `connect` cannot pass
    such an address (it wants one of the socket's family), libc's can.
    Errors are ignored, as LuaSocket ignores them."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    unspec = (ctypes.c_ubyte * 28)()  # a zeroed sockaddr_in6-sized area: sa_family = AF_UNSPEC
    _libc.connect(sock.fileno(), unspec, ctypes.sizeof(unspec))


def _peer(address: object, port: object) -> tuple[str, str | None]:
    """The Python API's `setpeername` arguments, checked."""
    host = public_address(address)
    if host == "*":
        return host, None
    if port is None:
        raise TypeError("setpeername needs a port (or the address '*')")
    return host, str(public_port(port))


def _check_size(size: object) -> int:
    if size is None:
        return DATAGRAMSIZE
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    return size


def _numeric_address(host: str, service: str, family: int) -> list[tuple[int, tuple[object, ...]]] | str:
    """`sendto`'s resolution: numeric host and port only, no lookup (as
    LuaSocket's AI_NUMERICHOST | AI_NUMERICSERV); the resolver's own text on
    failure (`gai_strerror`: 3.1's sendto does not use its table)."""
    try:
        infos = socket.getaddrinfo(
            host,
            service,
            family,
            socket.SOCK_DGRAM,
            0,
            socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    except UnicodeError:
        return "Name or service not known"
    return [(info[0], info[4]) for info in infos]


class _Udp:
    """State and methods common to both kinds (not public)."""

    __slots__ = (
        "__weakref__",
        "_attaching",
        "_closed",
        "_family",
        "_made_file",
        "_proto",
        "_recv_busy",
        "_sock",
        "_timeout",
    )

    _kind: str = "udp{any}"
    _options: ClassVar[dict[str, Option]] = UDP_OPTIONS
    # The kinds `setpeername` makes (set below, and by Unix datagram objects).
    _unconnected_kind: ClassVar[type[_Udp]]
    _connected_kind: ClassVar[type[_Udp]]

    def __init__(self, sock: socket.socket | None, family: int) -> None:
        self._sock = sock
        self._family = family
        self._timeout = TimeoutState()
        self._proto: DatagramQueue | None = None
        self._attaching: asyncio.Task[None] | None = None
        self._closed = False
        self._recv_busy = False
        self._made_file: tuple[bytes, int] | None = None

    # -- common methods -------------------------------------------------------

    def close(self) -> int:
        """Close the object; a task waiting on it returns "closed".

        Queued datagrams are discarded with the socket. Closing again is harmless.

        Returns:
            1, always.
        """
        self._close()
        return 1

    def settimeout(self, value: float | None, mode: str = "b") -> int:
        """Set the block (`"b"`) or total (`"t"`) timeout, in seconds.

        Args:
            value: seconds; `None` or negative for no limit; 0 for "try once".
            mode: ``"b"`` or ``"t"``, as for TCP objects.

        Returns:
            1.

        Raises:
            TypeError: `value` is not a number or `None`. ValueError: unknown mode.
        """
        self._timeout.set(value, mode)
        return 1

    def gettimeout(self) -> tuple[float | None, float | None]:
        """Return `(block, total)`; `None` means no limit."""
        return self._timeout.block, self._timeout.total

    def setoption(self, name: str, value: OptionValue) -> tuple[int, None] | tuple[None, str]:
        """Set a UDP socket option (see the README's option table).

        Values: `bool` for the flags, `int` for "ip-multicast-ttl", the hops
        and the buffer sizes, a `str` address for "ip-multicast-if" (``"*"``
        for any), ``{"multiaddr": str, "interface": str}`` for the IPv4
        memberships and ``{"multiaddr": str, "interface": int}`` (an
        interface index) for the IPv6 ones.

        Returns:
            `(1, None)`, or `(None, "setsockopt failed")` when the OS refuses
            (or the object has no socket yet).

        Raises:
            ValueError: unknown option, or an invalid address in the value.
            TypeError: a value of the wrong type.
        """
        option = lookup(name, setting=True, table=self._options)
        failure = set_option(self._sock if not self._closed else None, option, value)
        return (None, failure) if failure else (1, None)

    def getoption(self, name: str) -> tuple[OptionValue, None] | tuple[None, str]:
        """Read a UDP socket option.

        Returns:
            `(value, None)` (for ``"error"`` the pending error's text or
            `None`), or `(None, "getsockopt failed")`.

        Raises:
            ValueError: unknown option (the memberships cannot be read).
        """
        option = lookup(name, setting=False, table=self._options)
        return get_option(self._sock if not self._closed else None, option)

    def getsockname(self) -> tuple[str, int] | tuple[None, str]:
        """Return the local `(ip, port)` (``("0.0.0.0", 0)`` before any bind
        or send), or `(None, "Bad file descriptor")` without a socket."""
        return self._address(peer=False)

    def getfd(self) -> int:
        """Return the descriptor, or -1 when there is none (closed, or a
        `udp()` object that has not sent or bound yet)."""
        if self._sock is None or self._closed:
            return -1
        return self._sock.fileno()

    def getfamily(self) -> str:
        """Return ``"inet6"`` for an IPv6 object, else ``"inet4"``."""
        return _FAMILY_NAMES.get(self._family, "inet4")

    def dirty(self) -> bool:
        """True when received datagrams are queued, unread (LuaSocket's UDP
        objects always answer false: their datagrams are in the kernel)."""
        proto = self._proto
        return proto is not None and bool(proto.queue)

    async def receive(self, size: int | None = None) -> tuple[bytes, None] | tuple[None, str]:
        """Receive one datagram (on a connected object, only from its peer).

        Args:
            size: the most bytes to return, 8192 (`DATAGRAMSIZE`) when
                `None`: the rest of a longer datagram is discarded, as `recv`
                discards it. 0 consumes a datagram and returns ``b""``.

        Returns:
            `(datagram, None)`, or `(None, err)`: "timeout", "closed",
            "connection refused" (a connected object whose peer's port is
            closed: the ICMP error is reported once), or an OS text.

        Raises:
            TypeError / ValueError: `size` is not an int >= 0.
            BusyError: another task is receiving on this object.
        """
        got = await self._receive(_check_size(size))
        if isinstance(got, str):
            return None, got
        return got[0], None

    def __repr__(self) -> str:
        return describe(
            self._kind, self._sock, self._closed, self.getfd(), peer=self._kind == "udp{connected}"
        )

    def __del__(self) -> None:
        if self._closed or (self._sock is None and self._proto is None):
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._close()

    # -- engine (shared with the Lua bridge) ---------------------------------

    def _address(self, *, peer: bool) -> tuple[str, int] | tuple[None, str]:
        if self._sock is None or self._closed:
            return None, _BAD_FD
        try:
            address = self._sock.getpeername() if peer else self._sock.getsockname()
        except OSError as exc:
            return None, os_error_text(exc)
        return address[0], address[1]

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_socket()
        if self._made_file is not None:
            remove_made_file(self._made_file)
            self._made_file = None

    def _drop_socket(self) -> None:
        proto, sock = self._proto, self._sock
        self._proto = None
        self._sock = None
        if proto is not None:
            if proto.error is None:
                proto.error = CLOSED
            if proto.transport is not None:
                # The transport owns the descriptor (uvloop detaches our
                # socket object when it closes): never close it twice.
                proto.transport.close()
            # (Still coming up: `connection_made` closes it.)
            proto.wake_reader()
            proto.notify()
        elif sock is not None:
            sock.close()

    def _new_socket_for(self, family: int) -> str | None:
        """Give the object a fresh socket of `family` when it has none or one
        of another family (LuaSocket's `inet_trybind`/`inet_tryconnect`)."""
        if self._sock is not None and not self._closed and self._family == family:
            return None
        self._drop_socket()
        try:
            self._sock = _new_socket(family)
        except OSError as exc:
            return os_error_text(exc)
        self._family = family
        self._closed = False
        return None

    def _start_call(self, loop: asyncio.AbstractEventLoop) -> CallDeadline:
        timeout = self._timeout
        if timeout.block is None and timeout.total is None:
            return NO_LIMIT
        return timeout.start(loop.time())

    def _attach(self) -> DatagramQueue | None:
        """The object's protocol; start its transport if the socket has a
        local address and none is there yet.

        An unbound socket gets no transport: nothing can arrive on it, and
        libuv would bind it to the wildcard and an ephemeral port the moment
        it starts reading (LuaSocket's `getsockname` says port 0 until the
        first `sendto`). The transport comes up in a task of its own, so that
        a caller cancelled meanwhile cannot cancel it (the loop closes a
        half-made endpoint, with our socket, when its creation is cancelled).
        """
        proto = self._proto
        sock = self._sock
        if proto is not None or sock is None or self._closed:
            return proto
        if not self._bound(sock):
            return None
        loop = asyncio.get_running_loop()
        proto = self._proto = DatagramQueue(loop)
        self._attaching = loop.create_task(self._bring_up(loop, proto, sock))
        return proto

    @staticmethod
    def _bound(sock: socket.socket) -> bool:
        """The socket has a local address (a port: an IP socket binds to one
        on its first `sendto`)."""
        try:
            return bool(sock.getsockname()[1] != 0)
        except OSError:
            return False

    @staticmethod
    def _sender(addr: Any) -> Any:
        """A sender's address as receivefrom reports it: `(ip, port)`."""
        return (str(addr[0]), int(addr[1]))

    async def _bring_up(
        self, loop: asyncio.AbstractEventLoop, proto: DatagramQueue, sock: socket.socket
    ) -> None:
        if proto.error is not None:
            # Closed before this task ran: the socket is still ours to close.
            sock.close()
            if self._attaching is asyncio.current_task():
                self._attaching = None
            return
        try:
            await loop.create_datagram_endpoint(lambda: proto, sock=sock)
        except OSError as exc:
            # The loop refused the socket: receives report it.
            if proto.error is None:
                proto.error = os_error_text(exc)
            proto.wake_reader()
            proto.notify()
        finally:
            if self._attaching is asyncio.current_task():
                self._attaching = None

    async def _settle(self) -> None:
        """Wait until a transport being made is up (a cancelled caller
        leaves it coming up: see `_attach`)."""
        task = self._attaching
        if task is not None:
            await asyncio.shield(task)

    def _take(self, size: int) -> tuple[bytes, Any] | str | None:
        """One try at a datagram: the pending error, else the oldest queued
        datagram, else one read straight from the socket (a datagram the
        transport has not read yet is seen at once); `None` when nothing is there."""
        sock = self._sock
        if sock is None or self._closed:
            return CLOSED
        proto = self._proto
        if proto is not None:
            err = proto.pending_error
            if err is not None:
                proto.pending_error = None
                return err
            entry = proto.take()
            if entry is not None:
                data, addr = entry
                return (data if len(data) <= size else data[:size]), self._sender(addr)
            if proto.error is not None:
                return proto.error
        try:
            data, addr = sock.recvfrom(min(size, _MAX_READ))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            return os_error_text(exc)
        return data, self._sender(addr)

    async def _receive(self, size: int) -> tuple[bytes, Any] | str:
        """Receive one datagram: `(data, sender)` or the error text."""
        if self._recv_busy:
            raise BusyError("another task is already receiving on this object")
        loop = asyncio.get_running_loop()
        call = self._start_call(loop)
        self._recv_busy = True
        try:
            waited = False
            while True:
                got = self._take(size)
                if got is not None:
                    return got
                proto = self._attach()
                deadline = next_deadline(loop, call)
                if deadline == EXPIRED:
                    if waited:
                        return TIMEOUT
                    # Timeout 0: tried once; yield to the loop once (a
                    # polling loop must not starve the others) and try again,
                    # so that a datagram that came meanwhile is seen.
                    await asyncio.sleep(0)
                    got = self._take(size)
                    return TIMEOUT if got is None else got
                waiter: asyncio.Future[bool] = loop.create_future()
                if proto is not None:
                    proto.read_waiter = waiter
                # (No protocol: an unbound socket, where nothing can arrive;
                # the wait ends at the deadline.)
                try:
                    woken = await wait_until(loop, waiter, deadline)
                finally:
                    if proto is not None and proto.read_waiter is waiter:
                        proto.read_waiter = None
                waited = True
                if not woken:
                    # One last look: the wait may have expired in the same
                    # loop iteration as a datagram arrived.
                    got = self._take(size)
                    return TIMEOUT if got is None else got
        finally:
            self._recv_busy = False

    async def _send(self, data: bytes, sockaddr: tuple[object, ...] | bytes | None) -> int | str:
        """Send one datagram: the count sent, or the error text."""
        sock = self._sock
        if sock is None or self._closed:
            return CLOSED
        proto = self._proto
        if proto is not None and proto.pending_error is not None:
            err, proto.pending_error = proto.pending_error, None
            return err
        loop = asyncio.get_running_loop()
        call: CallDeadline | None = None
        deadline: float | None = None
        waited = False
        while True:
            try:
                count = sock.send(data) if sockaddr is None else sock.sendto(data, sockaddr)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                return os_error_text(exc)
            else:
                if self._proto is None and self._attach() is not None:
                    # Bound now (a first sendto binds): replies may come back.
                    await self._settle()
                return count
            # The socket's send buffer is full (rare: the kernel frees it as
            # the datagrams leave). A transport hands the datagram over when
            # there is room, as the kernel would once the buffer drains;
            # without one, poll until there is room or the time is up.
            proto = self._proto
            if proto is not None and proto.transport is not None and not proto.transport.is_closing():
                target = sockaddr if sockaddr is not None else sock.getpeername()
                proto.transport.sendto(data, target)
                return len(data)
            if call is None:
                call = self._start_call(loop)
                deadline = next_deadline(loop, call)
            if deadline == EXPIRED or (deadline is not None and loop.time() >= deadline):
                if waited:
                    return TIMEOUT
                # Timeout 0: yield to the loop once and try again.
                await asyncio.sleep(0)
                deadline = EXPIRED
            else:
                await asyncio.sleep(0.001)
            waited = True
            if self._closed or self._sock is not sock:
                return CLOSED

    async def _setpeername(self, host: str, service: str | None) -> str | None:
        """Connect to `host`/`service`, or dissolve the association (`"*"`)."""
        if host == "*":
            sock = self._sock
            if sock is not None and not self._closed:
                _disconnect(sock)
            self.__class__ = self._unconnected_kind
            return None
        assert service is not None
        resolved = await resolve(host, service, self._family, passive=False, socktype=socket.SOCK_DGRAM)
        if isinstance(resolved, str):
            return resolved
        err: str | None = None
        for family, sockaddr in resolved:
            err = self._new_socket_for(family)
            if err is not None:
                continue
            assert self._sock is not None
            try:
                self._sock.connect(sockaddr)
            except OSError as exc:
                err = os_error_text(exc)
            else:
                err = None
                break
        if err is not None:
            return err
        self.__class__ = self._connected_kind
        self._attach()
        await self._settle()
        return None

    async def _setsockname(self, host: str, service: str) -> str | None:
        resolved = await resolve(
            None if host == "*" else host, service, self._family, passive=True, socktype=socket.SOCK_DGRAM
        )
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
                self._attach()
                await self._settle()
                return None
        return err

    async def _sendto(self, payload: bytes, host: str, service: str) -> int | str:
        resolved = _numeric_address(host, service, self._family)
        if isinstance(resolved, str):
            return resolved
        if self._sock is None and self._family == socket.AF_UNSPEC:
            # udp(): the first sendto makes the socket, of the address's family.
            err: str | None = None
            for family, _ in resolved:
                err = self._new_socket_for(family)
                if err is None:
                    break
            if err is not None:
                return err
        return await self._send(payload, resolved[0][1])

    # select support ----------------------------------------------------------

    def _select_fd(self) -> int:
        """The descriptor `select` polls (never watches: a transport may own it)."""
        return self.getfd()

    def _readable(self) -> bool:
        """A receive would not wait for a datagram already with us."""
        proto = self._proto
        return proto is not None and (
            bool(proto.queue) or proto.pending_error is not None or proto.error is not None
        )


@final
class UdpUnconnected(_Udp):
    """A UDP object with no peer (`udp{unconnected}`): it sends to and
    receives from anybody."""

    __slots__ = ()
    _kind = "udp{unconnected}"

    async def receivefrom(self, size: int | None = None) -> tuple[bytes, str, int] | tuple[None, str]:
        """Receive one datagram and its sender.

        Args:
            size: as for `receive` (8192 when `None`; longer datagrams are truncated).

        Returns:
            `(datagram, ip, port)`, or `(None, err)`: "timeout", "closed" or an OS text.

        Raises:
            TypeError / ValueError: `size` is not an int >= 0.
            BusyError: another task is receiving on this object.
        """
        got = await self._receive(_check_size(size))
        if isinstance(got, str):
            return None, got
        data, (ip, port) = got
        return data, ip, port

    async def sendto(self, data: Buffer, ip: str, port: int | str) -> tuple[int, None] | tuple[None, str]:
        """Send one datagram to a numeric address (no name lookup, as LuaSocket).

        The first `sendto` of a `udp()` object creates its socket, of the
        address's family, and binds it to an ephemeral port.

        Args:
            data: a bytes-like object (at most 65507 bytes over IPv4).
            ip: a numeric IPv4 or IPv6 address.
            port: a number or a numeric string.

        Returns:
            `(count, None)`, or `(None, err)`: the resolver's text for a
            non-numeric address ("Name or service not known", "Address
            family for hostname not supported"), "Message too long",
            "Invalid argument" (port 0), "closed", "timeout" (a full send
            buffer), other OS texts.

        Raises:
            TypeError: `data` is a `str` or not bytes-like; `ip` is not a
                `str`; `port` not an int or str. ValueError: port out of range.
        """
        payload = as_bytes(data, "data")
        got = await self._sendto(payload, public_address(ip), str(public_port(port)))
        return (None, got) if isinstance(got, str) else (got, None)

    async def setsockname(self, address: str, port: int | str) -> tuple[int, None] | tuple[None, str]:
        """Bind to a local address.

        Args:
            address: a host name or numeric address, or ``"*"`` for the wildcard.
            port: a number (0 for an ephemeral port) or a service name.

        Returns:
            `(1, None)` or `(None, err)`: "address already in use", "Invalid
            argument" (already bound), resolver texts.
        """
        err = await self._setsockname(public_address(address), str(public_port(port)))
        return (None, err) if err is not None else (1, None)

    async def setpeername(
        self, address: str, port: int | str | None = None
    ) -> tuple[int, None] | tuple[None, str]:
        """Give the object a peer: it becomes an `UdpConnected`, which sends
        only to it and receives only from it. ``"*"`` (with no port) leaves
        it unconnected.

        Returns:
            `(1, None)`, or `(None, err)` (resolver texts, OS texts); the
            object keeps its kind on failure.

        Raises:
            TypeError: no port with an address other than ``"*"``.
        """
        err = await self._setpeername(*_peer(address, port))
        return (None, err) if err is not None else (1, None)


@final
class UdpConnected(_Udp):
    """A UDP object with a peer (`udp{connected}`)."""

    __slots__ = ()
    _kind = "udp{connected}"

    async def send(self, data: Buffer) -> tuple[int, None] | tuple[None, str]:
        """Send one datagram to the peer.

        Returns:
            `(count, None)`, or `(None, err)`: "connection refused" (an ICMP
            error from an earlier datagram, reported once), "Message too
            long", "closed", "timeout", other OS texts.

        Raises:
            TypeError: `data` is a `str` or not bytes-like.
        """
        got = await self._send(as_bytes(data, "data"), None)
        return (None, got) if isinstance(got, str) else (got, None)

    async def setpeername(
        self, address: str, port: int | str | None = None
    ) -> tuple[int, None] | tuple[None, str]:
        """Change the peer, or with ``"*"`` dissolve the association: the
        object becomes an `UdpUnconnected` again.

        Returns:
            `(1, None)` or `(None, err)`.

        Raises:
            TypeError: no port with an address other than ``"*"``.
        """
        err = await self._setpeername(*_peer(address, port))
        return (None, err) if err is not None else (1, None)

    def getpeername(self) -> tuple[str, int] | tuple[None, str]:
        """Return the peer's `(ip, port)`, or `(None, err)`."""
        return self._address(peer=True)


_Udp._unconnected_kind = UdpUnconnected
_Udp._connected_kind = UdpConnected


def _make(family: int) -> tuple[UdpUnconnected, None] | tuple[None, str]:
    try:
        sock = _new_socket(family)
    except OSError as exc:
        return None, os_error_text(exc)
    return UdpUnconnected(sock, family), None


def udp() -> tuple[UdpUnconnected, None]:
    """Make a UDP object with no socket yet: the first `sendto`,
    `setsockname` or `setpeername` creates one of its address's family.

    Returns:
        `(object, None)`.
    """
    return UdpUnconnected(None, socket.AF_UNSPEC), None


def udp4() -> tuple[UdpUnconnected, None] | tuple[None, str]:
    """Make an IPv4 UDP object. Returns `(object, None)` or `(None, err)`."""
    return _make(socket.AF_INET)


def udp6() -> tuple[UdpUnconnected, None] | tuple[None, str]:
    """Make an IPv6 UDP object (IPV6_V6ONLY set). Returns `(object, None)` or `(None, err)`."""
    return _make(socket.AF_INET6)
