"""The function itself: pure transforms over parsed configs and documents.

Effects (randomness, time, keys, the environment, reading files, prompting) come in through
`Context`, so tests can seed and fake them.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import age, sops, yamlio
from .config import (
    API_VERSION,
    KIND_DECRYPTOR,
    KIND_RECEIPT,
    KIND_SPEC,
    DecryptorSpec,
    KeySpec,
    SecretSpec,
    parse_decryptor,
    parse_spec,
)
from .errors import KrmError, ResourceRef
from .keys import KeyRing, SopsConfigError, creation_rule_for, load_identities

NEEDS_HASH = "kustomize.config.k8s.io/needs-hash"
LOCAL_CONFIG = "config.kubernetes.io/local-config"
KIO_ANNOTATION_PREFIXES = (
    "config.kubernetes.io/",
    "internal.config.kubernetes.io/",
    "config.k8s.io/",
)
PATH_ANNOTATIONS = ("internal.config.kubernetes.io/path", "config.kubernetes.io/path")
HEADER = (
    "# Written by krm-secrets from {config}: do not edit by hand.\n"
    "# Change {config}, then run `krm-secrets generate` on it.\n"
)


def _urandom(n: int) -> bytes:
    return os.urandom(n)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    rng: Callable[[int], bytes] = _urandom
    now: Callable[[], datetime] = _now
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    read_file: Callable[[Path], bytes] = Path.read_bytes
    prompt: Callable[[str], bytes] | None = None
    keyring: KeyRing | None = None
    notes: list[str] = field(default_factory=list)

    def keys(self) -> KeyRing:
        if self.keyring is None:
            self.keyring = load_identities(self.env)
        return self.keyring


# --- values ---------------------------------------------------------------------------------


def random_string(rng: Callable[[int], bytes], length: int, alphabet: str) -> str:
    """Uniform characters from alphabet, by rejection sampling of random bytes."""
    n = len(alphabet)
    limit = 256 - (256 % n)
    out: list[str] = []
    while len(out) < length:
        for b in rng(length * 2):
            if b < limit:
                out.append(alphabet[b % n])
                if len(out) == length:
                    break
    return "".join(out)


def produce_value(spec: SecretSpec, key: KeySpec, ctx: Context, base: Path) -> bytes:
    field_path = f"spec.keys[{spec.keys.index(key)}]"
    if key.literal is not None:
        return key.literal
    if key.generate is not None:
        g = key.generate
        if g.random_bytes is not None:
            raw = ctx.rng(g.random_bytes)
            return {
                "base64": lambda: base64.b64encode(raw),
                "base64url": lambda: base64.urlsafe_b64encode(raw).rstrip(b"="),
                "hex": lambda: raw.hex().encode(),
                "raw": lambda: raw,
            }[g.encoding]()
        return random_string(ctx.rng, g.length, g.alphabet).encode()
    fu = key.from_user
    assert fu is not None
    tried = []
    if fu.env:
        if fu.env in ctx.env:
            return ctx.env[fu.env].encode("utf-8", "surrogateescape")
        tried.append(f"environment variable {fu.env} (not set)")
    if fu.file:
        path = base / fu.file
        try:
            return ctx.read_file(path)
        except OSError as exc:
            tried.append(f"file {path} ({exc.strerror})")
    if fu.prompt:
        if ctx.prompt is not None:
            return ctx.prompt(f"{spec.name}/{key.name}: {fu.prompt}")
        tried.append("prompt (not interactive: no terminal on stdin)")
    raise KrmError(
        f"no value for user-supplied key {key.name}",
        spec.file,
        spec.ref,
        f"{field_path}.fromUser",
        tried=tried,
    )


def secret_tree(spec: SecretSpec, values: dict[str, bytes]) -> dict:
    meta: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace}
    if spec.labels:
        meta["labels"] = dict(spec.labels)
    if spec.annotations:
        meta["annotations"] = dict(spec.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": spec.secret_type,
        "data": {k: base64.b64encode(v).decode() for k, v in values.items()},
    }


# --- SOPS authoring ------------------------------------------------------------------------


def _plain_skeleton(doc: dict) -> dict:
    """The plaintext part of a Secret (everything but data/stringData and sops)."""
    return {k: v for k, v in doc.items() if k not in ("data", "stringData", "sops")}


@dataclass
class Outcome:
    doc: dict | None  # the new artifact, or None when nothing changed
    added: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def sops_target(spec: SecretSpec, artifact: Path) -> tuple[tuple[str, ...], sops.Rules]:
    assert spec.sops is not None
    if spec.sops.recipients:
        return spec.sops.recipients, spec.sops.rules or sops.Rules()
    try:
        rule = creation_rule_for(artifact)
    except SopsConfigError as exc:
        raise KrmError(
            str(exc), exc.file or spec.file, spec.ref, "spec.format.sops.recipients"
        ) from None
    return rule.recipients, spec.sops.rules or rule.rules


def generate_sops(
    spec: SecretSpec,
    existing: dict | None,
    ctx: Context,
    base: Path,
    artifact_name: str,
    recipients: tuple[str, ...],
    rules: sops.Rules,
    rotate: frozenset[str] = frozenset(),
    prune: bool = False,
) -> Outcome:
    """Create missing values, never change existing ones (except the keys named in `rotate`).

    Keys in the artifact that the spec no longer names are kept (with a warning), or removed
    with `prune`."""
    try:
        recips = [age.Recipient.parse(r) for r in recipients]
    except age.AgeError as exc:
        raise KrmError(str(exc), spec.file, spec.ref, "spec.format.sops.recipients") from None
    desired_keys = [k.name for k in spec.keys]
    for r in rotate:
        if r not in desired_keys:
            raise KrmError(
                f"no key {r!r} in this Secret (keys: {', '.join(desired_keys)})",
                spec.file,
                spec.ref,
                "spec.keys",
            )
    if existing is None:
        values = {k.name: produce_value(spec, k, ctx, base) for k in spec.keys}
        doc = sops.seal_document(
            secret_tree(spec, values), recips, rules, rng=ctx.rng, now=ctx.now()
        )
        return Outcome(doc, added=desired_keys, reasons=["created"])

    where = f"{base / artifact_name}"
    if not sops.is_sops_document(existing):
        raise KrmError(
            f"{artifact_name} exists but is not a SOPS-encrypted file; refusing to overwrite it",
            where,
            ResourceRef.of(existing),
            "sops",
        )
    have = set()
    for section in ("data", "stringData"):
        part = existing.get(section) or {}
        if not isinstance(part, dict):
            raise KrmError(
                f"expected a mapping in {section}", where, ResourceRef.of(existing), section
            )
        have |= set(part)
    missing = [k for k in desired_keys if k not in have]
    extra = sorted(have - set(desired_keys))
    skeleton = _plain_skeleton(secret_tree(spec, {}))
    file_recips = sorted(r for r, _ in sops.age_stanzas(existing))
    reasons = []
    if missing:
        reasons.append("missing keys " + ", ".join(missing))
    if rotate:
        reasons.append("rotating " + ", ".join(sorted(rotate)))
    if _plain_skeleton(existing) != skeleton:
        reasons.append("metadata changed")
    if file_recips != sorted(str(r) for r in recips):
        reasons.append("recipients changed")
    if extra and prune:
        reasons.append("pruning keys " + ", ".join(extra))
    elif extra:
        ctx.notes.append(
            f"{where}: keys {', '.join(extra)} are in the artifact but not in {spec.file}: kept; "
            "delete them from the artifact with `krm-secrets generate --prune`"
        )
    if not reasons:
        return Outcome(None)

    ring = ctx.keys()
    try:
        opened = sops.open_document(existing, ring.identities, ring.tried)
    except sops.SopsError as exc:
        raise KrmError(
            f"cannot update {artifact_name} ({'; '.join(reasons)}) without opening it: {exc}",
            where,
            ResourceRef.of(existing),
            exc.field_path,
            tried=exc.tried,
        ) from None
    tree = opened.tree
    data = dict(tree.get("data") or {})
    for k, v in (tree.get("stringData") or {}).items():
        data[k] = base64.b64encode(sops.to_bytes(v)).decode()
    new_data: dict[str, str] = {}
    for k in spec.keys:
        if k.name in data and k.name not in rotate:
            new_data[k.name] = data[k.name]
        else:
            new_data[k.name] = base64.b64encode(produce_value(spec, k, ctx, base)).decode()
    if not prune:
        for k in extra:
            new_data[k] = data[k]
    new_tree = {**skeleton, "data": new_data}
    same_recips = file_recips == sorted(str(r) for r in recips)
    doc = sops.seal_document(
        new_tree,
        recips,
        opened.rules if same_recips else rules,
        rng=ctx.rng,
        now=ctx.now(),
        data_key=opened.data_key,
        stash=opened.stash,
        age_entries=existing["sops"]["age"] if same_recips else None,
    )
    return Outcome(doc, added=missing, rotated=sorted(rotate), reasons=reasons)


# --- SOPS build time -------------------------------------------------------------------------


def decrypt_secret(doc: Any, ctx: Context, where: str) -> dict:
    """A SOPS-encrypted Secret -> a plain Secret (data only, base64), sops metadata removed."""
    if not isinstance(doc, dict):
        raise KrmError("expected a SOPS-encrypted Secret mapping", where)
    ref = ResourceRef.of(doc)
    if doc.get("kind") != "Secret" or doc.get("apiVersion") != "v1":
        raise KrmError(
            f"expected apiVersion v1, kind Secret, found {doc.get('apiVersion')!r}, "
            f"{doc.get('kind')!r}",
            where,
            ref,
            "kind",
        )
    if not sops.is_sops_document(doc):
        raise KrmError(
            "not SOPS-encrypted (no top-level 'sops' mapping): a plaintext Secret must "
            "not be committed",
            where,
            ref,
            "sops",
        )
    ring = ctx.keys()
    try:
        opened = sops.open_document(doc, ring.identities, ring.tried)
    except sops.SopsError as exc:
        raise KrmError(str(exc), where, ref, exc.field_path, tried=exc.tried) from None
    tree = opened.tree
    data: dict[str, str] = {}
    for k, v in (tree.get("data") or {}).items():
        if not isinstance(v, str):
            raise KrmError(
                f"expected a base64 string, found {type(v).__name__}", where, ref, f"data.{k}"
            )
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise KrmError("not valid base64", where, ref, f"data.{k}") from None
        data[k] = v
    for k, v in (tree.get("stringData") or {}).items():
        if k in data:
            raise KrmError(
                f"duplicate key {k!r} in data and stringData", where, ref, f"stringData.{k}"
            )
        if isinstance(v, dict | list) or v is None:
            raise KrmError("expected a string", where, ref, f"stringData.{k}")
        data[k] = base64.b64encode(sops.to_bytes(v)).decode()
    out = {k: v for k, v in tree.items() if k not in ("data", "stringData")}
    meta = dict(out.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), NEEDS_HASH: "true"}
    out["metadata"] = meta
    out["data"] = dict(sorted(data.items()))
    return out


def receipt(name: str) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_RECEIPT,
        "metadata": {"name": name, "annotations": {LOCAL_CONFIG: "true"}},
    }


def run_decryptor(spec: DecryptorSpec, items: list[dict], ctx: Context, base: Path) -> list[dict]:
    others = [i for i in items if not (isinstance(i, dict) and i.get("kind") == KIND_DECRYPTOR)]
    if others:
        raise KrmError(
            f"{KIND_DECRYPTOR} is a kustomize generator (kustomize build --enable-alpha-plugins "
            "--enable-exec); it got input resources, so it is being run by `kustomize fn run` or "
            "`kpt fn eval`, which would write decrypted Secrets to disk. Refusing.",
            spec.file,
            spec.ref,
            "kind",
        )
    out = list(items)
    seen: dict[tuple[str, str], str] = {}
    for i, name in enumerate(spec.files):
        path = base / name
        where = str(path)
        try:
            text = ctx.read_file(path)
        except OSError as exc:
            raise KrmError(
                f"cannot read SOPS file {path}: {exc.strerror}",
                spec.file,
                spec.ref,
                f"spec.files[{i}]",
            ) from None
        try:
            docs = yamlio.load_all(text)
        except yamlio.YamlError as exc:
            line = f" (line {exc.line})" if exc.line else ""
            raise KrmError(f"{exc}{line}", where, spec.ref, f"spec.files[{i}]") from None
        if len(docs) != 1:
            raise KrmError(
                f"expected one SOPS-encrypted Secret per file, found {len(docs)} documents",
                where,
                spec.ref,
                f"spec.files[{i}]",
            )
        secret = decrypt_secret(docs[0], ctx, where)
        ident = (secret["metadata"].get("namespace", ""), secret["metadata"].get("name", ""))
        if ident in seen:
            raise KrmError(
                f"Secret {ident[0]}/{ident[1]} is in both {seen[ident]} and {name}",
                where,
                ResourceRef.of(secret),
                "metadata.name",
            )
        seen[ident] = name
        out.append(secret)
    out.append(receipt(spec.name))
    return out


# --- ResourceList ---------------------------------------------------------------------------


def item_path(item: dict) -> str | None:
    meta = item.get("metadata") if isinstance(item, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(ann, dict):
        return None
    for a in PATH_ANNOTATIONS:
        if a in ann:
            return str(ann[a])
    return None


def find_output_item(
    spec: SecretSpec, items: list, config_path: str | None
) -> tuple[str, str, int | None]:
    """(folder of the config, path of its artifact, index of the artifact among items or None)."""
    cdir = os.path.dirname(config_path) if config_path else ""
    out_path = os.path.normpath(os.path.join(cdir, spec.output))
    idx = next(
        (
            i
            for i, it in enumerate(items)
            if isinstance(it, dict)
            and item_path(it)
            and os.path.normpath(item_path(it)) == out_path
        ),
        None,
    )
    return cdir, out_path, idx


def place_output_item(items: list, idx: int | None, doc: dict, out_path: str) -> list:
    """items with doc, annotated with its path, in place of item idx (or appended)."""
    doc["metadata"] = dict(doc["metadata"])
    doc["metadata"]["annotations"] = {
        **(doc["metadata"].get("annotations") or {}),
        "config.kubernetes.io/path": out_path,
        "internal.config.kubernetes.io/path": out_path,
    }
    items = list(items)
    if idx is None:
        items.append(doc)
    else:
        items[idx] = doc
    return items


def run_spec_in_list(
    spec: SecretSpec, items: list[dict], ctx: Context, base: Path, config_path: str | None
) -> list[dict]:
    """`kustomize fn run`: write the artifact as an item next to the config."""
    if spec.sealed is not None:
        from .sealed import generate_sealed_item  # noqa: PLC0415

        return generate_sealed_item(spec, items, ctx, base, config_path)
    cdir, out_path, existing_idx = find_output_item(spec, items, config_path)
    existing = None
    if existing_idx is not None:
        existing = {k: v for k, v in items[existing_idx].items()}
        existing["metadata"] = dict(existing.get("metadata") or {})
        ann = {
            k: v
            for k, v in (existing["metadata"].get("annotations") or {}).items()
            if not k.startswith(KIO_ANNOTATION_PREFIXES)
        }
        if ann:
            existing["metadata"]["annotations"] = ann
        else:
            existing["metadata"].pop("annotations", None)
    recips, rules = sops_target(spec, base / out_path)
    outcome = generate_sops(spec, existing, ctx, base / cdir, out_path, recips, rules)
    if outcome.doc is None:
        return items
    return place_output_item(items, existing_idx, outcome.doc, out_path)


def process(resource_list: Any, ctx: Context, base: Path) -> dict:
    """ResourceList in, ResourceList out. Raises KrmError; the caller adds it to `results`."""
    if not isinstance(resource_list, dict) or resource_list.get("kind") != "ResourceList":
        raise KrmError("expected a ResourceList (config.kubernetes.io/v1) on stdin")
    items = resource_list.get("items") or []
    if not isinstance(items, list):
        raise KrmError("ResourceList.items must be a list", field_path="items")
    fc = resource_list.get("functionConfig")
    if not isinstance(fc, dict):
        raise KrmError(
            f"missing functionConfig: expected a {KIND_SPEC} or {KIND_DECRYPTOR}",
            field_path="functionConfig",
        )
    kind = fc.get("kind")
    cfg_path = item_path(fc)
    if cfg_path and not (base / cfg_path).exists():
        raise KrmError(
            f"the function config's path {cfg_path} is not under the working directory {base}: "
            "kustomize runs exec functions in the current directory and gives paths relative to "
            "the "
            "package, so run `kustomize fn run . --enable-exec` from the package directory "
            "(or use `krm-secrets generate DIR`, which works from anywhere)",
            resource=ResourceRef.of(fc),
            field_path="metadata.annotations",
        )
    if kind == KIND_DECRYPTOR:
        spec = parse_decryptor(fc, cfg_path)
        items = run_decryptor(spec, items, ctx, base)
    elif kind == KIND_SPEC:
        spec2 = parse_spec(fc, cfg_path)
        items = run_spec_in_list(spec2, items, ctx, base, item_path(fc))
    else:
        raise KrmError(
            f"unknown functionConfig kind {kind!r}: expected {KIND_SPEC} or {KIND_DECRYPTOR} "
            f"({API_VERSION})",
            field_path="functionConfig.kind",
            resource=ResourceRef.of(fc),
        )
    return {**resource_list, "items": items}
