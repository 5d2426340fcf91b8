"""The asyncio protocol under every client: it buffers and signals, nothing more.

Policy (patterns, timeouts, error strings for the caller) lives in `_tcp`; the
protocol feeds the receive buffer, wakes the one reader or writer waiting,
tells `select` watchers that something changed, pauses reading while nobody
reads past a high-water mark, and records how the stream ended.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from typing import Final, Protocol, cast, final

from ._buffer import ReceiveBuffer
from ._errors import CLOSED, os_error_text

__all__ = [
    "DEFER_MAX",
    "READ_BURST_HIGH_WATER",
    "READ_HIGH_WATER",
    "READ_LOW_WATER",
    "WRITE_HIGH_WATER",
    "SelectMarks",
    "StreamProtocol",
    "UVStreamProtocol",
    "Waiter",
    "flush_deferred",
    "protocol_class",
]

READ_HIGH_WATER: Final = 256 * 1024
"""Reading pauses when this much is buffered and no receive is waiting."""
READ_BURST_HIGH_WATER: Final = 1024 * 1024
"""The mark instead, for the reads that follow the one that woke a waiting
receive, until that receive has taken something: the loop's reads of one
wake-up (libuv makes up to 32) land before the woken receive runs, and a
reader that keeps up (a bulk `receive(65536)` loop) would otherwise pause
and resume reading on every wake-up. Measured on uvloop, bulk echo: 1.0 GB/s
with one mark of 256 KiB, 1.5 GB/s with this one."""
READ_LOW_WATER: Final = 64 * 1024
"""Reading resumes once receives brought the buffer down to this."""
WRITE_HIGH_WATER: Final = 256 * 1024
"""The transport's write high-water mark; `send` hands over only what fits.
As large as the read side's, so that the 64 KiB blocks echoed from one read
(up to 256 KiB) fit in one batch and leave in one system call."""
WRITE_LOW_WATER: Final = 64 * 1024
DEFER_MAX: Final = 16 * 1024
"""A deferred send shorter than this is copied into the batch's bytearray
(many small replies become one contiguous buffer); a longer one is kept by
reference and written with the others in one `writelines` (no copy)."""

_MSG_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)
_SCRATCH_SIZE: Final = 256 * 1024
_scratch = threading.local()


def _scratch_view() -> memoryview:
    # One receive area per thread, shared by all the connections of the loop
    # running in it: both loops call get_buffer() and buffer_updated() back to
    # back for one connection, so no two reads interleave. Reading into a
    # preallocated area avoids a 256 KiB allocation per read (which goes
    # through mmap/munmap until glibc raises its threshold) and keeps an idle
    # connection's footprint to its own, usually empty, buffer.
    view: memoryview | None = getattr(_scratch, "view", None)
    if view is None:
        view = _scratch.view = memoryview(bytearray(_SCRATCH_SIZE))
    return view


def _deferring() -> set[StreamProtocol]:
    # The connections of this thread's loop holding deferred sends.
    protos: set[StreamProtocol] | None = getattr(_scratch, "deferring", None)
    if protos is None:
        protos = _scratch.deferring = set()
    return protos


def flush_deferred() -> None:
    """Hand every deferred send of this thread's loop to its transport now:
    for a call that answers without letting the loop run (a polled
    receive), whose caller may be waiting for the answer to one of them."""
    protos = _deferring()
    while protos:
        protos.pop().flush()


class Waiter(Protocol):
    """What a receive or a select waits on (`StreamProtocol.read_waiter`,
    `watchers`, ...): a future, or anything with its `done`, `set_result` and
    `get_loop` (the Lua bridge's scheduler waits without a future)."""

    def done(self) -> bool: ...

    def set_result(self, result: bool, /) -> None: ...

    def get_loop(self) -> asyncio.AbstractEventLoop: ...


def _wake(waiter: Waiter | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(True)


@final
class SelectMarks:
    """The connections whose readiness may have changed since a cached
    `select` list last looked at them (one per thread, see `_select`).

    A connection in a cached list is marked on every change its protocol
    signals (bytes arrived, end of stream, error, room to write, a local
    shutdown, bytes put back by a cancelled receive): readiness can only
    appear through one of them. `select` checks the marked connections of its
    list, keeps those still ready and forgets the others, so a call costs the
    changes since the last one rather than the whole list.
    """

    __slots__ = ("recv", "send", "waiters")

    def __init__(self) -> None:
        self.recv: set[StreamProtocol] = set()
        self.send: set[StreamProtocol] = set()
        self.waiters: list[Waiter] = []

    def mark(self, proto: StreamProtocol) -> None:
        """`proto` may have become ready: note it and wake waiting selects."""
        self.recv.add(proto)
        self.send.add(proto)
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for waiter in waiters:
                _wake(waiter)

    def forget(self, proto: StreamProtocol) -> None:
        """`proto`'s connection is closed: it is never ready again."""
        self.recv.discard(proto)
        self.send.discard(proto)


class StreamProtocol(asyncio.BufferedProtocol):
    """Feeds a `ReceiveBuffer` and signals readiness changes.

    Attributes:
        buffer: the receive buffer (owned by the client object, shared here).
        loop: the loop the connection lives on.
        transport: set by `connection_made`.
        eof: the peer ended its side of the stream.
        error: set when the connection was lost: LuaSocket's text for the
            cause ("closed" for a clean close or a reset).
        read_waiter / write_waiter: the one future (or other `Waiter`, for
            a read) a receive / send waits on.
        watchers: futures of `select` calls waiting for any change.
        reading_paused: reading was paused by the high-water mark.
        writing_paused: the transport's write buffer is above its high-water mark.
        discard: a local `shutdown("receive")`: incoming bytes are dropped.
        keep_reading: a receive needs more than the high-water mark; do not pause.
        pending: sends deferred to one write at the end of the loop iteration.
        pending_size: the bytes in `pending`.
        woken_at: the buffer's `consumed` count when a read last woke the
            waiting receive: while it is unchanged, the woken receive has not
            taken anything yet and reads pause at `READ_BURST_HIGH_WATER`.
        marks: set while the connection is in a cached `select` list: where
            `notify` records that its readiness may have changed.
        plain_socket: the socket under a plain (not TLS) transport, which
            `pull` may read from; None under TLS.
        under: the plain transport under uvloop's TLS layer, where reading
            pauses (see `pause_reading`); None elsewhere.
    """

    __slots__ = (
        "_scratch",
        "buffer",
        "discard",
        "eof",
        "error",
        "keep_reading",
        "loop",
        "marks",
        "pending",
        "pending_size",
        "plain_socket",
        "read_waiter",
        "reading_paused",
        "transport",
        "under",
        "watchers",
        "woken_at",
        "write_waiter",
        "writing_paused",
    )

    def __init__(self, buffer: ReceiveBuffer, loop: asyncio.AbstractEventLoop) -> None:
        self.buffer = buffer
        # Kept, not looked up: on Python 3.11 every `get_running_loop()` makes
        # a getpid() system call, and the hot paths need the loop per line.
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.error: str | None = None
        self.read_waiter: Waiter | None = None
        self.write_waiter: asyncio.Future[bool] | None = None
        self.watchers: list[Waiter] = []
        self.reading_paused = False
        self.writing_paused = False
        self.discard = False
        self.keep_reading = False
        self.pending: list[bytes | bytearray] | None = None
        self.pending_size = 0
        self.woken_at = -1
        self.marks: SelectMarks | None = None
        self.plain_socket: socket.socket | None = None
        self.under: asyncio.Transport | None = None
        self._scratch = _scratch_view()

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport: no isinstance check.
        stream = cast(asyncio.Transport, transport)
        self.transport = stream
        if self.error is not None:
            # The owner closed (or dropped) the connection while the transport
            # came up: the transport owns the descriptor, so close it now.
            stream.close()
            return
        stream.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        if self.watchers or self.marks is not None:  # a select waiting for it to become writable
            self.notify()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._scratch[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes arrived: called directly on uvloop (`UVStreamProtocol`), by
        `buffer_updated` with a view of the read area elsewhere."""
        if self.discard:
            return
        buffer = self.buffer
        buffer._data += data  # `buffer.feed`, inlined: once per read
        waiter = self.read_waiter
        if waiter is not None:
            self.read_waiter = None
            # The woken receive runs after this read burst (libuv reads up to
            # 32 times per wake-up): the reads until then must pause at a
            # mark (the burst's, until it takes something); the receive sets
            # keep_reading again if it waits for more.
            self.keep_reading = False
            self.woken_at = buffer.consumed
            if not waiter.done():
                waiter.set_result(True)
        elif (
            len(buffer) > READ_HIGH_WATER
            and not self.keep_reading
            and (buffer.consumed != self.woken_at or len(buffer) > READ_BURST_HIGH_WATER)
        ):
            self.pause_reading()
        if self.watchers or self.marks is not None:
            self.notify()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake_reader()
        self.notify()
        # Keep the transport open: the peer only closed its sending side and
        # LuaSocket lets us go on sending (half-close), until we close. TLS
        # has no half-close: its transport closes whatever we answer (and
        # asyncio warns about a True).
        transport = self.transport
        return transport is None or transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            if isinstance(exc, OSError) and exc.errno == errno.ENOTCONN:
                # uvloop's write_eof (our shutdown("send")) on a connection
                # the peer has reset since its FIN: the connection is gone,
                # which LuaSocket's recv and send report as "closed".
                self.error = CLOSED
            else:
                self.error = os_error_text(exc) if isinstance(exc, OSError) else CLOSED
        self.wake_reader()
        self.wake_writer()
        self.notify()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.wake_writer()
        self.notify()

    # -- signals for the client object -------------------------------------

    def defer_write(self, data: bytes) -> None:
        """Queue a send for one transport write at the end of this loop
        iteration, with the other sends made until then (see `Client.send`).

        Small sends are copied into one bytearray; a large one is kept as it
        is (bytes never change), so batching a bulk block costs no copy.
        """
        pending = self.pending
        size = len(data)
        self.pending_size += size
        if pending is None:
            self.pending = [data if size >= DEFER_MAX else bytearray(data)]
            self.loop.call_soon(self.flush)
            _deferring().add(self)
        elif size >= DEFER_MAX:
            pending.append(data)
        else:
            last = pending[-1]
            if type(last) is bytearray:
                last += data
            else:
                pending.append(bytearray(data))

    def flush(self) -> None:
        """Hand the deferred sends to the transport (before any other write,
        `write_eof` or close, so that bytes keep their order)."""
        pending = self.pending
        if pending is not None:
            self.pending = None
            self.pending_size = 0
            _deferring().discard(self)
            transport = self.transport
            if transport is not None and not transport.is_closing():
                if len(pending) == 1:
                    transport.write(pending[0])
                else:
                    # One system call for the whole batch (uvloop: writev).
                    transport.writelines(pending)

    def wake_reader(self) -> None:
        """Wake the receive waiting on this connection, if any."""
        waiter, self.read_waiter = self.read_waiter, None
        _wake(waiter)

    def wake_writer(self) -> None:
        """Wake the send waiting on this connection, if any."""
        waiter, self.write_waiter = self.write_waiter, None
        _wake(waiter)

    def notify(self) -> None:
        """Tell every `select` watching this connection that its readiness
        may have changed."""
        marks = self.marks
        if marks is not None:
            marks.mark(self)
        for waiter in self.watchers:
            if not waiter.done():
                waiter.set_result(True)

    def pause_reading(self) -> None:
        """Stop reading from the socket (the buffer is full and nobody reads).

        Under uvloop's TLS layer the plain transport beneath is paused, not
        the TLS one: uvloop ends a TLS connection at once when the peer's
        end of stream arrives while the application's reading is paused,
        and drops what it holds decrypted (a peer that closes without
        waiting for our close_notify, as web servers do, would lose its
        last bytes). Paused beneath, the bytes and the end stay in the
        kernel. (The TLS layer may resume that transport for its own flow
        control: every read past the mark pauses it again.)
        """
        under = self.under
        if under is not None:
            self.reading_paused = True
            if not under.is_closing():
                under.pause_reading()
        elif not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        if self.reading_paused:
            self.reading_paused = False
            transport = self.under or self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def pull(self) -> int:
        """Make now one read the transport would make at its next poll, and
        hand what came to this protocol as the transport would: the look
        at the kernel of a timeout-0 call that does not wait for the loop
        (LuaSocket's `recv()`). Returns the count of bytes that came; 0 when
        none are there now or the read found the end of the stream or an
        error (now recorded here); -1 when it could not be made: no plain
        transport reading (still coming up, TLS, paused, closing) or the
        stream already ended.

        Reading the descriptor beside the transport keeps the bytes in
        order: both loops hand every read to the protocol at once, so what
        the kernel holds comes after everything already buffered.
        """
        sock = self.plain_socket
        transport = self.transport
        if (
            sock is None
            or transport is None
            or self.reading_paused
            or self.discard
            or self.eof
            or self.error is not None
            or transport.is_closing()
        ):
            return -1
        try:
            count = sock.recv_into(self._scratch, 0, _MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            # The kernel reported the error to us, not to the transport: end
            # the connection as the transport would have.
            self.connection_lost(exc)
            transport.abort()
            return 0
        if count:
            self.data_received(self._scratch[:count])
        else:
            # The peer's FIN stays readable: the transport finds it too, and
            # a second `eof_received` changes nothing.
            self.eof_received()
        return count

    @property
    def lost(self) -> bool:
        """The connection is gone (`connection_lost` ran)."""
        return self.error is not None


@final
class UVStreamProtocol(StreamProtocol, asyncio.Protocol):
    """The protocol on uvloop: reads arrive through `data_received`.

    uvloop treats an `asyncio.Protocol` as a plain protocol even when it has
    `get_buffer`: it reads into its own area and hands over a `bytes` of what
    came, one Python call per read instead of `get_buffer` plus
    `buffer_updated` (two calls, two context switches and a buffer export).
    The stdlib loop checks for `BufferedProtocol` first and keeps using the
    shared read area, which spares it a 256 KiB allocation per read.
    """

    __slots__ = ()


def protocol_class(loop: asyncio.AbstractEventLoop) -> type[StreamProtocol]:
    """The protocol class for connections on `loop`."""
    return UVStreamProtocol if type(loop).__module__.partition(".")[0] == "uvloop" else StreamProtocol
