"""The command line: the demo, the server-only mode and argument checking."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import sys

import pytest

import aioluasock as socket
from aioluasock.__main__ import _parser, demo, main


@pytest.mark.asyncio
async def test_demo_echoes_every_line_and_reports_it() -> None:
    out = io.StringIO()
    status = await demo(clients=25, duration=0.5, loop_name="test loop", out=out)
    text = out.getvalue()
    assert status == 0, text
    summary = re.search(r"served (\d+) clients \((\d+) ran to the end\), (\d+) lines echoed", text)
    assert summary is not None, text
    served, finished, lines = map(int, summary.groups())
    assert served == finished == 25
    assert lines >= 25
    assert "on test loop" in text
    assert "error" not in text


def test_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    options = parser.parse_args(["--clients", "3", "--duration", "0.5", "--loop", "asyncio"])
    assert (options.clients, options.duration, options.loop, options.serve) == (3, 0.5, "asyncio", None)
    assert parser.parse_args(["--serve", "127.0.0.1:9000"]).serve == ("127.0.0.1", 9000)
    assert parser.parse_args(["--serve", "[::1]:9000"]).serve == ("::1", 9000)
    for bad in (["--clients", "0"], ["--duration", "-1"], ["--loop", "trio"], ["--serve", "nowhere"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(bad)
        assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_main_runs_the_demo_on_the_chosen_loop(capsys: pytest.CaptureFixture[str]) -> None:
    for loop_name in ("asyncio", "uvloop"):
        assert main(["--clients", "5", "--duration", "0.3", "--loop", loop_name]) == 0
        assert f"lines/s on {loop_name}" in capsys.readouterr().out


@pytest.mark.asyncio
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serve_mode_echoes_until_interrupted_then_shuts_down_cleanly(signum: int) -> None:
    # `--serve` runs `serve()`: on SIGINT or SIGTERM it stops accepting, lets
    # the handlers end on "closed" (a client still connected here), prints
    # its summary and exits 0, without a traceback.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioluasock",
        "--serve",
        "127.0.0.1:0",
        "--loop",
        "asyncio",
        "--grace",
        "0.2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    client: socket.Client | None = None
    try:
        assert process.stdout is not None and process.stderr is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        found = re.search(r"echo server on 127\.0\.0\.1:(\d+)", banner)
        assert found is not None, banner
        client, err = await socket.connect("127.0.0.1", int(found.group(1)))
        assert client is not None, err
        client.settimeout(5)
        assert await client.send(b"ping\r\n", b"pong\n") == (11, None)
        assert await client.receive("*l", "*l") == (b"ping", b"pong", None)
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        # The server closed the connection it still had.
        assert await client.receive() == (b"", "closed")
        out = (await process.stdout.read()).decode()
        assert "shutting down" in out and "served 1 clients, 2 lines" in out, out
        assert b"Traceback" not in await process.stderr.read()
    finally:
        if client is not None:
            client.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
