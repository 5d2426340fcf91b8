"""The Python half of the bridge's LuaSec-compatible `ssl` module.

LuaSec's contexts become `ssl.SSLContext` objects built to the same
parameters (`Context`); a wrapped connection is the engine's own `Client`,
switched to TLS with the loop's `start_tls` (`Client._starttls`), so every
TCP call (patterns, partials, `select`, statistics) keeps working on the
decrypted stream.

LuaSec's handshake advances only inside `dohandshake`, one OpenSSL step per
readiness of the descriptor; the loop's TLS layer advances on its own. So the
first `dohandshake` starts the handshake as a task of the script, and each
call waits for it as long as the connection's timeout allows, answering
"wantread" meanwhile, as LuaSec does when its socket would block. `select`
reports a connection whose handshake has ended (well or not) as ready, so
that a select-driven program (Copas) calls `dohandshake` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import weakref
from collections.abc import Iterable
from typing import Any, Final, final

from .._errors import CLOSED
from .._tcp import Client
from .._waits import EXPIRED, let_io_in, next_deadline

__all__ = ["Context", "Handshakes", "new_context"]

Values = tuple[object, ...]

_PROTOCOLS: Final[dict[bytes, tuple[ssl.TLSVersion, ssl.TLSVersion]]] = {
    b"any": (ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    b"sslv23": (ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    b"tlsv1": (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1),
    b"tlsv1_1": (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1),
    b"tlsv1_2": (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
    b"tlsv1_3": (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
}

# LuaSec's option names (OpenSSL's SSL_OP_* in lower case, without the
# prefix) and OpenSSL 3's values for them; the obsolete ones are 0 there.
_OPTIONS: Final[dict[bytes, int]] = {
    b"all": (1 << 31) | (1 << 11) | (1 << 4) | (1 << 6),
    b"allow_client_renegotiation": 1 << 8,
    b"allow_no_dhe_kex": 1 << 10,
    b"allow_unsafe_legacy_renegotiation": 1 << 18,
    b"cipher_server_preference": 1 << 22,
    b"cisco_anyconnect": 1 << 15,
    b"cleanse_plaintext": 1 << 1,
    b"cookie_exchange": 1 << 13,
    b"cryptopro_tlsext_bug": 1 << 31,
    b"disable_tlsext_ca_names": 1 << 9,
    b"dont_insert_empty_fragments": 1 << 11,
    b"enable_ktls": 1 << 3,
    b"enable_middlebox_compat": 1 << 20,
    b"ignore_unexpected_eof": 1 << 7,
    b"legacy_server_connect": 1 << 2,
    b"no_anti_replay": 1 << 24,
    b"no_compression": 1 << 17,
    b"no_dtls_mask": (1 << 26) | (1 << 27),
    b"no_dtlsv1": 1 << 26,
    b"no_dtlsv1_2": 1 << 27,
    b"no_encrypt_then_mac": 1 << 19,
    b"no_extended_master_secret": 1 << 0,
    b"no_query_mtu": 1 << 12,
    b"no_renegotiation": 1 << 30,
    b"no_session_resumption_on_renegotiation": 1 << 16,
    b"no_ssl_mask": (1 << 25) | (1 << 26) | (1 << 28) | (1 << 27) | (1 << 29),
    b"no_sslv3": 1 << 25,
    b"no_ticket": 1 << 14,
    b"no_tlsv1": 1 << 26,
    b"no_tlsv1_1": 1 << 28,
    b"no_tlsv1_2": 1 << 27,
    b"no_tlsv1_3": 1 << 29,
    b"prioritize_chacha": 1 << 21,
    b"safari_ecdhe_ecdsa_bug": 1 << 6,
    b"tls_rollback_bug": 1 << 23,
    b"tlsext_padding": 1 << 4,
    **dict.fromkeys(
        (
            b"ephemeral_rsa",
            b"microsoft_big_sslv3_buffer",
            b"microsoft_sess_id_bug",
            b"msie_sslv2_rsa_padding",
            b"netscape_ca_dn_bug",
            b"netscape_challenge_bug",
            b"netscape_demo_cipher_change_bug",
            b"netscape_reuse_cipher_change_bug",
            b"no_sslv2",
            b"pkcs1_check_1",
            b"pkcs1_check_2",
            b"single_dh_use",
            b"single_ecdh_use",
            b"ssleay_080_client_dh_bug",
            b"sslref2_reuse_cert_type_bug",
            b"tls_block_padding_bug",
            b"tls_d5_bug",
        ),
        0,
    ),
}

# What SSL_CTX_new sets in OpenSSL 3 (LuaSec starts from it; Python's own
# defaults add more, which are cleared).
_OPENSSL_DEFAULT_OPTIONS: Final = (1 << 17) | (1 << 20)

_VERIFY: Final = (b"none", b"peer", b"client_once", b"fail_if_no_peer_cert")


def option_names() -> list[bytes]:
    """LuaSec's `ssl.config.options` keys."""
    return sorted(_OPTIONS)


