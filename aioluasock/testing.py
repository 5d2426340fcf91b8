"""A conformance kit for byte streams with `Client`'s API, and a fault-injecting proxy.

`check_stream(make_pair, seed=...)` runs randomised scenarios over connected
pairs of clients and checks that the bytes each side reassembles are exactly
the bytes the other side sent: nothing lost, nothing duplicated, nothing out
of order. Each scenario sends data both ways at once, and:

- writers send random-sized pieces (one byte to more than the transport's
  high-water mark, sometimes as several arguments) with random pauses, under
  block and total timeouts, resuming a `"timeout"` from the count `send`
  returns, and a cancelled `send` from the sent counter of `getstats`;
- readers mix `"*l"`, `"*a"`, `receive(n)` and calls of several patterns
  (`receive("*l", 5)`), under block and total timeouts (0 included), resuming
  a `"timeout"` with `prefix=partial` as LuaSocket programs do;
- calls are interrupted at random moments by task cancellation,
  `asyncio.timeout` and `anyio.fail_after`; an interrupted call must have
  consumed nothing;
- on aioluasock clients, readers and writers sometimes `select` first and
  then call with timeout 0: a `receive(1)` after "readable" (a one-byte
  `send` after "writable") must not say ``"timeout"``;
- some scenarios end early: a task other than the reader's closes a client, or
  a client resets its connection (``SO_LINGER`` 0). Then what each side got
  must be a prefix of what was sent;
- the only error strings allowed are LuaSocket's ``"timeout"`` (and only
  where a timeout was set) and ``"closed"``, and a stream that ended answers
  ``(b"", "closed")`` from then on.

Everything random comes from `random.Random(seed)`: a failure raises
`StreamCheckFailed`, whose message has the seed and the call that reruns that
one scenario (the loop's timing still varies between runs; the choices do
not). The kit needs no test framework; in a hypothesis test, draw the seed::

    @given(seed=st.integers(0, 2**32 - 1))
    async def test_my_stream(seed):
        async with Loopback() as loopback:
            await check_stream(loopback.pair, seed=seed, scenarios=3)

`FaultyProxy` forwards loopback connections to a target while slicing the
bytes into small segments, delaying, stalling, resetting or half-closing them,
each direction on its own: the same checks run through it
(``check_stream(..., reliable=False)`` when it may cut a stream short).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import random
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar, cast, final, overload

from ._errors import CLOSED, TIMEOUT
from ._options import OptionValue
from ._receive import ReceiveResult
from ._select import select
from ._send import Buffer
from ._tcp import Client, Master, Server, tcp4

__all__ = [
    "Faults",
    "FaultyProxy",
    "Loopback",
    "StreamCheckFailed",
    "StreamClient",
    "StreamReport",
    "check_pair",
    "check_stream",
]


class StreamClient(Protocol):
    """What the kit needs of a stream: `Client`'s methods (a `Client`, or a
    wrapper of one that gives the same contract).

    The kit ends each direction with ``shutdown("send")``, so the stream must
    have a half-close (the peer's receive sees the end while it still sends);
    it reads `getstats` to learn how much a cancelled `send` handed over (and
    checks both counters unless ``check_stats=False``); and it resets with
    ``setoption("linger", {"on": True, "timeout": 0})`` then `close`.
    """

    @overload
    async def receive(
        self, pattern: str | int = ..., /, *, prefix: Buffer = ...
    ) -> tuple[bytes, None] | tuple[bytes, str]: ...
    @overload
    async def receive(
        self, pattern: str | int, pattern2: str | int, /, *patterns: str | int, prefix: Buffer = ...
    ) -> ReceiveResult: ...
    async def send(self, *data: Buffer) -> tuple[int, str | None]: ...
    def settimeout(self, value: float | None, mode: str = "b") -> int: ...
    def close(self) -> int: ...
    def shutdown(self, mode: str = "both") -> int: ...
    def getstats(self) -> tuple[int, int, float]: ...
    def setoption(self, name: str, value: OptionValue) -> tuple[int, None] | tuple[None, str]: ...


PairFactory = Callable[[], Awaitable[tuple[StreamClient, StreamClient]]]
"""Makes a fresh connected pair; the kit closes both clients when done."""


class StreamCheckFailed(AssertionError):
    """A stream broke the contract. The message says what, with the seed and
    the call that reruns the scenario.

    Attributes:
        seed: the seed of the scenario that failed.
    """

    def __init__(self, message: str, seed: int) -> None:
        super().__init__(message)
        self.seed = seed


@dataclass
class StreamReport:
    """What a run checked.

    Attributes:
        scenarios: scenarios run.
        bytes_checked: bytes received and compared with what was sent.
        calls: `receive` and `send` calls made.
        timeouts: calls that returned ``"timeout"`` and were resumed.
        interrupted: calls cancelled (task cancellation, `asyncio.timeout`,
            `anyio.fail_after`).
        disrupted: scenarios cut short by a close from another task or a reset.
        elapsed: seconds spent.
    """

    scenarios: int = 0
    bytes_checked: int = 0
    calls: int = 0
    timeouts: int = 0
    interrupted: int = 0
    disrupted: int = 0
    elapsed: float = 0.0

    def add(self, other: StreamReport) -> None:
        """Add another report's counts to this one."""
        self.scenarios += other.scenarios
        self.bytes_checked += other.bytes_checked
        self.calls += other.calls
        self.timeouts += other.timeouts
        self.interrupted += other.interrupted
        self.disrupted += other.disrupted
        self.elapsed += other.elapsed


# -- the checker -----------------------------------------------------------------------

_CR: Final = 13
_LF: Final = 10
_LINGER_0: Final = {"on": True, "timeout": 0}
_TIMEOUTS: Final = (0.0, 0.001, 0.003, 0.01, 0.03)
_DELAYS: Final = (0.0, 0.0, 0.0005, 0.002, 0.01)


# Four tasks make random choices at once, in an order that depends on the
# loop's timing: each draws from its own generator, seeded from the scenario's
# seed and its name, so that its choices replay from the seed whatever the
# interleaving.
_TASK_RNG: contextvars.ContextVar[random.Random] = contextvars.ContextVar("_TASK_RNG")


class _Failed(Exception):
    """Raised inside a scenario; turned into `StreamCheckFailed` with the context."""


class _Interrupted:
    """The result of a call that was cancelled."""


_INTERRUPTED: Final = _Interrupted()
_E = TypeVar("_E", bound=BaseException)


def _make_data(rng: random.Random, size: int) -> bytes:
    """Random bytes with lines in them: binary blocks (an LF and a CR every
    256 bytes on average, long lines), short text lines ended by LF or CRLF,
    stray CRs, empty lines."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        kind = rng.random()
        if kind < 0.4:
            block = rng.randbytes(min(left, rng.choice((1, 17, 300, 4000, 70_000))))
        elif kind < 0.9:
            lines = []
            for _ in range(rng.randint(1, 40)):
                text = bytes(rng.randint(32, 126) for _ in range(rng.choice((0, 1, 5, 30, 120))))
                if rng.random() < 0.1:
                    text += b"\r"  # a stray CR inside a line: "*l" drops it
                lines.append(text + rng.choice((b"\n", b"\n", b"\r\n", b"\n\n")))
            block = b"".join(lines)[:left]
        else:
            block = rng.choice((b"\n", b"\r", b"\r\n", b"\n\r"))[:left]
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


@dataclass
class _Direction:
    """One direction of a scenario: what is sent and what was checked so far."""

    name: str
    data: bytes
    sent: int = 0  # bytes the writer knows the stream accepted
    cursor: int = 0  # bytes of `data` the reader's results were checked against
    writer_done: bool = False
    loose_crs: bool = False  # the reader ended on a partial line
    reader_done: bool = False
    ending: str = ""
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=12))


class _Scenario:
    """One scenario over one pair; every choice comes from its seed."""

    def __init__(
        self,
        a: StreamClient,
        b: StreamClient,
        seed: int,
        *,
        max_bytes: int,
        reliable: bool,
        use_anyio: bool,
        disrupt: bool,
        check_stats: bool,
    ) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.reliable = reliable
        self.check_stats = check_stats
        self.sides = {"a": a, "b": b}
        sizes = [
            min(rng.choice((0, 1, 100, 5000, 60_000, max_bytes // 4, max_bytes)), max_bytes) for _ in range(2)
        ]
        self.directions = {
            "a": _Direction("a->b", _make_data(rng, rng.randint(0, sizes[0]))),
            "b": _Direction("b->a", _make_data(rng, rng.randint(0, sizes[1]))),
        }
        self.interrupters = ["cancel", "asyncio.timeout"] + (["anyio.fail_after"] if use_anyio else [])
        self.disruption: tuple[str, str, float] | None = None
        if disrupt and rng.random() < 0.3:
            self.disruption = (
                rng.choice(("close", "reset")),
                rng.choice("ab"),
                rng.choice((0.0, 0.0015, 0.006, 0.03)),
            )
        self.disrupted = False
        self.limited = {"a": False, "b": False}
        self.limit_marks = {"a": 0, "b": 0}
        # The tempo: who waits for whom, and how often calls are interrupted.
        self.pause_rate = {"reader": rng.choice((0.0, 0.1, 0.5)), "writer": rng.choice((0.0, 0.1, 0.5))}
        # What each task may spend pausing, so that a scenario stays short.
        self.pause_budget = {"reader a": 0.05, "reader b": 0.05, "writer a": 0.05, "writer b": 0.05}
        self.interrupt_rate = rng.choice((0.0, 0.1, 0.3, 0.6))
        self.report = StreamReport(scenarios=1)

    @property
    def rng(self) -> random.Random:
        """The random choices of the task that asks (see `_TASK_RNG`)."""
        return _TASK_RNG.get()

    def _start_task(self, name: str) -> None:
        _TASK_RNG.set(random.Random(f"{self.seed}/{name}"))

    def describe(self) -> str:
        a, b = self.directions["a"], self.directions["b"]
        what = f"{len(a.data)} bytes a->b, {len(b.data)} bytes b->a"
        if self.disruption is not None:
            kind, side, delay = self.disruption
            what += f", {kind} of side {side} after {delay * 1000:.0f} ms"
        return what

    # -- calls, maybe interrupted ------------------------------------------------------

    async def _call(
        self,
        log: collections.deque[str],
        function: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Await `function(*args, **kwargs)`, maybe interrupted at a random
        moment: its result, or `_INTERRUPTED` if the interruption won."""
        rng = self.rng
        self.report.calls += 1
        if rng.random() >= self.interrupt_rate:
            return await function(*args, **kwargs)
        how = rng.choice(self.interrupters)
        delay = rng.choice((0.0, 0.0002, 0.001, 0.005, 0.02))
        log.append(f"  interrupted by {how} after {delay * 1000:g} ms")
        try:
            if how == "cancel":
                task = asyncio.ensure_future(function(*args, **kwargs))
                try:
                    await asyncio.wait((task,), timeout=delay)
                    task.cancel()
                    return await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if not task.cancelled() or (current is not None and current.cancelling()):
                        raise  # we ourselves were cancelled
                    self.report.interrupted += 1
                    return _INTERRUPTED
                finally:
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
            if how == "asyncio.timeout":
                async with asyncio.timeout(delay):
                    return await function(*args, **kwargs)
            import anyio

            with anyio.fail_after(delay):
                return await function(*args, **kwargs)
        except TimeoutError:
            self.report.interrupted += 1
            return _INTERRUPTED

    async def _pause(self, task: str, side: str) -> None:
        """Sleep a random while, sometimes, within the task's budget."""
        rng = self.rng
        if rng.random() < self.pause_rate[task]:
            key = f"{task} {side}"
            delay = min(rng.choice(_DELAYS), self.pause_budget[key])
            self.pause_budget[key] -= delay
            await asyncio.sleep(delay)

    def _settimeouts(self, side: str, log: collections.deque[str], chance: float) -> int:
        """Set random timeouts on `side`'s client (none, with 1 - `chance`),
        and return the mark that `_may_time_out` takes."""
        rng = self.rng
        block = total = None
        if rng.random() < chance:
            block = rng.choice(_TIMEOUTS) if rng.random() < 0.6 else None
            total = rng.choice(_TIMEOUTS) if rng.random() < 0.4 else None
        client = self.sides[side]
        client.settimeout(block, "b")
        client.settimeout(total, "t")
        log.append(f"settimeout(block={block}, total={total})")
        # Both tasks of a side share its timeouts: a "timeout" is fair if a
        # limit was in force at any moment of the call.
        self.limited[side] = block is not None or total is not None
        if self.limited[side]:
            self.limit_marks[side] += 1
        return self.limit_marks[side] if self.limited[side] else -self.limit_marks[side] - 1

    def _poll_mode(self, side: str) -> None:
        """Timeout 0 on `side`'s client (a limit, for `_may_time_out`)."""
        self.limited[side] = True
        self.limit_marks[side] += 1
        client = self.sides[side]
        client.settimeout(0, "b")
        client.settimeout(None, "t")

    def _may_time_out(self, side: str, mark: int) -> bool:
        return mark >= 0 or self.limit_marks[side] != -mark - 1

    # -- the reader ----------------------------------------------------------------------

    def _patterns(self) -> list[str | int]:
        rng = self.rng
        count = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        patterns: list[str | int] = []
        for _ in range(count):
            if rng.random() < 0.5:
                patterns.append("*l")
            else:
                patterns.append(rng.choice((0, 1, 2, 7, 100, 1500, 20_000, 300_000)))
        if rng.random() < 0.08:
            patterns.append("*a")  # nothing can follow "*a"
        return patterns

    def _check_line(self, d: _Direction, line: bytes) -> None:
        end = d.data.find(b"\n", d.cursor)
        if end < 0:
            raise _Failed(f"{d.name}: '*l' returned {_show(line)}, but no LF was sent after byte {d.cursor}")
        expected = d.data[d.cursor : end].replace(b"\r", b"")
        if line != expected:
            raise _Failed(f"{d.name}: '*l' at byte {d.cursor}: got {_show(line)}, sent {_show(expected)}")
        d.cursor = end + 1

    def _check_bytes(self, d: _Direction, chunk: bytes, what: str) -> None:
        expected = d.data[d.cursor : d.cursor + len(chunk)]
        if chunk != expected:
            raise _Failed(
                f"{d.name}: {what} at byte {d.cursor}: got {_show(chunk)}, sent {_show(expected)}"
                f" (first difference at +{_first_difference(chunk, expected)})"
            )
        d.cursor += len(chunk)

    def _check_line_partial(self, d: _Direction, partial: bytes) -> None:
        """A final partial line: the CR-less bytes from the cursor, no LF."""
        data, i = d.data, d.cursor
        for index, byte in enumerate(partial):
            while i < len(data) and data[i] == _CR:
                i += 1
            if byte in (_CR, _LF) or i >= len(data) or data[i] != byte:
                raise _Failed(
                    f"{d.name}: the partial line at byte {d.cursor} is {_show(partial)}, which differs from"
                    f" what was sent ({_show(data[d.cursor : d.cursor + len(partial) + 8])}) at +{index}"
                )
            i += 1
        d.cursor = i
        # CRs right after it may have gone with it (a partial takes all that
        # was buffered, and drops the CRs): they do not count as missing.
        d.loose_crs = True

    def _check_stats(self, client: StreamClient, base: int, d: _Direction, when: str) -> None:
        if not self.check_stats:
            return
        received = client.getstats()[0] - base
        if received != d.cursor:
            raise _Failed(
                f"{d.name}: {when}, getstats() says {received} bytes received, the results hold {d.cursor}"
            )

    async def reader(self, side: str) -> None:
        """Receive the direction towards `side` until it ends, checking every result."""
        self._start_task(f"reader {side}")
        other = "b" if side == "a" else "a"
        client, d = self.sides[side], self.directions[other]
        log = d.log
        base = client.getstats()[0]
        pending: list[str | int] = []  # the patterns of a call to resume
        prefix = b""
        mark = 0
        while True:
            if not pending and isinstance(client, Client) and self.rng.random() < 0.1:
                await self._select_then_receive(client, d, side)
                if d.reader_done:
                    return
                continue
            if not pending:
                pending = self._patterns()
                prefix = b""
                mark = self._settimeouts(side, log, 0.6)
                await self._pause("reader", side)
            patterns = list(pending)
            log.append(f"receive{tuple(patterns)!r}, prefix of {len(prefix)} bytes")
            before = client.getstats()[0]
            result = await self._call(log, client.receive, *patterns, prefix=prefix)
            if result is _INTERRUPTED:
                if self.check_stats and client.getstats()[0] != before:
                    raise _Failed(f"{d.name}: a cancelled receive{tuple(patterns)!r} consumed bytes")
                continue
            log.append(f"  -> {_show_result(result)}")
            if not isinstance(result, tuple) or len(result) != len(patterns) + 1:
                raise _Failed(f"{d.name}: receive{tuple(patterns)!r} returned {_show_result(result)}")
            err = result[-1]
            for index, pattern in enumerate(patterns):
                value = result[index]
                if not isinstance(value, bytes):
                    raise _Failed(f"{d.name}: value {index} of receive{tuple(patterns)!r} is {value!r}")
                if err is not None and (index == len(patterns) - 1 or result[index + 1] is None):
                    # The pattern that failed: its partial, and None after it.
                    if any(later is not None for later in result[index + 1 : -1]):
                        raise _Failed(f"{d.name}: values after the failed pattern are not None: {result!r}")
                    may_time_out = self._may_time_out(side, mark)
                    await self._failed_read(
                        client, d, patterns[index:], value, err=err, may_time_out=may_time_out, side=side
                    )
                    if d.reader_done:
                        return
                    pending, prefix = patterns[index:], value
                    break
                self._check_result(d, pattern, value)
                if index == 0:
                    prefix = b""
            else:
                if err is not None:
                    raise _Failed(f"{d.name}: receive{tuple(patterns)!r} returned {_show_result(result)}")
                pending = []
                self._check_stats(client, base, d, f"after receive{tuple(patterns)!r}")
                if patterns[-1] == "*a":
                    await self._ended(client, d, "end of stream")
                    return

    async def _select_then_receive(self, client: Client, d: _Direction, side: str) -> None:
        """The LuaSocket idiom: `select` for reading, then `receive(1)` with
        timeout 0, which must not say "timeout" when `select` said readable."""
        limit = self.rng.choice((0.0, 0.005, 0.05))
        readable, _, err = await select([client], None, limit)
        d.log.append(f"select([client], None, {limit}) -> {len(readable)} readable, {err!r}")
        if client not in readable:
            return  # nothing to conclude from a timeout: the bytes may be on their way
        self._poll_mode(side)
        data, err = await client.receive(1)
        d.log.append(f"  receive(1) -> {_show_result((data, err))}")
        if err == TIMEOUT:
            raise _Failed(f"{d.name}: select said readable, then receive(1) with timeout 0 said 'timeout'")
        if err is not None and err != CLOSED:
            raise _Failed(
                f"{d.name}: receive failed with {err!r}: LuaSocket's would be 'closed' or 'timeout'"
            )
        self.report.bytes_checked += len(data)
        self._check_bytes(d, data, "receive(1) after select")
        if err == CLOSED:
            await self._ended(client, d, "'closed'")

    async def _select_then_send(self, client: Client, d: _Direction, side: str) -> bool:
        """`select` for writing, then one byte with timeout 0, which the
        client must take when `select` said writable. True when the stream
        is closed."""
        limit = self.rng.choice((0.0, 0.005, 0.05))
        _, writable, err = await select(None, [client], limit)
        d.log.append(f"select(None, [client], {limit}) -> {len(writable)} writable, {err!r}")
        if client not in writable:
            return False
        self._poll_mode(side)
        before = client.getstats()[1]
        count, err = await client.send(d.data[d.sent : d.sent + 1])
        d.log.append(f"  send(1 byte) -> {(count, err)!r}")
        if client.getstats()[1] - before != count or count not in (0, 1):
            raise _Failed(f"{d.name}: send(1 byte) returned {(count, err)!r}")
        d.sent += count
        if err == TIMEOUT:
            raise _Failed(f"{d.name}: select said writable, then send(1 byte) with timeout 0 said 'timeout'")
        if err is not None and err != CLOSED:
            raise _Failed(f"{d.name}: send failed with {err!r}: LuaSocket's would be 'closed' or 'timeout'")
        if err == CLOSED and self.reliable and not self.disrupted:
            raise _Failed(f"{d.name}: send failed with 'closed' on a stream nobody closed")
        return err == CLOSED

    def _check_result(self, d: _Direction, pattern: str | int, value: bytes) -> None:
        self.report.bytes_checked += len(value)
        if pattern == "*l":
            self._check_line(d, value)
        elif pattern == "*a":
            self._check_bytes(d, value, "'*a'")
            if self.reliable and not self.disrupted and d.cursor != len(d.data):
                raise _Failed(
                    f"{d.name}: '*a' succeeded with {d.cursor} of the {len(d.data)} bytes sent"
                    " (an end of stream that nobody sent)"
                )
        else:
            assert isinstance(pattern, int)
            if len(value) != pattern:
                raise _Failed(f"{d.name}: receive({pattern}) succeeded with {len(value)} bytes")
            self._check_bytes(d, value, f"receive({pattern})")

    async def _failed_read(
        self,
        client: StreamClient,
        d: _Direction,
        patterns: list[str | int],
        partial: bytes,
        *,
        err: object,
        may_time_out: bool,
        side: str,
    ) -> None:
        if err == TIMEOUT:
            if not may_time_out:
                raise _Failed(f"{d.name}: receive returned 'timeout' with no timeout set")
            self.report.timeouts += 1
            if self.rng.random() < 0.5:
                await self._pause("reader", side)  # not a busy loop on timeout 0
            return
        if err != CLOSED:
            raise _Failed(
                f"{d.name}: receive failed with {err!r}: LuaSocket's would be 'closed' or 'timeout'"
            )
        # The stream ended: the partial is the last of it.
        self.report.bytes_checked += len(partial)
        if patterns[0] == "*l":
            self._check_line_partial(d, partial)
        else:
            self._check_bytes(d, partial, f"the partial of {patterns[0]!r}")
        await self._ended(client, d, "'closed'")

    async def _ended(self, client: StreamClient, d: _Direction, how: str) -> None:
        d.reader_done = True
        d.ending = how
        if self.reliable and not self.disrupted:
            if not d.writer_done:
                raise _Failed(f"{d.name}: the reader saw {how} before the writer had finished")
            missing = d.data[d.cursor :]
            if missing and not (d.loose_crs and not missing.strip(b"\r")):
                raise _Failed(f"{d.name}: the reader saw {how} after {d.cursor} of {len(d.data)} bytes")
        self._poll_mode("a" if client is self.sides["a"] else "b")
        after = await client.receive(1)
        if after != (b"", CLOSED):
            raise _Failed(
                f"{d.name}: after {how}, receive(1) returned {_show_result(after)}, not (b'', 'closed')"
            )

    # -- the writer ----------------------------------------------------------------------

    async def writer(self, side: str) -> None:
        """Send the direction from `side`, resuming timeouts and interruptions."""
        self._start_task(f"writer {side}")
        client, d = self.sides[side], self.directions[side]
        rng, log, data = self.rng, d.log, d.data
        base = client.getstats()[1]
        while d.sent < len(data):
            await self._pause("writer", side)
            if isinstance(client, Client) and rng.random() < 0.1:
                if await self._select_then_send(client, d, side):
                    return
                continue
            size = rng.choice((1, 3, 64, 1400, 9000, 65_536, 300_000))
            chunk = data[d.sent : d.sent + rng.randint(1, size)]
            pieces: list[bytes | bytearray] = [chunk]
            if len(chunk) > 2 and rng.random() < 0.2:
                cut = rng.randint(1, len(chunk) - 1)
                pieces = [chunk[:cut], bytearray(chunk[cut:])]
            mark = self._settimeouts(side, log, 0.5)
            log.append(f"send({' + '.join(str(len(p)) for p in pieces)} bytes) at byte {d.sent}")
            before = client.getstats()[1]
            result = await self._call(log, client.send, *pieces)
            stats = client.getstats()[1] - before
            if result is _INTERRUPTED:
                # How much went out before the interruption: the sent counter.
                log.append(f"  -> interrupted after {stats} bytes")
                if not 0 <= stats <= len(chunk):
                    raise _Failed(f"{d.name}: a cancelled send of {len(chunk)} bytes counted {stats} as sent")
                d.sent += stats
                continue
            log.append(f"  -> {result!r}")
            count, err = result
            if not isinstance(count, int) or not 0 <= count <= len(chunk):
                raise _Failed(f"{d.name}: send of {len(chunk)} bytes returned {result!r}")
            if self.check_stats and stats != count:
                raise _Failed(f"{d.name}: send returned {result!r} but getstats() counted {stats} bytes sent")
            d.sent += count
            if err is None:
                if count != len(chunk):
                    raise _Failed(f"{d.name}: send of {len(chunk)} bytes succeeded with {count}")
            elif err == TIMEOUT:
                if not self._may_time_out(side, mark):
                    raise _Failed(f"{d.name}: send returned 'timeout' with no timeout set")
                self.report.timeouts += 1
            elif err == CLOSED:
                if self.reliable and not self.disrupted:
                    raise _Failed(f"{d.name}: send failed with 'closed' on a stream nobody closed")
                return
            else:
                raise _Failed(
                    f"{d.name}: send failed with {err!r}: LuaSocket's would be 'closed' or 'timeout'"
                )
        if self.check_stats and client.getstats()[1] - base != d.sent:
            raise _Failed(
                f"{d.name}: getstats() counts {client.getstats()[1] - base} bytes sent, not {d.sent}"
            )
        d.writer_done = True
        log.append("shutdown('send')")
        client.shutdown("send")

    # -- the disruptor ---------------------------------------------------------------------

    async def disruptor(self) -> None:
        assert self.disruption is not None
        kind, side, delay = self.disruption
        await asyncio.sleep(delay)
        if all(d.reader_done for d in self.directions.values()):
            return  # too late: both directions are over
        client = self.sides[side]
        self.disrupted = True
        for d in self.directions.values():
            d.log.append(f"** {kind} of side {side}")
        if kind == "reset":
            # SO_LINGER 0: close() sends a reset instead of a FIN.
            client.setoption("linger", _LINGER_0)
        client.close()

    async def run(self, time_limit: float) -> StreamReport:
        started = time.monotonic()
        try:
            async with asyncio.timeout(time_limit), asyncio.TaskGroup() as group:
                for side in "ab":
                    group.create_task(self.writer(side))
                    group.create_task(self.reader(side))
                if self.disruption is not None:
                    group.create_task(self.disruptor())
        except TimeoutError:
            raise _Failed(f"the scenario did not finish in {time_limit} s (a call hangs)") from None
        except BaseExceptionGroup as group_error:
            failure = group_error.subgroup(_Failed)
            if failure is not None:
                raise _first(failure) from None
            error = group_error.subgroup(Exception)
            if error is None:
                raise
            # The stream raised where it should have returned: a failure of
            # the contract too ("I/O failures return LuaSocket error strings").
            first = _first(error)
            raise _Failed(f"a call raised {first!r}") from first
        for d in self.directions.values():
            # Nothing arrives that was not sent (checked once the writer
            # stopped: its count lags behind when a send's task was cancelled).
            if d.cursor > d.sent:
                raise _Failed(f"{d.name}: the reader got {d.cursor} bytes, the writer sent only {d.sent}")
        if self.disrupted:
            self.report.disrupted += 1
        self.report.elapsed = time.monotonic() - started
        return self.report

    def state(self) -> str:
        lines = []
        for d in self.directions.values():
            lines.append(
                f"  {d.name}: sent {d.sent} of {len(d.data)}, checked {d.cursor}"
                + (", writer done" if d.writer_done else "")
                + (f", reader done: {d.ending}" if d.reader_done else "")
            )
            lines.extend(f"    {entry}" for entry in d.log)
        return "\n".join(lines)


def _first(group: BaseExceptionGroup[_E]) -> _E:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return cast(_E, error)


def _show(data: bytes | bytearray) -> str:
    if len(data) <= 40:
        return repr(bytes(data))
    return f"{bytes(data[:16])!r}...{bytes(data[-16:])!r} ({len(data)} bytes)"


def _show_result(result: object) -> str:
    if isinstance(result, tuple):
        return "(" + ", ".join(_show(v) if isinstance(v, bytes) else repr(v) for v in result) + ")"
    return repr(result)


def _first_difference(a: bytes, b: bytes) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


async def check_pair(
    a: StreamClient,
    b: StreamClient,
    *,
    seed: int,
    max_bytes: int = 1_000_000,
    reliable: bool = True,
    anyio: bool | None = None,
    disrupt: bool = True,
    check_stats: bool = True,
    time_limit: float = 10.0,
) -> StreamReport:
    """Run one scenario over a connected pair, then close both clients.

    Args:
        a: one end of a connection.
        b: the other end.
        seed: every random choice of the scenario comes from it.
        max_bytes: the most bytes sent in one direction.
        reliable: `False` when something between the two ends may cut the
            stream short (a `FaultyProxy` that resets or half-closes): an
            early end then needs only to deliver a prefix of what was sent.
        anyio: interrupt calls with `anyio.fail_after` too; `None` means
            when the `anyio` package is imported.
        disrupt: allow scenarios that close or reset a client mid-stream.
        check_stats: check `getstats()`'s byte counters against the results
            (a wrapper that does not keep them turns this off).
        time_limit: seconds before a scenario counts as hung.

    Returns:
        What was checked.

    Raises:
        StreamCheckFailed: the stream lost, duplicated or reordered bytes,
            returned a wrong shape or error string, or hung.
    """
    use_anyio = "anyio" in sys.modules if anyio is None else anyio
    scenario = _Scenario(
        a,
        b,
        seed,
        max_bytes=max_bytes,
        reliable=reliable,
        use_anyio=use_anyio,
        disrupt=disrupt,
        check_stats=check_stats,
    )
    try:
        return await scenario.run(time_limit)
    except _Failed as failure:
        raise StreamCheckFailed(
            f"stream check failed, seed={seed}: {failure}\n"
            f"scenario: {scenario.describe()}\n"
            f"state and last calls:\n{scenario.state()}\n"
            "rerun this scenario: await aioluasock.testing.check_stream("
            f"make_pair, seed={seed}, scenarios=1)",
            seed,
        ) from failure.__cause__
    finally:
        a.close()
        b.close()
        await asyncio.sleep(0)  # the transports finish closing


async def check_stream(
    make_pair: PairFactory,
    *,
    seed: int,
    scenarios: int = 10,
    max_bytes: int = 1_000_000,
    reliable: bool = True,
    anyio: bool | None = None,
    disrupt: bool = True,
    check_stats: bool = True,
    time_limit: float = 10.0,
) -> StreamReport:
    """Run `scenarios` scenarios, each over a fresh pair from `make_pair`.

    Scenario i uses seed ``seed + i``, so the failure message's seed with
    ``scenarios=1`` reruns the scenario that failed. The other arguments are
    `check_pair`'s.

    Returns:
        What was checked, summed over the scenarios.

    Raises:
        StreamCheckFailed: see `check_pair`.
    """
    report = StreamReport()
    for number in range(scenarios):
        a, b = await make_pair()
        report.add(
            await check_pair(
                a,
                b,
                seed=seed + number,
                max_bytes=max_bytes,
                reliable=reliable,
                anyio=anyio,
                disrupt=disrupt,
                check_stats=check_stats,
                time_limit=time_limit,
            )
        )
    return report


# -- pairs on the loopback -------------------------------------------------------------


@final
class Loopback:
    """A listening server on 127.0.0.1 that makes connected `Client` pairs.

    ::

        async with Loopback() as loopback:
            a, b = await loopback.pair()                   # direct
            c, d = await loopback.pair(via=proxy.address)  # through a proxy

    Args:
        buffer_size: when given, the kernel's send and receive buffers of
            both ends (``SO_SNDBUF``, ``SO_RCVBUF``), set before they connect:
            small buffers make writers meet flow control sooner. (Shrinking
            the receive buffer of a connection that is already up makes
            Linux stall it in retransmissions: set it here, not afterwards.)
    """

    def __init__(self, *, buffer_size: int | None = None) -> None:
        self._server: Server | None = None
        self.buffer_size = buffer_size
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    def _size(self, sock: Master) -> None:
        if self.buffer_size is not None:
            for option in ("send-buffer-size", "recv-buffer-size"):
                done, err = sock.setoption(option, self.buffer_size)
                if done is None:
                    raise OSError(f"setoption({option!r}) failed: {err}")

    async def __aenter__(self) -> Loopback:
        master, err = tcp4()
        if master is None:
            raise OSError(f"cannot make a socket: {err}")
        self._size(master)  # accepted connections inherit the listener's buffers
        master.setoption("reuseaddr", True)
        done, err = await master.bind("127.0.0.1", 0)
        if done is None or master.listen(64)[0] is None:
            master.close()
            raise OSError(f"cannot listen on 127.0.0.1: {err}")
        server = cast(Server, master)  # `listen` made it a server
        self._server = server
        host, port = server.getsockname()
        assert isinstance(host, str) and isinstance(port, int)
        self.address = (host, port)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()

    async def pair(self, via: tuple[str, int] | None = None) -> tuple[Client, Client]:
        """A connected `(client, accepted)` pair, connected directly or
        through the proxy listening at `via`.

        Raises:
            OSError: the connection could not be made within 5 s.
        """
        server = self._server
        if server is None:
            raise RuntimeError("use Loopback as an async context manager")
        host, port = via or self.address
        master, err = tcp4()
        if master is None:
            raise OSError(f"cannot make a socket: {err}")
        self._size(master)
        master.settimeout(5)
        done, err = await master.connect(host, port)
        client = cast(Client, master)  # `connect` made it a client
        if done is None:
            client.close()
            raise OSError(f"cannot connect to {host}:{port}: {err}")
        client.settimeout(None)
        server.settimeout(5)
        accepted, err = await server.accept()
        if accepted is None:
            client.close()
            raise OSError(f"accept failed: {err}")
        return client, accepted


# -- the fault-injecting proxy ---------------------------------------------------------

_RESET: Final = struct.pack("ii", 1, 0)


async def _pause(seconds: float) -> None:
    """Wait at least `seconds` by the monotonic clock.

    A loop may run a timer a little before its deadline (uvloop's clock counts
    whole milliseconds), so one `asyncio.sleep` can fall short of a stall the
    caller measures.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110 (a clock floor, not a poll)
        await asyncio.sleep(left)


@final
@dataclass(frozen=True)
class Faults:
    """What `FaultyProxy` does to one direction of each connection.

    Attributes:
        segment: forward at most this many bytes per write, each piece a
            random size from 1 to `segment` (1: byte by byte); `None`: as read.
        delay: seconds to wait before forwarding each piece.
        stall_every: after about this many bytes, stall for `stall` seconds.
        stall: seconds of each stall.
        reset_after: after forwarding this many bytes, reset both connections
            (``SO_LINGER`` 0: each end sees a reset, not a clean end).
        half_close_after: after forwarding this many bytes, end this direction
            (the receiver sees an end of stream); what the sender sends after
            that is read and dropped.
    """

    segment: int | None = None
    delay: float = 0.0
    stall_every: int | None = None
    stall: float = 0.0
    reset_after: int | None = None
    half_close_after: int | None = None

    def __post_init__(self) -> None:
        if self.segment is not None and self.segment < 1:
            raise ValueError("segment must be at least 1")
        if self.delay < 0 or self.stall < 0:
            raise ValueError("delay and stall must be >= 0")
        if self.stall_every is not None and self.stall_every < 1:
            raise ValueError("stall_every must be at least 1")
        for limit in (self.reset_after, self.half_close_after):
            if limit is not None and limit < 0:
                raise ValueError("reset_after and half_close_after must be >= 0")


@final
class _Link:
    """One proxied connection: two sockets and the two pumps between them."""

    def __init__(self, inside: socket.socket, outside: socket.socket) -> None:
        self.inside = inside
        self.outside = outside
        self.pumps: list[asyncio.Task[None]] = []
        self.open_directions = 2
        self.closed = False

    def finish(self, *, reset: bool) -> None:
        """Close both sockets once: with a reset, or a clean close. Called
        by a pump about itself, which returns right after."""
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        for pump in self.pumps:
            if pump is not current:
                pump.cancel()
        asyncio.get_running_loop().call_soon(self._close, reset)

    def _close(self, reset: bool) -> None:
        # After the pumps' cancellations ran: no loop still watches the sockets.
        for sock in (self.inside, self.outside):
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            sock.close()


@final
class FaultyProxy:
    """A TCP proxy on 127.0.0.1 that injects faults, for tests.

    Every connection accepted is forwarded to `target`; `upstream` faults
    apply to the bytes from the connecting side to the target, `downstream`
    faults to the bytes back. An end of stream is passed on as a half-close
    and a reset as a reset. Use it as an async context manager; `address` is
    where it listens::

        async with Loopback() as loopback, FaultyProxy(
            loopback.address, downstream=Faults(segment=1)
        ) as proxy:
            a, b = await loopback.pair(via=proxy.address)

    Args:
        target: `(host, port)` to forward to.
        upstream: faults for the bytes towards the target.
        downstream: faults for the bytes from the target.
        seed: seeds the segment sizes.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        upstream: Faults | None = None,
        downstream: Faults | None = None,
        seed: int = 0,
    ) -> None:
        self.target = target
        self.upstream = upstream or Faults()
        self.downstream = downstream or Faults()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.connections = 0
        self._rng = random.Random(seed)
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._links: set[_Link] = set()

    async def __aenter__(self) -> FaultyProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self.address = listener.getsockname()
        self._acceptor = asyncio.get_running_loop().create_task(self._accept_loop(listener))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks: list[asyncio.Task[None]] = []
        if self._acceptor is not None:
            tasks.append(self._acceptor)
        for link in self._links:
            tasks.extend(link.pumps)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in self._links:
            link.finish(reset=False)
        await asyncio.sleep(0)  # the closes scheduled by `finish`
        self._links.clear()
        if self._listener is not None:
            self._listener.close()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            inside, _ = await loop.sock_accept(listener)
            inside.setblocking(False)
            outside = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            outside.setblocking(False)
            try:
                await loop.sock_connect(outside, self.target)
            except OSError:
                outside.close()
                inside.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                inside.close()
                continue
            except BaseException:
                outside.close()
                inside.close()
                raise
            for sock in (inside, outside):
                # Small segments must go out as written, not coalesced.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            link = _Link(inside, outside)
            seed = self._rng.getrandbits(32)
            link.pumps = [
                loop.create_task(self._pump(link, inside, outside, self.upstream, random.Random(seed))),
                loop.create_task(self._pump(link, outside, inside, self.downstream, random.Random(seed + 1))),
            ]
            self._links.add(link)

    async def _pump(
        self, link: _Link, source: socket.socket, sink: socket.socket, faults: Faults, rng: random.Random
    ) -> None:
        loop = asyncio.get_running_loop()
        forwarded = 0
        next_stall = faults.stall_every
        ended = False  # half-closed by the fault: drop the rest
        try:
            while True:
                data = await loop.sock_recv(source, 65_536)
                if not data:
                    if faults.reset_after is not None and forwarded >= faults.reset_after:
                        link.finish(reset=True)
                        return
                    if not ended:
                        sink.shutdown(socket.SHUT_WR)  # pass the end of stream on
                    link.open_directions -= 1
                    if link.open_directions == 0:
                        link.finish(reset=False)
                    return
                if ended:
                    continue
                view = memoryview(data)
                while view:
                    if faults.reset_after is not None and forwarded >= faults.reset_after:
                        link.finish(reset=True)
                        return
                    if faults.half_close_after is not None and forwarded >= faults.half_close_after:
                        sink.shutdown(socket.SHUT_WR)
                        ended = True
                        break
                    if next_stall is not None and forwarded >= next_stall:
                        await _pause(faults.stall)
                        next_stall += faults.stall_every or 0
                    size = len(view) if faults.segment is None else rng.randint(1, faults.segment)
                    # A piece ends where a fault begins.
                    for limit in (faults.reset_after, faults.half_close_after, next_stall):
                        if limit is not None:
                            size = min(size, limit - forwarded)
                    if faults.delay:
                        await _pause(faults.delay)
                    await loop.sock_sendall(sink, view[:size])
                    forwarded += size
                    view = view[size:]
        except OSError:
            # A reset or a broken pipe on either side: pass it on as a reset.
            link.finish(reset=True)
