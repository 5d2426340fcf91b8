"""`serve()`: one task per client, the cap, handler errors, graceful shutdown.

Every test runs on asyncio and on uvloop (conftest.py); loopback only, every
wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import aioluasock as socket
import aioluasock._serve as serve_module
from aioluasock import Client, Service

LOCAL = "127.0.0.1"


def port_of(service: Service) -> int:
    _, port = service.getsockname()
    assert isinstance(port, int)
    return port


async def echo(client: Client) -> None:
    while True:
        line, err = await client.receive()
        if err is not None:
            return
        assert isinstance(line, bytes)
        if (await client.send(line + b"\n"))[1] is not None:
            return


@contextlib.asynccontextmanager
async def clients(port: int, count: int) -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    try:
        for _ in range(count):
            client, err = await socket.connect(LOCAL, port)
            assert client is not None, err
            client.settimeout(5)
            made.append(client)
        yield made
    finally:
        for client in made:
            client.close()


async def started(handler: serve_module.Handler, **options: int | bool | None) -> Service:
    service, err = await socket.serve(handler, LOCAL, 0, **options)  # type: ignore[arg-type]
    assert service is not None, err
    return service


@pytest.mark.asyncio
async def test_each_client_gets_its_own_handler() -> None:
    async with await started(echo) as service, clients(port_of(service), 20) as crowd:
        for number, client in enumerate(crowd):
            assert await client.send(b"line %d\n" % number) == (len(b"line %d\n" % number), None)
        for number, client in enumerate(crowd):
            assert await client.receive() == (b"line %d" % number, None)
        assert service.clients == 20
        assert "20 clients" in repr(service)
    assert service.closed
    assert service.server.getfd() == -1  # the listener is closed


@pytest.mark.asyncio
async def test_the_cap_pauses_accepting_and_drops_nobody() -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def handler(client: Client) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
            await client.send(b"served\n")
        finally:
            running -= 1

    async with await started(handler, max_clients=3) as service, clients(port_of(service), 8) as crowd:
        for _ in range(100):  # let the service accept what it may
            await asyncio.sleep(0.005)
        assert service.clients == 3  # the other five wait in the backlog
        release.set()
        for client in crowd:
            assert await client.receive() == (b"served", None)
        assert most == 3


@pytest.mark.asyncio
async def test_a_handler_exception_is_logged_and_ends_only_its_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(client: Client) -> None:
        line, _ = await client.receive()
        if line == b"boom":
            raise RuntimeError("the handler broke")
        await client.send(b"fine\n")

    with caplog.at_level(logging.ERROR, logger="aioluasock.serve"):
        async with await started(handler) as service, clients(port_of(service), 2) as (bad, good):
            await bad.send(b"boom\n")
            assert await bad.receive() == (b"", "closed")  # its client was closed
            await good.send(b"hello\n")
            assert await good.receive() == (b"fine", None)
    [record] = [r for r in caplog.records if r.name == "aioluasock.serve"]
    assert record.exc_info is not None and "the handler broke" in str(record.exc_info[1])


@pytest.mark.asyncio
async def test_graceful_close_lets_handlers_finish_then_closes_the_rest() -> None:
    results: list[tuple[object, ...]] = []

    async def handler(client: Client) -> None:
        line, _ = await client.receive()
        if line == b"slow":
            await asyncio.sleep(0.1)  # finishes within the grace period
            await client.send(b"done\n")
            return
        # Waits for a line that never comes: closed after the grace period.
        results.append(await client.receive())

    service = await started(handler)
    port = port_of(service)
    async with clients(port, 2) as (slow, idle):
        await slow.send(b"slow\n")
        await idle.send(b"idle\n")
        await asyncio.sleep(0.05)
        await asyncio.wait_for(service.close(grace=0.5), 5)
        assert await slow.receive() == (b"done", None)
        assert await idle.receive() == (b"", "closed")
    assert results == [(b"", "closed")]  # the waiting receive got "closed"
    assert service.clients == 0
    late, err = await socket.connect(LOCAL, port)
    assert late is None and err == "connection refused"  # nobody listens any more


@pytest.mark.asyncio
async def test_a_handler_that_ignores_closed_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "_CANCEL_WAIT", 0.05)
    cancelled = asyncio.Event()

    async def stubborn(client: Client) -> None:
        try:
            await asyncio.Event().wait()  # never looks at its client: only a cancel ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    service = await started(stubborn)
    async with clients(port_of(service), 1):
        await asyncio.sleep(0.05)
        await asyncio.wait_for(service.close(grace=0), 5)
    assert cancelled.is_set()
    assert service.clients == 0


@pytest.mark.asyncio
async def test_serve_forever_returns_once_closed_from_another_task() -> None:
    service = await started(echo)
    waiting = asyncio.create_task(service.serve_forever())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await service.close()
    await asyncio.wait_for(waiting, 5)
    await service.close()  # again: returns at once


@pytest.mark.asyncio
async def test_bind_failure_and_misuse() -> None:
    async with await started(echo) as service:
        taken, err = await socket.serve(echo, LOCAL, port_of(service))
        assert taken is None and err == "address already in use"
    with pytest.raises(TypeError, match="handler"):
        await socket.serve("echo", LOCAL, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_clients"):
        await socket.serve(echo, LOCAL, 0, max_clients=0)


@pytest.mark.asyncio
async def test_reuse_port_lets_two_services_share_a_port() -> None:
    async with await started(echo, reuse_port=True) as first:
        second, err = await socket.serve(echo, LOCAL, port_of(first), reuse_port=True)
        assert second is not None, err
        async with second, clients(port_of(first), 10) as crowd:
            for client in crowd:
                await client.send(b"x\n")
                assert await client.receive() == (b"x", None)
            assert first.clients + second.clients == 10


@pytest.mark.asyncio
async def test_inside_a_task_group() -> None:
    service = await started(echo)
    async with asyncio.TaskGroup() as group:
        group.create_task(service.serve_forever())
        async with clients(port_of(service), 3) as crowd:
            for client in crowd:
                await client.send(b"tg\n")
                assert await client.receive() == (b"tg", None)
        group.create_task(service.close())


@pytest.mark.asyncio
async def test_under_anyio() -> None:
    service = await started(echo)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(service.serve_forever)
            async with clients(port_of(service), 3) as crowd:
                for client in crowd:
                    await client.send(b"anyio\n")
                    assert await client.receive() == (b"anyio", None)
            await service.close()


# -- graceful shutdown under a storm of rude clients --------------------------------

STORM = Path(__file__).with_name("storm_clients.py")


def _open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"{needed} descriptors are needed; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _shutdown_storm(clients: int) -> dict[str, int]:
    """Serve line echo to `clients` storm clients (tests/storm_clients.py, in
    a subprocess: resets right after connecting, mid-send, after flooding,
    half lines, clients that stay); close the service gracefully while the
    last fifth are still connecting and those that stay echo or reset.
    Returns the clients' outcomes, after checking that no handler, task or
    descriptor of the service is left."""
    _raise_nofile(clients + 1000)  # the storm process inherits it
    gc.collect()
    fds_before = _open_fds()
    tasks_before = asyncio.all_tasks()
    accepted = 0

    async def handler(client: Client) -> None:
        nonlocal accepted
        accepted += 1
        await echo(client)

    service = await started(handler, backlog=1024)
    storm = await asyncio.create_subprocess_exec(
        sys.executable, str(STORM), str(port_of(service)), str(clients), "7", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert storm.stdout is not None
        assert await asyncio.wait_for(storm.stdout.readline(), 60) == b"GO\n"
        assert service.clients > 0  # handlers are running when the shutdown starts
        await asyncio.wait_for(service.close(grace=1.0), 30)
        assert service.clients == 0
        assert service.server.getfd() == -1
        report = await asyncio.wait_for(storm.stdout.read(), 60)
        assert await asyncio.wait_for(storm.wait(), 10) == 0
    finally:
        if storm.returncode is None:
            storm.kill()
            await storm.wait()
    assert report.startswith(b"DONE "), report
    outcomes: dict[str, int] = json.loads(report[5:])
    assert accepted > clients // 2, (accepted, outcomes)
    assert not any("bad echo" in outcome for outcome in outcomes), outcomes
    assert sum(count for outcome, count in outcomes.items() if outcome.startswith("held: server ended")) > 0
    # Nothing of the service is left: no task, and (once the loop has run
    # the transports' close callbacks) no descriptor.
    assert asyncio.all_tasks() - tasks_before == {asyncio.current_task()} - tasks_before
    for _ in range(500):
        gc.collect()
        if all(fd in fds_before or path == "/dev/null" for fd, path in _open_fds().items()):
            break
        await asyncio.sleep(0.01)
    # (uvloop keeps the /dev/null it opens for its first subprocess's stdin
    # for the loop's lifetime.)
    left = {fd: path for fd, path in _open_fds().items() if fd not in fds_before and path != "/dev/null"}
    assert not left, left
    return outcomes


@pytest.mark.asyncio
async def test_graceful_close_under_a_storm_of_rude_clients() -> None:
    outcomes = await _shutdown_storm(300)
    assert outcomes.get("held: reset during shutdown", 0) > 0, outcomes


@pytest.mark.crowd
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_graceful_close_under_a_storm_of_10000_rude_clients() -> None:
    outcomes = await _shutdown_storm(10_000)
    assert outcomes.get("held: reset during shutdown", 0) > 100, outcomes


@pytest.mark.asyncio
async def test_a_cancelled_close_still_ends_every_handler() -> None:
    # A timeout around `close` (or a cancelled caller) must not leave the
    # handlers running with their connections open after `closed` is True:
    # nothing would ever close them, since a later `close` returns at once.
    ended = asyncio.Event()

    async def handler(client: Client) -> None:
        try:
            await client.receive()  # a line that never comes
        finally:
            ended.set()

    service = await started(handler)
    async with clients(port_of(service), 1) as (client,):
        for _ in range(100):
            if service.clients:
                break
            await asyncio.sleep(0.005)
        assert service.clients == 1
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await service.close(grace=30)
        assert service.closed
        await asyncio.wait_for(service.close(), 5)  # waits for the handler, now
        assert ended.is_set() and service.clients == 0
        assert await client.receive() == (b"", "closed")
