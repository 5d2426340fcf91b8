"""The compiled accelerator: which implementation runs, and that the compiled
receive buffer behaves exactly as its pure-Python source (the reference).

The differential tests load both modules side by side, whichever one the
package itself runs (`AIOLUASOCK_NO_EXTENSIONS`), and feed them the same byte
streams, split at every offset, with the same operations.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aioluasock
from aioluasock import _accel

PACKAGE_DIR = Path(_accel.__file__).parent


def _forced_pure() -> bool:
    return os.environ.get(_accel.NO_EXTENSIONS_ENV, "") not in ("", "0")


def _extension_path(name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = PACKAGE_DIR / f"{name}{suffix}"
        if path.exists():
            return path
    return None


@functools.cache
def compiled_module(name: str) -> ModuleType:
    """The extension module `name`, even when the package runs the pure one."""
    full_name = f"aioluasock.{name}"
    current = sys.modules[full_name]
    if not str(current.__file__).endswith(".py"):
        return current
    path = _extension_path(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no compiled {full_name} next to {current.__file__}: CI builds it (setup.py)")
        pytest.skip(f"no compiled {full_name}: build it with `python setup.py build_ext --inplace`")
    spec = importlib.util.spec_from_file_location(full_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules[full_name] = current  # the package keeps running the pure one
    return module


@functools.cache
def pure_module(name: str) -> ModuleType:
    """The pure-Python source of `name`, as a module of its own."""
    module = _accel.load_pure(name, f"aioluasock._pure{name}")
    assert isinstance(module, ModuleType)
    return module


def test_implementation_follows_the_environment() -> None:
    running = {name: sys.modules[f"aioluasock.{name}"] for name in _accel.COMPILED}
    if _forced_pure():
        assert aioluasock.IMPLEMENTATION == "pure"
        assert all(str(module.__file__).endswith(".py") for module in running.values())
    elif all(_extension_path(name) is not None for name in _accel.COMPILED):
        assert aioluasock.IMPLEMENTATION == "compiled"
        assert not any(str(module.__file__).endswith(".py") for module in running.values())
    else:
        assert os.environ.get("CI") != "true", "CI builds the extensions (pip install -e . / setup.py)"
        assert aioluasock.IMPLEMENTATION == "pure"


def test_both_modules_are_what_they_claim() -> None:
    compiled = compiled_module("_buffer")
    pure = pure_module("_buffer")
    assert not str(compiled.__file__).endswith(".py")
    assert str(pure.__file__).endswith(".py")
    assert compiled.ReceiveBuffer is not pure.ReceiveBuffer
    assert compiled.__all__ == pure.__all__
    for name in ("LINE", "ALL", "NUMBER", "LINE_PATTERN", "ALL_PATTERN"):
        assert getattr(compiled, name) == getattr(pure, name), name


def _outcome(call: Any, *args: object) -> object:
    try:
        return ("ok", call(*args))
    except Exception as exc:
        return ("raised", type(exc), str(exc))


@pytest.mark.parametrize(
    "pattern",
    ["*l", "*a", "*x", "", 0, 7, -1, True, False, 2.0, None, b"*l", 2**70, -(2**70)],
)
def test_parse_pattern_is_identical(pattern: object) -> None:
    compiled, pure = compiled_module("_buffer"), pure_module("_buffer")
    assert _outcome(compiled.parse_pattern, pattern) == _outcome(pure.parse_pattern, pattern)


# -- the same operations on both buffers ----------------------------------------

BYTES = st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"\x00", b"xyz" * 5]), max_size=12).map(
    b"".join
)
PATTERNS = st.one_of(
    st.just((0, 0)),  # LINE
    st.just((1, 0)),  # ALL
    st.tuples(st.just(2), st.integers(0, 12)),  # NUMBER
)
OPERATION = st.one_of(
    st.tuples(st.just("feed"), BYTES),
    st.tuples(st.just("read"), PATTERNS, st.booleans()),
    st.tuples(st.just("take_line")),
    st.tuples(st.just("take"), st.integers(0, 20)),
    st.tuples(st.just("take_all")),
    st.tuples(st.just("take_partial"), st.integers(0, 2)),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("commit")),
    st.tuples(st.just("rollback")),
    st.tuples(st.just("clear")),
    st.tuples(st.just("set_consumed"), st.integers(0, 2**70)),
)


def _state(buffer: Any) -> tuple[object, ...]:
    return (bytes(buffer._data), len(buffer), bool(buffer), buffer.consumed, buffer._journal)


def run_operations(module: ModuleType, operations: list[tuple[Any, ...]]) -> list[object]:
    """Every result and the buffer's state after each operation."""
    buffer = module.ReceiveBuffer()
    trace: list[object] = [_state(buffer)]
    for name, *args in operations:
        if name == "feed":
            # Both ways bytes come in: `feed`, and the protocol's inlined `+=`.
            if len(args[0]) % 2:
                result: object = buffer.feed(args[0])
            else:
                buffer._data += memoryview(args[0])
                result = None
        elif name == "set_consumed":
            buffer.consumed = args[0]
            result = None
        else:
            result = _outcome(getattr(buffer, name), *args)
        trace.append((name, result, _state(buffer)))
    return trace


@settings(max_examples=300, deadline=None)
@given(st.lists(OPERATION, max_size=25))
def test_same_operations_same_results(operations: list[tuple[Any, ...]]) -> None:
    compiled, pure = compiled_module("_buffer"), pure_module("_buffer")
    assert run_operations(compiled, operations) == run_operations(pure, operations)


def read_at_split(module: ModuleType, data: bytes, split: int, patterns: list[tuple[int, int]]) -> object:
    """Feed `data` in two parts cut at `split`, reading the patterns as far as
    they go after each part and once more at end of stream; then the partial."""
    buffer = module.ReceiveBuffer()
    results: list[object] = []
    index = 0
    for part, ended in ((data[:split], False), (data[split:], False), (b"", True)):
        buffer.feed(part)
        while index < len(patterns):
            value = buffer.read(patterns[index], ended)
            results.append((index, value, buffer.consumed, len(buffer)))
            if value is None:
                break
            index += 1
    kind = patterns[index][0] if index < len(patterns) else 0
    return results, buffer.take_partial(kind), buffer.consumed, _state(buffer)


@settings(max_examples=150, deadline=None)
@given(BYTES, st.lists(PATTERNS, min_size=1, max_size=6))
def test_every_split_same_results(data: bytes, patterns: list[tuple[int, int]]) -> None:
    compiled, pure = compiled_module("_buffer"), pure_module("_buffer")
    for split in range(len(data) + 1):
        assert read_at_split(compiled, data, split, patterns) == read_at_split(pure, data, split, patterns), (
            split
        )


def test_misuse_fails_alike() -> None:
    # The compiled class checks argument types at the call (its annotations);
    # the pure one fails in the body: both refuse, with a TypeError.
    compiled, pure = compiled_module("_buffer"), pure_module("_buffer")
    for module in (compiled, pure):
        buffer = module.ReceiveBuffer()
        buffer.feed(b"abc\n")
        with pytest.raises(TypeError):
            buffer.feed("text")
        with pytest.raises(TypeError):
            buffer.take("3")
        with pytest.raises(AttributeError):
            buffer.unknown = 1
        assert buffer.take_line() == b"abc"
