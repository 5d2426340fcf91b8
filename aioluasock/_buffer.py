"""The receive buffer and the pattern readers (pure: no loop, no socket).

Readers never consume anything until they can return a complete result, so a
reader that must wait (and may be cancelled while waiting) leaves every byte
in the buffer. Only a failed call consumes what it got, as its partial result.
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["ALL", "LINE", "NUMBER", "ReceiveBuffer", "parse_pattern"]

# Pattern kinds.
LINE: Final = 0
ALL: Final = 1
NUMBER: Final = 2

Pattern = tuple[int, int]
"""A parsed receive pattern: `(kind, count)`; `count` is used by NUMBER only."""

LINE_PATTERN: Final[Pattern] = (LINE, 0)
ALL_PATTERN: Final[Pattern] = (ALL, 0)


def parse_pattern(pattern: object) -> Pattern:
    """Parse one receive pattern of the Python API.

    Args:
        pattern: ``"*l"`` (a line), ``"*a"`` (everything until end of stream)
            or an `int` n >= 0 (exactly n bytes).

    Raises:
        TypeError: the pattern is neither a `str` nor an `int` (a `bool` too).
        ValueError: an unknown string or a negative count
            ("invalid receive pattern").
    """
    if pattern == "*l":
        return LINE_PATTERN
    if pattern == "*a":
        return ALL_PATTERN
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        if pattern < 0:
            raise ValueError(f"invalid receive pattern {pattern!r}: a count must be >= 0")
        return (NUMBER, pattern)
    if isinstance(pattern, str):
        raise ValueError(f"invalid receive pattern {pattern!r}: use '*l', '*a' or a count")
    raise TypeError(f"receive pattern must be '*l', '*a' or an int, not {type(pattern).__name__}")


@final
class ReceiveBuffer:
    """Bytes received and not yet consumed, with the readers over them.

    Attributes:
        consumed: bytes consumed so far by the readers (LuaSocket's
            `getstats` "received": CRs and LFs that "*l" drops count too).
    """

    __slots__ = ("_data", "_journal", "_scan", "consumed")

    def __init__(self) -> None:
        self._data = bytearray()
        self._scan = 0  # no LF before this offset
        self._journal: bytearray | None = None  # bytes consumed since `checkpoint`
        self.consumed = 0

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        self._data += data

    def clear(self) -> None:
        """Discard everything (the socket was closed locally)."""
        self._data = bytearray()
        self._scan = 0

    def checkpoint(self) -> None:
        """Start recording what the readers consume, so that `rollback` can
        put it back: a call of several patterns that is cancelled after its
        first patterns completed must not lose their bytes (raw, CRs and LFs
        included, which the results no longer hold)."""
        self._journal = bytearray()

    def commit(self) -> None:
        """Stop recording; what was consumed stays consumed."""
        self._journal = None

    def rollback(self) -> None:
        """Put back, in front, everything consumed since `checkpoint`."""
        journal, self._journal = self._journal, None
        if journal:
            self._data[:0] = journal
            self._scan = 0
            self.consumed -= len(journal)

    def _consume(self, count: int) -> None:
        if self._journal is not None:
            self._journal += self._data[:count]
        # `del` from the front of a bytearray is O(1) in CPython (it moves a
        # start offset), so a buffer holding many small lines costs no copies.
        del self._data[:count]
        self._scan = 0
        self.consumed += count

    def take_line(self) -> bytes | None:
        """Consume and return one line, or return `None` if no LF is buffered.

        The LF is dropped, and so is every CR of the line (LuaSocket's "*l").
        """
        data = self._data
        end = data.find(b"\n", self._scan)
        if end < 0:
            self._scan = len(data)
            return None
        line = bytes(data[:end])
        # `_consume(end + 1)`, inlined (once per line).
        if self._journal is not None:
            self._journal += data[: end + 1]
        del data[: end + 1]
        self._scan = 0
        self.consumed += end + 1
        # `13 in line` (CR as an int) is a plain memchr; `b"\r" in line`
        # first tries the argument as an int and raises and clears a
        # TypeError internally, which costs more than the rest of this call.
        if 13 in line:
            line = line.replace(b"\r", b"")
        return line

    def take(self, count: int) -> bytes | None:
        """Consume and return exactly `count` bytes, or `None` if fewer are buffered."""
        data = self._data
        if len(data) < count:
            return None
        if count == len(data):
            chunk = bytes(data)
            self._data = bytearray()
            self._scan = 0
            self.consumed += count
            if self._journal is not None:
                self._journal += chunk
            return chunk
        # One copy through a view, not two through a bytearray slice (64 KiB
        # blocks in bulk transfers). The views are released before `_consume`
        # resizes the bytearray (a live export would make it raise).
        with memoryview(data) as view:
            chunk = view[:count].tobytes()
        self._consume(count)
        return chunk

    def take_all(self) -> bytes:
        """Consume and return everything buffered."""
        data = self._data
        self._data = bytearray()
        self._scan = 0
        self.consumed += len(data)
        if self._journal is not None:
            self._journal += data
        return bytes(data)

    def take_partial(self, kind: int) -> bytes:
        """Consume everything as the partial result of a failed `kind` reader.

        A partial line loses its CRs, as a complete one would.
        """
        chunk = self.take_all()
        if kind == LINE and 13 in chunk:  # an int: see `take_line`
            chunk = chunk.replace(b"\r", b"")
        return chunk

    def read(self, pattern: Pattern, ended: bool) -> bytes | None:
        """Run one reader: its complete result, consumed, or `None` for "need more".

        Args:
            pattern: a parsed pattern.
            ended: the stream has ended (end of stream or a local shutdown):
                "*a" then succeeds with whatever is buffered, possibly `b""`.
        """
        kind, count = pattern
        if kind == LINE:
            return self.take_line()
        if kind == NUMBER:
            return self.take(count)
        return self.take_all() if ended else None
