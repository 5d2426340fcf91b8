"""The `setoption` / `getoption` table (SEMANTICS.md section 10).

Any OS failure is reported as LuaSocket reports it, without the errno:
"setsockopt failed" / "getsockopt failed". Unknown names and values of the
wrong type are misuse and raise.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Final, Literal

from ._errors import errno_text

__all__ = ["GETOPT_FAILED", "OPTIONS", "SETOPT_FAILED", "Option", "get_option", "set_option"]

SETOPT_FAILED: Final = "setsockopt failed"
GETOPT_FAILED: Final = "getsockopt failed"

Kind = Literal["bool", "int", "linger", "error"]
OptionValue = bool | int | dict[str, bool | int] | str | None


@dataclass(frozen=True, slots=True)
class Option:
    """One socket option.

    Attributes:
        level, name: the `setsockopt` level and option number (None where
            this platform lacks the option: using it then fails as the OS would).
        kind: how values are checked and converted.
        settable: `setoption` accepts it.
        lua_gettable: LuaSocket 3.1 has a getter (the Python API reads every
            option it can; the Lua bridge follows 3.1 and raises for the rest).
    """

    level: int
    name: int | None
    kind: Kind
    settable: bool = True
    lua_gettable: bool = True


def _opt(module_attr: str) -> int | None:
    value = getattr(socket, module_attr, None)
    return value if isinstance(value, int) else None


_SOL = socket.SOL_SOCKET
_TCP = socket.IPPROTO_TCP

OPTIONS: Final[dict[str, Option]] = {
    "keepalive": Option(_SOL, socket.SO_KEEPALIVE, "bool"),
    "reuseaddr": Option(_SOL, socket.SO_REUSEADDR, "bool"),
    "reuseport": Option(_SOL, _opt("SO_REUSEPORT"), "bool"),
    "tcp-nodelay": Option(_TCP, socket.TCP_NODELAY, "bool"),
    "tcp-keepidle": Option(_TCP, _opt("TCP_KEEPIDLE"), "int"),
    "tcp-keepcnt": Option(_TCP, _opt("TCP_KEEPCNT"), "int"),
    "tcp-keepintvl": Option(_TCP, _opt("TCP_KEEPINTVL"), "int"),
    "linger": Option(_SOL, socket.SO_LINGER, "linger"),
    "recv-buffer-size": Option(_SOL, socket.SO_RCVBUF, "int"),
    "send-buffer-size": Option(_SOL, socket.SO_SNDBUF, "int"),
    "error": Option(_SOL, socket.SO_ERROR, "error", settable=False),
    "ipv6-v6only": Option(socket.IPPROTO_IPV6, _opt("IPV6_V6ONLY"), "bool", lua_gettable=False),
    "tcp-defer-accept": Option(_TCP, _opt("TCP_DEFER_ACCEPT"), "int", lua_gettable=False),
    "tcp-fastopen": Option(_TCP, _opt("TCP_FASTOPEN"), "int", lua_gettable=False),
    # Linux's number; Python's socket module does not export it.
    "tcp-fastopen-connect": Option(
        _TCP,
        _opt("TCP_FASTOPEN_CONNECT") or (30 if hasattr(socket, "TCP_FASTOPEN") else None),
        "int",
        lua_gettable=False,
    ),
}

_LINGER = struct.Struct("ii")


def lookup(name: object, *, setting: bool) -> Option:
    """Find an option by name.

    Raises:
        TypeError: `name` is not a `str`.
        ValueError: no such option for this direction ("unsupported option").
    """
    if not isinstance(name, str):
        raise TypeError(f"option name must be a str, not {type(name).__name__}")
    option = OPTIONS.get(name)
    if option is None or (setting and not option.settable):
        raise ValueError(f"unsupported option {name!r}")
    return option


def encode(option: Option, value: object) -> int | bytes:
    """Check and convert a `setoption` value for `setsockopt`.

    Raises:
        TypeError / ValueError: the value does not suit the option.
    """
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"option value must be a bool, not {type(value).__name__}")
        return int(value)
    if option.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"option value must be an int, not {type(value).__name__}")
        return value
    # linger: {"on": bool, "timeout": int seconds}
    if not isinstance(value, dict):
        raise TypeError(f"linger value must be a dict, not {type(value).__name__}")
    on, timeout = value.get("on"), value.get("timeout")
    if not isinstance(on, bool):
        raise TypeError("linger needs a bool 'on' field")
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise TypeError("linger needs an int 'timeout' field")
    return _LINGER.pack(int(on), timeout & 0xFFFF)


def set_option(sock: socket.socket | None, option: Option, value: object) -> str | None:
    """Apply an option; return `None` on success or LuaSocket's failure text."""
    encoded = encode(option, value)
    if sock is None or option.name is None:
        return SETOPT_FAILED
    if isinstance(encoded, int) and not -(2**31) <= encoded < 2**31:
        # Out of the C int range: `setsockopt` would raise TypeError (it falls
        # back to expecting a buffer), not OverflowError. The OS cannot take
        # the value, so report it as the OS refusing it.
        return SETOPT_FAILED
    try:
        sock.setsockopt(option.level, option.name, encoded)
    except (OSError, OverflowError):
        return SETOPT_FAILED
    return None


def get_option(sock: socket.socket | None, option: Option) -> tuple[OptionValue, None] | tuple[None, str]:
    """Read an option: `(value, None)` or `(None, "getsockopt failed")`.

    "error" reads (and so clears) the pending socket error: its LuaSocket text,
    or `None` when there is none.
    """
    if sock is None or option.name is None:
        return None, GETOPT_FAILED
    try:
        if option.kind == "linger":
            on, timeout = _LINGER.unpack(sock.getsockopt(option.level, option.name, _LINGER.size))
            return {"on": bool(on), "timeout": timeout}, None
        raw = sock.getsockopt(option.level, option.name)
    except OSError:
        return None, GETOPT_FAILED
    if option.kind == "bool":
        return bool(raw), None
    if option.kind == "error":
        return (errno_text(raw) if raw else None), None
    return raw, None
