from __future__ import annotations

import pytest

import aioluasock as socket


@pytest.mark.asyncio
async def test_echo_line() -> None:
    server, err = await socket.bind("127.0.0.1", 0)
    assert server is not None and err is None
    _ip, port = server.getsockname()
    client, err = await socket.connect("127.0.0.1", port)
    assert client is not None
    peer, err = await server.accept()
    assert peer is not None
    assert await client.send(b"hi\r\n") == (4, None)
    assert await peer.receive("*l") == (b"hi", None)
    for obj in (client, peer, server):
        obj.close()
