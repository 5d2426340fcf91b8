"""TLS on the Python API: `Client.starttls`, `connect(ssl=...)`, `serve(ssl=...)`.

Certificates are made at test time (trustme); a real peer is OpenSSL's
`s_server`/`s_client` (Debian's openssl). Every async test runs on asyncio and
on uvloop; loopback only; every wait bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket as pysocket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from conftest import connected_pair

import aioluasock as socket
from aioluasock import Client

LOCAL = "127.0.0.1"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", LOCAL).configure_cert(context)
    context.set_alpn_protocols(["h2", "echo/1"])
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["echo/1"])
    return context


async def both_starttls(
    client: Client,
    peer: Client,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    server_hostname: str = "localhost",
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    mine, theirs = await asyncio.wait_for(
        asyncio.gather(
            client.starttls(client_context, server_hostname=server_hostname),
            peer.starttls(server_context, server_side=True),
        ),
        10,
    )
    return mine, theirs


@pytest.mark.asyncio
async def test_starttls_keeps_every_tcp_call(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with connected_pair() as (client, peer):
        client.settimeout(5)
        peer.settimeout(5)
        # The plain part of a STARTTLS protocol.
        assert await client.send(b"STARTTLS\r\n") == (10, None)
        assert await peer.receive() == (b"STARTTLS", None)
        assert await peer.send(b"220 go ahead\r\n") == (14, None)
        assert await client.receive() == (b"220 go ahead", None)
        assert client.tlsinfo() is None and client.getpeercertificate() is None
        assert await both_starttls(client, peer, client_context, server_context) == ((1, None), (1, None))

        info = client.tlsinfo()
        assert info is not None
        assert info["version"] in ("TLSv1.2", "TLSv1.3")
        assert info["alpn"] == "echo/1"
        assert info["server_hostname"] == "localhost"
        assert isinstance(info["peercert"], dict) and info["peercert"]
        certificate = client.getpeercertificate()
        assert isinstance(certificate, bytes) and certificate
        assert peer.tlsinfo() is not None and peer.getpeercertificate() is None  # no client certificate

        # Patterns, several in one call, a partial on timeout resumed with a prefix.
        assert await client.send(b"one\r\ntwo\n", b"12345") == (14, None)
        assert await peer.receive("*l", "*l", 3) == (b"one", b"two", b"123", None)
        peer.settimeout(0.1)
        assert await peer.receive(5) == (b"45", "timeout")
        assert await client.send(b"678") == (3, None)
        peer.settimeout(5)
        assert await peer.receive(5, prefix=b"45") == (b"45678", None)
        # select sees decrypted bytes only.
        assert await socket.select([peer], None, 0) == ([], [], "timeout")
        assert await client.send(b"ready\n") == (6, None)
        assert await socket.select([peer], None, 5) == ([peer], [], None)
        assert await socket.select(None, [client], 0) == ([], [client], None)
        assert await peer.receive() == (b"ready", None)
        # getstats counts the application's bytes, both ways.
        received, sent, _ = peer.getstats()
        assert received == len(b"STARTTLS\r\n") + len(b"one\r\ntwo\n12345678") + len(b"ready\n")
        assert sent == 14
        # A big transfer keeps every byte.
        block = os.urandom(3 * 1024 * 1024)
        sender = asyncio.create_task(client.send(block))
        assert await peer.receive(len(block)) == (block, None)
        assert await sender == (len(block), None)
        with pytest.raises(RuntimeError, match="already uses TLS"):
            await peer.starttls(server_context, server_side=True)
        # close: the peer's "*a" ends with what was sent.
        assert await client.send(b"bye") == (3, None)
        client.close()
        assert await peer.receive("*a") == (b"bye", None)


@pytest.mark.asyncio
async def test_bytes_buffered_before_starttls_reach_the_handshake(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    # The client starts its handshake before the server calls starttls: the
    # ClientHello is read into the plain buffer first, and must not be lost.
    async with connected_pair() as (client, peer):
        assert await client.send(b"STARTTLS\n") == (9, None)
        assert await peer.receive() == (b"STARTTLS", None)
        hello = asyncio.create_task(client.starttls(client_context, server_hostname="localhost"))
        for _ in range(500):
            if peer._buffer:
                break
            await asyncio.sleep(0.002)
        assert peer._buffer, "the ClientHello never arrived"
        assert await asyncio.wait_for(peer.starttls(server_context, server_side=True), 10) == (1, None)
        assert await asyncio.wait_for(hello, 10) == (1, None)
        assert await client.send(b"secret\n") == (7, None)
        peer.settimeout(5)
        assert await peer.receive() == (b"secret", None)


@pytest.mark.asyncio
async def test_connect_and_serve_with_tls(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def echo(client: Client) -> None:
        assert client.tlsinfo() is not None
        while True:
            line, err = await client.receive()
            if err is not None:
                return
            assert isinstance(line, bytes)
            await client.send(line + b"\n")

    service, err = await socket.serve(echo, LOCAL, 0, ssl=server_context)
    assert service is not None, err
    async with service:
        _, port = service.getsockname()
        assert isinstance(port, int)

        async def one(number: int) -> bytes | None:
            client, err = await socket.connect(LOCAL, port, ssl=client_context, server_hostname="localhost")
            assert client is not None, err
            try:
                client.settimeout(5)
                await client.send(b"hello %d\n" % number)
                line, err = await client.receive()
                return line if err is None else None
            finally:
                client.close()

        answers = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(20))), 20)
        assert answers == [b"hello %d" % n for n in range(20)]
        # The certificate names 127.0.0.1 too: the address is the default name.
        client, err = await socket.connect(LOCAL, port, ssl=client_context)
        assert client is not None, err
        client.close()


@pytest.mark.asyncio
async def test_handshake_failures_give_their_reason_and_close(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    untrusting = ssl.create_default_context()  # does not know our CA
    async with connected_pair() as (client, peer):
        results = await both_starttls(client, peer, untrusting, server_context)
        err = results[0][1]
        assert results[0][0] is None and isinstance(err, str)
        assert err.startswith("certificate verify failed: "), err
        assert results[1][0] is None
        assert await client.receive() == (b"", "closed")
        assert await client.send(b"x") == (0, "closed")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with connected_pair() as (client, peer):
        results = await both_starttls(client, peer, trusting, server_context, server_hostname="example.org")
        err = results[0][1]
        assert isinstance(err, str) and err.startswith("certificate verify failed: "), err
        assert "example.org" in err or "mismatch" in err, err
    async with connected_pair() as (client, peer):
        # A peer that answers the ClientHello in plain text.
        handshake = asyncio.create_task(client.starttls(trusting, server_hostname="localhost"))
        peer.settimeout(5)
        assert (await peer.receive(5))[1] is None  # the start of the ClientHello
        await peer.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        ok, err = await asyncio.wait_for(handshake, 10)
        assert ok is None and err == "wrong version number", err


@pytest.mark.asyncio
async def test_handshake_timeouts(client_context: ssl.SSLContext) -> None:
    async with connected_pair() as (client, _silent_peer):
        client.settimeout(0)
        assert await client.starttls(client_context, server_hostname="localhost") == (None, "timeout")
        assert client.tlsinfo() is None  # nothing was started: still plain
        client.settimeout(0.2)
        assert await asyncio.wait_for(client.starttls(client_context, server_hostname="localhost"), 10) == (
            None,
            "timeout",
        )
        assert await client.receive() == (b"", "closed")


@pytest.mark.asyncio
async def test_a_cancelled_handshake_closes_the_connection(client_context: ssl.SSLContext) -> None:
    async with connected_pair() as (client, peer):
        handshake = asyncio.create_task(client.starttls(client_context, server_hostname="localhost"))
        await asyncio.sleep(0.05)
        handshake.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handshake
        assert client.getfd() == -1
        peer.settimeout(5)
        assert (await peer.receive("*a"))[1] in (None, "closed")  # the ClientHello, then the end


@pytest.mark.asyncio
async def test_a_tls_peer_that_ends_while_reading_is_paused_loses_no_byte(
    client_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    # More than the read high-water mark arrives while nobody reads (reading
    # pauses), then the last bytes and the end of the stream, with no wait
    # for our close_notify (as web servers close). uvloop's TLS layer drops
    # what it holds decrypted when the end arrives while the application's
    # reading is paused: the engine must pause beneath it.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOCAL).configure_cert(context)
    head, tail = b"h" * 300_000, b"t" * 8_000
    listener = pysocket.create_server((LOCAL, 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(head)
            time.sleep(0.3)  # the client's buffer is past the mark by now
            tls.sendall(tail)

    server = threading.Thread(target=serve)
    server.start()
    try:
        client, err = await socket.connect(LOCAL, listener.getsockname()[1], ssl=client_context)
        assert client is not None, err
        client.settimeout(10)
        await asyncio.sleep(0.6)  # everything arrives unread
        data, err = await client.receive("*a")
        client.close()
    finally:
        await asyncio.to_thread(server.join)
        listener.close()
    assert len(data) == len(head) + len(tail) and data == head + tail
    # A TCP end without close_notify: asyncio's TLS layer reports an end of
    # stream, uvloop's a lost connection.
    assert err in (None, "closed")


@pytest.mark.asyncio
async def test_shutdown_send_on_tls_stops_our_sends(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with connected_pair() as (client, peer):
        assert await both_starttls(client, peer, client_context, server_context) == ((1, None), (1, None))
        assert client.shutdown("send") == 1
        assert await client.send(b"late") == (0, "closed")
        assert await peer.send(b"still\n") == (6, None)  # the other direction goes on
        client.settimeout(5)
        assert await client.receive() == (b"still", None)


@pytest.mark.asyncio
async def test_misuse_raises(client_context: ssl.SSLContext) -> None:
    async with connected_pair() as (client, _peer):
        with pytest.raises(TypeError, match="SSLContext"):
            await client.starttls("tls")  # type: ignore[arg-type]
        reader = asyncio.create_task(client.receive())
        await asyncio.sleep(0.01)
        with pytest.raises(socket.BusyError):
            await client.starttls(client_context)
        client.close()
        assert await reader == (b"", "closed")
        assert await client.starttls(client_context) == (None, "closed")


# -- a real peer: OpenSSL ---------------------------------------------------------------


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is missing (.ci/run installs Debian's openssl)")
        pytest.skip("openssl is not installed")
    return path


@pytest.fixture(scope="module")
def pem_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("pem")
    server_pem, ca_pem = folder / "server.pem", folder / "ca.pem"
    ca.issue_cert("localhost", LOCAL).private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    yield server_pem, ca_pem


@pytest.mark.asyncio
async def test_against_openssl_s_server(client_context: ssl.SSLContext, pem_files: tuple[Path, Path]) -> None:
    server_pem, _ = pem_files
    process = await asyncio.create_subprocess_exec(
        _openssl(),
        "s_server",
        "-accept",
        f"{LOCAL}:0",
        "-cert",
        str(server_pem),
        "-key",
        str(server_pem),
        "-rev",  # echoes each line reversed
        "-naccept",
        "1",
        "-alpn",
        "echo/1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        port = None
        for _ in range(20):
            line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
            found = re.match(r"ACCEPT .*:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "s_server did not say where it listens"
        client, err = await socket.connect(LOCAL, port, ssl=client_context, server_hostname="localhost")
        assert client is not None, err
        try:
            client.settimeout(5)
            info = client.tlsinfo()
            assert info is not None and info["alpn"] == "echo/1"
            assert await client.send(b"hello openssl\n") == (14, None)
            assert await client.receive() == (b"lssnepo olleh", None)  # -rev: each line reversed
        finally:
            client.close()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.asyncio
async def test_against_openssl_s_client(server_context: ssl.SSLContext, pem_files: tuple[Path, Path]) -> None:
    _, ca_pem = pem_files

    async def greet(client: Client) -> None:
        client.settimeout(5)
        line, err = await client.receive()
        if err is None:
            assert isinstance(line, bytes)
            await client.send(b"you said " + line + b"\n")

    service, err = await socket.serve(greet, LOCAL, 0, ssl=server_context)
    assert service is not None, err
    async with service:
        _, port = service.getsockname()
        process = await asyncio.create_subprocess_exec(
            _openssl(),
            "s_client",
            "-connect",
            f"{LOCAL}:{port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(ca_pem),
            "-verify_return_error",
            "-quiet",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(b"ping\n"), 15)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert b"you said ping" in out, out
