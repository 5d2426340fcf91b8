"""The receive buffer and its pattern readers (pure: no loop, no socket).

The central property: however the received bytes are split into chunks, the
readers return the same results, consume the same bytes and leave the same
partial data as a reference model that sees the whole input at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioluasock._buffer import (
    ALL,
    ALL_PATTERN,
    LINE,
    LINE_PATTERN,
    NUMBER,
    Pattern,
    ReceiveBuffer,
    parse_pattern,
)

# -- a reference model over the whole input --------------------------------------


def model(data: bytes, patterns: Sequence[Pattern], ended: bool) -> tuple[list[bytes], bytes, int]:
    """What reading `patterns` in order from `data` must give.

    Returns:
        `(results, partial, consumed)`: the complete results, in order, up to
        the first pattern that cannot complete; the partial result of that
        pattern (everything left, its CRs dropped for a line) or `b""` when
        every pattern completed; and the bytes consumed before the partial.
    """
    results: list[bytes] = []
    rest = data
    for kind, count in patterns:
        if kind == LINE:
            end = rest.find(b"\n")
            if end < 0:
                return results, rest.replace(b"\r", b""), len(data) - len(rest)
            results.append(rest[:end].replace(b"\r", b""))
            rest = rest[end + 1 :]
        elif kind == NUMBER:
            if len(rest) < count:
                return results, rest, len(data) - len(rest)
            results.append(rest[:count])
            rest = rest[count:]
        else:
            if not ended:
                return results, rest, len(data) - len(rest)
            results.append(rest)
            rest = b""
    return results, b"", len(data) - len(rest)


def drive(
    chunks: Sequence[bytes], patterns: Sequence[Pattern], ended: bool
) -> tuple[list[bytes], bytes, int]:
    """Feed `chunks` one by one, reading as far as possible after each; then,
    if `ended`, read once more as at end of stream; then take the partial."""
    buffer = ReceiveBuffer()
    results: list[bytes] = []
    index = 0

    def read_all_possible(at_end: bool) -> None:
        nonlocal index
        while index < len(patterns):
            before = len(buffer)
            value = buffer.read(patterns[index], at_end)
            if value is None:
                # "Need more" consumes nothing.
                assert len(buffer) == before
                return
            results.append(value)
            index += 1

    fed = 0
    for chunk in chunks:
        buffer.feed(chunk)
        fed += len(chunk)
        read_all_possible(False)
        # Every byte fed is either consumed or still buffered.
        assert buffer.consumed + len(buffer) == fed
    if ended:
        read_all_possible(True)
    consumed = buffer.consumed
    partial = b""
    if index < len(patterns):
        partial = buffer.take_partial(patterns[index][0])
        assert len(buffer) == 0
        assert buffer.consumed == fed
    return results, partial, consumed


def splits(data: bytes) -> Iterator[list[bytes]]:
    """Every way of cutting `data` into non-empty chunks."""
    for mask in range(1 << max(len(data) - 1, 0)):
        chunks: list[bytes] = []
        start = 0
        for cut in range(1, len(data)):
            if mask & (1 << (cut - 1)):
                chunks.append(data[start:cut])
                start = cut
        chunks.append(data[start:])
        yield chunks


# -- every split of a fixed input, for every reader ------------------------------

SAMPLE = b"ab\r\nc\r\r\nd\n\ref"  # 14 bytes: 8192 splits

SAMPLE_READERS: list[list[Pattern]] = [
    [LINE_PATTERN],
    [LINE_PATTERN, LINE_PATTERN, LINE_PATTERN, LINE_PATTERN],
    [(NUMBER, 3), LINE_PATTERN, (NUMBER, 0), (NUMBER, 5), LINE_PATTERN],
    [(NUMBER, 14)],
    [(NUMBER, 15)],
    [LINE_PATTERN, ALL_PATTERN],
    [ALL_PATTERN],
]


def test_splits_enumerates_every_cut() -> None:
    # The helper itself: 2**(n-1) ways, all distinct, each joining back.
    ways = [tuple(chunks) for chunks in splits(b"abcd")]
    assert len(ways) == 8
    assert len(set(ways)) == 8
    assert all(b"".join(way) == b"abcd" for way in ways)


@pytest.mark.parametrize("patterns", SAMPLE_READERS, ids=str)
@pytest.mark.parametrize("ended", [False, True], ids=["open", "ended"])
def test_every_split_of_sample(patterns: list[Pattern], ended: bool) -> None:
    expected = model(SAMPLE, patterns, ended)
    for chunks in splits(SAMPLE):
        assert drive(chunks, patterns, ended) == expected, chunks


def test_sample_lines_are_what_luasocket_returns() -> None:
    # The model itself, pinned against the expected LuaSocket answers.
    results, partial, consumed = model(SAMPLE, [LINE_PATTERN] * 4, ended=False)
    assert results == [b"ab", b"c", b"d"]
    assert partial == b"ef"  # the CR of the partial line is dropped as well
    assert consumed == len(b"ab\r\nc\r\r\nd\n")


def test_byte_at_a_time_line_with_many_crs() -> None:
    buffer = ReceiveBuffer()
    for byte in b"thr\ree\r\r":
        buffer.feed(bytes([byte]))
        assert buffer.take_line() is None
    buffer.feed(b"\n")
    assert buffer.take_line() == b"three"
    assert buffer.consumed == len(b"thr\ree\r\r\n")


# -- arbitrary inputs, splits and reader sequences (hypothesis) ------------------

_pieces = st.sampled_from([b"a", b"b", b"\r", b"\n", b"\x00", b"\r\n", b"xyz"])
_data = st.lists(_pieces, max_size=40).map(b"".join)
_pattern = st.one_of(
    st.just(LINE_PATTERN),
    st.just(ALL_PATTERN),
    st.integers(min_value=0, max_value=9).map(lambda n: (NUMBER, n)),
)


@st.composite
def _chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(_data)
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=max(len(data) - 1, 1)))))
    cuts = [cut for cut in cuts if cut < len(data)]
    bounds = [0, *cuts, len(data)]
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]
    # Empty feeds are allowed and change nothing: sprinkle some in.
    if draw(st.booleans()):
        chunks.insert(draw(st.integers(min_value=0, max_value=len(chunks))), b"")
    return data, chunks


@settings(max_examples=400, deadline=None)
@given(_chunked(), st.lists(_pattern, min_size=1, max_size=8), st.booleans())
def test_any_split_matches_model(
    chunked: tuple[bytes, list[bytes]], patterns: list[Pattern], ended: bool
) -> None:
    data, chunks = chunked
    assert drive(chunks, patterns, ended) == model(data, patterns, ended)


@settings(max_examples=200, deadline=None)
@given(_chunked())
def test_lines_never_contain_cr_or_lf(chunked: tuple[bytes, list[bytes]]) -> None:
    data, chunks = chunked
    buffer = ReceiveBuffer()
    lines: list[bytes] = []
    for chunk in chunks:
        buffer.feed(chunk)
        while (line := buffer.take_line()) is not None:
            lines.append(line)
    tail = buffer.take_partial(LINE)
    for line in [*lines, tail]:
        assert b"\r" not in line
        assert b"\n" not in line
    assert len(lines) == data.count(b"\n")
    assert b"".join(lines) + tail == data.replace(b"\r", b"").replace(b"\n", b"")
    assert buffer.consumed == len(data)


# -- individual readers -----------------------------------------------------------


def test_feed_accepts_bytes_like() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"ab")
    buffer.feed(bytearray(b"cd"))
    buffer.feed(memoryview(b"xef")[1:])
    assert len(buffer) == 6
    assert buffer.take(6) == b"abcdef"


def test_len_and_bool() -> None:
    buffer = ReceiveBuffer()
    assert len(buffer) == 0
    assert not buffer
    buffer.feed(b"")
    assert not buffer
    buffer.feed(b"x")
    assert buffer
    assert len(buffer) == 1


def test_take_line_waits_for_lf_and_keeps_bytes() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"abc\r")
    assert buffer.take_line() is None
    assert len(buffer) == 4  # nothing consumed while waiting
    assert buffer.consumed == 0
    buffer.feed(b"def")
    assert buffer.take_line() is None
    buffer.feed(b"\nnext")
    assert buffer.take_line() == b"abcdef"
    assert buffer.consumed == 8
    assert len(buffer) == 4


def test_empty_line_and_lone_cr_line() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"\n\r\n\r\r\r\nx\n")
    assert buffer.take_line() == b""
    assert buffer.take_line() == b""
    assert buffer.take_line() == b""
    assert buffer.take_line() == b"x"
    assert buffer.take_line() is None
    assert buffer.consumed == 9


def test_nul_bytes_are_kept() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"a\x00b\n\x00\x00")
    assert buffer.take_line() == b"a\x00b"
    assert buffer.take(2) == b"\x00\x00"


def test_long_line_in_many_chunks() -> None:
    buffer = ReceiveBuffer()
    piece = b"x" * 1000 + b"\r"
    for _ in range(200):
        buffer.feed(piece)
        assert buffer.take_line() is None
    buffer.feed(b"\n")
    line = buffer.take_line()
    assert line == b"x" * 200_000
    assert buffer.consumed == 200 * 1001 + 1
    assert not buffer


def test_take_exact() -> None:
    buffer = ReceiveBuffer()
    assert buffer.take(0) == b""
    assert buffer.take(1) is None
    buffer.feed(b"hello")
    assert buffer.take(6) is None
    assert len(buffer) == 5
    assert buffer.take(0) == b""
    assert buffer.take(2) == b"he"
    assert buffer.take(3) == b"llo"  # the whole rest
    assert buffer.take(1) is None
    assert buffer.consumed == 5


def test_number_pattern_keeps_cr_and_lf() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"a\r\nb")
    assert buffer.read((NUMBER, 4), False) == b"a\r\nb"


def test_take_all() -> None:
    buffer = ReceiveBuffer()
    assert buffer.take_all() == b""
    buffer.feed(b"x\r\ny")
    assert buffer.take_all() == b"x\r\ny"  # no CR/LF translation
    assert not buffer
    assert buffer.consumed == 4


def test_all_pattern_needs_end_of_stream() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"data")
    assert buffer.read(ALL_PATTERN, False) is None
    assert len(buffer) == 4
    assert buffer.read(ALL_PATTERN, True) == b"data"
    # "*a" on a stream that has already ended: success with b"" (DESIGN.md).
    assert buffer.read(ALL_PATTERN, True) == b""
    assert buffer.consumed == 4


def test_ended_does_not_complete_line_or_number() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"abc")
    assert buffer.read(LINE_PATTERN, True) is None
    assert buffer.read((NUMBER, 4), True) is None
    assert buffer.read((NUMBER, 3), True) == b"abc"


def test_read_dispatches_each_kind() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"l1\r\n12345rest")
    assert buffer.read(LINE_PATTERN, False) == b"l1"
    assert buffer.read((NUMBER, 5), False) == b"12345"
    assert buffer.read((NUMBER, 0), False) == b""
    assert buffer.read(ALL_PATTERN, True) == b"rest"


# -- partial results and the consumed counter -------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "partial"),
    [
        (LINE, b"abc\r", b"abc"),
        (LINE, b"a\rb\rc", b"abc"),
        (LINE, b"", b""),
        (NUMBER, b"ab\r", b"ab\r"),
        (ALL, b"x\ry", b"x\ry"),
    ],
)
def test_take_partial(kind: int, data: bytes, partial: bytes) -> None:
    buffer = ReceiveBuffer()
    buffer.feed(data)
    assert buffer.take_partial(kind) == partial
    assert not buffer
    # Partial data is consumed, and the dropped CRs count as received.
    assert buffer.consumed == len(data)


def test_partial_after_a_failed_line_scan() -> None:
    # The reader remembers how far it looked for an LF; a partial take and
    # new data must not make it skip an LF.
    buffer = ReceiveBuffer()
    buffer.feed(b"abcdef")
    assert buffer.take_line() is None
    assert buffer.take_partial(LINE) == b"abcdef"
    buffer.feed(b"\n")
    assert buffer.take_line() == b""


def test_scan_position_survives_number_reads() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"abcd")
    assert buffer.take_line() is None
    assert buffer.take(3) == b"abc"
    buffer.feed(b"\n")
    assert buffer.take_line() == b"d"


def test_clear_discards_without_counting() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"one\ntwo")
    assert buffer.take_line() == b"one"
    assert buffer.take_line() is None
    buffer.clear()
    assert not buffer
    assert buffer.consumed == 4  # discarded bytes were never received by a reader
    buffer.feed(b"\n")
    assert buffer.take_line() == b""


def test_consumed_is_writable_for_setstats() -> None:
    buffer = ReceiveBuffer()
    buffer.consumed = 100
    buffer.feed(b"ab\n")
    assert buffer.take_line() == b"ab"
    assert buffer.consumed == 103


# -- parse_pattern ------------------------------------------------------------------


def test_parse_valid_patterns() -> None:
    assert parse_pattern("*l") == LINE_PATTERN == (LINE, 0)
    assert parse_pattern("*a") == ALL_PATTERN == (ALL, 0)
    assert parse_pattern(0) == (NUMBER, 0)
    assert parse_pattern(7) == (NUMBER, 7)
    assert parse_pattern(5 * 1024 * 1024) == (NUMBER, 5 * 1024 * 1024)


@pytest.mark.parametrize("pattern", ["", "*", "*x", "*L", "*A", "l", "a", "x", "*l ", " *l"])
def test_parse_unknown_string(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid receive pattern"):
        parse_pattern(pattern)


@pytest.mark.parametrize("count", [-1, -100])
def test_parse_negative_count(count: int) -> None:
    with pytest.raises(ValueError, match="invalid receive pattern"):
        parse_pattern(count)


@pytest.mark.parametrize("pattern", [None, True, False, 1.5, 3.0, b"*l", bytearray(b"*a"), ["*l"], object()])
def test_parse_wrong_type(pattern: object) -> None:
    with pytest.raises(TypeError):
        parse_pattern(pattern)


# -- checkpoint / rollback / commit (a cancelled multi-pattern receive) ----------------


def _read_through(buffer: ReceiveBuffer, chunks: Sequence[bytes], patterns: Sequence[Pattern]) -> list[bytes]:
    results: list[bytes] = []
    index = 0
    for chunk in chunks:
        buffer.feed(chunk)
        while index < len(patterns) and (value := buffer.read(patterns[index], False)) is not None:
            results.append(value)
            index += 1
    return results


@settings(max_examples=300, deadline=None)
@given(_data, _chunked(), st.lists(_pattern, min_size=1, max_size=6), st.booleans())
def test_rollback_puts_back_everything_consumed(
    pre: bytes, chunked: tuple[bytes, list[bytes]], patterns: list[Pattern], partial: bool
) -> None:
    data, chunks = chunked
    buffer = ReceiveBuffer()
    buffer.feed(pre)
    first = buffer.take_line()  # something consumed before the checkpoint stays consumed
    left = pre if first is None else pre[pre.index(b"\n") + 1 :]
    consumed = buffer.consumed
    buffer.checkpoint()
    results = _read_through(buffer, chunks, patterns)
    if partial:
        buffer.take_partial(patterns[min(len(results), len(patterns) - 1)][0])
    buffer.rollback()
    assert buffer.consumed == consumed
    assert len(buffer) == len(left) + len(data)
    # The same reads over the restored bytes give the same results.
    again = _read_through(buffer, [b""], patterns)
    assert again == results
    buffer.take_all()
    assert buffer.consumed == len(pre) + len(data)


def test_rollback_restores_raw_crs_and_lfs() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"a\r\nbc\r\nd")
    buffer.checkpoint()
    assert buffer.read(LINE_PATTERN, False) == b"a"
    assert buffer.read((NUMBER, 2), False) == b"bc"
    assert buffer.read(LINE_PATTERN, False) == b""
    assert buffer.read(LINE_PATTERN, False) is None
    buffer.feed(b"e\n")
    buffer.rollback()
    assert buffer.consumed == 0
    assert buffer.take_all() == b"a\r\nbc\r\nde\n"


def test_rollback_after_take_all_and_exact_take() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"xyz")
    buffer.checkpoint()
    assert buffer.take(3) == b"xyz"  # the whole buffer at once
    buffer.feed(b"123")
    assert buffer.read(ALL_PATTERN, True) == b"123"
    buffer.rollback()
    assert buffer.take_all() == b"xyz123"


def test_commit_keeps_what_was_consumed() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"one\ntwo\n")
    buffer.checkpoint()
    assert buffer.take_line() == b"one"
    buffer.commit()
    buffer.rollback()  # nothing recorded any more: a no-op
    assert buffer.consumed == 4
    assert buffer.take_line() == b"two"


def test_rollback_without_checkpoint_is_a_no_op() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"ab\ncd")
    assert buffer.take_line() == b"ab"
    buffer.rollback()
    assert buffer.consumed == 3
    assert buffer.take_all() == b"cd"


def test_checkpoint_again_restarts_the_record() -> None:
    buffer = ReceiveBuffer()
    buffer.feed(b"abcdef")
    buffer.checkpoint()
    assert buffer.take(2) == b"ab"
    buffer.checkpoint()
    assert buffer.take(2) == b"cd"
    buffer.rollback()
    assert buffer.consumed == 2
    assert buffer.take_all() == b"cdef"
