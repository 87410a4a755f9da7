"""The SOPS file format (YAML store, age key groups), as getsops/sops writes and reads it.

A SOPS document is the plaintext tree with leaf values replaced by
``ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`` (AES-256-GCM, 32-byte IV, the
additional data is the path of keys joined by ``:`` plus a trailing ``:``), and a top-level
``sops`` mapping: the 32-byte data key age-encrypted (armored) to each recipient,
``lastmodified`` (RFC 3339), ``mac`` (the upper-case hex SHA-512 over the plaintext leaves in
document order, encrypted with the data key and ``lastmodified`` as additional data), the
encryption rules (``encrypted_regex`` ...) and ``version``.

Everything here is pure: the data key, IVs and time are parameters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import age

SOPS_VERSION = "3.11.0"  # the SOPS release whose file format we write (and test against)
DEFAULT_ENCRYPTED_REGEX = "^(data|stringData)$"
MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex(
    "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69"
)
_ENC_RE = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
_UNSUPPORTED_KEY_TYPES = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")


class SopsError(Exception):
    def __init__(self, message: str, field_path: str | None = None, tried: list[str] | None = None):
        super().__init__(message)
        self.field_path = field_path
        self.tried = tried or []


class MissingKey(SopsError):
    """No age identity was found at all."""


class WrongKey(SopsError):
    """Identities were found, but none is a recipient of the file."""


@dataclass(frozen=True)
class Rules:
    """Which leaves are encrypted (SOPS's *_suffix / *_regex conventions)."""

    encrypted_regex: str | None = DEFAULT_ENCRYPTED_REGEX
    unencrypted_regex: str | None = None
    encrypted_suffix: str | None = None
    unencrypted_suffix: str | None = None
    mac_only_encrypted: bool = False

    def should_encrypt(self, path: list[str]) -> bool:
        encrypted = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, p) for p in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(re.search(self.encrypted_regex, p) for p in path)
        return encrypted

    def as_metadata(self) -> dict:
        out: dict[str, Any] = {}
        if self.unencrypted_suffix:
            out["unencrypted_suffix"] = self.unencrypted_suffix
        if self.encrypted_suffix:
            out["encrypted_suffix"] = self.encrypted_suffix
        if self.unencrypted_regex:
            out["unencrypted_regex"] = self.unencrypted_regex
        if self.encrypted_regex:
            out["encrypted_regex"] = self.encrypted_regex
        if self.mac_only_encrypted:
            out["mac_only_encrypted"] = True
        return out

    @classmethod
    def from_metadata(cls, meta: dict) -> Rules:
        return cls(
            encrypted_regex=meta.get("encrypted_regex") or None,
            unencrypted_regex=meta.get("unencrypted_regex") or None,
            encrypted_suffix=meta.get("encrypted_suffix") or None,
            unencrypted_suffix=meta.get("unencrypted_suffix") or None,
            mac_only_encrypted=bool(meta.get("mac_only_encrypted", False)),
        )


# --- values -------------------------------------------------------------------------------


