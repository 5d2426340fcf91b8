"""LuaSec's `ssl` and `ssl.https` under the Lua bridge.

Differential tests run a script of tests/world under real lua5.4 + Debian's
LuaSec (lua-sec) and under `python -m aioluasock run` on both loops, and the
printed lines must be the same: both ends of TLS connections in one script
(non-blocking handshakes, select, patterns, handshake failures, contexts that
cannot be made), a client of `openssl s_server`, a server for `openssl
s_client`, and Debian's `ssl.https` against nginx. In-process tests (each on
asyncio and uvloop) drive the bridge against asyncio TLS peers. Certificates
are made at test time with trustme; loopback only; every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from test_lua_world import _free_port, _need, _need_file, _server

from aioluasock.lua import LuaError, run_string
from aioluasock.lua._x509 import Certificate, load_pem

WORLD: Final = Path(__file__).parent / "world"
LOOPS: Final = ("asyncio", "uvloop")
LOCAL: Final = "127.0.0.1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.pem/.key (localhost, 127.0.0.1), otherca.pem (an
    unrelated CA), old.pem/.key (expired in 2020), client.pem/.key,
    other.pem/.key (other.example), encrypted.key (server.key with the
    password "secret")."""
    folder = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "otherca.pem"))
    for name, cert in (
        ("server", ca.issue_cert("localhost", LOCAL)),
        (
            "old",
            ca.issue_cert(
                "localhost",
                not_before=datetime.datetime(2019, 1, 1),
                not_after=datetime.datetime(2020, 1, 1),
            ),
        ),
        ("client", ca.issue_cert("client@example.org")),
        ("other", ca.issue_cert("other.example")),
    ):
        cert.private_key_pem.write_to_path(str(folder / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(folder / f"{name}.pem"))
    key = serialization.load_pem_private_key((folder / "server.key").read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (folder / "encrypted.key").write_bytes(encrypted)
    return folder


@pytest.fixture(scope="module")
def luasec(lua: str) -> str:
    """The real lua5.4 with Debian's LuaSec."""
    _need_file("/usr/share/lua/5.4/ssl.lua", "lua-sec")
    _need_file("/usr/share/lua/5.4/ssl/https.lua", "lua-sec")
    return lua


def _openssl() -> str:
    return _need("openssl", "openssl")


def _run(command: list[str], timeout: float = 60) -> list[str]:
    done = subprocess.run(command, cwd=WORLD, capture_output=True, timeout=timeout, check=False)
    out, err = done.stdout.decode("latin-1"), done.stderr.decode("latin-1")
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{out}\n{err}"
    return out.splitlines()


def _bridge(loop: str) -> list[str]:
    return [sys.executable, "-m", "aioluasock", "run", "--loop", loop]


def _lines(output: list[str]) -> dict[str, str]:
    return dict(line.split(" -> ", 1) for line in output if " -> " in line)


# -- both ends in one script --------------------------------------------------------


@pytest.mark.lua
def test_loopback_script_matches_luasec(luasec: str, certs: Path) -> None:
    expected = _run([luasec, "ssl_loopback.lua", str(certs)])
    for loop in LOOPS:
        assert _run([*_bridge(loop), "ssl_loopback.lua", str(certs)]) == expected, loop
    # What the reference itself shows, so that agreeing means something.
    lines = _lines(expected)
    assert lines["handshake"] == "true nil true nil"
    assert lines["select after wrap"] == '0 "timeout"'
    assert lines["tcp after wrap"] == '-1.0 nil "closed" ""'
    assert lines["before handshake"] == 'nil "closed" ""'
    assert lines["receive timeout"] == 'nil "wantread" "2345"'
    assert lines["receive prefix"] == '"2345456789" nil nil'
    assert lines["select ready"] == "true 1.0"
    assert lines["big"] == "true"
    assert lines["peer *a"] == 'nil "closed" "bye"'
    assert lines["wrong CA"] == 'false "certificate verify failed"'
    assert lines["expired"] == 'false "certificate verify failed"'
    assert lines["client cert names"] == '"client@example.org"'
    assert lines["handshake timeout"] == 'false "wantread"'
    assert lines["mismatch"] == 'nil "private key does not match public key"'
    assert lines["password"] == "true true"
    assert lines["wrong password"] == 'nil "error loading private key (bad decrypt)"'
    assert expected[-1] == "done"


# -- real peers: openssl s_server and s_client ----------------------------------------


def _start_s_server(certs: Path) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [
            _openssl(),
            "s_server",
            "-accept",
            f"{LOCAL}:0",
            "-cert",
            str(certs / "server.pem"),
            "-key",
            str(certs / "server.key"),
            "-rev",  # sends each line back reversed
            "-naccept",
            "1",
            "-alpn",
            "echo/1",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    for _ in range(20):
        found = re.match(rb"ACCEPT .*:(\d+)", process.stdout.readline())
        if found:
            return process, int(found.group(1))
    process.kill()
    process.wait()
    raise AssertionError("s_server did not say where it listens")


def _client_run(command: list[str], certs: Path) -> list[str]:
    process, port = _start_s_server(certs)
    try:
        return _run([*command, "ssl_client.lua", str(port), str(certs)])
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.lua
def test_client_of_openssl_s_server_matches_luasec(luasec: str, certs: Path) -> None:
    expected = _client_run([luasec], certs)
    for loop in LOOPS:
        assert _client_run(_bridge(loop), certs) == expected, loop
    lines = _lines(expected)
    assert lines["handshake"] == "true"
    assert lines["alpn"] == '"echo/1"'
    assert lines["info"].startswith('"TLSv1.3" "TLS_')
    assert lines["receive"] == '"fed" nil nil'
    assert lines["receive timeout"] == 'nil "wantread" ""'


def _server_run(command: list[str], certs: Path) -> tuple[list[str], bytes]:
    script = subprocess.Popen(
        [*command, "ssl_server.lua", str(certs)], cwd=WORLD, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert script.stdout is not None
        port = int(script.stdout.readline())
        client = subprocess.run(
            [
                _openssl(),
                "s_client",
                "-connect",
                f"{LOCAL}:{port}",
                "-quiet",
                "-servername",
                "localhost",
                "-CAfile",
                str(certs / "ca.pem"),
                "-verify_return_error",
                "-alpn",
                "echo/1",
                "-cert",
                str(certs / "client.pem"),
                "-key",
                str(certs / "client.key"),
            ],
            input=b"hello\nsecond line\nquit\n",
            capture_output=True,
            timeout=30,
            check=False,
        )
        out, err = script.communicate(timeout=30)
        assert script.returncode == 0, err.decode("latin-1")
        return out.decode("latin-1").splitlines(), client.stdout
    finally:
        if script.returncode is None:
            script.kill()
            script.communicate()


@pytest.mark.lua
def test_server_for_openssl_s_client_matches_luasec(luasec: str, certs: Path) -> None:
    expected, answer = _server_run([luasec], certs)
    assert answer == b"HELLO\nSECOND LINE\n"
    for loop in LOOPS:
        assert _server_run(_bridge(loop), certs) == (expected, answer), loop
    lines = _lines(expected)
    assert lines["handshake"] == "true"
    assert lines["sni"] == '"localhost"'
    assert lines["client email"] == '"client@example.org"'
    assert lines["line"] == '"quit" nil'


# -- ssl.https against nginx --------------------------------------------------------------

_NGINX_TLS_CONF: Final = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {certs}/server.pem;
    ssl_certificate_key {certs}/server.key;
    root {dir}/www;
    location = /redirect {{ return 302 /hello.txt; }}
    location = /echo {{ return 200 "method=$request_method length=$content_length\\n"; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def nginx_tls(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[str]:
    binary = _need("nginx", "nginx")
    root = tmp_path_factory.mktemp("nginx-tls")
    (root / "www").mkdir()
    (root / "www" / "hello.txt").write_bytes(b"hello over tls\n")
    (root / "www" / "big.txt").write_text("".join(f"line {i:06d} of the big file\n" for i in range(12000)))
    port = _free_port()
    conf = root / "nginx.conf"
    conf.write_text(_NGINX_TLS_CONF.format(dir=root, port=port, certs=certs))
    with _server([binary, "-c", str(conf), "-p", str(root)], port, "nginx"):
        yield f"https://{LOCAL}:{port}"


@pytest.mark.lua
def test_ssl_https_against_nginx_matches_luasec(luasec: str, nginx_tls: str, certs: Path) -> None:
    args = ["https_client.lua", nginx_tls, str(certs)]
    expected = _run([luasec, *args])
    for loop in LOOPS:
        assert _run([*_bridge(loop), *args]) == expected, loop
    lines = _lines(expected)
    assert lines["simple"] == '"hello over tls\\n" 200 "15" "HTTP/1.1 200 OK"'
    assert lines["verified big"] == '1 200 336000 "line 000000 of the big file\\nli"'
    assert lines["post"] == '"method=POST length=7\\n" 200'
    assert lines["wrong CA"] == 'nil "certificate verify failed"'
    assert lines["redirect option"] == 'nil "redirect not supported"'
    assert lines["refused"] == 'nil "connection refused" nil nil'


# -- in process, on both loops --------------------------------------------------------------


@pytest.fixture(scope="module")
def server_context(certs: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    context.set_alpn_protocols(["echo/1"])
    return context


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(data.upper())
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


_CLIENT: Final = """
local socket, ssl = require "socket", require "ssl"
local port, dir = ...
local tcp = assert(socket.connect("127.0.0.1", port))
tcp:settimeout(3)  -- not the TLS object's: LuaSec starts it with none
local conn = assert(ssl.wrap(tcp, { mode = "client", protocol = "tlsv1_2", verify = "peer",
  cafile = dir .. "/ca.pem", alpn = "echo/1" }))
local block, total = conn:gettimeout()
conn:settimeout(0)
local first, err = conn:dohandshake()
local r = socket.select({ conn }, nil, 5)
conn:settimeout(5)
local ok = conn:dohandshake()
local _, w = socket.select(nil, { conn }, 1)
local cert = conn:getpeercertificate()
conn:send("one\\ntwo\\nthree")
local a = conn:receive()
local b = conn:receive()
conn:settimeout(0.1)
local c, cerr, cpart = conn:receive()
conn:settimeout(5)
conn:send("\\n")
local d = conn:receive("*l", cpart)
local info = conn:info()
local peer = conn:getpeername()
conn:close()
return first, err, r[1] == conn, ok, w[1] == conn, cert:subject()[1].name, a, b, cerr, cpart, d,
  info.protocol, conn:getalpn(), block, peer, tostring(conn):match("closed")
"""


@pytest.mark.asyncio
async def test_lua_client_against_an_asyncio_tls_server(certs: Path, server_context: ssl.SSLContext) -> None:
    server = await asyncio.start_server(_echo, LOCAL, 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await asyncio.wait_for(run_string(_CLIENT, str(port), str(certs)), 20)
    assert result.values == (
        False,
        b"wantread",
        True,
        True,
        True,
        b"organizationName",
        b"ONE",
        b"TWO",
        b"wantread",
        b"THREE",
        b"THREE",
        b"TLSv1.2",
        None,  # nothing was agreed: after close there is no connection (LuaSec: nil too)
        -1.0,
        b"127.0.0.1",
        b"closed",
    )


@pytest.mark.asyncio
async def test_send_timeout_is_wantwrite(server_context: ssl.SSLContext) -> None:
    # A TLS peer that never reads: the send fills the buffers and times out
    # as LuaSec's does, "wantwrite" and the last index sent.
    release, finished = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await release.wait()
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        finally:
            finished.set()

    server = await asyncio.start_server(silent, LOCAL, 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        source = """
        local socket, ssl = require "socket", require "ssl"
        local conn = ssl.wrap(assert(socket.connect("127.0.0.1", ...)), { mode = "client", protocol = "any" })
        conn:settimeout(5)
        assert(conn:dohandshake())
        conn:settimeout(0.2)
        local sent, err, last = conn:send(string.rep("x", 64 * 1024 * 1024))
        conn:close()
        return sent, err, last > 0 and last < 64 * 1024 * 1024
        """
        try:
            result = await asyncio.wait_for(run_string(source, str(port)), 20)
        finally:
            release.set()
            await asyncio.wait_for(finished.wait(), 5)
    assert result.values == (None, b"wantwrite", True)


@pytest.mark.asyncio
async def test_script_ending_mid_handshake_leaves_nothing(certs: Path) -> None:
    # A peer that never answers: the handshake is still running in the
    # background when the script returns; the script's end closes and
    # settles it (the conftest checks leaks and loop errors).
    with socket.socket() as listener:
        listener.bind((LOCAL, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        source = """
        local socket, ssl = require "socket", require "ssl"
        local conn = ssl.wrap(assert(socket.connect("127.0.0.1", ...)), { mode = "client", protocol = "any" })
        conn:settimeout(0.05)
        local ok, err = conn:dohandshake()
        local r, w, serr = socket.select({ conn }, nil, 0.05)
        return ok, err, #r, serr
        """
        result = await asyncio.wait_for(run_string(source, str(port)), 10)
    assert result.values == (False, b"wantread", 0, b"timeout")


_SNI: Final = """
local socket, ssl, aio = require "socket", require "ssl", require "aioluasock"
local dir = ...
local function context(name)
  return assert(ssl.newcontext({ mode = "server", protocol = "any",
    key = dir .. "/" .. name .. ".key", certificate = dir .. "/" .. name .. ".pem" }))
end
local default, other = context("server"), context("other")
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local function serve(strict)
  server:settimeout(5)
  local c = ssl.wrap(assert(server:accept()), default)
  c:sni({ ["other.example"] = other }, strict)
  c:settimeout(5)
  local ok, err = c:dohandshake()
  local name = c:getsniname()
  c:close()
  return ok, name
end
local function client(name)
  local c = ssl.wrap(assert(socket.connect("127.0.0.1", port)), { mode = "client", protocol = "any",
    verify = "peer", cafile = dir .. "/ca.pem" })
  c:sni(name)
  c:settimeout(5)
  local ok, err = c:dohandshake()
  local alt = ok and c:getpeercertificate():extensions()["2.5.29.17"].dNSName[1] or err
  c:close()
  return ok, alt
end
local lines = {}
for _, case in ipairs({ { "other.example", false }, { "localhost", false }, { "unknown.example", false },
                        { "unknown.example", true } }) do
  local task = aio.spawn(serve, case[2])
  local cok, alt = client(case[1])
  local _, sok, name = aio.wait(task)
  lines[#lines + 1] = table.concat({ tostring(cok), tostring(alt), tostring(sok), tostring(name) }, " ")
end
server:close()
return table.concat(lines, "\\n")
"""


@pytest.mark.asyncio
async def test_server_sni_table_picks_the_context(certs: Path) -> None:
    result = await asyncio.wait_for(run_string(_SNI, str(certs)), 20)
    text = result.values[0]
    assert isinstance(text, bytes)
    lines = text.decode().splitlines()
    assert lines[:3] == [
        "true other.example true other.example",
        "true localhost true localhost",
        "true localhost true unknown.example",  # not strict: the default context
    ]
    # Strict: refused. (The loops drop the connection with the alert still
    # unsent, so the client sees "closed" where LuaSec's sees the alert.)
    assert re.fullmatch(r"false .+ false \S+", lines[3]), lines[3]


@pytest.mark.asyncio
async def test_misuse_raises_and_sandbox_has_no_ssl() -> None:
    with pytest.raises(LuaError, match="module 'ssl' not found"):
        await run_string('require "ssl"', sandbox=True)
    with pytest.raises(LuaError, match="invalid context"):
        await run_string('local ssl = require "ssl"; ssl.wrap(require("socket").tcp(), 3)')
    with pytest.raises(LuaError, match=r"bad argument #1 to 'wrap' \(tcp\{client\} expected\)"):
        await run_string('require("ssl").wrap(require("socket").tcp(), {mode="client", protocol="any"})')
    with socket.socket() as listener:
        listener.bind((LOCAL, 0))
        listener.listen(1)
        source = """
        local ssl, socket = require "ssl", require "socket"
        local c = ssl.wrap(assert(socket.connect("127.0.0.1", ...)), {mode="client", protocol="any"})
        c.dohandshake(3)
        """
        with pytest.raises(LuaError, match="SSL:Connection expected, got number"):
            await run_string(source, str(listener.getsockname()[1]))


# -- the certificate reader -------------------------------------------------------------------


def test_certificate_reader_agrees_with_cryptography(certs: Path) -> None:
    for name in ("server", "client", "old", "ca"):
        pem = (certs / f"{name}.pem").read_bytes()
        reference = x509.load_pem_x509_certificate(pem)
        mine = load_pem(pem)
        assert mine is not None
        assert mine.der == reference.public_bytes(serialization.Encoding.DER)
        assert [(e[0].decode(), e[2].decode()) for e in mine.subject()] == [
            (a.oid.dotted_string, str(a.value)) for a in reference.subject
        ]
        assert [(e[0].decode(), e[2].decode()) for e in mine.issuer()] == [
            (a.oid.dotted_string, str(a.value)) for a in reference.issuer
        ]
        assert mine.digest(b"sha256") == (reference.fingerprint(hashes.SHA256()).hex().encode(),)
        assert mine.digest(None) == (reference.fingerprint(hashes.SHA1()).hex().encode(),)
        assert mine.digest(b"md5") == (None, b"digest algorithm not supported (md5)")
        assert int(mine.serial(), 16) == reference.serial_number
        before = reference.not_valid_before_utc
        assert mine.notbefore() == f"{before:%b} {before.day:2d} {before:%H:%M:%S %Y} GMT".encode()
        assert mine.validat(int(reference.not_valid_after_utc.timestamp()))
        assert mine.pem() == pem or mine.pem().replace(b"\n", b"") == pem.replace(b"\n", b"")
        _, kind, bits = mine.pubkey()
        assert (kind, bits) == (b"EC", 256)
        assert mine.signature_name() == b"ecdsa-with-SHA256"
    server = load_pem((certs / "server.pem").read_bytes())
    assert server is not None
    assert server.alt_names() == [
        (
            b"2.5.29.17",
            b"X509v3 Subject Alternative Name",
            [(b"dNSName", b"localhost"), (b"iPAddress", b"127.0.0.1")],
        )
    ]
    assert load_pem(b"no certificate here") is None
    with pytest.raises(ValueError):
        Certificate(b"\x30\x03\x02\x01")


def test_certificate_reader_on_an_rsa_certificate() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Zoë"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "zoe@example.org"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x0A)
        .not_valid_before(datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2060, 7, 8, 9, 10, 11, tzinfo=datetime.UTC))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.RFC822Name("zoe@example.org"),
                    x509.UniformResourceIdentifier("https://example.org/"),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    mine = Certificate(cert.public_bytes(serialization.Encoding.DER))
    assert mine.subject() == [
        (b"2.5.4.6", b"countryName", b"BR"),
        (b"2.5.4.3", b"commonName", "Zoë".encode()),
        (b"1.2.840.113549.1.9.1", b"emailAddress", b"zoe@example.org"),
    ]
    mine.utf8 = True
    assert mine.subject()[1][2] == "Zoë".encode()
    assert mine.notbefore() == b"Feb  3 04:05:06 2001 GMT"  # UTCTime
    assert mine.notafter() == b"Jul  8 09:10:11 2060 GMT"  # GeneralizedTime
    assert mine.serial() == b"0A"
    pem, kind, bits = mine.pubkey()
    assert (kind, bits) == (b"RSA", 2048) and pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert mine.signature_name() == b"RSA-SHA256"
    assert mine.alt_names()[0][2] == [
        (b"rfc822Name", b"zoe@example.org"),
        (b"uniformResourceIdentifier", b"https://example.org/"),
        (b"iPAddress", b"::1"),
    ]
    assert not mine.validat(0) and mine.validat(2_000_000_000)
