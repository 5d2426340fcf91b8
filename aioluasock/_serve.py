"""`serve()`: the accept loop every server writes, with a cap and a graceful end.

A `Service` owns a listening `Server`, one task per accepted `Client` running
the caller's handler, and the shutdown: stop accepting, give the handlers a
grace period, then close the connections that are left (their waiting calls
return "closed", as after any `close()`), and cancel a handler only if it
still runs after that.

The cap (`max_clients`) is applied by not calling `accept` while it is
reached: connections wait in the kernel's backlog, nothing is refused or
dropped by us (the kernel refuses once its backlog is full, as for any
listener). This is also how asyncio's `Server` and trio's `serve_listeners`
leave flow control to the kernel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from ssl import SSLContext
from typing import Final, final

from ._errors import CLOSED
from ._functions import _listen_on
from ._tcp import Client, Server

__all__ = ["Service", "serve"]

logger: Final = logging.getLogger("aioluasock.serve")
"""Where handler exceptions and accept failures are reported."""

Handler = Callable[[Client], Awaitable[object]]

_ACCEPT_RETRY: Final = 0.1
"""Seconds to wait after an accept failure other than "closed" (out of
descriptors, say) before accepting again."""
_CANCEL_WAIT: Final = 1.0
"""After the grace period and the close, how long a handler may still take
to notice "closed" before it is cancelled."""


@final
class Service:
    """A running server made by `serve`: it accepts until `close`.

    Use it as an async context manager (`close` with the default grace on
    exit) or call `close` yourself; `serve_forever` waits until it is closed.

    Attributes:
        server: the listening `Server` (for `getsockname`, `setoption`...).
        max_clients: the cap on concurrent handlers (`None`: no cap).
    """

    __slots__ = (
        "_accepting",
        "_closed",
        "_done",
        "_handler",
        "_handshake_timeout",
        "_room",
        "_ssl",
        "_tasks",
        "max_clients",
        "server",
    )

    def __init__(
        self,
        server: Server,
        handler: Handler,
        max_clients: int | None,
        ssl: SSLContext | None = None,
        handshake_timeout: float = 60.0,
    ) -> None:
        self.server = server
        self.max_clients = max_clients
        self._ssl = ssl
        self._handshake_timeout = handshake_timeout
        self._handler = handler
        self._tasks: dict[asyncio.Task[None], Client] = {}  # each handler and its client
        self._room: asyncio.Future[None] | None = None
        self._closed = False
        loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = loop.create_future()
        self._accepting = loop.create_task(self._accept_loop(), name=f"aioluasock.serve {server!r}")
        self._accepting.add_done_callback(self._maybe_done)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._tasks)} clients"
        return f"<aioluasock.Service {self.server!r} ({state})>"

    @property
    def clients(self) -> int:
        """How many handlers are running now."""
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        """`close` was called."""
        return self._closed

    def getsockname(self) -> tuple[str, int] | tuple[None, str]:
        """The listening address: `(ip, port)` or `(None, err)`."""
        return self.server.getsockname()

    async def serve_forever(self) -> None:
        """Wait until the service is closed (by another task, or a signal
        handler calling `close`). Cancelling this wait does not close it."""
        await asyncio.shield(self._done)

    async def close(self, grace: float | None = 10.0) -> None:
        """Shut down gracefully; a second call waits for the first.

        Cancelling this call (a timeout around it, say) ends the shutdown
        at once instead: every connection is closed and every handler
        cancelled; a later call waits until they have finished.

        Args:
            grace: seconds the running handlers get to finish on their own
                once accepting stopped (`None`: no limit; 0: none). After it,
                every remaining connection is closed, so the handlers' waiting
                calls return "closed"; a handler still running a second later
                is cancelled.
        """
        if self._closed:
            await asyncio.shield(self._done)
            return
        self._closed = True
        try:
            self.server.close()  # accept returns "closed": the accept loop ends
            self._wake_accept_loop()
            await self._accepting
            tasks = set(self._tasks)
            if tasks and grace != 0:
                await asyncio.wait(tasks, timeout=grace)
            for client in list(self._tasks.values()):
                client.close()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=_CANCEL_WAIT)
            for task in set(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
        except BaseException:
            # This call was cancelled (a timeout around it, say): a later
            # `close` only waits, so nothing would end the handlers and
            # their connections. End them now, without waiting; `_done`
            # follows once the last one has finished.
            self._abort()
            raise
        finally:
            self._maybe_done()

    async def __aenter__(self) -> Service:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals -------------------------------------------------------------

    def _abort(self) -> None:
        """Close the listener and every connection and cancel every task, now."""
        self.server.close()
        self._accepting.cancel()
        for task, client in list(self._tasks.items()):
            client.close()
            task.cancel()

    def _maybe_done(self, _: object = None) -> None:
        """Mark the service done once it is closed, the accept loop has ended
        and no handler runs any more."""
        if self._closed and not self._tasks and self._accepting.done() and not self._done.done():
            self._done.set_result(None)

    def _wake_accept_loop(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        server = self.server
        cap = self.max_clients
        while not self._closed:
            if cap is not None and len(self._tasks) >= cap:
                # At the cap: no accept, the kernel's backlog holds the next ones.
                self._room = loop.create_future()
                await self._room
                continue
            client, err = await server.accept()
            if client is None:
                if err == CLOSED or self._closed:
                    return
                logger.warning("accept on %r failed: %s", server, err)
                await asyncio.sleep(_ACCEPT_RETRY)
                continue
            task = loop.create_task(self._run(client))
            self._tasks[task] = client
            task.add_done_callback(self._finished)

    async def _run(self, client: Client) -> None:
        try:
            if self._ssl is not None:
                client.settimeout(self._handshake_timeout)
                _, err = await client.starttls(self._ssl, server_side=True)
                if err is not None:
                    logger.info("TLS handshake with %r failed: %s", client, err)
                    return
                client.settimeout(None)
            await self._handler(client)
        except Exception:
            logger.exception("handler %r failed on %r", self._handler, client)
        finally:
            client.close()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled():
            task.exception()  # retrieved: `_run` logged it already (a BaseException other than cancel)
        self._wake_accept_loop()
        self._maybe_done()


async def serve(
    handler: Handler,
    host: str,
    port: int | str,
    *,
    backlog: int = 128,
    max_clients: int | None = None,
    reuse_port: bool = False,
    ssl: SSLContext | None = None,
    ssl_handshake_timeout: float = 60.0,
) -> tuple[Service, None] | tuple[None, str]:
    """Listen on `host:port` and run `handler(client)` in a task per connection.

    The handler gets a connected `Client` and may use any of its calls; the
    client is closed when the handler returns or raises. An exception of a
    handler is logged to the ``aioluasock.serve`` logger and ends only that
    connection.

    Args:
        handler: an async function taking a `Client`.
        host, port: as `bind` takes them (``"*"`` for every IPv4 address,
            port 0 for an ephemeral one: read it with `getsockname`).
        backlog: the listen backlog; at the cap, this is where connections
            wait.
        max_clients: at most this many handlers at once (`None`: no cap).
        reuse_port: set SO_REUSEPORT, so that several processes can listen
            on the same port and share its connections.
        ssl: serve TLS with these settings: each client's handshake
            (`Client.starttls`) runs in its task before the handler, which
            gets the client only when it succeeded (a failure is logged at
            INFO level).
        ssl_handshake_timeout: seconds a client gets to finish its handshake.

    Returns:
        `(service, None)`, already accepting; or `(None, err)` when binding
        or listening failed ("address already in use", a resolver text...).

    Raises:
        TypeError: `handler` is not callable.
        ValueError: `max_clients` below 1.
    """
    if not callable(handler):
        raise TypeError(f"handler must be an async function taking a Client, not {type(handler).__name__}")
    if max_clients is not None and (isinstance(max_clients, bool) or max_clients < 1):
        raise ValueError(f"max_clients must be at least 1 (or None), not {max_clients!r}")
    server, err = await _listen_on(
        host, port, backlog, ("reuseaddr", "reuseport") if reuse_port else ("reuseaddr",)
    )
    if server is None:
        assert err is not None
        return None, err
    return Service(server, handler, max_clients, ssl, ssl_handshake_timeout), None
