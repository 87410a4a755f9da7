"""The age file format (age-encryption.org/v1) with X25519 recipients, on `cryptography` primitives.

Only what SOPS needs: X25519 recipients and identities, the binary format and its ASCII armor.
Randomness is a parameter (``rng(n) -> n bytes``) so tests can seed it; the default is
``os.urandom``. Interoperability with the real ``age`` and ``sops`` binaries is tested in
tests/unit/test_interop.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

Rng = Callable[[int], bytes]

INTRO = b"age-encryption.org/v1\n"
X25519_LABEL = b"age-encryption.org/v1/X25519"
ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
CHUNK = 64 * 1024


class AgeError(Exception):
    """Malformed age data, or no identity opens it."""


class NoIdentityMatched(AgeError):
    """Well-formed file, but none of the given identities is a recipient of it."""


# --- bech32 (BIP 173), without the 90-character limit, as age uses it -------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: Iterable[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise AgeError("invalid bech32 padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    values = _convertbits(data, 8, 5, True)
    hrp_l = hrp.lower()
    poly = _polymod(_hrp_expand(hrp_l) + values + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp_l + "1" + "".join(_CHARSET[d] for d in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    if text.lower() != text and text.upper() != text:
        raise AgeError("mixed-case bech32 string")
    s = text.lower()
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise AgeError("malformed bech32 string")
    hrp, data_part = s[:pos], s[pos + 1 :]
    try:
        values = [_CHARSET.index(c) for c in data_part]
    except ValueError:
        raise AgeError("invalid character in bech32 string") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise AgeError("bech32 checksum mismatch")
    return hrp, bytes(_convertbits(values[:-6], 5, 8, False))


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    public: bytes  # 32 bytes

    @classmethod
    def parse(cls, text: str) -> Recipient:
        text = text.strip()
        try:
            hrp, data = bech32_decode(text)
        except AgeError as exc:
            raise AgeError(f"not an age recipient {text!r}: {exc}") from None
        if hrp != "age" or len(data) != 32:
            raise AgeError(f"not an age X25519 recipient (age1...): {text!r}")
        return cls(data)

    def __str__(self) -> str:
        return bech32_encode("age", self.public)


@dataclass(frozen=True)
class Identity:
    secret: bytes  # 32 bytes

    @classmethod
    def parse(cls, text: str) -> Identity:
        text = text.strip()
        if not text.upper().startswith("AGE-SECRET-KEY-1"):
            raise AgeError("not an age secret key (expected AGE-SECRET-KEY-1...)")
        try:
            hrp, data = bech32_decode(text)
        except AgeError as exc:
            raise AgeError(f"malformed age secret key: {exc}") from None
        if hrp != "age-secret-key-" or len(data) != 32:
            raise AgeError("malformed age secret key")
        return cls(data)

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> Identity:
        return cls(rng(32))

    @property
    def recipient(self) -> Recipient:
        pub = X25519PrivateKey.from_private_bytes(self.secret).public_key().public_bytes_raw()
        return Recipient(pub)

    def __str__(self) -> str:
        return bech32_encode("age-secret-key-", self.secret).upper()

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Identity(recipient={self.recipient})"


def parse_identities(text: str, source: str) -> list[Identity]:
    """Parse an age identity file (age-keygen output): comments, blank lines, one key a line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(Identity.parse(line))
        except AgeError as exc:
            raise AgeError(f"{source}:{lineno}: {exc}") from None
    return out


def keygen_text(identity: Identity, created: str) -> str:
    """The text `age-keygen` writes for an identity."""
    return f"# created: {created}\n# public key: {identity.recipient}\n{identity}\n"


# --- primitives -------------------------------------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA-256 (RFC 5869); the standard library's HMAC keeps start-up fast."""
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


_B64_RAW = re.compile(r"^[A-Za-z0-9+/]*$")


def _unb64(text: str) -> bytes:
    if not _B64_RAW.match(text) or len(text) % 4 == 1:
        raise AgeError("invalid base64 in age header")
    data = base64.b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # non-canonical encodings are rejected by age too
        raise AgeError("non-canonical base64 in age header")
    return data


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# --- encrypt / decrypt ------------------------------------------------------------------------