def _go_float(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    from decimal import Decimal  # noqa: PLC0415 (rarely needed; keeps start-up fast)

    return format(Decimal(repr(v)), "f")


def to_bytes(value: Any) -> bytes:
    """SOPS's ToBytes: the bytes a leaf contributes to the MAC and to its ciphertext."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
    if isinstance(value, bytes):
        return value
    raise SopsError(f"cannot encrypt a value of type {type(value).__name__}")


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, bytes):
        return "bytes"
    raise SopsError(f"cannot encrypt a value of type {type(value).__name__}")


def encrypt_value(value: Any, key: bytes, aad: str, iv: bytes) -> str:
    plain = to_bytes(value)
    if plain == b"" and isinstance(value, str | bytes):
        return ""  # SOPS leaves empty strings empty
    sealed = AESGCM(key).encrypt(iv, plain, aad.encode())
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(sealed[:-16]).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(sealed[-16:]).decode()},type:{_type_name(value)}]"
    )


def _parse_enc(text: str) -> tuple[bytes, bytes, bytes, str]:
    m = _ENC_RE.match(text)
    if not m:
        raise SopsError("value is not SOPS-encrypted (expected ENC[AES256_GCM,...])")
    try:
        data, iv, tag = (base64.b64decode(g, validate=True) for g in m.group(1, 2, 3))
    except (binascii.Error, ValueError):
        raise SopsError("malformed base64 in ENC[...] value") from None
    if len(tag) != 16 or not iv:
        raise SopsError("malformed ENC[...] value (bad iv or tag length)")
    return data, iv, tag, m.group(4)


def decrypt_value(text: str, key: bytes, aad: str) -> tuple[Any, bytes]:
    """Return (plaintext value, iv)."""
    if text == "":
        return "", b""
    data, iv, tag, typ = _parse_enc(text)
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, aad.encode())
    except InvalidTag:
        raise SopsError(
            "authentication failed: the ciphertext, its IV or tag, or the key path was modified"
        ) from None
    try:
        if typ == "str":
            return plain.decode("utf-8", "surrogateescape"), iv
        if typ == "int":
            return int(plain.decode()), iv
        if typ == "float":
            return float(plain.decode()), iv
        if typ == "bool":
            s = plain.decode()
            if s in ("1", "t", "T", "TRUE", "true", "True"):
                return True, iv
            if s in ("0", "f", "F", "FALSE", "false", "False"):
                return False, iv
            raise ValueError(s)
        if typ == "bytes":
            return plain, iv
    except ValueError:
        raise SopsError(f"decrypted value is not a valid {typ}") from None
    raise SopsError(f"unsupported SOPS value type {typ!r}")


# --- trees ----------------------------------------------------------------------------------


Leaf = Callable[[Any, list[str]], Any]


def _walk(node: Any, path: list[str], leaf: Leaf) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if not isinstance(k, str):
                raise SopsError(
                    f"non-string key {k!r}: SOPS supports string keys only", ":".join(path)
                )
            out[k] = _walk(v, [*path, k], leaf)
        return out
    if isinstance(node, list):
        return [_walk(v, path, leaf) for v in node]
    if node is None:
        return None
    return leaf(node, path)


def _field(path: list[str]) -> str:
    return ".".join(path)


IvSource = Callable[[list[str], Any], bytes]


def encrypt_tree(tree: dict, key: bytes, rules: Rules, iv_for: IvSource) -> tuple[dict, str]:
    """Encrypt leaves per rules; return (encrypted tree, MAC hex)."""
    h = hashlib.sha512()
    if rules.mac_only_encrypted:
        h.update(MAC_ONLY_ENCRYPTED_INIT)

    def leaf(value: Any, path: list[str]) -> Any:
        enc = rules.should_encrypt(path)
        if not rules.mac_only_encrypted or enc:
            h.update(to_bytes(value))
        if not enc:
            return value
        return encrypt_value(value, key, ":".join(path) + ":", iv_for(path, value))

    out = _walk(tree, [], leaf)
    return out, h.hexdigest().upper()


def decrypt_tree(tree: dict, key: bytes, rules: Rules) -> tuple[dict, str, dict]:
    """Decrypt leaves per rules; return (plaintext tree, MAC hex, IV stash)."""
    h = hashlib.sha512()
    if rules.mac_only_encrypted:
        h.update(MAC_ONLY_ENCRYPTED_INIT)
    stash: dict[tuple[str, bytes], bytes] = {}

    def leaf(value: Any, path: list[str]) -> Any:
        enc = rules.should_encrypt(path)
        if enc:
            if not isinstance(value, str):
                raise SopsError(
                    f"expected an encrypted value (ENC[...] string), found {type(value).__name__}",
                    _field(path),
                )
            try:
                value, iv = decrypt_value(value, key, ":".join(path) + ":")
            except SopsError as exc:
                raise SopsError(str(exc), _field(path)) from None
            if iv:
                stash[(":".join(path), to_bytes(value))] = iv
        if not rules.mac_only_encrypted or enc:
            h.update(to_bytes(value))
        return value

    out = _walk(tree, [], leaf)
    return out, h.hexdigest().upper(), stash


# --- documents -------------------------------------------------------------------------------


def format_time(t: datetime) -> str:
    """RFC 3339 as Go's time.Format(time.RFC3339) prints it (no fractional seconds)."""
    off = t.utcoffset()
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if off is None or off.total_seconds() == 0:
        return base + "Z"
    mins = int(off.total_seconds() // 60)
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return f"{base}{sign}{mins // 60:02d}:{mins % 60:02d}"


def _parse_time(text: str) -> str:
    try:
        t = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise SopsError(
            f"sops.lastmodified is not an RFC 3339 time: {text!r}", "sops.lastmodified"
        ) from None
    if t.tzinfo is None:
        raise SopsError("sops.lastmodified has no time zone", "sops.lastmodified")
    return format_time(t)


@dataclass
class Opened:
    """A decrypted SOPS document, with what is needed to re-encrypt it without churn."""

    tree: dict
    data_key: bytes
    rules: Rules
    metadata: dict
    stash: dict = field(default_factory=dict)


def is_sops_document(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("sops"), dict)


def _metadata(doc: dict) -> dict:
    meta = doc.get("sops")
    if not isinstance(meta, dict):
        raise SopsError("not a SOPS file: no top-level 'sops' mapping", "sops")
    for f in ("mac", "lastmodified"):
        if not isinstance(meta.get(f), str):
            raise SopsError(f"sops.{f} is missing or not a string", f"sops.{f}")
    if meta.get("key_groups"):
        raise SopsError(
            "SOPS key_groups (Shamir secret sharing) are not supported; use a single age group",
            "sops.key_groups",
        )
    return meta


def age_stanzas(doc: dict) -> list[tuple[str, str]]:
    meta = _metadata(doc)
    entries = meta.get("age") or []
    if not isinstance(entries, list):
        raise SopsError("sops.age must be a list", "sops.age")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("enc"), str):
            raise SopsError("age entry needs 'recipient' and 'enc'", f"sops.age[{i}]")
        out.append((str(e.get("recipient", "")), e["enc"]))
    if not out:
        others = [k for k in _UNSUPPORTED_KEY_TYPES if meta.get(k)]
        what = (
            f" (it has {', '.join(others)} keys, which krm-secrets does not use)" if others else ""
        )
        raise SopsError(f"the file has no age recipients{what}", "sops.age")
    return out


def data_key(doc: dict, identities: list[age.Identity], tried: list[str]) -> bytes:
    """Open the data key with the first identity that is a recipient."""
    stanzas = age_stanzas(doc)
    recipients = [r for r, _ in stanzas]
    if not identities:
        raise MissingKey(
            "no age identity found to decrypt with: set SOPS_AGE_KEY_FILE to the key file of "
            f"one of the recipients ({', '.join(recipients)})",
            "sops.age",
            tried,
        )
    mine = {str(i.recipient) for i in identities}
    order = sorted(range(len(stanzas)), key=lambda i: stanzas[i][0] not in mine)
    for i in order:
        recipient, enc = stanzas[i]
        try:
            blob = age.dearmor(enc)
            key = age.decrypt(blob, identities)
        except age.NoIdentityMatched:
            continue
        except age.AgeError as exc:
            raise SopsError(
                f"the age-encrypted data key for {recipient} is corrupt: {exc}",
                f"sops.age[{i}].enc",
            ) from None
        if len(key) != 32:
            raise SopsError("the decrypted data key is not 32 bytes", f"sops.age[{i}].enc")
        return key
    raise WrongKey(
        "wrong key: none of the available age identities "
        f"({', '.join(sorted(mine))}) is a recipient of this file "
        f"(recipients: {', '.join(recipients)})",
        "sops.age",
        tried,
    )


def open_document(doc: dict, identities: list[age.Identity], tried: list[str]) -> Opened:
    meta = _metadata(doc)
    key = data_key(doc, identities, tried)
    rules = Rules.from_metadata(meta)
    body = {k: v for k, v in doc.items() if k != "sops"}
    tree, mac, stash = decrypt_tree(body, key, rules)
    aad = _parse_time(meta["lastmodified"])
    try:
        stored, _ = decrypt_value(meta["mac"], key, aad)
    except SopsError:
        raise SopsError(
            "the MAC does not authenticate (sops.mac or sops.lastmodified was modified)",
            "sops.mac",
        ) from None
    if not isinstance(stored, str) or not hmac.compare_digest(stored.upper(), mac):
        raise SopsError(
            "MAC mismatch: the file was modified after encryption (a value, a key name or "
            "plaintext metadata such as metadata.name changed)",
            "sops.mac",
        )
    return Opened(tree, key, rules, meta, stash)


def seal_document(
    tree: dict,
    recipients: Iterable[age.Recipient],
    rules: Rules,
    *,
    rng: age.Rng,
    now: datetime,
    data_key: bytes | None = None,
    stash: dict | None = None,
    age_entries: list[dict] | None = None,
) -> dict:
    """Encrypt a plaintext tree into a SOPS document.

    With ``data_key``, ``stash`` (IVs by path and plaintext) and ``age_entries`` from an opened
    document, unchanged values keep their exact ciphertext, so a re-encryption only changes what
    changed (plus ``lastmodified`` and ``mac``).
    """
    if "sops" in tree:
        raise SopsError("the document already has a top-level 'sops' key", "sops")
    recipients = list(recipients)
    key = data_key if data_key is not None else rng(32)
    stash = stash or {}

    def iv_for(path: list[str], value: Any) -> bytes:
        return stash.get((":".join(path), to_bytes(value))) or rng(32)

    enc_tree, mac = encrypt_tree(tree, key, rules, iv_for)
    if age_entries is None:
        if not recipients:
            raise SopsError("no age recipients to encrypt to", "sops.age")
        age_entries = [
            {"recipient": str(r), "enc": age.armor(age.encrypt(key, [r], rng))} for r in recipients
        ]
    lastmodified = format_time(now.astimezone(UTC))
    meta: dict[str, Any] = {
        "age": age_entries,
        "lastmodified": lastmodified,
        "mac": encrypt_value(mac, key, lastmodified, rng(32)),
    }
    meta.update(rules.as_metadata())
    meta["version"] = SOPS_VERSION
    return {**enc_tree, "sops": meta}
