"""Error strings (SEMANTICS.md section 4) and LuaSocket's error helpers
(`try_`, `newtry`, `protect`) as DESIGN.md specifies them for Python."""

from __future__ import annotations

import asyncio
import errno
import os
import socket as pysocket

import pytest

import aioluasock as socket
from aioluasock._errors import (
    CLOSED,
    TIMEOUT,
    BusyError,
    Error,
    errno_text,
    newtry,
    os_error_text,
    protect,
    resolver_error_text,
    try_,
)

# -- errno -> text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.EADDRINUSE, "address already in use"),
        (errno.EISCONN, "already connected"),
        (errno.EACCES, "permission denied"),
        (errno.ECONNREFUSED, "connection refused"),
        (errno.ECONNABORTED, "closed"),
        (errno.ECONNRESET, "closed"),
        (errno.ETIMEDOUT, "timeout"),
        (errno.EPIPE, "closed"),  # send's broken pipe reads "closed" too
    ],
)
def test_luasocket_texts(code: int, text: str) -> None:
    assert errno_text(code) == text


@pytest.mark.parametrize(
    "code",
    [errno.EBADF, errno.EINVAL, errno.ENOTCONN, errno.EADDRNOTAVAIL, errno.ENETUNREACH, errno.EMFILE],
)
def test_other_errnos_use_strerror(code: int) -> None:
    assert errno_text(code) == os.strerror(code)


def test_strerror_texts_are_the_c_librarys() -> None:
    assert errno_text(errno.EBADF) == "Bad file descriptor"
    assert errno_text(errno.EINVAL) == "Invalid argument"
    assert errno_text(errno.ENOTCONN) == "Transport endpoint is not connected"
    assert errno_text(errno.EMFILE) == "Too many open files"


def test_unknown_errno_falls_back_to_strerror() -> None:
    assert errno_text(99999) == os.strerror(99999)
    assert errno_text(99999)  # never empty


def test_constants() -> None:
    assert TIMEOUT == "timeout"
    assert CLOSED == "closed"


# -- resolver texts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("EAI_AGAIN", "temporary failure in name resolution"),
        ("EAI_BADFLAGS", "invalid value for ai_flags"),
        ("EAI_FAIL", "non-recoverable failure in name resolution"),
        ("EAI_FAMILY", "ai_family not supported"),
        ("EAI_MEMORY", "memory allocation failure"),
        ("EAI_NONAME", "host or service not provided, or not known"),
        ("EAI_OVERFLOW", "argument buffer overflow"),
        ("EAI_SERVICE", "service not supported for socket type"),
        ("EAI_SOCKTYPE", "ai_socktype not supported"),
    ],
)
def test_resolver_texts(name: str, text: str) -> None:
    code = getattr(pysocket, name, None)
    if not isinstance(code, int):
        pytest.skip(f"{name} is not defined on this platform")
    exc = pysocket.gaierror(code, "the C library's own text")
    assert resolver_error_text(exc) == text
    assert os_error_text(exc) == text


def test_unnamed_resolver_code_uses_gai_strerror() -> None:
    # glibc's EAI_ADDRFAMILY (-9) is not in LuaSocket's table.
    exc = pysocket.gaierror(-9, "Address family for hostname not supported")
    assert resolver_error_text(exc) == "Address family for hostname not supported"


def test_resolver_error_without_code() -> None:
    assert resolver_error_text(pysocket.gaierror("odd failure")) == "odd failure"


def test_real_resolver_failures() -> None:
    # Numeric hosts only: no name server is consulted.
    with pytest.raises(pysocket.gaierror) as service:
        pysocket.getaddrinfo("127.0.0.1", "no-such-service-xyz", type=pysocket.SOCK_STREAM)
    assert os_error_text(service.value) == "service not supported for socket type"
    with pytest.raises(pysocket.gaierror) as family:
        pysocket.getaddrinfo("::1", 80, pysocket.AF_INET, pysocket.SOCK_STREAM)
    assert os_error_text(family.value) == "Address family for hostname not supported"


# -- os_error_text ----------------------------------------------------------------------


