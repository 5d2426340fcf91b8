"""The send path: hand the transport no more than fits below its high-water
mark, so that the count a failed `send` returns is exactly what went out."""

from __future__ import annotations

import asyncio
import errno

from ._errors import CLOSED, TIMEOUT, BusyError, errno_text
from ._lifecycle import TcpSocket
from ._protocol import WRITE_HIGH_WATER, StreamProtocol
from ._timeout import CallDeadline
from ._waits import EXPIRED, let_io_in, next_deadline, wait_until

Buffer = bytes | bytearray | memoryview
"""What `send` takes (any object with the buffer protocol works at run time)."""


def as_bytes(data: object, what: str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        raise TypeError(f"{what} must be bytes, not str: encode it first (e.g. s.encode())")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}") from None
    return view.tobytes()


class SendPath(TcpSocket):
    """A client's send side."""

    __slots__ = ()

    def _write_end(self, proto: StreamProtocol | None) -> str | None:
        if proto is None and not self._closed and not self._send_shut:
            # send() on a socket whose connect is in progress says EAGAIN,
            # after a failed one its error, else EPIPE.
            err = self._stream_error
            return CLOSED if err is None or err == errno_text(errno.ENOTCONN) else err
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
        deadline = next_deadline(loop, call)
        if deadline == EXPIRED:
            if waited:
                return TIMEOUT
            await let_io_in(loop)
        else:
            waiter: asyncio.Future[bool] = loop.create_future()
            proto.write_waiter = waiter
            try:
                if await wait_until(loop, waiter, deadline):
                    return None
            finally:
                if proto.write_waiter is waiter:
                    proto.write_waiter = None
        if not proto.writing_paused or self._write_end(self._proto) is not None:
            return None
        return TIMEOUT

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
                data = (b"".join([as_bytes(item, "data") for item in data]),)  # raises the clear error
        if len(data) == 1:
            chunk = data[0]
            if type(chunk) is bytes:
                done = self._send_now(chunk)
                if done is not None:
                    return done
                return await self._send([chunk])
        return await self._send([as_bytes(item, "data") for item in data])
