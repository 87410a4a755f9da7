"""`krm-secrets check`: every artifact decrypts (or is well-formed), MACs hold, no plaintext.

Reports every problem (not just the first) as a line on stderr and exits 1 if there was one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import age, sops, yamlio
from .config import API_VERSION, KIND_SPEC, parse_spec
from .core import Context
from .errors import KrmError, ResourceRef
from .sealed import API as SEALED_API
from .sealed import KIND as SEALED_KIND
from .sealed import well_formed


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += sorted(
                f
                for f in path.rglob("*")
                if f.suffix in (".yaml", ".yml")
                and f.is_file()
                and not any(part in (".git", ".tools", "node_modules") for part in f.parts)
            )
        elif path.is_file() or p == "-":
            out.append(path)
        else:
            raise KrmError("no such file or directory", p)
    return out


def sops_form(doc: dict, where: str) -> None:
    """Well-formedness of a SOPS document without its key."""
    ref = ResourceRef.of(doc)
    try:
        stanzas = sops.age_stanzas(doc)
        meta = doc["sops"]
        for f in ("mac", "lastmodified", "version"):
            if not isinstance(meta.get(f), str):
                raise sops.SopsError(f"sops.{f} missing", f"sops.{f}")
        sops._parse_enc(meta["mac"])
        for i, (recipient, enc) in enumerate(stanzas):
            age.Recipient.parse(recipient)
            if age.recipients_of(age.dearmor(enc)) < 1:
                raise sops.SopsError("age stanza has no recipients", f"sops.age[{i}]")
        rules = sops.Rules.from_metadata(meta)
        body = {k: v for k, v in doc.items() if k != "sops"}

        def leaf(value: Any, path: list[str]) -> Any:
            if rules.should_encrypt(path) and value != "":
                if not isinstance(value, str):
                    raise sops.SopsError(
                        "plaintext value where an encrypted one is expected", ".".join(path)
                    )
                try:
                    sops._parse_enc(value)
                except sops.SopsError as exc:
                    raise sops.SopsError(
                        f"plaintext or malformed value: {exc}", ".".join(path)
                    ) from None
            return value

        sops._walk(body, [], leaf)
    except (sops.SopsError, age.AgeError) as exc:
        raise KrmError(str(exc), where, ref, getattr(exc, "field_path", None)) from None


def check_doc(doc: Any, where: str, ctx: Context, decrypt: bool) -> str:
    if not isinstance(doc, dict):
        return "skipped"
    ref = ResourceRef.of(doc)
    if sops.is_sops_document(doc):
        sops_form(doc, where)
        if decrypt:
            ring = ctx.keys()
            try:
                sops.open_document(doc, ring.identities, ring.tried)
            except sops.MissingKey:
                return "well-formed (no age key to verify the MAC)"
            except sops.SopsError as exc:
                raise KrmError(str(exc), where, ref, exc.field_path, tried=exc.tried) from None
            return "decrypts, MAC holds"
        return "well-formed"
    if doc.get("apiVersion") == SEALED_API and doc.get("kind") == SEALED_KIND:
        well_formed(doc, where)
        return "well-formed SealedSecret"
    if doc.get("apiVersion") == "v1" and doc.get("kind") == "Secret":
        for section in ("data", "stringData"):
            values = doc.get(section) or {}
            if isinstance(values, dict) and any(v not in ("", None) for v in values.values()):
                raise KrmError(
                    f"plaintext Secret committed ({section} has values and no SOPS encryption): "
                    "describe it in a SecretSpec and commit the encrypted artifact instead",
                    where,
                    ref,
                    section,
                )
        return "Secret without values"
    if doc.get("apiVersion") == API_VERSION and doc.get("kind") == KIND_SPEC:
        spec = parse_spec(doc, where)
        artifact = Path(where).parent / spec.output
        if not artifact.exists():
            raise KrmError(
                f"its artifact {spec.output} does not exist: run `krm-secrets generate {where}`",
                where,
                spec.ref,
                "spec.output",
            )
        art = yamlio.load(artifact.read_bytes())
        if spec.sops is not None:
            have = set(art.get("data") or {}) | set(art.get("stringData") or {})
        else:
            have = set((art.get("spec") or {}).get("encryptedData") or {})
        missing = [k.name for k in spec.keys if k.name not in have]
        if missing:
            raise KrmError(
                f"{spec.output} lacks keys {', '.join(missing)}: "
                f"run `krm-secrets generate {where}`",
                where,
                spec.ref,
                "spec.keys",
            )
        return "spec matches its artifact"
    return "skipped"


def check_paths(
    paths: list[str], decrypt: bool, ctx: Context | None = None
) -> tuple[list[str], list[KrmError]]:
    ctx = ctx or Context()
    lines: list[str] = []
    errors: list[KrmError] = []
    for f in _files(paths):
        where = "<stdin>" if str(f) == "-" else str(f)
        try:
            raw = sys.stdin.buffer.read() if str(f) == "-" else f.read_bytes()
            docs = yamlio.load_all(raw)
        except OSError as exc:
            errors.append(KrmError(f"cannot read: {exc.strerror}", where))
            continue
        except yamlio.YamlError as exc:
            if f.name.startswith(".") or "{{" in raw.decode("utf-8", "replace"):
                continue
            errors.append(KrmError(f"{exc}" + (f" (line {exc.line})" if exc.line else ""), where))
            continue
        for d in docs:
            try:
                what = check_doc(d, where, ctx, decrypt)
            except KrmError as exc:
                errors.append(exc)
                continue
            if what != "skipped":
                lines.append(f"{where}: {ResourceRef.of(d)}: {what}")
    return lines, errors


def cmd_check(args: Any) -> int:
    lines, errors = check_paths(args.paths, not args.no_decrypt)
    for line in lines:
        print(line)
    for e in errors:
        print(e.line(), file=sys.stderr)
    print(f"krm-secrets check: {len(lines)} ok, {len(errors)} errors", file=sys.stderr)
    return 1 if errors else 0
