"""SealedSecrets (bitnami-labs/sealed-secrets, bitnami.com/v1alpha1), sealed offline.

Each value is sealed with the controller's RSA public key in the controller's hybrid format:
  uint16 big-endian length of the RSA ciphertext || RSA-OAEP(SHA-256, label)(32-byte AES key)
  || AES-256-GCM(zero nonce)(value)
with label `namespace/name` (strict), `namespace` (namespace-wide) or empty (cluster-wide); the
scope is also recorded in the sealedsecrets.bitnami.com/{namespace,cluster}-wide annotations,
which the controller reads to rebuild the label when it unseals. Values sealed for one
name/namespace cannot be unsealed under another, so sealing checks the final name and
namespace, and records them in an annotation that `krm-secrets check` compares with a rendered
build.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import yamlio
from .config import SecretSpec
from .errors import KrmError, ResourceRef

API = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
NS_WIDE = "sealedsecrets.bitnami.com/namespace-wide"
CLUSTER_WIDE = "sealedsecrets.bitnami.com/cluster-wide"
SEALED_FOR = "secrets.backstage-gitops.dev/sealed-for"
STRIP = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)
Rng = Callable[[int], bytes]


class SealError(Exception):
    pass


def label(namespace: str, name: str, scope: str) -> bytes:
    if scope == "cluster-wide":
        return b""
    if scope == "namespace-wide":
        return namespace.encode()
    return f"{namespace}/{name}".encode()


def sealed_for(namespace: str, name: str, scope: str) -> str:
    return {"cluster-wide": "*/*", "namespace-wide": f"{namespace}/*"}.get(
        scope, f"{namespace}/{name}"
    )


def hybrid_encrypt(pub: rsa.RSAPublicKey, plaintext: bytes, lbl: bytes, rng: Rng) -> bytes:
    session = rng(32)
    oaep = padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=lbl or None
    )
    rsa_ct = pub.encrypt(session, oaep)
    return (
        len(rsa_ct).to_bytes(2, "big")
        + rsa_ct
        + AESGCM(session).encrypt(b"\x00" * 12, plaintext, None)
    )


def hybrid_decrypt(priv: rsa.RSAPrivateKey, ciphertext: bytes, lbl: bytes) -> bytes:
    if len(ciphertext) < 2:
        raise SealError("sealed value too short")
    n = int.from_bytes(ciphertext[:2], "big")
    if len(ciphertext) < n + 2:
        raise SealError("sealed value too short")
    oaep = padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=lbl or None
    )
    try:
        session = priv.decrypt(ciphertext[2 : n + 2], oaep)
        return AESGCM(session).decrypt(b"\x00" * 12, ciphertext[n + 2 :], None)
    except (ValueError, InvalidTag):
        raise SealError(
            "cannot unseal: wrong private key, modified ciphertext, or sealed for another "
            "name/namespace/scope"
        ) from None


def load_certificate(pem: bytes, where: str, now: datetime) -> rsa.RSAPublicKey:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise KrmError(
            "not a PEM X.509 certificate (expected the controller's cert: `kubeseal --fetch-cert`)",
            where,
        ) from None
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        raise KrmError(
            f"certificate is not valid yet (valid from {start:%Y-%m-%dT%H:%M:%SZ})", where
        )
    if now > end:
        raise KrmError(
            f"certificate expired on {end:%Y-%m-%dT%H:%M:%SZ}: fetch the controller's "
            "current certificate (`kubeseal --fetch-cert`)",
            where,
        )
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise KrmError("the certificate's key is not RSA (sealed-secrets uses RSA keys)", where)
    if pub.key_size < 2048:
        raise KrmError(
            f"the certificate's RSA key is {pub.key_size} bits; expected at least 2048", where
        )
    return pub


def _check_final(
    name: str, namespace: str, scope: str, where: str, ref: ResourceRef | None
) -> None:
    from .config import _DNS_LABEL, _DNS_SUBDOMAIN  # noqa: PLC0415

    if not name or not _DNS_SUBDOMAIN.match(name):
        raise KrmError(f"invalid Secret name {name!r}", where, ref, "metadata.name")
    if scope != "cluster-wide" and not namespace:
        raise KrmError(
            f"a {scope} SealedSecret needs the Secret's final namespace",
            where,
            ref,
            "metadata.namespace",
        )
    if namespace and not _DNS_LABEL.match(namespace):
        raise KrmError(f"invalid namespace {namespace!r}", where, ref, "metadata.namespace")


def scope_annotations(scope: str) -> dict[str, str]:
    if scope == "namespace-wide":
        return {NS_WIDE: "true"}
    if scope == "cluster-wide":
        return {CLUSTER_WIDE: "true"}
    return {}


def seal_secret(
    secret: dict, pub: rsa.RSAPublicKey, scope: str | None, rng: Rng, where: str
) -> dict:
    """A Secret manifest -> a SealedSecret, as `kubeseal` makes it."""
    ref = ResourceRef.of(secret)
    if (
        not isinstance(secret, dict)
        or secret.get("kind") != "Secret"
        or secret.get("apiVersion") != "v1"
    ):
        raise KrmError("expected apiVersion v1, kind Secret", where, ref, "kind")
    meta = secret.get("metadata") or {}
    if not isinstance(meta, dict):
        raise KrmError("expected a mapping", where, ref, "metadata")
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in STRIP}
    if scope is None:
        scope = (
            "cluster-wide"
            if ann.get(CLUSTER_WIDE) == "true"
            else "namespace-wide"
            if ann.get(NS_WIDE) == "true"
            else "strict"
        )
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    _check_final(name, namespace, scope, where, ref)
    values: dict[str, bytes] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            values[k] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            raise KrmError("not valid base64", where, ref, f"data.{k}") from None
    for k, v in (secret.get("stringData") or {}).items():
        if k in values:
            raise KrmError(
                f"duplicate key {k!r} in data and stringData", where, ref, f"stringData.{k}"
            )
        values[k] = str(v).encode("utf-8", "surrogateescape")
    return build_sealed(
        name,
        namespace,
        scope,
        secret.get("type") or "Opaque",
        {k: v for k, v in (meta.get("labels") or {}).items()},
        ann,
        values,
        pub,
        rng,
        immutable=secret.get("immutable"),
    )


def build_sealed(
    name: str,
    namespace: str,
    scope: str,
    secret_type: str,
    labels: dict,
    annotations: dict,
    values: dict[str, bytes],
    pub: rsa.RSAPublicKey,
    rng: Rng,
    immutable: Any = None,
    existing: dict[str, str] | None = None,
) -> dict:
    lbl = label(namespace, name, scope)
    ann = {k: v for k, v in annotations.items() if k not in (NS_WIDE, CLUSTER_WIDE)}
    ann.update(scope_annotations(scope))
    enc = dict(existing or {})
    for k, v in values.items():
        enc[k] = base64.b64encode(hybrid_encrypt(pub, v, lbl, rng)).decode()
    tmeta: dict[str, Any] = {"name": name}
    if namespace:
        tmeta["namespace"] = namespace
    if labels:
        tmeta["labels"] = labels
    if ann:
        tmeta["annotations"] = dict(ann)
    smeta: dict[str, Any] = {"name": name}
    if namespace:
        smeta["namespace"] = namespace
    smeta["annotations"] = {
        **scope_annotations(scope),
        SEALED_FOR: sealed_for(namespace, name, scope),
    }
    template: dict[str, Any] = {"metadata": tmeta, "type": secret_type}
    if immutable is not None:
        template["immutable"] = immutable
    return {
        "apiVersion": API,
        "kind": KIND,
        "metadata": smeta,
        "spec": {"encryptedData": dict(sorted(enc.items())), "template": template},
    }


def scope_of(sealed: dict) -> str:
    ann = (sealed.get("metadata") or {}).get("annotations") or {}
    if ann.get(CLUSTER_WIDE) == "true":
        return "cluster-wide"
    if ann.get(NS_WIDE) == "true":
        return "namespace-wide"
    return "strict"


def unseal(sealed: dict, priv: rsa.RSAPrivateKey) -> dict[str, bytes]:
    meta = sealed.get("metadata") or {}
    lbl = label(str(meta.get("namespace") or ""), str(meta.get("name") or ""), scope_of(sealed))
    out = {}
    for k, v in ((sealed.get("spec") or {}).get("encryptedData") or {}).items():
        try:
            ct = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise SealError(f"encryptedData.{k}: not valid base64") from None
        try:
            out[k] = hybrid_decrypt(priv, ct, lbl)
        except SealError as exc:
            raise SealError(f"encryptedData.{k}: {exc}") from None
    return out


def well_formed(sealed: dict, where: str) -> None:
    """Structural checks that need no key: what `check` does on SealedSecrets."""
    ref = ResourceRef.of(sealed)
    meta = sealed.get("metadata") or {}
    spec = sealed.get("spec") or {}
    scope = scope_of(sealed)
    name, ns = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    _check_final(name, ns, scope, where, ref)
    rec = (meta.get("annotations") or {}).get(SEALED_FOR)
    if rec is not None and rec != sealed_for(ns, name, scope):
        raise KrmError(
            f"sealed for {rec} but its final name is {ns}/{name} ({scope}): the controller "
            "will not unseal it; seal again for the final name and namespace",
            where,
            ref,
            "metadata",
        )
    tmeta = (spec.get("template") or {}).get("metadata") or {}
    for f, v in (("name", name), ("namespace", ns)):
        if tmeta.get(f) not in (None, v):
            raise KrmError(
                f"spec.template.metadata.{f} {tmeta.get(f)!r} differs from metadata.{f} {v!r}",
                where,
                ref,
                f"spec.template.metadata.{f}",
            )
    enc = spec.get("encryptedData")
    if not isinstance(enc, dict) or not enc:
        raise KrmError(
            "expected a non-empty encryptedData mapping", where, ref, "spec.encryptedData"
        )
    for k, v in enc.items():
        try:
            ct = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            raise KrmError("not valid base64", where, ref, f"spec.encryptedData.{k}") from None
        if len(ct) < 2 + 256 + 16 or int.from_bytes(ct[:2], "big") + 2 + 16 > len(ct):
            raise KrmError("too short to be a sealed value", where, ref, f"spec.encryptedData.{k}")


# --- authoring ------------------------------------------------------------------------------


def _pub_for(spec: SecretSpec, ctx: Any, base: Path) -> rsa.RSAPublicKey:
    assert spec.sealed is not None
    path = base / spec.sealed.certificate
    try:
        pem = ctx.read_file(path)
    except OSError as exc:
        raise KrmError(
            f"cannot read certificate {path}: {exc.strerror}",
            spec.file,
            spec.ref,
            "spec.format.sealedSecret.certificate",
        ) from None
    try:
        return load_certificate(pem, str(path), ctx.now())
    except KrmError as exc:
        raise KrmError(
            exc.message, str(path), spec.ref, "spec.format.sealedSecret.certificate"
        ) from None


def generate_sealed(
    spec: SecretSpec,
    existing: dict | None,
    ctx: Any,
    base: Path,
    rotate: frozenset[str] = frozenset(),
    prune: bool = False,
) -> Any:
    from .core import Outcome, produce_value  # noqa: PLC0415

    assert spec.sealed is not None
    scope = spec.sealed.scope
    where = str(base / spec.output)
    _check_final(spec.name, spec.namespace, scope, spec.file or where, spec.ref)
    names = [k.name for k in spec.keys]
    for r in rotate:
        if r not in names:
            raise KrmError(f"no key {r!r} in this Secret", spec.file, spec.ref, "spec.keys")
    keep: dict[str, str] = {}
    reasons: list[str] = []
    if existing is not None:
        ref = ResourceRef.of(existing)
        if existing.get("kind") != KIND or existing.get("apiVersion") != API:
            raise KrmError(
                f"exists but is not a {KIND}; refusing to overwrite it", where, ref, "kind"
            )
        meta = existing.get("metadata") or {}
        if (meta.get("name"), meta.get("namespace") or "", scope_of(existing)) != (
            spec.name,
            spec.namespace,
            scope,
        ):
            raise KrmError(
                f"sealed for {meta.get('namespace')}/{meta.get('name')} ({scope_of(existing)}) "
                "but the "
                f"spec says {spec.namespace}/{spec.name} ({scope}); sealed values cannot be moved: "
                "delete the artifact and run generate again (user-supplied values are asked again)",
                where,
                ref,
                "metadata",
            )
        keep = dict((existing.get("spec") or {}).get("encryptedData") or {})
        tmpl = (existing.get("spec") or {}).get("template") or {}
        if (
            tmpl.get("type", "Opaque") != spec.secret_type
            or (tmpl.get("metadata") or {}).get("labels", {}) != spec.labels
        ):
            reasons.append("template changed")
    missing = [n for n in names if n not in keep]
    extra = sorted(k for k in keep if k not in names)
    if extra and prune:
        reasons.append("pruning keys " + ", ".join(extra))
        keep = {k: v for k, v in keep.items() if k in names}
    elif extra:
        ctx.notes.append(
            f"{where}: keys {', '.join(extra)} are in the artifact but not in {spec.file}: kept; "
            "delete them from the artifact with `krm-secrets generate --prune`"
        )
    if missing:
        reasons.append("missing keys " + ", ".join(missing))
    if rotate:
        reasons.append("rotating " + ", ".join(sorted(rotate)))
    if existing is not None and not reasons:
        return Outcome(None)
    pub = _pub_for(spec, ctx, base)
    values = {
        k.name: produce_value(spec, k, ctx, base)
        for k in spec.keys
        if k.name in missing or k.name in rotate
    }
    _validate_values(spec, values)
    for k in rotate:
        keep.pop(k, None)
    doc = build_sealed(
        spec.name,
        spec.namespace,
        scope,
        spec.secret_type,
        dict(spec.labels),
        dict(spec.annotations),
        values,
        pub,
        ctx.rng,
        existing=keep,
    )
    return Outcome(
        doc,
        added=missing,
        rotated=sorted(rotate),
        reasons=["created"] if existing is None else reasons,
    )


def _validate_values(spec: SecretSpec, values: dict[str, bytes]) -> None:
    import json  # noqa: PLC0415

    if spec.secret_type == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" in values:
        try:
            doc = json.loads(values[".dockerconfigjson"])
            ok = isinstance(doc, dict) and isinstance(doc.get("auths"), dict)
        except ValueError:
            ok = False
        if not ok:
            i = [k.name for k in spec.keys].index(".dockerconfigjson")
            raise KrmError(
                '.dockerconfigjson must be JSON with an "auths" mapping '
                "(kubectl create secret docker-registry --dry-run=client -o yaml makes one)",
                spec.file,
                spec.ref,
                f"spec.keys[{i}]",
            )


def generate_sealed_item(
    spec: SecretSpec, items: list, ctx: Any, base: Path, config_path: str | None
) -> list:
    from .core import find_output_item, place_output_item  # noqa: PLC0415

    cdir, out_path, idx = find_output_item(spec, items, config_path)
    existing = items[idx] if idx is not None else None
    outcome = generate_sealed(spec, existing, ctx, base / cdir)
    if outcome.doc is None:
        return items
    return place_output_item(items, idx, outcome.doc, out_path)


# --- CLI ------------------------------------------------------------------------------------


def cmd_seal(args: Any) -> int:
    from .core import Context  # noqa: PLC0415

    ctx = Context()
    cert_path = Path(args.cert)
    try:
        pem = cert_path.read_bytes()
    except OSError as exc:
        raise KrmError(f"cannot read certificate: {exc.strerror}", str(cert_path)) from None
    pub = load_certificate(pem, str(cert_path), datetime.now(UTC))
    where = "<stdin>" if args.file == "-" else args.file
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise KrmError(f"cannot read: {exc.strerror}", where) from None
    if args.raw:
        scope = args.scope or "strict"
        ns = args.namespace or ""
        _check_final(args.name or ("x" if scope != "strict" else ""), ns, scope, where, None)
        lbl = label(ns, args.name or "", scope)
        sys.stdout.write(base64.b64encode(hybrid_encrypt(pub, raw, lbl, ctx.rng)).decode() + "\n")
        return 0
    try:
        docs = yamlio.load_all(raw)
    except yamlio.YamlError as exc:
        raise KrmError(f"{exc}" + (f" (line {exc.line})" if exc.line else ""), where) from None
    if len(docs) != 1 and not args.batch:
        raise KrmError(f"expected one Secret, found {len(docs)} documents (use --batch)", where)
    out = []
    for d in docs:
        if (
            isinstance(d, dict)
            and args.namespace
            and not (d.get("metadata") or {}).get("namespace")
        ):
            d.setdefault("metadata", {})["namespace"] = args.namespace
        out.append(seal_secret(d, pub, args.scope, ctx.rng, where))
    sys.stdout.write(yamlio.dump_all(out))
    return 0
