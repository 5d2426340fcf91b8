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

__all__ = [
    "GETOPT_FAILED",
    "OPTIONS",
    "SETOPT_FAILED",
    "UDP_OPTIONS",
    "UNIX_DGRAM_OPTIONS",
    "UNIX_STREAM_OPTIONS",
    "Option",
    "get_option",
    "set_option",
]

SETOPT_FAILED: Final = "setsockopt failed"
GETOPT_FAILED: Final = "getsockopt failed"

Kind = Literal["bool", "int", "linger", "error", "ip", "membership", "membership6"]
OptionValue = bool | int | dict[str, bool | int] | dict[str, str] | dict[str, str | int] | str | None


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

_IP = socket.IPPROTO_IP
_IP6 = socket.IPPROTO_IPV6

# LuaSocket 3.1's UDP tables (`udp.c`: optset/optget). Two quirks of 3.1 kept
# as they are: "ipv6-multicast-hops" sets and reads IPV6_UNICAST_HOPS (3.1
# maps both names to the unicast getter and setter), and "ip-multicast-ttl"
# has a setter only. The memberships are write-only everywhere.
UDP_OPTIONS: Final[dict[str, Option]] = {
    "dontroute": Option(_SOL, socket.SO_DONTROUTE, "bool"),
    "broadcast": Option(_SOL, socket.SO_BROADCAST, "bool"),
    "reuseaddr": Option(_SOL, socket.SO_REUSEADDR, "bool"),
    "reuseport": Option(_SOL, _opt("SO_REUSEPORT"), "bool"),
    "ip-multicast-if": Option(_IP, socket.IP_MULTICAST_IF, "ip"),
    "ip-multicast-ttl": Option(_IP, socket.IP_MULTICAST_TTL, "int", lua_gettable=False),
    "ip-multicast-loop": Option(_IP, socket.IP_MULTICAST_LOOP, "bool"),
    "ip-add-membership": Option(_IP, socket.IP_ADD_MEMBERSHIP, "membership"),
    "ip-drop-membership": Option(_IP, socket.IP_DROP_MEMBERSHIP, "membership"),
    "error": Option(_SOL, socket.SO_ERROR, "error", settable=False),
    "ipv6-unicast-hops": Option(_IP6, _opt("IPV6_UNICAST_HOPS"), "int"),
    "ipv6-multicast-hops": Option(_IP6, _opt("IPV6_UNICAST_HOPS"), "int"),
    "ipv6-multicast-loop": Option(_IP6, _opt("IPV6_MULTICAST_LOOP"), "bool"),
    "ipv6-add-membership": Option(_IP6, _opt("IPV6_JOIN_GROUP"), "membership6"),
    "ipv6-drop-membership": Option(_IP6, _opt("IPV6_LEAVE_GROUP"), "membership6"),
    "ipv6-v6only": Option(_IP6, _opt("IPV6_V6ONLY"), "bool"),
    "recv-buffer-size": Option(_SOL, socket.SO_RCVBUF, "int"),
    "send-buffer-size": Option(_SOL, socket.SO_SNDBUF, "int"),
}
"""The options of UDP objects (the TCP table is `OPTIONS`)."""

# LuaSocket 3.1's Unix tables (`unixstream.c`, `unixdgram.c`): setters only
# in Lua; the Python API reads them too.
UNIX_STREAM_OPTIONS: Final[dict[str, Option]] = {
    name: OPTIONS[name] for name in ("keepalive", "reuseaddr", "linger")
}
UNIX_DGRAM_OPTIONS: Final[dict[str, Option]] = {"reuseaddr": OPTIONS["reuseaddr"]}

_WRITE_ONLY: Final = frozenset({"membership", "membership6"})

_LINGER = struct.Struct("ii")
_MREQ6 = struct.Struct("16sI")


def lookup(name: object, *, setting: bool, table: dict[str, Option] = OPTIONS) -> Option:
    """Find an option by name in `table` (TCP's by default, or `UDP_OPTIONS`).

    Raises:
        TypeError: `name` is not a `str`.
        ValueError: no such option for this direction ("unsupported option").
    """
    if not isinstance(name, str):
        raise TypeError(f"option name must be a str, not {type(name).__name__}")
    option = table.get(name)
    if option is None or (setting and not option.settable) or (not setting and option.kind in _WRITE_ONLY):
        raise ValueError(f"unsupported option {name!r}")
    return option


def _ipv4(text: object, what: str) -> bytes:
    """`inet_aton` as LuaSocket uses it ("*" is INADDR_ANY)."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if text == "*":
        return bytes(4)
    try:
        return socket.inet_aton(text)
    except (OSError, UnicodeError):
        raise ValueError(f"invalid {what} ip address" if what != "ip" else "ip expected") from None


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
    if option.kind == "ip":
        return _ipv4(value, "ip")
    if option.kind in _WRITE_ONLY:
        if not isinstance(value, dict):
            raise TypeError(f"membership value must be a dict, not {type(value).__name__}")
        multiaddr, interface = value.get("multiaddr"), value.get("interface")
        if not isinstance(multiaddr, str):
            raise TypeError("membership needs a str 'multiaddr' field")
        if option.kind == "membership":
            # struct ip_mreq: the group, then the local interface's address.
            return _ipv4(multiaddr, "'multiaddr'") + _ipv4(interface, "'interface'")
        # struct ipv6_mreq: the group, then the interface's index (0: the default route's).
        try:
            group = socket.inet_pton(socket.AF_INET6, multiaddr)
        except (OSError, UnicodeError):
            raise ValueError("invalid 'multiaddr' ip address") from None
        if interface is None:
            interface = 0
        if isinstance(interface, bool) or not isinstance(interface, int):
            raise TypeError("membership needs an int 'interface' field")
        return _MREQ6.pack(group, interface & 0xFFFFFFFF)
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
        if option.kind == "ip":
            return socket.inet_ntoa(sock.getsockopt(option.level, option.name, 4)), None
        raw = sock.getsockopt(option.level, option.name)
    except OSError:
        return None, GETOPT_FAILED
    if option.kind == "bool":
        return bool(raw), None
    if option.kind == "error":
        return (errno_text(raw) if raw else None), None
    return raw, None
