"""Clients that connect and leave rudely, for tests/test_serve.py's shutdown storm.

    python tests/storm_clients.py PORT CLIENTS SEED

Starts CLIENTS line clients against a line echo server on 127.0.0.1:PORT, at
most 256 connecting at once. Most leave at once, in one of these ways: a
reset (SO_LINGER 0) right after connecting or after one line, a reset in the
middle of a 256 KiB line, a reset after flooding lines it never reads, a
half line then an ordinary close, one echo then an ordinary close. A third
stay ("held"): they echo a line, wait for the shutdown, then echo
a line every 0.05-0.25 s until the server goes away, and
half of them reset at a random moment up to 1.5 s after the server was told
to stop. Prints ``GO`` once 80% have connected (the test then shuts the
server down while the rest are still coming), and at the end one line
``DONE <json>`` with what happened per kind. Stdlib only; exits by itself
(every wait is bounded).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import socket
import struct
import sys
from typing import Any

HOST = "127.0.0.1"
KINDS = ("reset", "line-reset", "mid-send-reset", "flood-reset", "half-line-close", "echo-close", "held")
WEIGHTS = (10, 10, 8, 6, 10, 10, 46)
LINGER_0 = struct.pack("ii", 1, 0)
BLOB = b"x" * (256 << 10)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    sock.close()


async def read_line(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    got = b""
    while not got.endswith(b"\n"):
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            return got
        got += chunk
    return got


class Storm:
    def __init__(self, port: int, clients: int, seed: int) -> None:
        self.port = port
        self.clients = clients
        self.random = random.Random(seed)
        self.connecting = asyncio.Semaphore(256)
        self.connected = 0
        self.go = asyncio.Event()
        self.outcomes: collections.Counter[str] = collections.Counter()

    def note(self, kind: str, outcome: str) -> None:
        self.outcomes[f"{kind}: {outcome}"] += 1

    async def one(self, number: int, kind: str) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if kind == "flood-reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            async with self.connecting:
                await asyncio.wait_for(loop.sock_connect(sock, (HOST, self.port)), 30)
        except (OSError, TimeoutError) as exc:
            self.note(kind, f"connect failed: {type(exc).__name__}")
            sock.close()
            return
        self.connected += 1
        if self.connected >= self.clients * 0.8:
            self.go.set()
        try:
            await asyncio.wait_for(self.behave(loop, sock, number, kind), 30)
        except (OSError, TimeoutError) as exc:
            self.note(kind, type(exc).__name__)
            reset(sock)

    async def behave(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, number: int, kind: str
    ) -> None:
        line = b"client %d\n" % number
        if kind == "reset":
            reset(sock)
        elif kind == "line-reset":
            await loop.sock_sendall(sock, line)
            reset(sock)
        elif kind == "mid-send-reset":
            # Part of a long line, then a reset while the rest is still in
            # this socket's buffer: the server's receive is mid-line.
            sock.send(BLOB)
            reset(sock)
        elif kind == "flood-reset":
            # Lines it never reads (a small receive buffer, set before
            # connecting): the server is still echoing when the reset comes.
            await asyncio.wait_for(loop.sock_sendall(sock, line * 500), 5)
            await asyncio.sleep(self.random.random() * 0.2)
            reset(sock)
        elif kind == "half-line-close":
            await loop.sock_sendall(sock, b"no line end")
            sock.close()
        elif kind == "echo-close":
            await loop.sock_sendall(sock, line)
            echo = await read_line(loop, sock)
            self.note(kind, "echoed" if echo == line else "server ended" if echo == b"" else "bad echo")
            sock.close()
        else:
            await self.held(loop, sock, line)
        self.note(kind, "done")

    async def held(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, line: bytes) -> None:
        rude = self.random.random() < 0.5
        leave_at: float | None = None
        while True:
            if self.go.is_set() and rude and leave_at is None:
                leave_at = loop.time() + self.random.random() * 1.5
            if leave_at is not None and loop.time() >= leave_at:
                self.note("held", "reset during shutdown")
                reset(sock)
                return
            await loop.sock_sendall(sock, line)
            echo = await read_line(loop, sock)
            if echo != line:
                self.note("held", "server ended" if echo == b"" else "bad echo")
                sock.close()
                return
            if not self.go.is_set():
                # One echo, then quiet until the shutdown: ten thousand busy
                # clients would make the ramp-up, not the shutdown, the test.
                await self.go.wait()
            await asyncio.sleep(0.05 + self.random.random() * 0.2)

    async def run(self) -> None:
        kinds = self.random.choices(KINDS, WEIGHTS, k=self.clients)
        tasks = [asyncio.create_task(self.one(number, kind)) for number, kind in enumerate(kinds)]
        everyone: asyncio.Future[Any] = asyncio.gather(*tasks)
        go: asyncio.Future[Any] = asyncio.ensure_future(self.go.wait())
        await asyncio.wait([go, everyone], return_when=asyncio.FIRST_COMPLETED)
        print("GO", flush=True)  # also when fewer connected: the test must not wait forever
        self.go.set()
        await everyone
        await go
        print("DONE " + json.dumps(dict(sorted(self.outcomes.items()))), flush=True)


def main() -> None:
    port, clients, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(Storm(port, clients, seed).run())


if __name__ == "__main__":
    main()