def test_os_error_text() -> None:
    assert os_error_text(ConnectionResetError(errno.ECONNRESET, "reset")) == "closed"
    assert os_error_text(BrokenPipeError(errno.EPIPE, "pipe")) == "closed"
    assert os_error_text(ConnectionRefusedError(errno.ECONNREFUSED, "x")) == "connection refused"
    assert os_error_text(OSError(errno.EBADF, "ignored")) == "Bad file descriptor"
    assert os_error_text(TimeoutError()) == "timeout"
    assert os_error_text(TimeoutError(errno.ETIMEDOUT, "x")) == "timeout"
    assert os_error_text(OSError("no errno here")) == "no errno here"
    assert os_error_text(OSError()) == "unknown error"


# -- exceptions -----------------------------------------------------------------------


def test_exception_classes() -> None:
    assert socket.Error is Error
    assert socket.BusyError is BusyError
    assert issubclass(Error, Exception)
    assert issubclass(BusyError, Exception)
    # protect must never swallow a BusyError (it is misuse, not a try_ failure).
    assert not issubclass(BusyError, Error)
    assert not issubclass(Error, BusyError)
    with pytest.raises(BusyError, match="busy"):
        raise BusyError("busy")


def test_error_carries_message() -> None:
    exc = Error("closed")
    assert exc.message == "closed"
    assert str(exc) == "closed"
    assert exc.args == ("closed",)


# -- try_ ----------------------------------------------------------------------------------


class _Thing:
    pass


def test_try_single_value_is_returned_alone() -> None:
    client = _Thing()
    assert socket.try_ is try_
    assert try_((client, None)) is client
    assert try_((b"line", None)) == b"line"
    assert try_((0, None)) == 0  # a falsy value is still success
    assert try_((False, None)) is False
    assert try_(("text", None)) == "text"  # success: the last element is None


def test_try_several_values_are_a_tuple() -> None:
    assert try_((b"a", b"b", None)) == (b"a", b"b")
    readable = [_Thing()]
    assert try_((readable, [], None)) == (readable, [])
    # A result with no trailing None (getsockname) keeps all its values.
    assert try_(("127.0.0.1", 8080)) == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ((None, "closed"), "closed"),
        ((None, "connection refused"), "connection refused"),
        ((3, "timeout"), "timeout"),  # a failed send: count, err
        ((b"a", b"part", None, "closed"), "closed"),  # a failed multi-pattern receive
        (([], [], "timeout"), "timeout"),  # select
    ],
)
def test_try_failure_raises_error(result: tuple[object, ...], message: str) -> None:
    with pytest.raises(Error) as info:
        try_(result)
    assert info.value.message == message
    assert str(info.value) == message


def test_try_refuses_a_non_tuple() -> None:
    with pytest.raises(TypeError):
        try_("closed")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        try_([None, "closed"])  # type: ignore[arg-type]


# -- newtry ---------------------------------------------------------------------------------


def test_newtry_calls_finalizer_on_failure_only() -> None:
    calls: list[str] = []
    checked = socket.newtry(lambda: calls.append("finalized"))
    assert checked((42, None)) == 42
    assert checked((1, 2, None)) == (1, 2)
    assert calls == []
    with pytest.raises(Error) as info:
        checked((None, "timeout"))
    assert info.value.message == "timeout"
    assert calls == ["finalized"]
    with pytest.raises(Error):
        checked((None, "closed"))
    assert calls == ["finalized", "finalized"]


def test_newtry_finalizer_runs_before_raise() -> None:
    order: list[str] = []

    def finalizer() -> None:
        order.append("finalizer")

    checked = newtry(finalizer)
    try:
        checked((None, "closed"))
    except Error:
        order.append("raised")
    assert order == ["finalizer", "raised"]


def test_newtry_without_finalizer_is_try() -> None:
    checked = newtry()
    assert checked((7, None)) == 7
    with pytest.raises(Error):
        checked((None, "closed"))
    checked_none = newtry(None)
    with pytest.raises(Error):
        checked_none((None, "closed"))


