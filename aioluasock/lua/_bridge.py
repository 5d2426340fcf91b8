"""The Python half of the bridge: the calls `bridge.lua` makes into the engine.

`bridge.lua` checks arguments and shapes results as LuaSocket 3.1 does; this
module only performs the operations, with the engine's own methods
(`_bind`, `_connect`, `_accept`, `_receive`, `_read`, `_send`, `_close`, the
select shim, the option table), so a rule lives in one place for both the
Python API and Lua scripts. Where 3.1 differs from the Python contract
(`receive(0)` does one read, ``"*a"`` with no new bytes is "closed",
`getsockname` gives the port as a string), the difference is made here, on
top of the engine.

Strings cross the boundary as `bytes` (the runtime has no encoding), so Lua
strings stay byte strings; the engine's text arguments are decoded here.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol, cast, final

from .._addresses import resolve
from .._buffer import ALL, NUMBER
from .._errors import CLOSED, TIMEOUT, BusyError, errno_text, os_error_text
from .._lifecycle import TcpSocket
from .._options import OPTIONS, UDP_OPTIONS, UNIX_DGRAM_OPTIONS, UNIX_STREAM_OPTIONS, lookup, set_option
from .._protocol import flush_deferred
from .._select import KeptList, KeptSelection, Selection
from .._select import select as engine_select
from .._tcp import Client, Master, Server
from .._timeout import CallDeadline
from .._udp import UdpUnconnected, _Udp, udp4, udp6
from .._unix import UnixStream
from .._unix import stream as unix_stream
from .._unix_dgram import UnixDgram
from .._unix_dgram import dgram as unix_dgram
from . import _luasec
from ._x509 import Certificate, CertificateError, load_pem

__all__ = ["Bridge", "ParkedSelect", "ScriptExit", "Task"]

_BAD_FD: Final = errno_text(9).encode()
_NONAME: Final = b"host or service not provided, or not known"
_HOST_NOT_FOUND: Final = b"host not found"
_FAMILIES: Final[dict[int, int]] = {0: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}
_SOCKNAME_FAMILY: Final[dict[int, bytes]] = {
    socket.AF_INET: b"inet",
    socket.AF_INET6: b"inet6",
    socket.AF_UNSPEC: b"unspec",
}

Values = tuple[object, ...]


class ScriptExit(Exception):
    """Raised in a script's task by `os.exit(code)`: ends the whole script."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@final
class ParkedSelect:
    """A `select` that waits without a task (`Bridge.select_look`,
    `Bridge.kept_look`): the driver watches `selection` with its own waiter,
    and looks again when woken, until `deadline` (a loop time; None: no
    limit)."""

    __slots__ = ("deadline", "expired", "recv", "selection", "send", "timer", "watch")

    def __init__(
        self,
        recv: list[Any] | None,
        send: list[Any] | None,
        selection: Selection | KeptSelection,
        deadline: float | None,
    ) -> None:
        self.recv = recv  # the objects, for a Selection
        self.send = send
        self.selection = selection
        self.deadline = deadline
        self.watch: Any = None  # the selection's watch while parked
        self.timer: asyncio.TimerHandle | None = None
        self.expired = False  # the timer fired

    def look(self) -> Values | None:
        """`select`'s results if something is ready; else None."""
        selection = self.selection
        if type(selection) is KeptSelection:
            at_r, at_w = selection.check()
            return _kept_ready(selection, at_r, at_w) if at_r or at_w else None
        assert self.recv is not None and self.send is not None
        readable, writable = selection.check()
        if readable or writable:
            return Bridge._ready(readable, writable, _positions(self.recv), _positions(self.send))
        return None


def _apply_changes(recv: KeptList | None, send: KeptList | None, sizes_and_changes: Values) -> None:
    nrecv, nsend, nchanged = sizes_and_changes[:3]
    changes = sizes_and_changes[3:]
    if recv is not None:
        recv.update(cast(int, nrecv), changes[: 2 * cast(int, nchanged)])
    if send is not None and send is not recv:
        send.update(cast(int, nsend), changes[2 * cast(int, nchanged) :])


def _kept_ready(selection: KeptSelection, at_r: list[int], at_w: list[int]) -> Values:
    """`Bridge._ready` for kept lists, from the 0-based positions found."""
    recv, send = selection.recv, selection.send
    readable = [] if recv is None else [recv.objects[i] for i in at_r]
    writable = [] if send is None else [send.objects[i] for i in at_w]
    recv_pos = {} if recv is None else {id(recv.objects[i]): i + 1 for i in at_r}
    send_pos = {} if send is None else {id(send.objects[i]): i + 1 for i in at_w}
    return Bridge._ready(readable, writable, recv_pos, send_pos)


class Task(Protocol):
    """A root coroutine of the script (the main chunk or a spawned task), as
    the bridge sees it (`_runtime._Root`)."""

    @property
    def finished(self) -> asyncio.Future[Values]:
        """Its end: its results, its exception, or cancelled."""
        ...

    @property
    def helper(self) -> asyncio.Task[Values] | None:
        """The task running its current request, if one does."""
        ...

    def cancel(self) -> bool:
        """End it at its next wait; False when it has ended."""
        ...


@final
class _Token:
    """The Python object under each Lua socket userdata (it carries nothing)."""

    __slots__ = ()