def _reason(exc: BaseException) -> str:
    """OpenSSL's reason text, as ERR_reason_error_string spells it."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return "(null)"


def _no_password() -> bytes:
    return b""


def _key_reason(exc: ssl.SSLError, key: bytes, password: bytes | None) -> str:
    """OpenSSL 3's reason for a key that did not load, which Python's
    `load_cert_chain` reports only as "PEM lib"."""
    if exc.reason:
        return _reason(exc)
    try:
        with open(os.fsdecode(key), "rb") as f:
            encrypted = b"ENCRYPTED" in f.read(1 << 20)
    except OSError:
        return "(null)"
    return "bad decrypt" if encrypted or password is not None else "unsupported"


@final
class Context:
    """The Python object under a LuaSec context (`SSL:Context`).

    Attributes:
        mode: b"client", b"server", or None (LuaSec makes the context and
            refuses to wrap with it: "invalid mode").
        context: the `ssl.SSLContext` built to the parameters.
        params: the parameters, to build a twin for a server's SNI map.
    """

    __slots__ = ("context", "mode", "params")

    def __init__(self, mode: bytes | None, context: ssl.SSLContext, params: dict[str, Any]) -> None:
        self.mode = mode
        self.context = context
        self.params = params


def _strings(value: Any) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, (bytes, int, float)):
        return [value if isinstance(value, bytes) else str(value).encode()]
    return [v if isinstance(v, bytes) else str(v).encode() for v in value.values()]


def new_context(params: dict[str, Any]) -> Context | tuple[None, bytes]:
    """LuaSec's `ssl.newcontext`, step by step in its order, with its errors.

    Args:
        params: protocol, mode, key, certificate, password (bytes),
            cafile, capath, ciphers, ciphersuites, verify / options (lists of
            bytes), alpn (list of bytes), curve. `ssl.lua` has checked types.

    Returns:
        A `Context`, or `(None, message)` with LuaSec's message.
    """
    protocol = params.get("protocol")
    versions = _PROTOCOLS.get(protocol) if isinstance(protocol, bytes) else None
    if versions is None:
        text = protocol if isinstance(protocol, bytes) else str(protocol).encode()
        return None, b"invalid protocol (%s)" % text
    mode = params.get("mode")
    server = mode == b"server"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # LuaSec checks no host name
    context.verify_mode = ssl.CERT_NONE
    context.options = ssl.Options(_OPENSSL_DEFAULT_OPTIONS)
    context.minimum_version, context.maximum_version = versions
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("DEFAULT")  # OpenSSL's, as LuaSec's contexts have
    key, certificate, password = params.get("key"), params.get("certificate"), params.get("password")
    if key is not None and not os.access(os.fsdecode(key), os.R_OK):
        return None, b"error loading private key ((null))"
    if certificate is not None:
        if not os.access(os.fsdecode(certificate), os.R_OK):
            return None, b"error loading certificate ((null))"
        try:
            context.load_cert_chain(
                os.fsdecode(certificate),
                None if key is None else os.fsdecode(key),
                # No password: an encrypted key fails ("bad decrypt") rather
                # than OpenSSL asking on the terminal, as LuaSec lets it.
                _no_password if password is None else password,
            )
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                return None, b"private key does not match public key"
            if key is None:
                # LuaSec loads a certificate without its key; the handshake
                # fails later. Python cannot: keep the context without it.
                pass
            else:
                return None, b"error loading private key (%s)" % _key_reason(exc, key, password).encode()
        except OSError as exc:
            return None, b"error loading certificate (%s)" % _reason(exc).encode()
    cafile, capath = params.get("cafile"), params.get("capath")
    if cafile is not None or capath is not None:
        try:
            context.load_verify_locations(
                None if cafile is None else os.fsdecode(cafile),
                None if capath is None or not os.path.isdir(os.fsdecode(capath)) else os.fsdecode(capath),
            )
        except (ssl.SSLError, OSError) as exc:
            # OpenSSL 3 gives "unsupported" for a file it cannot open.
            reason = _reason(exc) if isinstance(exc, ssl.SSLError) else "unsupported"
            return None, b"error loading CA locations (%s)" % reason.encode()
    ciphers = params.get("ciphers")
    if ciphers is not None:
        try:
            context.set_ciphers(ciphers.decode("latin-1"))
        except ssl.SSLError:
            return None, b"error setting cipher list (no cipher match)"
    flags: set[bytes] = set()
    for word in _strings(params.get("verify")):
        if word not in _VERIFY:
            return None, b"invalid verify option (%s)" % word
        flags.add(word)
    if b"peer" in flags:
        if server:
            required = b"fail_if_no_peer_cert" in flags
            context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        else:
            context.verify_mode = ssl.CERT_REQUIRED
    options = 0
    for word in _strings(params.get("options")):
        value = _OPTIONS.get(word)
        if value is None:
            return None, b"invalid option (%s)" % word
        options |= value
    if options:
        context.options |= ssl.Options(options)
    curve = params.get("curve")
    if curve is not None:
        try:
            context.set_ecdh_curve(curve.decode("latin-1"))
        except (ssl.SSLError, ValueError):
            return None, b"elliptic curve '%s' not supported" % curve
    alpn = params.get("alpn")
    if alpn is not None:
        context.set_alpn_protocols([p.decode("latin-1") for p in _strings(alpn)])
    if server:
        context.sni_callback = _record_sni
    return Context(mode if mode in (b"client", b"server") else None, context, params)


# The server name each server-side TLS object was asked for (getsniname).
_sni_names: Final[weakref.WeakKeyDictionary[ssl.SSLObject, str]] = weakref.WeakKeyDictionary()


def _record_sni(sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
    if name is not None:
        _sni_names[sslobj] = name


def _switch_sni(mapping: dict[str, ssl.SSLContext], strict: bool) -> Any:
    def callback(sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> int | None:
        if name is None:
            return None
        _sni_names[sslobj] = name
        chosen = mapping.get(name)
        if chosen is not None:
            sslobj.context = chosen
            return None
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME if strict else None

    return callback


@final
class _Handshake:
    __slots__ = ("task",)

    def __init__(self, task: asyncio.Task[tuple[int, None] | tuple[None, str]]) -> None:
        self.task = task


class Handshakes:
    """The handshakes of one script's TLS connections (started by the first
    `dohandshake`, collected by the one that sees them end)."""

    def __init__(self) -> None:
        self._pending: dict[Client, _Handshake] = {}

    def __bool__(self) -> bool:
        return bool(self._pending)

    def finished(self, obj: object) -> bool | None:
        """None: no handshake pending for `obj`; else whether it has ended."""
        pending = self._pending.get(obj) if isinstance(obj, Client) else None
        return None if pending is None else pending.task.done()

    def tasks(self, objects: Iterable[object]) -> list[asyncio.Task[Any]]:
        return [p.task for obj in objects if isinstance(obj, Client) and (p := self._pending.get(obj))]

    async def handshake(self, obj: Client, context: Context, hostname: bytes | None, sni: Any) -> Values:
        """One `dohandshake` call: `(True,)` or `(False, err)`."""
        pending = self._pending.get(obj)
        loop = asyncio.get_running_loop()
        if pending is None:
            if obj._closed:
                return False, CLOSED.encode()
            tls_context = context.context
            if sni is not None:
                tls_context = _twin(context, sni)
            task = loop.create_task(_run_handshake(obj, tls_context, context.mode == b"server", hostname))
            pending = self._pending[obj] = _Handshake(task)
        task = pending.task
        if not task.done():
            deadline = next_deadline(loop, obj._start_call(loop))
            if deadline == EXPIRED:
                await let_io_in(loop)
            else:
                await asyncio.wait([task], timeout=None if deadline is None else deadline - loop.time())
            if not task.done():
                # Handshakes wait for the peer's flight: what LuaSec reports
                # when its socket has nothing to read yet.
                return False, b"wantread"
        # (Two coroutines may wait for one handshake: both get its result.)
        self._pending.pop(obj, None)
        _, err = task.result()
        if err is None:
            return (True,)
        if err.startswith("certificate verify failed"):
            err = "certificate verify failed"  # LuaSec's text is OpenSSL's reason alone
        elif err == "timeout":
            err = "wantread"
        return False, err.encode()

    async def settle(self) -> None:
        """Cancel and wait for the handshakes still running (the script ended)."""
        tasks = [p.task for p in self._pending.values()]
        self._pending.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def _run_handshake(
    obj: Client, context: ssl.SSLContext, server_side: bool, hostname: bytes | None
) -> tuple[int, None] | tuple[None, str]:
    obj._recv_busy = obj._send_busy = True
    try:
        return await obj._starttls(
            context,
            server_side,
            None if hostname is None else hostname.decode("utf-8", "replace"),
            limited=False,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never leave an exception nobody retrieves
        return None, str(exc) or type(exc).__name__
    finally:
        obj._recv_busy = obj._send_busy = False


def _twin(context: Context, sni: Any) -> ssl.SSLContext:
    """A server context for one connection whose SNI map was set (LuaSec's
    map belongs to the connection; Python's callback to the context)."""
    mapping, strict = sni
    made = new_context(context.params)
    assert isinstance(made, Context)
    made.context.sni_callback = _switch_sni(mapping, strict)
    return made.context


def sni_name(obj: Client, server: bool) -> bytes | None:
    """The server name of a TLS connection: what the client asked for."""
    sslobj = obj._ssl_object()
    if sslobj is None:
        return None
    name = _sni_names.get(sslobj) if server else sslobj.server_hostname
    return None if name is None else name.encode()


def info(obj: Client) -> tuple[bytes, int, int, bytes] | None:
    """`core.info`: the cipher's OpenSSL description, its bits, its
    algorithm's bits and the protocol version; None before the handshake."""
    sslobj = obj._ssl_object()
    if sslobj is None:
        return None
    cipher = sslobj.cipher()
    version = sslobj.version()
    if cipher is None or version is None:
        return None
    name, _, bits = cipher
    description = ""
    for known in sslobj.context.get_ciphers():
        if known["name"] == name:
            description = str(known["description"])
            algbits = int(known["alg_bits"])
            break
    else:
        algbits = bits
    return description.encode(), bits, algbits, version.encode()
