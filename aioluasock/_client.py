"""What every connected stream client has besides its receive, send and TLS
paths: shutdown and the byte counters (TCP's `Client`, Unix's `UnixClient`)."""

from __future__ import annotations

import contextlib
import math
import socket
import time
from typing import Final

from ._receive import ReceivePath
from ._tls import TlsPath

_SHUTDOWN_MODES: Final = ("receive", "send", "both")


class ClientBase(ReceivePath, TlsPath):
    """A connected stream object's methods (not public)."""

    __slots__ = ()

    def shutdown(self, mode: str = "both") -> int:
        """Shut down one or both directions.

        ``"send"`` sends end-of-stream once queued bytes are written; later
        sends return "closed". ``"receive"`` drops what arrives from now on;
        receives still return the bytes already buffered (no data lost, as
        LuaSocket 3.1 on Linux returns what the kernel had queued), then
        "closed".

        Returns:
            1.

        Raises:
            ValueError: mode is not "receive", "send" or "both".
        """
        if mode not in _SHUTDOWN_MODES:
            raise ValueError(f"invalid shutdown mode {mode!r}: use 'receive', 'send' or 'both'")
        proto = self._proto
        if mode != "receive" and not self._send_shut:
            self._send_shut = True
            # uvloop's transport socket cannot shutdown(); write_eof() is
            # the transport's own way to do SHUT_WR on both loops.
            transport = None if proto is None else proto.transport
            if proto is not None and transport is not None and not transport.is_closing():
                proto.flush()
                # A TLS transport has no half-close (asyncio and uvloop): our
                # sends stop, and the peer sees the end of stream at close.
                if transport.can_write_eof():
                    # asyncio's write_eof raises ENOTCONN when the peer has
                    # reset the connection since its FIN; LuaSocket's
                    # shutdown returns 1 whatever the system call said.
                    with contextlib.suppress(OSError):
                        transport.write_eof()
            if proto is not None:
                proto.wake_writer()
                proto.notify()  # a select waiting to write: send now fails at once
            elif self._sock is not None and not self._closed:
                # No transport (yet): the socket is still ours to shut down.
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)
        if mode != "send" and proto is not None and not proto.discard:
            proto.discard = True
            proto.wake_reader()
            proto.notify()
        return 1

    def getstats(self) -> tuple[int, int, float]:
        """Return `(received, sent, age)`: bytes consumed by receives (CRs and
        LFs dropped by "*l" included), bytes handed to the transport, and
        seconds since the object was created."""
        return self._buffer.consumed, self._sent, time.monotonic() - self._birthday

    def setstats(self, received: int | None = None, sent: int | None = None, age: float | None = None) -> int:
        """Reset the counters; an argument left `None` keeps its value.

        Returns:
            1.
        """
        for value in (received, sent, age):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"setstats expects numbers, not {type(value).__name__}")
            # An int too large for a float is as unusable as inf: both are misuse.
            if not (abs(value) < 2**1023 if isinstance(value, int) else math.isfinite(value)):
                raise ValueError(f"setstats expects finite numbers, not {value!r}")
        if received is not None:
            self._buffer.consumed = int(received)
        if sent is not None:
            self._sent = int(sent)
        if age is not None:
            self._birthday = time.monotonic() - age
        return 1
