"""Error strings, exceptions and LuaSocket's error helpers (`try`, `newtry`, `protect`).

Every OS error that an aioluasock call reports is turned into text here and
nowhere else (SEMANTICS.md section 4), so the Python API and the Lua bridge
report the same strings for the same failures.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar, final

__all__ = [
    "CLOSED",
    "TIMEOUT",
    "BusyError",
    "Error",
    "newtry",
    "os_error_text",
    "protect",
    "resolver_error_text",
    "try_",
]

TIMEOUT: Final = "timeout"
CLOSED: Final = "closed"

# LuaSocket's `socket_strerror` gives its own text for seven errno values and
# the C library's `strerror` for every other one (SEMANTICS.md 4.2). Resets,
# aborts and broken pipes all read "closed": to a LuaSocket program they mean
# the same thing, the connection is gone.
_ERRNO_TEXT: Final[dict[int, str]] = {
    _errno.EADDRINUSE: "address already in use",
    _errno.EISCONN: "already connected",
    _errno.EACCES: "permission denied",
    _errno.ECONNREFUSED: "connection refused",
    _errno.ECONNABORTED: CLOSED,
    _errno.ECONNRESET: CLOSED,
    _errno.ETIMEDOUT: TIMEOUT,
    _errno.EPIPE: CLOSED,
}

# LuaSocket's `socket_gaistrerror` table (SEMANTICS.md 4.3); codes it does not
# name fall through to the C library's `gai_strerror` text, which Python puts
# in the exception's `strerror`.
_GAI_TEXT: Final[dict[int, str]] = {
    code: text
    for name, text in (
        ("EAI_AGAIN", "temporary failure in name resolution"),
        ("EAI_BADFLAGS", "invalid value for ai_flags"),
        ("EAI_BADHINTS", "invalid value for hints"),
        ("EAI_FAIL", "non-recoverable failure in name resolution"),
        ("EAI_FAMILY", "ai_family not supported"),
        ("EAI_MEMORY", "memory allocation failure"),
        ("EAI_NONAME", "host or service not provided, or not known"),
        ("EAI_OVERFLOW", "argument buffer overflow"),
        ("EAI_PROTOCOL", "resolved protocol is unknown"),
        ("EAI_SERVICE", "service not supported for socket type"),
        ("EAI_SOCKTYPE", "ai_socktype not supported"),
    )
    if (code := getattr(socket, name, None)) is not None
}


def errno_text(code: int) -> str:
    """Return LuaSocket's text for an OS error number."""
    return _ERRNO_TEXT.get(code) or os.strerror(code)


def resolver_error_text(exc: socket.gaierror) -> str:
    """Return LuaSocket's text for a resolver (`getaddrinfo`) failure."""
    code = exc.errno
    if code is not None and code in _GAI_TEXT:
        return _GAI_TEXT[code]
    return exc.strerror or str(exc)


def os_error_text(exc: OSError) -> str:
    """Return LuaSocket's text for any OSError raised by a socket operation."""
    if isinstance(exc, socket.gaierror):
        return resolver_error_text(exc)
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return TIMEOUT
    if exc.errno is not None:
        return errno_text(exc.errno)
    return exc.strerror or str(exc) or "unknown error"


class Error(Exception):
    """Raised by `try_` (and by a `newtry` function) when a result reports failure.

    `protect` turns it back into a returned `(None, message)`.

    Attributes:
        message: the error value of the failed result (usually a LuaSocket
            error string such as ``"closed"``).
    """

    def __init__(self, message: object) -> None:
        super().__init__(message)
        self.message = message


@final
class BusyError(RuntimeError):
    """Raised when a second task receives, sends or accepts on an object that
    is already doing so in that direction."""


def _is_failure(result: tuple[object, ...]) -> bool:
    return bool(result) and isinstance(result[-1], str)


def newtry(finalizer: Callable[[], object] | None = None) -> Callable[[tuple[Any, ...]], Any]:
    """Make a `try_` function that calls `finalizer()` before raising.

    Args:
        finalizer: called with no arguments when a failure is about to be
            raised (to close sockets, say); `None` for none.

    Returns:
        A function taking a result tuple: on success (its last element is not
        a `str`) it returns the values without the trailing `None` (one value
        alone, several as a tuple); on failure it calls the finalizer and
        raises `Error(message)`.
    """

    def try_(result: tuple[Any, ...]) -> Any:
        if not isinstance(result, tuple):
            raise TypeError(f"try_ expects a result tuple, got {type(result).__name__}")
        if _is_failure(result):
            if finalizer is not None:
                finalizer()
            raise Error(result[-1])
        values = result[:-1] if result and result[-1] is None else result
        return values[0] if len(values) == 1 else values

    return try_


try_ = newtry()
try_.__doc__ = """Return a result's values, or raise `Error(message)` if it reports failure.

`try_((client, None))` is `client`; `try_((a, b, None))` is `(a, b)`;
`try_((None, "closed"))` raises `Error("closed")`.
"""

P = ParamSpec("P")
R = TypeVar("R")


def protect(
    func: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R | tuple[None, object]]]:
    """Wrap a coroutine function so that a `try_` failure becomes a return value.

    Args:
        func: a coroutine function.

    Returns:
        A coroutine function returning what `func` returns, or
        `(None, message)` when `func` raised `Error`. Other exceptions pass
        through unchanged.
    """

    @functools.wraps(func)
    async def protected(*args: P.args, **kwargs: P.kwargs) -> R | tuple[None, object]:
        try:
            return await func(*args, **kwargs)
        except Error as exc:
            return (None, exc.message)

    return protected
