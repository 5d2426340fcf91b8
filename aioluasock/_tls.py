"""TLS on a live connection (`Client.starttls`), through the loop's own
`start_tls`: after the handshake the receive and send paths work unchanged
on the decrypted stream."""

from __future__ import annotations

import asyncio
import ssl
from typing import Final, cast

from ._errors import CLOSED, TIMEOUT, BusyError, os_error_text
from ._protocol import WRITE_HIGH_WATER, WRITE_LOW_WATER, UVStreamProtocol
from ._send import SendPath
from ._waits import EXPIRED, next_deadline


class TlsPath(SendPath):
    """A client's TLS methods."""

    __slots__ = ()

    async def starttls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> tuple[int, None] | tuple[None, str]:
        """Switch the live connection to TLS (the STARTTLS of SMTP, IMAP...).

        After the handshake every call works as before, on the decrypted
        stream: patterns, partials, timeouts, `select`, `getstats` (which
        counts decrypted bytes), `close`. Bytes the peer sent after the plain
        part and that were already buffered are handed to the handshake, not
        lost. One difference: on TLS, `shutdown("send")` stops our sends but
        cannot half-close (the loops' TLS transports have no end-of-stream
        without closing); the peer sees the end of stream at `close`.

        Args:
            context: the TLS settings (certificates, verification, ALPN).
            server_side: this end is the TLS server.
            server_hostname: the name to send (SNI) and to check the peer's
                certificate against, client side.

        Returns:
            `(1, None)`, or `(None, err)`: "timeout" (the handshake took
            longer than the object's timeout allows; 0 allows no handshake),
            "closed", OpenSSL's reason ("wrong version number", "sslv3 alert
            handshake failure", ...), or "certificate verify failed: " and
            the reason. After a failure the connection is closed.

        Raises:
            TypeError: `context` is not an `ssl.SSLContext`.
            BusyError: a task is receiving or sending on this client.
            RuntimeError: the connection already uses TLS.
        """
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__}")
        if self._recv_busy or self._send_busy:
            raise BusyError("starttls needs the connection to itself: a task is receiving or sending on it")
        self._recv_busy = self._send_busy = True
        try:
            return await self._starttls(context, server_side, server_hostname)
        finally:
            self._recv_busy = self._send_busy = False

    async def _starttls(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
        *,
        limited: bool = True,
    ) -> tuple[int, None] | tuple[None, str]:
        # `limited=False`: the handshake ignores the object's timeout (the Lua
        # bridge's LuaSec runs it in the background and bounds each
        # `dohandshake` call instead).
        if (self._proto is None or self._attaching is not None) and not self._closed:
            await self._ensure_stream()
        proto = self._proto
        err = self._write_end(proto)
        if err is not None:
            return None, err
        assert proto is not None and proto.transport is not None
        transport = proto.transport
        if transport.get_extra_info("ssl_object") is not None:
            raise RuntimeError("the connection already uses TLS")
        loop = proto.loop
        deadline = next_deadline(loop, self._start_call(loop)) if limited else None
        if deadline == EXPIRED:
            await asyncio.sleep(0)  # a handshake cannot finish without waiting
            return None, TIMEOUT
        proto.flush()
        # Stop the plain reads now (start_tls pauses only in its first step,
        # an iteration later): what is buffered then is all the TLS layer
        # must be given on top of what it reads itself.
        transport.pause_reading()
        proto.plain_socket = None  # its bytes are the TLS layer's from now on
        leftover = bytes(self._buffer._data)
        self._buffer.clear()
        limit = _HANDSHAKE_NO_LIMIT if deadline is None else max(deadline - loop.time(), 0.001)
        handshake = loop.create_task(
            loop.start_tls(
                transport,
                proto,
                context,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=limit,
            )
        )
        try:
            if leftover:
                # start_tls's first step (next in the ready queue) swaps in
                # the TLS protocol and schedules its connection_made and the
                # resumed reading; the leftover is fed right after those,
                # before the loop polls the socket again.
                await asyncio.sleep(0)
                tls_proto = transport.get_protocol()
                if tls_proto is not proto:
                    loop.call_soon(_feed, tls_proto, leftover)
            tls = await handshake
        except asyncio.CancelledError:
            handshake.cancel()
            self._close()  # half a handshake leaves no usable connection
            raise
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            err = _tls_error_text(exc, limited=deadline is not None)
            # The reason is the result of this call; what comes after is
            # "closed" (the loop may have reported its own error already).
            proto.error = CLOSED
            if not transport.is_closing():
                transport.abort()
            proto.wake_reader()
            proto.wake_writer()
            proto.notify()
            return None, err
        assert tls is not None
        proto.transport = tls
        if isinstance(proto, UVStreamProtocol):
            proto.under = transport  # where reading pauses (see `pause_reading`)
        tls.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        proto.reading_paused = False  # start_tls resumed the plain transport's reading
        proto.writing_paused = False
        return 1, None

    def tlsinfo(self) -> dict[str, object] | None:
        """What the TLS handshake agreed, or `None` on a plain connection.

        Returns:
            ``{"version": "TLSv1.3", "cipher": name, "bits": int,
            "alpn": protocol or None, "server_hostname": str or None,
            "peercert": the peer's certificate as `ssl.SSLSocket.getpeercert`
            gives it (empty when it was not verified), or None}``.
        """
        sslobj = self._ssl_object()
        if sslobj is None:
            return None
        cipher = sslobj.cipher()
        return {
            "version": sslobj.version(),
            "cipher": None if cipher is None else cipher[0],
            "bits": None if cipher is None else cipher[2],
            "alpn": sslobj.selected_alpn_protocol(),
            "server_hostname": sslobj.server_hostname,
            "peercert": sslobj.getpeercert(),
        }

    def getpeercertificate(self) -> bytes | None:
        """The peer's certificate in DER form (`None`: no TLS, or the peer
        sent none)."""
        sslobj = self._ssl_object()
        return None if sslobj is None else sslobj.getpeercert(binary_form=True)

    def _ssl_object(self) -> ssl.SSLObject | None:
        proto = self._proto
        if proto is None or proto.transport is None or self._closed:
            return None
        sslobj: ssl.SSLObject | None = proto.transport.get_extra_info("ssl_object")
        return sslobj


_HANDSHAKE_NO_LIMIT: Final = 24 * 3600.0
"""The handshake limit for an object without a timeout: the loops take only
finite, positive handshake timeouts (and default to 60 s)."""


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand `data` to a buffered protocol as if its transport had read it."""
    buffered = cast(asyncio.BufferedProtocol, protocol)
    view = memoryview(data)
    while view:
        area = memoryview(buffered.get_buffer(len(view)))
        count = min(len(area), len(view))
        area[:count] = view[:count]
        buffered.buffer_updated(count)
        view = view[count:]


def _tls_error_text(exc: BaseException, *, limited: bool) -> str:
    """LuaSocket-style text for a failed handshake (`limited`: it had a
    timeout, which the loops enforce with a ConnectionAbortedError with no
    errno: "SSL handshake is taking longer than ...")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # OpenSSL's own reason strings are its reason codes, spelled out.
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, TimeoutError) or (
        limited and isinstance(exc, ConnectionAbortedError) and exc.errno is None
    ):
        return TIMEOUT
    if isinstance(exc, ConnectionError) and exc.errno is None and not exc.strerror and not str(exc):
        # The loops' "connection lost" during the handshake: the peer went
        # away (uvloop and asyncio raise it bare).
        return CLOSED
    if isinstance(exc, OSError):
        return os_error_text(exc)
    return CLOSED