def test_newtry_closes_a_master() -> None:
    master, _ = socket.tcp4()
    assert master is not None
    assert master.getfd() >= 0
    checked = newtry(master.close)
    with pytest.raises(Error):
        checked((None, "connection refused"))
    assert master.getfd() == -1


# -- protect --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_protect_returns_what_f_returns() -> None:
    async def f(a: int, b: int = 0, *, c: int = 0) -> tuple[int, int, int]:
        await asyncio.sleep(0)
        return a, b, c

    g = socket.protect(f)
    assert await g(1, 2, c=3) == (1, 2, 3)
    assert await g(5) == (5, 0, 0)
    assert g.__name__ == "f"  # wraps keeps the identity


@pytest.mark.asyncio
async def test_protect_turns_try_failure_into_result() -> None:
    cleaned: list[bool] = []

    @protect
    async def fetch() -> tuple[bytes, None]:
        checked = newtry(lambda: cleaned.append(True))
        value = checked((b"first", None))
        assert value == b"first"
        await asyncio.sleep(0)
        checked((None, "closed"))
        raise AssertionError("not reached")

    assert await fetch() == (None, "closed")
    assert cleaned == [True]


@pytest.mark.asyncio
async def test_protect_catches_a_directly_raised_error() -> None:
    @protect
    async def f() -> int:
        raise Error({"any": "value"})

    assert await f() == (None, {"any": "value"})


@pytest.mark.asyncio
async def test_protect_passes_other_exceptions() -> None:
    @protect
    async def bad() -> int:
        raise ValueError("misuse")

    @protect
    async def busy() -> int:
        raise BusyError("second receiver")

    with pytest.raises(ValueError, match="misuse"):
        await bad()
    with pytest.raises(BusyError):
        await busy()


@pytest.mark.asyncio
async def test_protect_does_not_swallow_cancellation() -> None:
    started = asyncio.Event()

    @protect
    async def forever() -> int:
        started.set()
        await asyncio.sleep(3600)
        return 1

    task = asyncio.ensure_future(forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_nested_protect() -> None:
    @protect
    async def inner() -> int:
        try_((None, "timeout"))
        return 1

    @protect
    async def outer() -> tuple[object, ...]:
        first = await inner()
        assert first == (None, "timeout")
        try_((None, "closed"))
        return ("unreached",)

    assert await outer() == (None, "closed")


# -- the texts through real calls ------------------------------------------------------------


def _closed_port() -> int:
    probe = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    finally:
        probe.close()
    return port


@pytest.mark.asyncio
async def test_connection_refused_text() -> None:
    client, err = await socket.connect("127.0.0.1", _closed_port())
    assert client is None
    assert err == "connection refused"


@pytest.mark.asyncio
async def test_address_in_use_text() -> None:
    holder = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        master, _ = socket.tcp4()
        assert master is not None
        try:
            assert await master.bind("127.0.0.1", port) == (None, "address already in use")
        finally:
            master.close()
    finally:
        holder.close()


@pytest.mark.asyncio
async def test_resolver_text_from_bind() -> None:
    master, _ = socket.tcp4()
    assert master is not None
    try:
        assert await master.bind("127.0.0.1", "no-such-service-xyz") == (
            None,
            "service not supported for socket type",
        )
    finally:
        master.close()


@pytest.mark.asyncio
async def test_try_over_real_results() -> None:
    server = try_(await socket.bind("127.0.0.1", 0))
    assert isinstance(server, socket.Server)
    try:
        ip, port = try_(server.getsockname())
        assert ip == "127.0.0.1"
        client = try_(await socket.connect("127.0.0.1", port))
        assert isinstance(client, socket.Client)
        peer = try_(await server.accept())
        try:
            assert try_(await client.send(b"hello\n", b"x")) == 7
            assert try_(await peer.receive("*l", 1)) == (b"hello", b"x")
            client.close()
            with pytest.raises(Error) as info:
                try_(await peer.receive("*l"))
            assert info.value.message == "closed"
        finally:
            client.close()
            peer.close()
    finally:
        server.close()
