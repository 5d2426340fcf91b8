"""X.509 certificates for the bridge's LuaSec `ssl` module, read from DER.

The standard library hands over a peer's certificate as DER bytes and, when
it was not verified, nothing else; LuaSec's certificate object gives its
names, dates, digests and subject-alternative names. This module reads them
from the DER with a small, strict reader of the few ASN.1 types a
certificate uses (a pure core: no socket, no OpenSSL), and spells them as
OpenSSL does for LuaSec (long attribute names, `ASN1_TIME_print`'s dates,
`BN_bn2hex`'s serial).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import ipaddress
import ssl
import time
from dataclasses import dataclass
from typing import Final, final

__all__ = ["Certificate", "CertificateError", "Name", "load_pem"]


class CertificateError(ValueError):
    """The bytes are not a DER certificate this reader understands."""


# OpenSSL's long names (OBJ_obj2txt with names) of the attributes and
# extensions a certificate commonly carries; any other OID is shown dotted.
_LONG_NAMES: Final[dict[str, str]] = {
    "2.5.4.3": "commonName",
    "2.5.4.4": "surname",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "countryName",
    "2.5.4.7": "localityName",
    "2.5.4.8": "stateOrProvinceName",
    "2.5.4.9": "streetAddress",
    "2.5.4.10": "organizationName",
    "2.5.4.11": "organizationalUnitName",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.42": "givenName",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.1": "userId",
    "0.9.2342.19200300.100.1.25": "domainComponent",
    "2.5.29.17": "X509v3 Subject Alternative Name",
}

# OpenSSL's short names of signature algorithms (OBJ_nid2sn).
_SIGNATURE_NAMES: Final[dict[str, str]] = {
    "1.2.840.113549.1.1.4": "RSA-MD5",
    "1.2.840.113549.1.1.5": "RSA-SHA1",
    "1.2.840.113549.1.1.11": "RSA-SHA256",
    "1.2.840.113549.1.1.12": "RSA-SHA384",
    "1.2.840.113549.1.1.13": "RSA-SHA512",
    "1.2.840.113549.1.1.14": "RSA-SHA224",
    "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
}

_KEY_TYPES: Final[dict[str, str]] = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.10040.4.1": "DSA",
    "1.2.840.10046.2.1": "DH",
    "1.2.840.10045.2.1": "EC",
}

_CURVE_BITS: Final[dict[str, int]] = {
    "1.2.840.10045.3.1.7": 256,  # prime256v1
    "1.3.132.0.34": 384,  # secp384r1
    "1.3.132.0.35": 521,  # secp521r1
    "1.3.132.0.10": 256,  # secp256k1
    "1.2.840.10045.3.1.1": 192,  # prime192v1
    "1.3.132.0.33": 224,  # secp224r1
}

_DIGESTS: Final[dict[bytes, str]] = {b"sha1": "sha1", b"sha256": "sha256", b"sha512": "sha512"}
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Universal tags.
_INTEGER: Final = 0x02
_BIT_STRING: Final = 0x03
_OCTET_STRING: Final = 0x04
_NULL: Final = 0x05
_OID: Final = 0x06
_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_UTC_TIME: Final = 0x17
_GENERALIZED_TIME: Final = 0x18
_BMP_STRING: Final = 0x1E
_UNIVERSAL_STRING: Final = 0x1C


@final
@dataclass(frozen=True)
class _Tlv:
    tag: int
    value: bytes
    raw: bytes  # the whole element, header included


def _read(data: bytes, pos: int) -> tuple[_Tlv, int]:
    """One element at `pos`: it and the position after it."""
    if pos + 2 > len(data):
        raise CertificateError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise CertificateError("long-form tags are not used in certificates")
    length = data[pos + 1]
    head = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + 2 + count > len(data):
            raise CertificateError("bad DER length")
        length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
        head += count
    end = pos + head + length
    if end > len(data):
        raise CertificateError("truncated DER")
    return _Tlv(tag, data[pos + head : end], data[pos:end]), end


def _children(value: bytes) -> list[_Tlv]:
    items: list[_Tlv] = []
    pos = 0
    while pos < len(value):
        item, pos = _read(value, pos)
        items.append(item)
    return items


def _expect(item: _Tlv, tag: int) -> bytes:
    if item.tag != tag:
        raise CertificateError(f"expected tag {tag:#x}, found {item.tag:#x}")
    return item.value


def _oid(value: bytes) -> str:
    if not value:
        raise CertificateError("empty OID")
    first = value[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(str(part) for part in parts)


def _long_name(oid: str) -> str:
    return _LONG_NAMES.get(oid, oid)


@final
@dataclass(frozen=True)
class Name:
    """One attribute of a distinguished name, as LuaSec gives it.

    Attributes:
        oid: the attribute's OID, dotted.
        name: OpenSSL's long name for it ("commonName"), or the OID.
        value: the string's bytes as stored (LuaSec's "ai5" encoding).
        tag: the ASN.1 string type (to convert to UTF-8 on request).
    """

    oid: str
    name: str
    value: bytes
    tag: int

    def utf8(self) -> bytes:
        """The value converted to UTF-8 (LuaSec's `setencode("utf8")`)."""
        if self.tag == _BMP_STRING:
            return self.value.decode("utf-16-be", "replace").encode()
        if self.tag == _UNIVERSAL_STRING:
            return self.value.decode("utf-32-be", "replace").encode()
        if self.tag in (0x13, 0x14, 0x16, 0x1A):  # Printable, Teletex (Latin-1 in practice), IA5, Visible
            return self.value.decode("latin-1").encode() if self.tag == 0x14 else self.value
        return self.value


def _names(item: _Tlv) -> list[Name]:
    names: list[Name] = []
    for rdn in _children(_expect(item, _SEQUENCE)):
        for attribute in _children(_expect(rdn, _SET)):
            oid_item, value_item = _children(_expect(attribute, _SEQUENCE))[:2]
            oid = _oid(_expect(oid_item, _OID))
            names.append(Name(oid, _long_name(oid), value_item.value, value_item.tag))
    return names


def _time(item: _Tlv) -> int:
    """Seconds since the epoch of a UTCTime or GeneralizedTime (Zulu)."""
    text = item.value.decode("ascii", "replace").rstrip("Z")
    if item.tag == _UTC_TIME:
        year = int(text[:2])
        text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]
    elif item.tag != _GENERALIZED_TIME:
        raise CertificateError("bad validity time")
    text = text.split(".")[0]
    fields = [int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12])]
    seconds = int(text[12:14]) if len(text) >= 14 else 0
    return calendar.timegm((*fields, seconds, 0, 0, 0))


