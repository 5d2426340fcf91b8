"""Real LuaSocket programs nobody here wrote, against real peers, under the bridge.

Each test runs a script of tests/world under real lua5.4 + LuaSocket 3.1 and
under `python -m aioluasock run` on both loops, and the printed lines must be
the same: Debian's pure-Lua `socket.http` against nginx, `socket.smtp` (with
`mime` and `ltn12`) against a local SMTP responder, redis-lua against
redis-server, and Copas echo servers under load. The servers are started by
the tests on ephemeral loopback ports; a missing one skips the test locally
and fails it under `CI=true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import resource
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

WORLD: Final = Path(__file__).parent / "world"
LOOPS: Final = ("asyncio", "uvloop")


def _need(program: str, package: str) -> str:
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if os.path.exists(f"/usr/sbin/{program}") else None
    )
    if path is None:
        message = f"{program} is not installed (apt-get install -y {package})"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _need_file(path: str, package: str) -> None:
    if not os.path.exists(path):
        message = f"{path} is missing (apt-get install -y {package})"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port} within 10 s")


@contextlib.contextmanager
def _server(command: list[str], port: int, what: str) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, process, what)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _run(command: list[str], timeout: float = 120) -> list[str]:
    done = subprocess.run(command, cwd=WORLD, capture_output=True, timeout=timeout, check=False)
    out, err = done.stdout.decode("latin-1"), done.stderr.decode("latin-1")
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{out}\n{err}"
    return out.splitlines()


def _bridge(loop: str, *args: str) -> list[str]:
    return _run([sys.executable, "-m", "aioluasock", "run", "--loop", loop, *args])


# -- socket.http against nginx ------------------------------------------------------

_NGINX_CONF: Final = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    location = /redirect {{ return 302 /hello.txt; }}
    location = /redirect-loop {{ return 301 /redirect-loop; }}
    location /chunked/ {{
      alias {dir}/www/;
      sub_filter "nginx" "NGINX";
      sub_filter_once off;
      sub_filter_types *;
    }}
    location /up/ {{
      root {dir};
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 16m;
    }}
    location = /echo {{
      return 200 "method=$request_method agent=$http_user_agent length=$content_length\\n";
    }}
    location = /auth {{ return 200 "auth=$http_authorization\\n"; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _need("nginx", "nginx")
    root = tmp_path_factory.mktemp("nginx")
    (root / "www").mkdir()
    (root / "www" / "hello.txt").write_bytes(b"hello from nginx\n")
    # 400 KB of text lines, with the word the chunked location rewrites.
    lines = [f"line {i:06d} served by nginx {'x' * (i % 50)}\n" for i in range(8000)]
    (root / "www" / "big.txt").write_text("".join(lines))
    port = _free_port()
    conf = root / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=root, port=port))
    with _server([binary, "-c", str(conf), "-p", str(root)], port, "nginx"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A URL whose server accepts and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.mark.lua
def test_socket_http_against_nginx(lua: str, nginx: str, silent_listener: str) -> None:
    refused = f"http://127.0.0.1:{_free_port()}/"
    args = ("http_client.lua", nginx)
    expected = _run([lua, *args, "reference", refused, silent_listener])
    for loop in LOOPS:
        assert _bridge(loop, *args, loop, refused, silent_listener) == expected, loop
    lines = dict(line.split(" -> ", 1) for line in expected)
    # What the reference itself must show, so that agreeing means something.
    assert lines["simple"] == '"hello from nginx\\n" 200 "17" "text/plain" "HTTP/1.1 200 OK"'
    assert lines["chunked"].endswith('200 "chunked" nil')
    assert lines["chunked big"].endswith(" true")
    assert lines["redirect followed"] == '"hello from nginx\\n" 200'
    assert lines["redirect not followed"] == '1 302 "/hello.txt"'
    assert lines["put"] == "1 201"
    assert lines["get back"].endswith(" true")
    assert lines["post"].startswith('"method=POST agent=LuaSocket ') and lines["post"].endswith(
        ' length=7\\n" 200'
    )
    assert lines["headers"] == '1 200 "method=GET agent=corpus-agent length=\\n"'
    assert lines["refused"] == 'nil "connection refused"'
    assert lines["timeout"] == 'nil "timeout"'
    assert lines["basic auth"] == '"auth=Basic dXNlcjpwYXNz\\n" 200'


# -- socket.smtp against a local SMTP responder ---------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough RFC 5321 for a client: EHLO, MAIL, RCPT (refusing
    nobody@), DATA with dot-unstuffing, QUIT. Each message lands in
    `server.messages` as (from, rcpts, data)."""

    server: _SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 responder ESMTP")
        sender, rcpts = "", list[str]()
        while line := self.rfile.readline():
            command = line.decode("latin-1").rstrip("\r\n")
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-responder")
                self.reply("250 8BITMIME")
            elif verb == "MAIL":
                sender, rcpts = command[10:], []
                self.reply("250 ok")
            elif verb == "RCPT":
                if "nobody@" in command:
                    self.reply("550 no such user here")
                else:
                    rcpts.append(command[8:])
                    self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = []
                while (part := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(part[1:] if part.startswith(b".") else part)
                self.server.messages.append((sender, rcpts, b"".join(data)))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    messages: list[tuple[str, list[str], bytes]]


@pytest.fixture
def smtp_responder() -> Iterator[_SmtpServer]:
    server = _SmtpServer(("127.0.0.1", 0), _SmtpHandler)
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _parts(data: bytes) -> list[tuple[str, bytes]]:
    message = email.message_from_bytes(data, policy=email.policy.SMTP)
    assert message.is_multipart(), data[:500]
    parts = [("subject", str(message["subject"]).encode())]
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            parts.append((part.get_content_type(), payload))
    return parts


@pytest.mark.lua
def test_socket_smtp_with_mime_against_a_responder(lua: str, smtp_responder: _SmtpServer) -> None:
    port = str(smtp_responder.server_address[1])
    expected_out = _run([lua, "smtp_client.lua", port])
    assert expected_out == ["sent\t1", "refused\tnil\t550 no such user here"]
    [reference] = smtp_responder.messages
    want = _parts(reference[2])
    assert want[0] == ("subject", b"corpus message") and len(want) == 3
    text = "Café au lait = 3€\r\n.a line that starts with a dot\r\n.\r\n" + "long line " * 20
    assert want[1] == ("text/plain", (text + "\r\ntrailing space \r\nend").encode())
    assert want[2] == ("application/octet-stream", bytes((i * 7 + i // 256) % 256 for i in range(4096)))
    for loop in LOOPS:
        smtp_responder.messages.clear()
        assert _bridge(loop, "smtp_client.lua", port) == expected_out, loop
        [got] = smtp_responder.messages
        assert got[:2] == reference[:2]
        assert _parts(got[2]) == want, loop


# -- redis-lua against redis-server ---------------------------------------------------


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    binary = _need("redis-server", "redis-server")
    _need_file("/usr/share/lua/5.3/redis.lua", "lua-redis")
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with _server(command, port, "redis-server"):
        yield port


@pytest.mark.lua
def test_redis_lua_against_redis_server(lua: str, redis_port: int) -> None:
    expected = _run([lua, "redis_client.lua", str(redis_port), "reference"])
    for loop in LOOPS:
        assert _bridge(loop, "redis_client.lua", str(redis_port), loop) == expected, loop
    lines = dict(line.split(" -> ", 1) for line in expected if " -> " in line)
    # %q writes the CR as \13 and the LF as a backslash-newline
    assert lines["get"] == '"value with\\13\\' and 'binary\\0bytes"' in expected
    assert lines["incrby"] == "42"
    assert lines["get big"] == "true"
    assert lines["pipeline replies"] == "{1=true,2=true,3=false,4=true,5=true,6=true}"
    assert lines["transaction"] == '{1=true,2=2,3="ab"}'
    assert '3="message ch1 first",4="message ch2 second"' in lines["pubsub"]


# -- Copas under load ------------------------------------------------------------------

COPAS_ECHO: Final = Path(__file__).parent.parent / "benchmarks" / "servers" / "copas_echo.lua"


async def _echo_clients(port: int, clients: int, lines: int) -> int:
    """`clients` connections held open together, each echoing `lines` lines
    once all are up. A connection counts as up after its first echo, and at
    most 100 are between connect and that echo: past the listen backlog the
    kernel answers with SYN cookies, and a cookie connection the server
    cannot take yet is reset (a load generator's artifact, not the server's)."""
    gate = asyncio.Semaphore(100)
    all_up = asyncio.Event()
    up = 0

    async def one(i: int) -> int:
        nonlocal up
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello\n")
            assert await reader.readline() == b"hello\n"
        up += 1
        if up == clients:
            all_up.set()
        try:
            await all_up.wait()
            for k in range(lines):
                line = f"client {i} line {k} {'x' * (i % 100)}\n".encode()
                writer.write(line)
                assert await reader.readline() == line
        finally:
            writer.close()
        return lines

    async with asyncio.timeout(360):
        done = await asyncio.gather(*(one(i) for i in range(clients)))
    return sum(done)


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard or (hard == resource.RLIM_INFINITY and soft < needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        pytest.fail(f"{needed} descriptors are needed; the hard limit is {hard}")


@pytest.mark.lua
@pytest.mark.parametrize(
    "clients",
    [
        1000,
        # What Copas on real LuaSocket cannot do (select() stops at 1,024
        # descriptors). Copas 1.x accepts one connection per select() call,
        # and a call costs its list: the ramp to 10,000 takes most of a minute.
        pytest.param(10_000, marks=[pytest.mark.crowd, pytest.mark.timeout(400)]),
    ],
)
@pytest.mark.parametrize("loop", LOOPS)
def test_debian_copas_echo_serves_concurrent_clients(loop: str, clients: int) -> None:
    _need_file("/usr/share/lua/5.1/copas.lua", "lua-copas lua-coxpcall")
    _raise_nofile(clients + 1000)
    command = [sys.executable, "-m", "aioluasock", "run", "--loop", loop, str(COPAS_ECHO), "0"]
    # The crowd is a load test: its server runs without the coverage tracer
    # that the suite puts in subprocesses (it would triple the minutes).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")} if clients > 1000 else None
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready[:1] == [b"READY"], server.stderr.read() if server.stderr else ready
        assert asyncio.run(_echo_clients(int(ready[1]), clients, 5)) == 5 * clients
        assert server.poll() is None, "the server stopped"
    finally:
        server.terminate()
        server.wait(10)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


# -- socket.ftp against pyftpdlib --------------------------------------------------------


_FTP_SERVER: Final = """
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
authorizer = DummyAuthorizer()
authorizer.add_user("user", "pass", sys.argv[2], perm="elradfmw")
FTPHandler.authorizer = authorizer
FTPHandler.auth_failed_timeout = 0  # answer a wrong password at once
FTPServer(("127.0.0.1", int(sys.argv[1])), FTPHandler).serve_forever()
"""


@pytest.fixture
def ftp_port(tmp_path: Path) -> Iterator[int]:
    probe = subprocess.run([sys.executable, "-c", "import pyftpdlib"], capture_output=True, check=False)
    if probe.returncode != 0:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("pyftpdlib is not installed (pip install -e '.[test]')")
        pytest.skip("pyftpdlib is not installed")
    port = _free_port()
    with _server(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _FTP_SERVER, str(port), str(tmp_path)],
        port,
        "pyftpdlib",
    ):
        yield port


@pytest.mark.lua
def test_socket_ftp_against_an_ftp_server(lua: str, ftp_port: int) -> None:
    expected = _run([lua, "ftp_client.lua", str(ftp_port), "reference"])
    # (ftp.put answers with the byte count ltn12 pumped, a float under Lua 5.4)
    assert expected == [
        "put table\t120010.0",
        "get table\t1",
        "same bytes\ttrue\t120010",
        "put url\t11.0",
        "get url\tshort text",
        "",
        "list\t1",
        "names\treference-a.bin reference-b.txt",
        "missing file\tnil\t550 No such file or directory.",
        "bad password\tnil\t530 Authentication failed.",
    ]
    for loop in LOOPS:
        assert _bridge(loop, "ftp_client.lua", str(ftp_port), loop) == [
            line.replace("reference", loop) for line in expected
        ], loop