def encrypt(plaintext: bytes, recipients: Iterable[Recipient], rng: Rng = os.urandom) -> bytes:
    recipients = list(recipients)
    if not recipients:
        raise AgeError("no age recipients")
    file_key = rng(16)
    header = bytearray(INTRO)
    for r in recipients:
        eph = X25519PrivateKey.from_private_bytes(rng(32))
        eph_pub = eph.public_key().public_bytes_raw()
        shared = eph.exchange(X25519PublicKey.from_public_bytes(r.public))
        wrap_key = _hkdf(shared, eph_pub + r.public, X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(b"\x00" * 12, file_key, None)
        header += f"-> X25519 {_b64(eph_pub)}\n{_b64(body)}\n".encode()
    header += b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), bytes(header), hashlib.sha256).digest()
    header += f" {_b64(mac)}\n".encode()
    nonce = rng(16)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    out = bytearray(header + nonce)
    chunks = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    for i, chunk in enumerate(chunks):
        out += aead.encrypt(_nonce(i, i == len(chunks) - 1), chunk, None)
    return bytes(out)


def _parse_header(data: bytes) -> tuple[list[tuple[list[str], bytes]], bytes, bytes, int]:
    """Return (stanzas, header bytes up to '---', mac, payload offset)."""
    if not data.startswith(INTRO):
        raise AgeError("not an age file (missing age-encryption.org/v1 header)")
    pos = len(INTRO)
    stanzas: list[tuple[list[str], bytes]] = []

    def line() -> str:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise AgeError("truncated age header")
        raw = data[pos:end]
        pos = end + 1
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise AgeError("non-ASCII age header") from None

    while True:
        start = pos
        text = line()
        if text.startswith("---"):
            if not text.startswith("--- "):
                raise AgeError("malformed age header MAC line")
            mac = _unb64(text[4:])
            return stanzas, data[:start] + b"---", mac, pos
        if not text.startswith("-> "):
            raise AgeError("malformed age header stanza")
        args = text[3:].split(" ")
        body = b""
        while True:
            bl = line()
            if len(bl) > 64:
                raise AgeError("malformed age stanza body")
            body += _unb64(bl)
            if len(bl) < 64:
                break
        stanzas.append((args, body))


def recipients_of(data: bytes) -> int:
    return len(_parse_header(data)[0])


def decrypt(data: bytes, identities: Iterable[Identity]) -> bytes:
    stanzas, header, mac, pos = _parse_header(data)
    identities = list(identities)
    file_key = None
    for args, body in stanzas:
        if args[0] != "X25519":
            continue
        if len(args) != 2 or len(body) != 32:
            raise AgeError("malformed X25519 stanza")
        eph_pub = _unb64(args[1])
        if len(eph_pub) != 32:
            raise AgeError("malformed X25519 stanza")
        for ident in identities:
            priv = X25519PrivateKey.from_private_bytes(ident.secret)
            try:
                shared = priv.exchange(X25519PublicKey.from_public_bytes(eph_pub))
            except ValueError:  # all-zero shared secret
                raise AgeError("invalid X25519 share") from None
            wrap_key = _hkdf(shared, eph_pub + ident.recipient.public, X25519_LABEL)
            try:
                file_key = ChaCha20Poly1305(wrap_key).decrypt(b"\x00" * 12, body, None)
                break
            except InvalidTag:
                continue
        if file_key is not None:
            break
    if file_key is None:
        raise NoIdentityMatched("no identity matched any of the file's recipients")
    expect = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
    if not hmac.compare_digest(expect, mac):
        raise AgeError("age header MAC mismatch (the file was modified)")
    nonce = data[pos : pos + 16]
    if len(nonce) != 16:
        raise AgeError("truncated age payload")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    payload = data[pos + 16 :]
    sealed = CHUNK + 16
    out = bytearray()
    i = 0
    while True:
        chunk = payload[i * sealed : (i + 1) * sealed]
        last = (i + 1) * sealed >= len(payload)
        if len(chunk) < 16:
            raise AgeError("truncated age payload")
        try:
            out += aead.decrypt(_nonce(i, last), chunk, None)
        except InvalidTag:
            raise AgeError("age payload authentication failed (the file was modified)") from None
        if last:
            if i > 0 and len(chunk) == 16:
                raise AgeError("age payload ends with an empty chunk")
            return bytes(out)
        i += 1


def armor(data: bytes) -> str:
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def dearmor(text: str) -> bytes:
    t = text.strip()
    if not (t.startswith(ARMOR_BEGIN) and t.endswith(ARMOR_END)):
        raise AgeError("not an armored age file (missing BEGIN/END AGE ENCRYPTED FILE lines)")
    body = t[len(ARMOR_BEGIN) : -len(ARMOR_END)].split()
    if any(len(line) > 64 for line in body):
        raise AgeError("armored age lines longer than 64 columns")
    try:
        return base64.b64decode("".join(body), validate=True)
    except ValueError:
        raise AgeError("invalid base64 in armored age file") from None