@final
class _Foreign:
    """A non-socket `select` entry (a table with `getfd`/`dirty`), as seen
    when `select` was called: LuaSocket also asks each entry only once."""

    __slots__ = ("_dirty", "_fd")

    def __init__(self, fd: int, dirty: bool) -> None:
        self._fd = fd
        self._dirty = dirty

    def getfd(self) -> int:
        return self._fd

    def dirty(self) -> bool:
        return self._dirty


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _err(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _ctext(value: bytes) -> str:
    """A Lua string as C sees it (LuaSocket hands `const char *` to the
    resolver): cut at the first NUL."""
    return _text(value.split(b"\0", 1)[0])


_LUASOCKET_BUFFER: Final = 8192
"""LuaSocket's buffer size (BUF_SIZE): what one recv() asks for."""


def _lua_dirty(obj: TcpSocket) -> bool:
    """LuaSocket's `dirty()`: bytes are in its own buffer, which only its
    receives fill (bytes still in the kernel do not count). The engine takes
    whatever arrives, so the bridge keeps a count of the bytes LuaSocket's
    buffer would hold (`_settle`)."""
    return obj._lua_buffered > 0 and bool(obj._buffer)


def _settle(obj: TcpSocket, consumed_before: int, ok: bool) -> None:
    """Update the model of LuaSocket's buffer after a receive: what it took
    came from that buffer if it fits there (no recv() was needed); else
    recv() refilled it, and it holds what is left of the last chunk (here:
    what is buffered, up to a chunk); a failed receive hands out everything
    it read as the partial, leaving it empty."""
    if not ok:
        obj._lua_buffered = 0
        return
    taken = obj._buffer.consumed - consumed_before
    if taken <= obj._lua_buffered:
        obj._lua_buffered -= taken
    else:
        obj._lua_buffered = min(len(obj._buffer), _LUASOCKET_BUFFER)


def _positions(objects: list[Any]) -> dict[int, int]:
    """1-based positions by object id (an object given twice: its last)."""
    return {id(obj): index for index, obj in enumerate(objects, 1)}


def _udp_error(text: str) -> bytes:
    # 3.1's udp_strerror: sending on a socket that is gone (IO_CLOSED) is
    # "refused", its word for "the transport did not take the address".
    return b"refused" if text == CLOSED else text.encode()


class Bridge:
    """The engine calls of one script (one Lua state).

    Every socket the script creates is registered here, so that the script's
    end (or cancellation) closes it.

    Args:
        spawn: starts a root Lua coroutine (by number, with its address).
        tasks: the script's roots by id, while Lua holds their handles (for
            `wait` and `cancel`).
        running: the script's roots that have not ended.
        sandbox: the script is sandboxed: it may use no descriptor but its
            own sockets' (no `setfd`, no foreign descriptors in `select`).
        hook_thread: gives a coroutine the script creates the time slice's
            count hook (`Budget.hook_thread`), where the roots are watched.
    """

    def __init__(
        self,
        spawn: Callable[[int, Values, bytes], None],
        tasks: dict[int, Task],
        running: set[Task],
        *,
        sandbox: bool = False,
        hook_thread: Callable[[bytes], None] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.hook_thread = hook_thread
        self._spawn = spawn
        self._tasks = tasks
        self._running = running
        self.sockets: weakref.WeakSet[TcpSocket | _Udp] = weakref.WeakSet()
        # Descriptors given with setfd: not ours to close (SEMANTICS 3.5:
        # setfd never closes anything; the owner of the descriptor does).
        self._borrowed: weakref.WeakKeyDictionary[TcpSocket | _Udp, socket.socket] = (
            weakref.WeakKeyDictionary()
        )
        # Sockets replaced by setfd: LuaSocket leaks them; we close them when
        # the script ends.
        self._orphans: list[socket.socket] = []
        # Objects whose blocking connect failed while they had no family yet:
        # LuaSocket keeps AF_UNSPEC for them (getsockname says "unspec").
        self._unspec: weakref.WeakSet[TcpSocket] = weakref.WeakSet()
        self.handshakes = _luasec.Handshakes()
        # What `table` gave Lua, by name.
        self.functions: dict[bytes, Any] = {}

    # -- bookkeeping ---------------------------------------------------------

    def _register(self, obj: TcpSocket) -> TcpSocket:
        # In LuaSocket 3.1 the read buffer survives close (SEMANTICS 1.4).
        obj._keep_buffer = True
        self.sockets.add(obj)
        return obj

    def close_all(self) -> None:
        """Close every socket the script opened (the script ended)."""
        for obj in list(self.sockets):
            self.close(obj)
        for sock in self._orphans:
            sock.close()
        self._orphans.clear()

    def table(self) -> dict[bytes, Any]:
        """The functions `bridge.lua` receives as `B` (and `B.sandbox`)."""
        names = [
            "token",
            "tcp",
            "close",
            "getfd",
            "setfd",
            "dirty",
            "getfamily",
            "getsockname",
            "getpeername",
            "settimeout",
            "optkind",
            "setoption",
            "setlinger",
            "getoption",
            "listen",
            "shutdown",
            "getstats",
            "setstats",
            "gettime",
            "gethostname",
            "foreign",
            "spawn",
            "cancel",
            "bind",
            "connect",
            "accept",
            "receive",
            "receive_now",
            "send",
            "send_now",
            "select",
            "select_kept",
            "kept_list",
            "sleep",
            "pause",
            "global_connect",
            "toip",
            "tohostname",
            "getaddrinfo",
            "getnameinfo",
            "wait",
            "waitall",
            "exit",
            "forget",
            "udp",
            "udp_optkind",
            "udp_setoption",
            "udp_getoption",
            "udp_receive",
            "udp_send",
            "udp_sendto",
            "udp_setsockname",
            "udp_setpeername",
            "unix_stream",
            "unix_dgram",
            "unix_stream_optkind",
            "unix_dgram_optkind",
            "unix_bind",
            "unix_connect",
            "unix_getsockname",
            "unix_sendto",
            "unix_receive",
            "ssl_newcontext",
            "ssl_options",
            "ssl_wrap",
            "ssl_handshake",
            "ssl_peercert",
            "ssl_verified",
            "ssl_info",
            "ssl_alpn",
            "ssl_sniname",
            "ssl_loadcert",
            "x509",
        ]
        table: dict[bytes, Any] = {name.encode(): getattr(self, name) for name in names}
        self.functions = dict(table)
        table[b"sandbox"] = self.sandbox
        if self.hook_thread is not None:
            table[b"hook_thread"] = self.hook_thread
        return table

    # -- synchronous calls ---------------------------------------------------

    @staticmethod
    def token() -> _Token:
        return _Token()

    def tcp(self, family: int) -> TcpSocket | tuple[None, bytes]:
        af = _FAMILIES[family]
        if af == socket.AF_UNSPEC:
            return self._register(Master(None, af))
        try:
            sock = socket.socket(af, socket.SOCK_STREAM)
        except OSError as exc:
            return None, os_error_text(exc).encode()
        try:
            sock.setblocking(False)
            if af == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        except OSError as exc:
            sock.close()
            return None, os_error_text(exc).encode()
        return self._register(Master(sock, af))

    def close(self, obj: TcpSocket | _Udp) -> None:
        borrowed = self._borrowed.pop(obj, None)
        if borrowed is not None and obj._sock is borrowed and obj._proto is None:
            borrowed.detach()
            obj._sock = None
            obj._closed = True
            return
        obj._close()

    @staticmethod
    def getfd(obj: TcpSocket | _Udp) -> int:
        return obj.getfd()

    def setfd(self, obj: TcpSocket | _Udp, fd: int) -> None:
        # LuaSocket stores the number and touches nothing else: the old
        # descriptor is neither closed nor reused (we close it at the end).
        old = obj._sock
        previous = self._borrowed.pop(obj, None)
        if previous is not None and old is previous:
            previous.detach()
        elif old is not None and not obj._closed and obj._proto is None:
            self._orphans.append(old)
        new: socket.socket | None = None
        if fd >= 0:
            try:
                new = socket.socket(fileno=fd)
            except OSError:
                new = None
        if obj._proto is None:
            obj._sock = new
            obj._closed = new is None
        if new is not None:
            self._borrowed[obj] = new

    @staticmethod
    def dirty(obj: TcpSocket) -> bool:
        return _lua_dirty(obj)

    @staticmethod
    def getfamily(obj: TcpSocket | _Udp) -> bytes:
        return obj.getfamily().encode()

    def getsockname(self, obj: TcpSocket | _Udp) -> tuple[bytes, bytes, bytes] | tuple[None, bytes]:
        ip, port = obj._address(peer=False)
        if ip is None:
            return None, str(port).encode()
        # LuaSocket 3.1 returns this port as a string (SEMANTICS 3.5.1).
        return ip.encode(), str(port).encode(), self._family_name(obj)

    def getpeername(self, obj: TcpSocket | _Udp) -> tuple[bytes, int, bytes] | tuple[None, bytes]:
        ip, port = obj._address(peer=True)
        if ip is None:
            return None, str(port).encode()
        return ip.encode(), int(port), self._family_name(obj)

    def _family_name(self, obj: TcpSocket | _Udp) -> bytes:
        return b"unspec" if obj in self._unspec else _SOCKNAME_FAMILY.get(obj._family, b"unknown")

    @staticmethod
    def settimeout(obj: TcpSocket | _Udp, value: float, mode: bytes) -> None:
        # LuaSocket stores any number; NaN never compares, so it never limits.
        limit = None if value < 0 or math.isnan(value) else value
        obj._timeout.set(limit, mode.decode())

    @staticmethod
    def optkind(name: bytes, setting: bool) -> bytes | None:
        option = OPTIONS.get(_text(name))
        if option is None or (setting and not option.settable) or (not setting and not option.lua_gettable):
            return None
        return option.kind.encode()

    @staticmethod
    def setoption(obj: TcpSocket, name: bytes, value: bool | int) -> float | tuple[None, bytes]:
        _, failure = obj.setoption(_text(name), value)
        return 1.0 if failure is None else (None, failure.encode())

    @staticmethod
    def setlinger(obj: TcpSocket, on: bool, timeout: int) -> float | tuple[None, bytes]:
        _, failure = obj.setoption("linger", {"on": on, "timeout": timeout})
        return 1.0 if failure is None else (None, failure.encode())

    @staticmethod
    def getoption(obj: TcpSocket, name: bytes) -> object:
        value, failure = obj.getoption(_text(name))
        if failure is not None:
            return None, failure.encode()
        if isinstance(value, dict):
            return value["on"], value["timeout"]
        if isinstance(value, str):
            return value.encode()
        return value, None

    @staticmethod
    def listen(obj: TcpSocket, backlog: int) -> bytes | None:
        return _err(obj._listen(backlog))

    @staticmethod
    def shutdown(obj: Client, mode: bytes) -> None:
        obj.shutdown(mode.decode())

    @staticmethod
    def getstats(obj: Client) -> tuple[int, int, float]:
        return obj.getstats()

    @staticmethod
    def setstats(obj: Client, received: int | None, sent: int | None, age: float | None) -> None:
        obj.setstats(received, sent, age)

    @staticmethod
    def gettime() -> float:
        return time.time()

    @staticmethod
    def gethostname() -> bytes:
        return socket.gethostname().encode()

    def foreign(self, fd: int, dirty: bool) -> _Foreign | TcpSocket | _Udp | None:
        # A wrapper (an LTN12 source or sink, say) around one of our own
        # sockets: watch the socket itself (its descriptor belongs to a
        # transport, which the loop will not let anybody else watch).
        for obj in self.sockets:
            if not obj._closed and obj.getfd() == fd:
                return obj
        if self.sandbox:
            # Any other descriptor is the host's (None: a Lua error).
            return None
        return _Foreign(fd, dirty)

    def spawn(self, thread: int, address: bytes, *args: object) -> None:
        self._spawn(thread, args, address)

    def forget(self, task_id: int) -> None:
        # The Lua handle was collected: nobody can wait for the task any more.
        self._tasks.pop(task_id, None)

    def cancel(self, task_id: int) -> bool:
        task = self._tasks.get(task_id)
        return task is not None and task.cancel()

    # -- UDP -----------------------------------------------------------------

    def udp(self, family: int) -> _Udp | tuple[None, bytes]:
        if family == 0:
            obj: _Udp = UdpUnconnected(None, socket.AF_UNSPEC)
        else:
            made, err = udp4() if family == 4 else udp6()
            if made is None:
                return None, str(err).encode()
            obj = made
        self.sockets.add(obj)
        return obj

    @staticmethod
    def udp_optkind(name: bytes, setting: bool) -> bytes | None:
        option = UDP_OPTIONS.get(_text(name))
        if option is None or (setting and not option.settable):
            return None
        if not setting and (not option.lua_gettable or option.kind in ("membership", "membership6")):
            return None
        return option.kind.encode()

    @staticmethod
    def udp_setoption(obj: _Udp, name: bytes, value: object, interface: object = None) -> Values:
        # bridge.lua has checked the value's type as LuaSocket does; what is
        # left is the address syntax (an argument error in LuaSocket too).
        option = lookup(_text(name), setting=True, table=UDP_OPTIONS)
        if isinstance(value, bytes):
            value = _ctext(value)
        if option.kind in ("membership", "membership6"):
            if isinstance(interface, bytes):
                interface = _ctext(interface)
            value = {"multiaddr": value, "interface": interface}
        try:
            failure = set_option(obj._sock if not obj._closed else None, option, value)
        except ValueError as exc:
            return False, str(exc).encode()
        return (1.0,) if failure is None else (None, failure.encode())

    @staticmethod
    def udp_getoption(obj: _Udp, name: bytes) -> Values:
        value, failure = obj.getoption(_text(name))
        if failure is not None:
            return None, failure.encode()
        if isinstance(value, str):
            return (value.encode(),)
        return (value,)

    @staticmethod
    async def udp_receive(obj: _Udp, size: int, sender: bool) -> Values:
        got = await obj._receive(size)
        if isinstance(got, str):
            if got == CLOSED and not sender:
                # 3.1: recv on a socket that is gone is IO_CLOSED, which
                # receive takes for an empty datagram.
                return (b"",)
            return None, got.encode()
        data, (ip, port) = got
        return (data, ip.encode(), port) if sender else (data,)

    @staticmethod
    async def udp_send(obj: _Udp, data: bytes) -> Values:
        got = await obj._send(data, None)
        return (got + 0.0,) if isinstance(got, int) else (None, _udp_error(got))

    @staticmethod
    async def udp_sendto(obj: _Udp, data: bytes, ip: bytes, port: bytes) -> Values:
        got = await obj._sendto(data, _ctext(ip), _ctext(port))
        return (got + 0.0,) if isinstance(got, int) else (None, _udp_error(got))

    @staticmethod
    async def udp_setsockname(obj: _Udp, address: bytes, port: bytes) -> Values:
        err = await obj._setsockname(_ctext(address), _ctext(port))
        return () if err is None else (err.encode(),)

    @staticmethod
    async def udp_setpeername(obj: _Udp, address: bytes, port: bytes) -> Values:
        host = _ctext(address)
        err = await obj._setpeername(host, None if host == "*" else _ctext(port))
        return () if err is None else (err.encode(),)

    # -- Unix domain sockets (socket.unix) ------------------------------------

    def unix_stream(self) -> TcpSocket | tuple[None, bytes]:
        made, err = unix_stream()
        if made is None:
            return None, str(err).encode()
        return self._register(made)

    def unix_dgram(self) -> _Udp | tuple[None, bytes]:
        made, err = unix_dgram()
        if made is None:
            return None, str(err).encode()
        self.sockets.add(made)
        return made

    @staticmethod
    def unix_stream_optkind(name: bytes, setting: bool) -> bytes | None:
        option = UNIX_STREAM_OPTIONS.get(_text(name))
        return option.kind.encode() if option is not None and setting else None

    @staticmethod
    def unix_dgram_optkind(name: bytes, setting: bool) -> bytes | None:
        option = UNIX_DGRAM_OPTIONS.get(_text(name))
        return option.kind.encode() if option is not None and setting else None

    @staticmethod
    async def unix_bind(obj: UnixStream | UnixDgram, path: bytes) -> Values:
        err = await obj._bind_path(path)
        return () if err is None else (err.encode(),)

    @staticmethod
    async def unix_connect(obj: UnixStream | UnixDgram, path: bytes) -> Values:
        err = await obj._connect_path(path)
        return () if err is None else (err.encode(),)

    @staticmethod
    def unix_getsockname(obj: UnixStream | UnixDgram) -> Values:
        path, err = obj._path(peer=False)
        if path is None:
            return None, str(err).encode()
        # LuaSocket pushes sun_path as a C string: an abstract name is "".
        return (os.fsencode(path).partition(b"\0")[0],)

    @staticmethod
    async def unix_sendto(obj: UnixDgram, data: bytes, path: bytes) -> Values:
        got = await obj._sendto_path(data, path)
        return (got + 0.0,) if isinstance(got, int) else (None, _udp_error(got))

    @staticmethod
    async def unix_receive(obj: UnixDgram, size: int, sender: bool) -> Values:
        got = await obj._receive(size)
        if isinstance(got, str):
            if got == CLOSED and not sender:
                return (b"",)  # as UDP's (udp_receive)
            return None, got.encode()
        data, path = got
        return (data, os.fsencode(path).partition(b"\0")[0]) if sender else (data,)

    # -- calls that wait (the driver awaits them) ----------------------------

    async def bind(self, obj: TcpSocket, address: bytes, port: bytes) -> Values:
        try:
            err = await obj._bind(_text(address), _text(port))
        except UnicodeError:
            return (_NONAME,)
        return () if err is None else (err.encode(),)

    async def connect(self, obj: TcpSocket, address: bytes, port: bytes) -> Values:
        sock = obj._sock
        if (
            obj._proto is not None
            and obj._proto.transport is not None
            and not obj._closed
            and sock is not None
        ):
            # Already connected and under a transport: the engine's `_connect`
            # would attach a second transport to the descriptor (uvloop then
            # fails with "File exists"). Ask the kernel, as LuaSocket does.
            resolved = await resolve(_text(address), _text(port), obj._family, passive=False)
            if isinstance(resolved, str):
                return (resolved.encode(),)
            code = sock.connect_ex(resolved[0][1])
            return () if code == 0 else (errno_text(code).encode(),)
        had_family = obj._family != socket.AF_UNSPEC or obj in self._unspec
        if obj in self._unspec:
            # LuaSocket still has no family for it, so its next connect makes
            # a fresh socket (inet_tryconnect): a retry loop on one object
            # sees "connection refused" each time. Reusing the failed socket
            # would answer "closed" (ECONNABORTED) every other try, and
            # "Invalid argument" after a shutdown.
            obj._drop_socket()
            obj._family = socket.AF_UNSPEC
        try:
            err = await obj._connect(_text(address), _text(port))
        except UnicodeError:
            err = _NONAME.decode()
        if err is None or obj._timeout.block == 0:
            self._unspec.discard(obj)
        elif not had_family:
            self._unspec.add(obj)
        return () if err is None else (err.encode(),)

    async def global_connect(
        self, address: bytes, port: bytes, locaddr: bytes | None, locport: bytes, family: int
    ) -> Values:
        # socket.connect: the family argument only restricts the local bind
        # (SEMANTICS 8.5); the connect uses what the bind chose.
        master = self._register(Master(None, _FAMILIES[family] if locaddr is not None else socket.AF_UNSPEC))
        try:
            err = None
            if locaddr is not None:
                err = await master._bind(_text(locaddr), _text(locport))
            if err is None:
                err = await master._connect(_text(address), _text(port))
        except UnicodeError:
            err = _NONAME.decode()
        except BaseException:
            master._close()
            raise
        if err is not None:
            master._close()
            return None, err.encode()
        return (master,)

    @staticmethod
    def accept_parkable(obj: object) -> bool:
        """Whether the driver may wait for this accept without a task
        (`accept_look`, then watching the descriptor): a blocking accept
        (no timeout) on an open server nobody else accepts on."""
        if type(obj) is not Server or obj._accept_busy or obj._closed or obj._sock is None:
            return False
        timeout = obj._timeout
        return timeout.block is None and timeout.total is None

    def accept_look(self, obj: Server) -> Values | None:
        """What `accept` would return now; None when no connection is pending."""
        done = obj._accept_now(asyncio.get_running_loop())
        if done is None:
            return None
        client, err = done
        if client is None:
            return None, _err(err)
        return (self._register(client),)

    async def accept(self, obj: Server) -> Values:
        client, err = await obj._accept()
        if client is None:
            return None, _err(err)
        return (self._register(client),)

    @staticmethod
    def receive_now(obj: object, kind: int, count: int) -> bytes | Values | None:
        # Called by bridge.lua before it yields a receive to the driver: a
        # line already buffered comes back in this one call. Anything but a
        # plain idle client goes the long way.
        if type(obj) is not Client or obj._recv_busy or obj._closed:
            return None
        timeout = obj._timeout
        if timeout.block == 0.0 or timeout.total == 0.0:
            # Timeout 0 (Copas's sockets): the buffer and reads of the kernel
            # answer at once, "timeout" included, as LuaSocket's recv()
            # calls do; no trip through the driver and the loop.
            consumed = obj._buffer.consumed
            done = obj._receive_polled(kind, count)
            if done is not None:
                _settle(obj, consumed, done[1] is None)
                if done[1] is None:
                    return done[0]
                return None, done[1].encode(), done[0]
        consumed = obj._buffer.consumed
        line = obj._receive_now(kind, count)
        if line is not None:
            _settle(obj, consumed, True)
        return line

    @staticmethod
    def receive_parkable(obj: object, kind: int, count: int, prefix: bytes) -> bool:
        """Whether the driver may wait for this receive without a task
        (`receive_look`, `Client._park_reader`): a `"*l"` or count receive
        with no prefix and no timeout, on an idle client whose transport is
        up. Anything else goes the long way (`receive`)."""
        if type(obj) is not Client or prefix or kind == ALL or (kind == NUMBER and count == 0):
            return False
        if obj._recv_busy or obj._closed or obj._proto is None or obj._attaching is not None:
            return False
        timeout = obj._timeout
        return timeout.block is None and timeout.total is None

    @staticmethod
    def receive_look(obj: Client, kind: int, count: int) -> Values | None:
        """What `receive` would return for a parkable receive, if it is
        known now; None while the caller must wait."""
        consumed = obj._buffer.consumed
        done = obj._receive_looked(kind, count)
        if done is None:
            return None
        data, err = done
        _settle(obj, consumed, err is None)
        if err is None:
            return data, None, None, bool(obj._buffer)
        return None, err.encode(), data

    @staticmethod
    def send_now(obj: object, data: bytes) -> Values | None:
        # As `receive_now`: a send the transport takes at once needs no trip
        # through the driver (the same fast path as the Python API's send).
        if type(obj) is not Client:
            return None
        done = obj._send_now(data)
        if done is None:
            return None
        return done[0], _err(done[1])

    async def receive(self, obj: Client, kind: int, count: int, prefix: bytes) -> Values:
        if kind == NUMBER and count == 0 and not prefix:
            return await self._receive_zero(obj)
        consumed = obj._buffer.consumed
        if kind != ALL and not prefix:
            # The public call's fast path (no future when the answer is
            # buffered, one coroutine instead of four when it waits): the
            # same result.
            result: tuple[bytes | str | None, ...] = await obj.receive(count if kind == NUMBER else "*l")
        else:
            result = await obj._receive([(kind, count)], prefix)
        data, err = result[0], result[1]
        _settle(obj, consumed, err is None)
        assert isinstance(data, bytes)
        if err is None:
            if kind == ALL and len(data) == len(prefix):
                # 3.1: "*a" that got no new bytes reports "closed" (SEMANTICS 5.4).
                return None, CLOSED.encode(), data
            # The fourth value tells bridge.lua whether `receive_now` may find
            # something before the loop runs again: bytes are left, or a
            # timeout-0 call would read the kernel.
            timeout = obj._timeout
            return data, None, None, bool(obj._buffer) or timeout.block == 0.0 or timeout.total == 0.0
        assert isinstance(err, str)
        return None, err.encode(), data

    async def _receive_zero(self, obj: Client) -> Values:
        """3.1's `receive(0)`: one fill of the buffer, nothing consumed
        (SEMANTICS 5.4): "" once a byte is buffered, else the error."""
        if obj._recv_busy:
            raise BusyError("another task is already receiving on this object")
        if (obj._proto is None or obj._attaching is not None) and not obj._closed:
            await obj._ensure_stream()
        loop = asyncio.get_running_loop()
        call: CallDeadline = obj._start_call(loop)
        waited = False
        obj._recv_busy = True
        try:
            while True:
                if obj._buffer:
                    return b"", None, None
                proto = obj._proto
                err, _ = obj._read_end(proto)
                if err is None:
                    assert proto is not None
                    err = await obj._wait_readable(proto, (NUMBER, 1), call, waited)
                    waited = True
                    if err is None:
                        continue
                if obj._buffer:
                    return b"", None, None
                return None, err.encode(), b""
        finally:
            obj._recv_busy = False
            # What LuaSocket's one recv() brought in (when its buffer was
            # empty) stays in its buffer.
            if not obj._lua_buffered:
                obj._lua_buffered = min(len(obj._buffer), _LUASOCKET_BUFFER)

    @staticmethod
    async def send(obj: Client, data: bytes) -> Values:
        count, err = await obj.send(data)  # the public call's fast path
        return count, _err(err)

    async def select(self, nrecv: int, timeout: float, *objects: Any) -> Values:
        recv: list[Any] = list(objects[:nrecv])
        send: list[Any] = list(objects[nrecv:])
        if self.handshakes:
            readable, writable, err = await self._select_handshakes(recv, send, timeout)
        else:
            readable, writable, err = await engine_select(recv, send, None if timeout < 0 else timeout)
        if err is not None:
            return None, err.encode()
        return self._ready(readable, writable, _positions(recv), _positions(send))

    @staticmethod
    def kept_list() -> KeptList:
        return KeptList()

    def kept_look(
        self, timeout: float, recv: KeptList | None, send: KeptList | None, *sizes_and_changes: Any
    ) -> Values | ParkedSelect | None:
        """`select_look` over tables the script gives again and again,
        mirrored by kept lists. `sizes_and_changes`: the size of each table,
        the count of pairs for `recv`, then what changed in each since its
        last call (pairs of 1-based position and object; none for `send`
        when it is the same table). Applying them twice changes nothing
        (the long way, `select_kept`, does it again)."""
        _apply_changes(recv, send, sizes_and_changes)
        if self.handshakes or not (timeout < 0 or 0 < timeout < math.inf):
            return None
        selection = KeptSelection(recv, send)
        at_r, at_w = selection.check()
        if at_r or at_w:
            return _kept_ready(selection, at_r, at_w)
        deadline = None if timeout < 0 else asyncio.get_running_loop().time() + timeout
        return ParkedSelect(None, None, selection, deadline)

    async def select_kept(
        self, timeout: float, recv: KeptList | None, send: KeptList | None, *sizes_and_changes: Any
    ) -> Values:
        """`kept_look`'s long way: `select` over the lists' objects."""
        _apply_changes(recv, send, sizes_and_changes)
        objects_r = [] if recv is None else recv.objects
        objects_s = [] if send is None else send.objects
        return await self.select(len(objects_r), timeout, *objects_r, *objects_s)

    def select_look(self, nrecv: int, timeout: float, *objects: Any) -> Values | ParkedSelect | None:
        """`select` for a driver that waits without a task: its results when
        something is ready now; else a `ParkedSelect` to wait on. None for
        what goes the long way (`select`): TLS handshakes under way, and a
        timeout of 0 that cannot be answered without letting the loop poll
        (`Selection.check_now`).

        Raises:
            TypeError: an object is not selectable (as `select`).
        """
        if self.handshakes or not (timeout < 0 or 0 <= timeout < math.inf):
            return None
        recv: list[Any] = list(objects[:nrecv])
        send: list[Any] = list(objects[nrecv:])
        selection = Selection(recv, send)
        if timeout == 0:
            # Answered now, as LuaSocket's one poll is (no trip through the
            # loop per call: a poller such as Copas 4 selects with 0 while it
            # has work queued), the kernel asked for what the loop has not
            # read yet; the long way where that cannot be (`check_now`).
            found = selection.check_now()
            if found is None:
                return None
            if found[0] or found[1]:
                return self._ready(found[0], found[1], _positions(recv), _positions(send))
            # The script may be polling for the answer to something it sent:
            # what waits for the end of the loop iteration goes out first.
            flush_deferred()
            return None, TIMEOUT.encode()
        readable, writable = selection.check()
        if readable or writable:
            return self._ready(readable, writable, _positions(recv), _positions(send))
        deadline = None if timeout < 0 else asyncio.get_running_loop().time() + timeout
        return ParkedSelect(recv, send, selection, deadline)

    @staticmethod
    def _ready(
        readable: list[Any], writable: list[Any], recv_pos: dict[int, int], send_pos: dict[int, int]
    ) -> Values:
        # LuaSocket lists ready entries with buffered data first (in the
        # order given), then the others by ascending descriptor (SEMANTICS 9.3);
        # an entry given twice counts at its last position.
        # (A UDP object's datagrams are in the kernel for 3.1: never dirty.)
        dirty: list[Any] = []
        rest: list[Any] = []
        for obj in readable:
            if isinstance(obj, TcpSocket):
                is_dirty = _lua_dirty(obj)
            else:
                is_dirty = not isinstance(obj, _Udp) and obj.dirty()
            (dirty if is_dirty else rest).append(obj)
        rest.sort(key=lambda obj: obj.getfd())
        dirty.sort(key=lambda obj: recv_pos[id(obj)])
        ready_r = [recv_pos[id(obj)] for obj in dirty + rest]
        ready_w = [send_pos[id(obj)] for obj in sorted(writable, key=lambda obj: obj.getfd())]
        return (len(ready_r), *ready_r, *ready_w)

    async def _select_handshakes(
        self, recv: list[Any], send: list[Any], timeout: float
    ) -> tuple[list[Any], list[Any], str | None]:
        """`select` over TLS connections whose handshake runs in the
        background: one whose handshake ended is ready both ways (the next
        `dohandshake` answers at once); one still in it is not ready, and
        its handshake's end wakes the call."""
        handshakes = self.handshakes
        done_r = [obj for obj in recv if handshakes.finished(obj)]
        done_w = [obj for obj in send if handshakes.finished(obj)]
        if done_r or done_w:
            return done_r, done_w, None
        rest_r = [obj for obj in recv if handshakes.finished(obj) is None]
        rest_w = [obj for obj in send if handshakes.finished(obj) is None]
        tasks = handshakes.tasks(recv + send)
        limit = None if timeout < 0 else timeout
        if not tasks or limit == 0:
            return await engine_select(rest_r, rest_w, limit)
        selecting = asyncio.ensure_future(engine_select(rest_r, rest_w, limit))
        try:
            await asyncio.wait([selecting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not selecting.done():
                selecting.cancel()
                # Wait for it without taking its CancelledError into this task.
                await asyncio.wait([selecting])
        # (A select cancelled here may end with its CancelledError as an
        # exception rather than as cancelled: look, do not take its result.)
        if selecting.done() and not selecting.cancelled() and selecting.exception() is None:
            readable, writable, err = selecting.result()
            if err is None:
                return readable, writable, None
        done_r = [obj for obj in recv if handshakes.finished(obj)]
        done_w = [obj for obj in send if handshakes.finished(obj)]
        return done_r, done_w, None if done_r or done_w else TIMEOUT

    # -- LuaSec (ssl) ----------------------------------------------------------

    @staticmethod
    def ssl_newcontext(params: Any) -> _luasec.Context | tuple[None, bytes]:
        return _luasec.new_context({_text(k): v for k, v in params.items()})

    @staticmethod
    def ssl_options() -> tuple[bytes, ...]:
        return tuple(_luasec.option_names())

    def ssl_wrap(self, obj: Client) -> Client:
        """LuaSec's wrap takes the descriptor from the TCP object: the
        connection goes on as the TLS object, which starts with no timeout
        and fresh statistics; the TCP object is left closed (returned)."""
        obj._timeout.set(None, "b")
        obj._timeout.set(None, "t")
        obj.setstats(0, 0, 0)
        dead = Client(None, obj._family)
        dead._closed = True
        return self._register(dead)  # type: ignore[return-value]

    async def ssl_handshake(
        self, obj: Client, context: _luasec.Context, hostname: bytes | None, sni: Any, strict: bool
    ) -> Values:
        mapping = None
        if sni is not None:
            mapping = (
                {_text(name): ctx.context for name, ctx in sni.items() if isinstance(ctx, _luasec.Context)},
                strict,
            )
        return await self.handshakes.handshake(obj, context, hostname, mapping)

    @staticmethod
    def ssl_peercert(obj: Client) -> Certificate | None:
        der = obj.getpeercertificate()
        if der is None:
            return None
        try:
            return Certificate(der)
        except CertificateError:
            return None

    @staticmethod
    def ssl_verified(obj: Client, context: _luasec.Context) -> Values:
        sslobj = obj._ssl_object()
        if sslobj is None:
            return False, CLOSED.encode()
        mode = context.context.verify_mode
        if context.mode == b"server" or mode != ssl.CERT_NONE:
            # The handshake verified what the peer sent (a handshake whose
            # verification failed did not complete), or the peer sent none.
            return (True,)
        # A client that asked for no verification: OpenSSL still checks the
        # chain for LuaSec, Python's ssl neither checks nor tells.
        return False, b'certificate not verified (verify is "none")'

    @staticmethod
    def ssl_info(obj: Client) -> Values:
        got = _luasec.info(obj)
        return () if got is None else got

    @staticmethod
    def ssl_alpn(obj: Client) -> bytes | None:
        sslobj = obj._ssl_object()
        protocol = None if sslobj is None else sslobj.selected_alpn_protocol()
        return None if protocol is None else protocol.encode("latin-1")

    @staticmethod
    def ssl_sniname(obj: Client, server: bool) -> bytes | None:
        return _luasec.sni_name(obj, server)

    @staticmethod
    def ssl_loadcert(data: bytes) -> Certificate | None:
        return load_pem(data)

    @staticmethod
    def x509(cert: Certificate, method: bytes, arg: Any = None) -> Any:
        """The certificate object's methods (Lua cannot reach Python attributes)."""
        # Lists go back flat (a tuple is unpacked into Lua values).
        if method in (b"subject", b"issuer"):
            entries = cert.subject() if method == b"subject" else cert.issuer()
            return tuple(value for entry in entries for value in entry)
        if method == b"extensions":
            flat: list[object] = []
            for oid, name, names in cert.alt_names():
                flat += [oid, name, len(names)]
                for kind, value in names:
                    flat += [kind, value]
            return tuple(flat)
        if method == b"digest":
            return cert.digest(arg)
        if method == b"pem":
            return cert.pem()
        if method == b"notbefore":
            return cert.notbefore()
        if method == b"notafter":
            return cert.notafter()
        if method == b"serial":
            return cert.serial()
        if method == b"pubkey":
            return cert.pubkey()
        if method == b"validat":
            return cert.validat(int(arg))
        if method == b"signature":
            return cert.signature_name()
        if method == b"setencode":
            cert.utf8 = arg
            return None
        if method == b"der":
            return cert.der
        raise ValueError(f"no certificate method {method!r}")

    @staticmethod
    async def sleep(seconds: float) -> Values:
        await asyncio.sleep(seconds)
        return ()

    @staticmethod
    async def pause() -> Values:
        """The end of a time slice: let the loop run everything else once."""
        # A bare sleep(0) would put this task ahead of the timers and I/O
        # callbacks the loop's next poll makes ready, and the script would
        # run a second slice before them; the second sleep(0) lets the
        # loop's next iteration run them first.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return ()

    async def _hostent(self, address: bytes, reverse_ip: bool) -> Values:
        name = _text(address)
        loop = asyncio.get_running_loop()

        def lookup() -> tuple[str, list[str], list[str]]:
            # LuaSocket's inet_gethost: a dotted quad is looked up by address.
            try:
                socket.inet_aton(name)
            except OSError:
                return socket.gethostbyname_ex(name)
            return socket.gethostbyaddr(name)

        try:
            host, aliases, ips = await loop.run_in_executor(None, lookup)
        except socket.herror as exc:
            # LuaSocket's socket_hoststrerror: HOST_NOT_FOUND has its own
            # text, any other h_errno hstrerror's ("Unknown server error")
            if exc.args[0] == 1 or len(exc.args) < 2:
                return None, _HOST_NOT_FOUND
            return None, str(exc.args[1]).encode()
        except (OSError, UnicodeError):
            return None, _HOST_NOT_FOUND
        return (
            host.encode(),
            len(aliases),
            *(a.encode() for a in aliases),
            len(ips),
            *(ip.encode() for ip in ips),
        )

    async def toip(self, address: bytes) -> Values:
        return await self._hostent(address, False)

    async def tohostname(self, address: bytes) -> Values:
        return await self._hostent(address, True)

    @staticmethod
    async def getaddrinfo(host: bytes) -> Values:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(_text(host), None, type=socket.SOCK_STREAM)
        except OSError as exc:
            return None, os_error_text(exc).encode()
        except UnicodeError:
            return None, _NONAME
        values: list[bytes] = []
        for family, _, _, _, sockaddr in infos:
            name = {socket.AF_INET: b"inet", socket.AF_INET6: b"inet6"}.get(family, b"unknown")
            values += [name, str(sockaddr[0]).encode()]
        return tuple(values)

    @staticmethod
    async def getnameinfo(host: bytes | None, serv: bytes | None) -> Values:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                None if host is None else _text(host),
                None if serv is None else _text(serv),
                type=socket.SOCK_STREAM,
            )
            names: list[bytes] = []
            service: bytes | bool = False
            for _, _, _, _, sockaddr in infos:
                hostname, port = await loop.getnameinfo(sockaddr[:2], 0)  # type: ignore[arg-type]
                if host is not None:
                    names.append(hostname.encode())
                if serv is not None:
                    service = port.encode()
        except OSError as exc:
            return None, os_error_text(exc).encode()
        except UnicodeError:
            return None, _NONAME
        return (service, *names)

    async def wait(self, task_id: int) -> Values:
        task = self._tasks.get(task_id)
        if task is None:
            return False, b"cancelled"
        finished = task.finished
        await asyncio.wait([finished])
        if finished.cancelled():
            return False, b"cancelled"
        exc = finished.exception()
        if exc is not None:
            return False, str(exc).encode()
        return (True, *finished.result())

    async def waitall(self) -> Values:
        # This runs as the helper task of the root that asked.
        me = asyncio.current_task()
        while True:
            others = [
                task.finished for task in self._running if task.helper is not me and not task.finished.done()
            ]
            if not others:
                return ()
            await asyncio.wait(others)

    @staticmethod
    async def exit(code: int) -> Values:
        raise ScriptExit(code)
