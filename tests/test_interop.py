"""`aioluasock.interop`: asyncio streams and anyio byte streams over a `Client`.

The test of record is a real HTTP/1.1 client library (h11) speaking over the
anyio adapter and over the asyncio streams, to a server written with
aioluasock calls. Both loops, loopback only, every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket as std_socket

import anyio
import h11
import pytest
from anyio.abc import SocketAttribute
from conftest import connected_pair

from aioluasock import Client
from aioluasock.interop import ByteStream, open_streams

LOCAL = "127.0.0.1"


async def http_server(client: Client) -> None:
    """A tiny HTTP/1.1 server in the LuaSocket idiom: headers by "*l", body by count."""
    while True:
        request, err = await client.receive()
        if err is not None:
            return
        length = 0
        while True:
            line, err = await client.receive()
            if err is not None or line == b"":
                break
            assert isinstance(line, bytes)
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = b""
        if length:
            data, err = await client.receive(length)
            assert isinstance(data, bytes)
            body = data
        assert isinstance(request, bytes)
        reply = b"you asked " + request.split(b" ")[1] + b" with " + body
        await client.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n" % len(reply), reply
        )


async def h11_request(receive: object, send: object, target: bytes, body: bytes) -> tuple[int, bytes]:
    connection = h11.Connection(h11.CLIENT)
    headers = [("Host", "localhost"), ("Content-Length", str(len(body)))]
    out = connection.send(h11.Request(method="POST", target=target, headers=headers))
    assert out is not None
    out += connection.send(h11.Data(data=body)) or b""
    out += connection.send(h11.EndOfMessage()) or b""
    await send(out)  # type: ignore[operator]
    status = 0
    got = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await receive())  # type: ignore[operator]
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            got += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, got


@pytest.mark.asyncio
async def test_h11_over_the_anyio_byte_stream() -> None:
    async with connected_pair() as (client, peer):
        serving = asyncio.create_task(http_server(peer))
        stream = ByteStream(client)
        for number in range(3):
            status, body = await asyncio.wait_for(
                h11_request(stream.receive, stream.send, b"/item/%d" % number, b"x" * number), 5
            )
            assert (status, body) == (200, b"you asked /item/%d with " % number + b"x" * number)
        await stream.aclose()
        await asyncio.wait_for(serving, 5)


@pytest.mark.asyncio
async def test_h11_over_asyncio_streams() -> None:
    async with connected_pair() as (client, peer):
        serving = asyncio.create_task(http_server(peer))
        reader, writer = await open_streams(client)

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        async def receive() -> bytes:
            return await reader.read(65536)

        status, body = await asyncio.wait_for(h11_request(receive, send, b"/streams", b"hello"), 5)
        assert (status, body) == (200, b"you asked /streams with hello")
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
        await asyncio.wait_for(serving, 5)


@pytest.mark.asyncio
async def test_anyio_stream_errors_and_attributes() -> None:
    async with connected_pair() as (client, peer):
        stream = ByteStream(client)
        assert stream.extra(SocketAttribute.family) == std_socket.AF_INET
        assert stream.extra(SocketAttribute.local_address) == client.getsockname()
        assert stream.extra(SocketAttribute.remote_port) == peer.getsockname()[1]
        assert stream.extra(SocketAttribute.raw_socket).fileno() == client.getfd()
        await peer.send(b"abcdef")
        assert await stream.receive(4) == b"abcd"
        assert await stream.receive() == b"ef"
        with anyio.fail_after(5):
            receiving = asyncio.create_task(stream.receive())
            await asyncio.sleep(0.01)
            with pytest.raises(anyio.BusyResourceError):
                await stream.receive()
            await peer.send(b"late")
            assert await receiving == b"late"
        await stream.send(b"to the peer")
        assert await peer.receive(11) == (b"to the peer", None)
        await stream.send_eof()
        assert await peer.receive("*a") == (b"", None)
        peer.close()
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"x")
    with pytest.raises(TypeError):
        ByteStream("client")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_anyio_stream_timeout_is_the_clients() -> None:
    async with connected_pair() as (client, _peer):
        client.settimeout(0.05)
        with pytest.raises(TimeoutError):
            await ByteStream(client).receive()


@pytest.mark.asyncio
async def test_asyncio_streams_flow_control_and_every_byte() -> None:
    async with connected_pair() as (client, peer):
        reader, writer = await open_streams(client, limit=1024)
        assert writer.get_extra_info("peername") == client.getpeername()
        assert writer.get_extra_info("sockname") == client.getsockname()
        assert writer.get_extra_info("aioluasock.client") is client
        writer.transport.set_write_buffer_limits(high=128 * 1024)
        assert writer.transport.get_write_buffer_limits() == (32 * 1024, 128 * 1024)
        with pytest.raises(ValueError):
            writer.transport.set_write_buffer_limits(high=1, low=2)
        block = os.urandom(4 * 1024 * 1024)
        # Small kernel buffers, so that 4 MiB cannot vanish into them.
        assert client.setoption("send-buffer-size", 65536) == (1, None)
        assert peer.setoption("recv-buffer-size", 65536) == (1, None)
        # Writing much more than the high-water mark: drain waits for the peer.
        writer.write(block)
        drained = asyncio.create_task(writer.drain())
        await asyncio.sleep(0.05)
        assert not drained.done()
        assert await asyncio.wait_for(peer.receive(len(block)), 10) == (block, None)
        await asyncio.wait_for(drained, 5)
        # The reader's limit pauses our reads; nothing is lost.
        sender = asyncio.create_task(peer.send(block))
        await asyncio.sleep(0.05)
        assert await asyncio.wait_for(reader.readexactly(len(block)), 10) == block
        assert await sender == (len(block), None)
        await peer.send(b"line one\nline two\n")
        assert await reader.readline() == b"line one\n"
        assert await reader.readuntil(b"\n") == b"line two\n"
        # Half-close both ways.
        writer.write_eof()
        assert await asyncio.wait_for(peer.receive("*a"), 5) == (b"", None)
        await peer.send(b"after eof")
        peer.close()
        assert await asyncio.wait_for(reader.read(), 5) == b"after eof"
        assert reader.at_eof()
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
        assert client.getfd() == -1


@pytest.mark.asyncio
async def test_asyncio_streams_see_a_reset() -> None:
    async with connected_pair() as (client, peer):
        reader, writer = await open_streams(client)
        assert peer.setoption("linger", {"on": True, "timeout": 0}) == (1, None)
        peer.close()  # RST
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(10), 5)
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(writer.wait_closed(), 5)
    with pytest.raises(TypeError):
        await open_streams("client")  # type: ignore[arg-type]