def _print_time(seconds: int) -> str:
    """ASN1_TIME_print's form: "Jan  1 00:00:00 2000 GMT"."""
    t = time.gmtime(seconds)
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {clock} {t.tm_year} GMT"


@final
class Certificate:
    """A parsed certificate (the Python object under LuaSec's `SSL:Certificate`).

    Args:
        der: the certificate in DER form.

    Raises:
        CertificateError: `der` is not a certificate this reader understands.
    """

    __slots__ = (
        "_after",
        "_before",
        "_extensions",
        "_issuer",
        "_serial",
        "_signature",
        "_spki",
        "_subject",
        "der",
        "utf8",
    )

    def __init__(self, der: bytes) -> None:
        self.der = der
        self.utf8 = False
        try:
            self._parse(der)
        except (IndexError, ValueError) as exc:
            if isinstance(exc, CertificateError):
                raise
            raise CertificateError(f"not a certificate: {exc}") from None

    def _parse(self, der: bytes) -> None:
        top, end = _read(der, 0)
        if end != len(der):
            raise CertificateError("bytes after the certificate")
        tbs, signature_algorithm = _children(_expect(top, _SEQUENCE))[:2]
        fields = _children(_expect(tbs, _SEQUENCE))
        if fields and fields[0].tag == 0xA0:  # [0] version
            fields = fields[1:]
        serial, _, issuer, validity, subject, spki = fields[:6]
        self._serial = int.from_bytes(_expect(serial, _INTEGER), "big", signed=True)
        self._signature = _oid(_expect(_children(_expect(signature_algorithm, _SEQUENCE))[0], _OID))
        self._issuer = _names(issuer)
        self._subject = _names(subject)
        before, after = _children(_expect(validity, _SEQUENCE))[:2]
        self._before = _time(before)
        self._after = _time(after)
        self._spki = spki
        self._extensions: list[tuple[str, bytes]] = []
        for item in fields[6:]:
            if item.tag == 0xA3:  # [3] extensions
                for extension in _children(_expect(_children(item.value)[0], _SEQUENCE)):
                    parts = _children(_expect(extension, _SEQUENCE))
                    oid = _oid(_expect(parts[0], _OID))
                    self._extensions.append((oid, _expect(parts[-1], _OCTET_STRING)))

    # -- what LuaSec's methods return -------------------------------------------

    def subject(self) -> list[tuple[bytes, bytes, bytes]]:
        """`(oid, name, value)` per attribute, in order."""
        return [self._entry(name) for name in self._subject]

    def issuer(self) -> list[tuple[bytes, bytes, bytes]]:
        """`(oid, name, value)` per attribute of the issuer, in order."""
        return [self._entry(name) for name in self._issuer]

    def _entry(self, name: Name) -> tuple[bytes, bytes, bytes]:
        return name.oid.encode(), name.name.encode(), name.utf8() if self.utf8 else name.value

    def alt_names(self) -> list[tuple[bytes, bytes, list[tuple[bytes, bytes | None]]]]:
        """The subject-alternative-name extensions: `(oid, name, entries)`
        where each entry is `(kind, value)`; kind is LuaSec's key
        ("dNSName", "rfc822Name", "uniformResourceIdentifier", "iPAddress",
        or an other-name's OID)."""
        result: list[tuple[bytes, bytes, list[tuple[bytes, bytes | None]]]] = []
        for oid, value in self._extensions:
            if oid != "2.5.29.17":
                continue
            entries: list[tuple[bytes, bytes | None]] = []
            for general in _children(_read(value, 0)[0].value):
                kind = general.tag & 0x1F
                if kind == 1:
                    entries.append((b"rfc822Name", general.value))
                elif kind == 2:
                    entries.append((b"dNSName", general.value))
                elif kind == 6:
                    entries.append((b"uniformResourceIdentifier", general.value))
                elif kind == 7:
                    entries.append((b"iPAddress", _ip_text(general.value)))
                elif kind == 0:
                    parts = _children(general.value)
                    other = _oid(_expect(parts[0], _OID))
                    inner = _children(parts[1].value)[0].value if len(parts) > 1 else b""
                    entries.append((other.encode(), inner))
            result.append((oid.encode(), _long_name(oid).encode(), entries))
        return result

    def notbefore(self) -> bytes:
        return _print_time(self._before).encode()

    def notafter(self) -> bytes:
        return _print_time(self._after).encode()

    def validat(self, when: int) -> bool:
        """LuaSec's `validat`: not before `when` and not after it."""
        return self._before <= when <= self._after

    def digest(self, algorithm: bytes | None) -> tuple[bytes] | tuple[None, bytes]:
        name = _DIGESTS.get(algorithm or b"sha1")
        if name is None:
            return None, b"digest algorithm not supported (%s)" % (algorithm or b"")
        return (hashlib.new(name, self.der).hexdigest().encode(),)

    def pem(self) -> bytes:
        return ssl.DER_cert_to_PEM_cert(self.der).encode()

    def serial(self) -> bytes:
        """`BN_bn2hex`'s form: upper-case hex in whole bytes, "0" for zero."""
        value = abs(self._serial)
        if value == 0:
            return b"0"
        text = value.to_bytes((value.bit_length() + 7) // 8, "big").hex().upper()
        return ("-" + text if self._serial < 0 else text).encode()

    def pubkey(self) -> tuple[bytes, bytes, int]:
        """The public key as PEM, its type ("RSA", "EC", ...) and its size in bits."""
        body = base64.encodebytes(self._spki.raw).replace(b"\n", b"")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        pem = b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + b"\n-----END PUBLIC KEY-----\n"
        algorithm, key = _children(_expect(self._spki, _SEQUENCE))[:2]
        parts = _children(_expect(algorithm, _SEQUENCE))
        kind = _oid(_expect(parts[0], _OID))
        bits = 0
        if kind == "1.2.840.113549.1.1.1":
            modulus = _children(_expect(_read(key.value[1:], 0)[0], _SEQUENCE))[0]
            bits = int.from_bytes(_expect(modulus, _INTEGER), "big").bit_length()
        elif kind == "1.2.840.10045.2.1" and len(parts) > 1 and parts[1].tag == _OID:
            bits = _CURVE_BITS.get(_oid(parts[1].value), 0)
        elif kind in ("1.3.101.112", "1.3.101.113"):
            bits = 253 if kind == "1.3.101.112" else 456
        return pem, _KEY_TYPES.get(kind, "Unknown").encode(), bits

    def signature_name(self) -> bytes | None:
        name = _SIGNATURE_NAMES.get(self._signature)
        return None if name is None else name.encode()


def _ip_text(value: bytes) -> bytes | None:
    if len(value) == 4:
        return str(ipaddress.IPv4Address(value)).encode()
    if len(value) == 16:
        return str(ipaddress.IPv6Address(value)).encode()
    return None


def load_pem(data: bytes) -> Certificate | None:
    """LuaSec's `ssl.loadcertificate`: the first PEM certificate in `data`,
    or None."""
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    if start < 0:
        return None
    end = data.find(b"-----END CERTIFICATE-----", start)
    if end < 0:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(data[start : end + 25].decode("ascii"))
        return Certificate(der)
    except (ValueError, UnicodeError):
        return None
