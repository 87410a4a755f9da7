"""The typed function configs, parsed and validated before anything is done with them.

apiVersion: secrets.backstage-gitops.dev/v1alpha1
- kind: SecretSpec      -- authoring: one Secret, its keys and its encrypted format.
- kind: SecretDecryptor -- build time: SOPS artifacts to decrypt into Secrets (a kustomize
                           exec generator).
See docs/secrets.md for the reference and examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import KrmError, ResourceRef
from .sops import DEFAULT_ENCRYPTED_REGEX, Rules

API_VERSION = "secrets.backstage-gitops.dev/v1alpha1"
KIND_SPEC = "SecretSpec"
KIND_DECRYPTOR = "SecretDecryptor"
KIND_RECEIPT = "DecryptionReceipt"

ALPHABETS = {
    "alphanumeric": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "lowercase-alphanumeric": "abcdefghijklmnopqrstuvwxyz0123456789",
    "hex": "0123456789abcdef",
    # printable ASCII without quotes, backslash and space: safe in shells, URLs need escaping
    "symbols": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%+,-./:=?@^_~",
}
ENCODINGS = ("base64", "base64url", "hex", "raw")
SCOPES = ("strict", "namespace-wide", "cluster-wide")
SECRET_TYPES_WITH_KEYS = {
    "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
    "kubernetes.io/basic-auth": [],
    "kubernetes.io/tls": ["tls.crt", "tls.key"],
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class Generate:
    length: int = 32
    alphabet: str = ALPHABETS["alphanumeric"]
    random_bytes: int | None = None  # when set: that many random bytes, then `encoding`
    encoding: str = "base64"


@dataclass(frozen=True)
class FromUser:
    env: str | None = None
    file: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class KeySpec:
    name: str
    literal: bytes | None = None
    generate: Generate | None = None
    from_user: FromUser | None = None
    after_rotation: str | None = None


@dataclass(frozen=True)
class SopsFormat:
    recipients: tuple[str, ...] = ()  # empty: from .sops.yaml creation_rules
    rules: Rules | None = None  # None: from .sops.yaml or the default encrypted_regex


@dataclass(frozen=True)
class SealedFormat:
    certificate: str
    scope: str = "strict"


@dataclass(frozen=True)
class SecretSpec:
    name: str
    namespace: str
    secret_type: str
    labels: dict[str, str]
    annotations: dict[str, str]
    keys: tuple[KeySpec, ...]
    sops: SopsFormat | None
    sealed: SealedFormat | None
    output: str
    ref: ResourceRef
    file: str | None

    def key(self, name: str) -> KeySpec | None:
        return next((k for k in self.keys if k.name == name), None)


@dataclass(frozen=True)
class DecryptorSpec:
    name: str
    files: tuple[str, ...]
    ref: ResourceRef
    file: str | None


class _P:
    """Field access that turns every problem into a KrmError naming file, resource and field."""

    def __init__(self, obj: dict, file: str | None):
        self.obj, self.file, self.ref = obj, file, ResourceRef.of(obj)

    def err(self, field: str, message: str) -> KrmError:
        return KrmError(message, self.file, self.ref, field)

    def get(self, path: str, typ: type | tuple, required: bool = False, default: Any = None) -> Any:
        cur: Any = self.obj
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
            if part.startswith("["):
                idx = int(part[1:-1])
                cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
            else:
                cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is None:
                break
        if cur is None:
            if required:
                raise self.err(path, f"missing required field {path}")
            return default
        if isinstance(cur, bool) and typ is int:
            raise self.err(path, f"expected an integer, found {cur!r}")
        if not isinstance(cur, typ):
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            expected = {
                "str": "a string",
                "dict": "a mapping",
                "list": "a list",
                "int": "an integer",
            }.get(names, names)
            raise self.err(path, f"expected {expected}, found {type(cur).__name__} {cur!r}")
        return cur

    def str_map(self, path: str) -> dict[str, str]:
        m = self.get(path, dict, default={})
        for k, v in m.items():
            if not isinstance(v, str):
                raise self.err(f"{path}.{k}", f"expected a string value, found {v!r}")
        return dict(m)


def _check_kind(p: _P, kind: str) -> None:
    api = p.obj.get("apiVersion")
    if api != API_VERSION or p.obj.get("kind") != kind:
        raise p.err(
            "kind",
            f"expected apiVersion {API_VERSION} and kind {kind}, "
            f"found apiVersion {api!r} and kind {p.obj.get('kind')!r}",
        )


def parse_spec(obj: Any, file: str | None = None) -> SecretSpec:
    if not isinstance(obj, dict):
        raise KrmError(f"expected a {KIND_SPEC} mapping, found {type(obj).__name__}", file)
    p = _P(obj, file)
    _check_kind(p, KIND_SPEC)
    meta_name = p.get("metadata.name", str, required=True)
    name = p.get("spec.secret.name", str, default=meta_name)
    if not _DNS_SUBDOMAIN.match(name):
        raise p.err("spec.secret.name", f"not a valid Secret name (DNS subdomain): {name!r}")
    namespace = p.get("spec.secret.namespace", str, required=True)
    if not _DNS_LABEL.match(namespace):
        raise p.err("spec.secret.namespace", f"not a valid namespace name: {namespace!r}")
    secret_type = p.get("spec.secret.type", str, default="Opaque")
    raw_keys = p.get("spec.keys", list, required=True)
    if not raw_keys:
        raise p.err("spec.keys", "expected at least one key")
    keys = []
    seen: set[str] = set()
    for i, _ in enumerate(raw_keys):
        keys.append(_parse_key(p, f"spec.keys[{i}]", seen))
    for required_key in SECRET_TYPES_WITH_KEYS.get(secret_type, []):
        if required_key not in seen:
            raise p.err("spec.keys", f"a Secret of type {secret_type} needs key {required_key!r}")
    fmt = p.get("spec.format", dict, required=True)
    sops_fmt = sealed_fmt = None
    if ("sops" in fmt) == ("sealedSecret" in fmt):
        raise p.err(
            "spec.format", "expected exactly one of spec.format.sops, spec.format.sealedSecret"
        )
    if "sops" in fmt:
        p.get("spec.format.sops", dict, default={})
        recips = p.get("spec.format.sops.recipients", list, default=[])
        for i, r in enumerate(recips):
            if not isinstance(r, str) or not r.startswith("age1"):
                raise p.err(
                    f"spec.format.sops.recipients[{i}]",
                    f"expected an age recipient (age1...), found {r!r}",
                )
        regex = p.get("spec.format.sops.encryptedRegex", str)
        rules = None
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise p.err(
                    "spec.format.sops.encryptedRegex", f"invalid regular expression: {exc}"
                ) from None
            rules = Rules(encrypted_regex=regex)
        sops_fmt = SopsFormat(tuple(recips), rules)
        default_out = f"{name}.sops.yaml"
    else:
        cert = p.get("spec.format.sealedSecret.certificate", str, required=True)
        scope = p.get("spec.format.sealedSecret.scope", str, default="strict")
        if scope not in SCOPES:
            raise p.err(
                "spec.format.sealedSecret.scope",
                f"expected one of {', '.join(SCOPES)}, found {scope!r}",
            )
        sealed_fmt = SealedFormat(cert, scope)
        default_out = f"{name}.sealed.yaml"
    output = p.get("spec.output", str, default=default_out)
    if output.startswith("/") or ".." in output.split("/"):
        raise p.err("spec.output", f"expected a file name next to the config, found {output!r}")
    return SecretSpec(
        name=name,
        namespace=namespace,
        secret_type=secret_type,
        labels=p.str_map("spec.secret.labels"),
        annotations=p.str_map("spec.secret.annotations"),
        keys=tuple(keys),
        sops=sops_fmt,
        sealed=sealed_fmt,
        output=output,
        ref=p.ref or ResourceRef(),
        file=file,
    )


def _parse_key(p: _P, path: str, seen: set[str]) -> KeySpec:
    p.get(path, dict, required=True)
    name = p.get(f"{path}.name", str, required=True)
    if not _KEY.match(name):
        raise p.err(
            f"{path}.name", f"not a valid Secret key (letters, digits, '-', '_', '.'): {name!r}"
        )
    if name in seen:
        raise p.err(f"{path}.name", f"duplicate key {name!r}")
    seen.add(name)
    sources = [
        s for s in ("literal", "literalBase64", "generate", "fromUser") if s in p.get(path, dict)
    ]
    if len(sources) != 1:
        raise p.err(path, "expected exactly one of literal, literalBase64, generate, fromUser")
    after = p.get(f"{path}.afterRotation", str)
    src = sources[0]
    if src == "literal":
        value = p.get(f"{path}.literal", str, required=True)
        return KeySpec(name, literal=value.encode("utf-8"), after_rotation=after)
    if src == "literalBase64":
        import base64
        import binascii

        text = p.get(f"{path}.literalBase64", str, required=True)
        try:
            return KeySpec(
                name, literal=base64.b64decode(text, validate=True), after_rotation=after
            )
        except (binascii.Error, ValueError):
            raise p.err(f"{path}.literalBase64", "expected standard base64") from None
    if src == "generate":
        g = f"{path}.generate"
        p.get(g, dict, default={})
        nbytes = p.get(f"{g}.bytes", int)
        if nbytes is not None:
            if not 1 <= nbytes <= 4096:
                raise p.err(f"{g}.bytes", f"expected 1..4096, found {nbytes}")
            enc = p.get(f"{g}.encoding", str, default="base64")
            if enc not in ENCODINGS:
                raise p.err(
                    f"{g}.encoding", f"expected one of {', '.join(ENCODINGS)}, found {enc!r}"
                )
            for other in ("length", "alphabet", "charset"):
                if p.get(f"{g}.{other}", object) is not None:
                    raise p.err(
                        f"{g}.{other}", "use either bytes/encoding or length/alphabet, not both"
                    )
            return KeySpec(
                name, generate=Generate(random_bytes=nbytes, encoding=enc), after_rotation=after
            )
        length = p.get(f"{g}.length", int, default=32)
        if not 8 <= length <= 4096:
            raise p.err(f"{g}.length", f"expected 8..4096 characters, found {length}")
        alpha_name = p.get(f"{g}.alphabet", str)
        charset = p.get(f"{g}.charset", str)
        if alpha_name is not None and charset is not None:
            raise p.err(g, "use either alphabet or charset, not both")
        if charset is not None:
            if len(set(charset)) != len(charset) or len(charset) < 2 or not charset.isascii():
                raise p.err(f"{g}.charset", "expected at least 2 distinct ASCII characters")
            alphabet = charset
        else:
            alpha_name = alpha_name or "alphanumeric"
            if alpha_name not in ALPHABETS:
                raise p.err(
                    f"{g}.alphabet", f"expected one of {', '.join(ALPHABETS)}, found {alpha_name!r}"
                )
            alphabet = ALPHABETS[alpha_name]
        return KeySpec(
            name, generate=Generate(length=length, alphabet=alphabet), after_rotation=after
        )
    f = f"{path}.fromUser"
    p.get(f, dict, required=True)
    fu = FromUser(
        env=p.get(f"{f}.env", str), file=p.get(f"{f}.file", str), prompt=p.get(f"{f}.prompt", str)
    )
    if not (fu.env or fu.file or fu.prompt):
        raise p.err(f, "expected at least one of env, file, prompt")
    return KeySpec(name, from_user=fu, after_rotation=after)


def parse_decryptor(obj: Any, file: str | None = None) -> DecryptorSpec:
    if not isinstance(obj, dict):
        raise KrmError(f"expected a {KIND_DECRYPTOR} mapping, found {type(obj).__name__}", file)
    p = _P(obj, file)
    _check_kind(p, KIND_DECRYPTOR)
    name = p.get("metadata.name", str, required=True)
    files = p.get("spec.files", list, required=True)
    if not files:
        raise p.err("spec.files", "expected at least one SOPS file")
    for i, f in enumerate(files):
        if not isinstance(f, str) or not f:
            raise p.err(f"spec.files[{i}]", f"expected a file path, found {f!r}")
    return DecryptorSpec(name, tuple(files), p.ref or ResourceRef(), file)


def default_rules() -> Rules:
    return Rules(encrypted_regex=DEFAULT_ENCRYPTED_REGEX)
