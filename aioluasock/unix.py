"""Unix domain sockets: LuaSocket's `socket.unix` (`require "socket.unix"`).

Use it as LuaSocket's `socket.unix` table::

    from aioluasock import unix

    server, err = await unix.bind("/run/app.sock")      # stream(), bind, listen
    client, err = await unix.connect("/run/app.sock")
    line, err = await client.receive("*l")
    dgram, err = unix.dgram()

A stream client is a TCP client with a path for an address: every method
(`receive` patterns and partials, `send`, timeouts, `select`, `starttls`,
`getstats`) behaves as on TCP. Paths are `str`, `bytes` or path-like; one
starting with NUL is an abstract name (Linux). The socket file a `bind`
made is removed when the object is closed.
"""

from ._unix import UnixClient, UnixMaster, UnixServer, bind, connect, stream
from ._unix_dgram import UnixDgramConnected, UnixDgramUnconnected, dgram

__all__ = (
    "UnixClient",
    "UnixDgramConnected",
    "UnixDgramUnconnected",
    "UnixMaster",
    "UnixServer",
    "bind",
    "connect",
    "dgram",
    "stream",
)
