"""The receive path: the pattern readers run against the buffer, waits on
the protocol, timeouts, partials (and the fast path of `Client.receive`).

No byte is lost: a reader that fails hands out at most what its pattern
could have consumed, as the partial; a cancelled call puts back what it had
consumed; bytes that arrive while a call gives up are looked at first.
"""

from __future__ import annotations

import asyncio
from typing import Final, overload

from ._buffer import ALL, LINE, LINE_PATTERN, NUMBER, Pattern, parse_pattern
from ._errors import CLOSED, TIMEOUT, BusyError
from ._lifecycle import TcpSocket
from ._protocol import READ_LOW_WATER, StreamProtocol, Waiter, flush_deferred
from ._send import Buffer, as_bytes
from ._timeout import CallDeadline
from ._waits import EXPIRED, let_io_in, next_deadline, wait_until

ReceiveResult = tuple[bytes | str | None, ...]

_PATTERNS: Final[dict[object, Pattern]] = {"*l": LINE_PATTERN, "*a": (ALL, 0)}


class ReceivePath(TcpSocket):
    """A client's receive side."""

    __slots__ = ()

    def _read_end(self, proto: StreamProtocol | None) -> tuple[str | None, bool]:
        """Why no more bytes will arrive, if so: `(error text, "*a" succeeds)`."""
        if self._closed:
            # A local close is not an end of stream: a waiting "*a" fails with
            # its partial (the Lua bridge keeps the buffer, and 3.1's "*a"
            # then succeeds with what was buffered).
            return CLOSED, self._keep_buffer and bool(self._buffer)
        if proto is None or proto.discard:
            if proto is None and self._stream_error is not None:
                return self._stream_error, False
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
        the "wait" is `let_io_in`'s yield, during which bytes already in the
        kernel arrive; on a timer, bytes may arrive in the very loop
        iteration the timer fires, after it set the waiter's result. Either
        way the reader must look at them before the call fails, or a complete
        line would go out as the partial of a "timeout".
        """
        loop = proto.loop
        deadline = next_deadline(loop, call)
        size = len(self._buffer)
        # A call that needs more than the high-water mark must keep reading.
        if proto.reading_paused:
            proto.resume_reading()
        if deadline == EXPIRED:
            if waited:
                return TIMEOUT  # this call already waited its turn
            attach = self._attaching
            if attach is not None:
                # The transport is still coming up (just connected or
                # accepted): it starts reading once it is, and what the kernel
                # holds (bytes, the peer's FIN) only comes in after that.
                await attach.wait()
            await let_io_in(loop)
        else:
            waiter: asyncio.Future[bool] = loop.create_future()
            proto.read_waiter = waiter
            proto.keep_reading = True
            try:
                if await wait_until(loop, waiter, deadline):
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
        return await self._receive(parsed, as_bytes(prefix, "prefix"))

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

    def _receive_looked(self, kind: int, count: int) -> tuple[bytes, str | None] | None:
        """One look of a blocking `"*l"` or `count`-byte receive (no prefix,
        no timeout) at the buffer and the read side: `(data, None)`,
        `(partial, err)` once no more bytes can come, or `None` while the
        caller must wait (`_park_reader`). The steps of `receive`'s inlined
        wait, for a caller that waits without a coroutine (the Lua bridge's
        scheduler)."""
        buffer = self._buffer
        data = (buffer.take_line() if kind == LINE else buffer.take(count)) if buffer._data else None
        proto = self._proto
        if data is None:
            if not (self._closed or proto is None or proto.discard or proto.error is not None or proto.eof):
                return None
            err, ended = self._read_end(proto)
            data = buffer.read((kind, count), ended)
            if data is None:
                partial = buffer.take_partial(kind)
                if proto is not None and proto.reading_paused:
                    proto.resume_reading()
                return partial, err or CLOSED
        if proto is not None and proto.reading_paused and len(buffer) <= READ_LOW_WATER:
            proto.resume_reading()
        return data, None

    def _park_reader(self, waiter: Waiter) -> StreamProtocol:
        """Make `waiter` the one a change on the read side wakes (with
        `set_result(True)`), this client busy receiving until
        `_unpark_reader`. For a caller of `_receive_looked` that found
        nothing and has a plain transport (`_proto` set, not attaching)."""
        proto = self._proto
        assert proto is not None
        self._recv_busy = True
        proto.read_waiter = waiter
        # A call that needs more than the high-water mark must keep reading.
        proto.keep_reading = True
        if proto.reading_paused:
            proto.resume_reading()
        return proto

    def _unpark_reader(self, proto: StreamProtocol, waiter: Waiter) -> None:
        """End a wait `_park_reader` began (woken or not)."""
        self._recv_busy = False
        proto.keep_reading = False
        if proto.read_waiter is waiter:
            proto.read_waiter = None

    def _receive_polled(self, kind: int, count: int) -> tuple[bytes, str | None] | None:
        """A timeout-0 `"*l"` or `count`-byte receive (`count` > 0, no
        prefix) finished at once, as LuaSocket's: the buffer, then reads of
        the kernel (`StreamProtocol.pull`), then the answer: `(data,
        None)` or `(partial, err)` with err "timeout" when nothing more is
        there. `None` when the kernel cannot be read directly (the caller
        goes through `_receive`, which yields to the loop instead).

        It does not yield: for the Lua bridge, whose scripts poll as they
        would with LuaSocket (a script that polls and never waits is bounded
        by its time slice). Sends deferred to the end of the loop iteration,
        on any connection, are handed to their transports before a
        "timeout", so that a poller waiting for the answer to what it sent
        is not waiting on itself.
        """
        proto = self._proto
        if proto is None or self._recv_busy or self._closed or self._attaching is not None:
            return None
        buffer = self._buffer
        data = (buffer.take_line() if kind == LINE else buffer.take(count)) if buffer._data else None
        if data is None:
            # As LuaSocket's receive: recv() until the pattern is complete,
            # the stream ends or recv() says EAGAIN.
            while (err := self._read_end(proto)[0]) is None:
                pulled = proto.pull()
                if pulled < 0:
                    return None
                if pulled == 0 and self._read_end(proto)[0] is None:
                    break  # EAGAIN: "timeout"
                data = buffer.take_line() if kind == LINE else buffer.take(count)
                if data is not None:
                    break
            if data is None:
                flush_deferred()
                partial = buffer.take_partial(kind)
                if proto.reading_paused:
                    proto.resume_reading()
                return partial, err or TIMEOUT
        if proto.reading_paused and len(buffer) <= READ_LOW_WATER:
            proto.resume_reading()
        return data, None

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
