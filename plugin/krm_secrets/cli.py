"""krm-secrets: the thin edge. stdin/stdout, files, prompts and exit codes live here only.

Exit codes: 0 success, 1 an error (reported as a KRM result and on stderr), 2 usage error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import age, sops, yamlio
from .config import API_VERSION, KIND_SPEC, SecretSpec, parse_spec
from .core import HEADER, Context, decrypt_secret, generate_sops, process, sops_target
from .errors import KrmError, ResourceRef

if TYPE_CHECKING:
    import argparse

PROG = "krm-secrets"

EPILOG = f"""\
Function configs use apiVersion {API_VERSION}: kind SecretSpec (one Secret to
generate and encrypt) and kind SecretDecryptor (SOPS files to decrypt at build time).
Age keys are looked up as sops does: SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD,
$XDG_CONFIG_HOME/sops/age/keys.txt. Documentation: docs/secrets.md.
Exit codes: 0 ok, 1 error (a KRM result on stdout for `fn`, a line on stderr), 2 usage."""


class UsageError(Exception):
    pass


# --- file helpers ---------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file in the same directory and rename: never half-written."""
    import tempfile  # noqa: PLC0415

    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise KrmError(f"cannot write into {directory}: {exc.strerror}", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise KrmError(f"cannot write: {exc.strerror}", str(path)) from None


def read_yaml_file(path: Path) -> list[Any]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise KrmError(f"cannot read: {exc.strerror}", str(path)) from None
    try:
        return yamlio.load_all(text)
    except yamlio.YamlError as exc:
        line = f" (line {exc.line})" if exc.line else ""
        raise KrmError(f"{exc}{line}", str(path)) from None


def find_specs(paths: Sequence[str]) -> list[tuple[Path, SecretSpec]]:
    """SecretSpec configs in the given files or directories (recursively)."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(f for f in path.rglob("*.yaml") if ".tools" not in f.parts)
            files += sorted(f for f in path.rglob("*.yml") if ".tools" not in f.parts)
        elif path.exists():
            files.append(path)
        else:
            raise KrmError("no such file or directory", str(path))
    specs = []
    for f in files:
        explicit = str(f) in paths
        try:
            docs = read_yaml_file(f)
        except KrmError:
            if explicit:
                raise
            continue  # not ours to judge (a Helm template, a broken unrelated file)
        for d in docs:
            if (
                isinstance(d, dict)
                and d.get("kind") == KIND_SPEC
                and d.get("apiVersion") == API_VERSION
            ):
                specs.append((f, parse_spec(d, str(f))))
        if explicit and not any(f == s for s, _ in specs):
            raise KrmError(f"no {KIND_SPEC} ({API_VERSION}) in this file", str(f))
    return specs


def make_context(interactive: bool) -> Context:
    prompt = None
    if interactive and sys.stdin.isatty():
        import getpass  # noqa: PLC0415

        def prompt(text: str) -> bytes:  # noqa: E306
            return getpass.getpass(f"{text}: ").encode()

    return Context(prompt=prompt)


# --- commands -------------------------------------------------------------------------------


def internal_error(exc: BaseException) -> KrmError:
    """An unexpected exception as a KRM error; KRM_SECRETS_DEBUG=1 re-raises it for a traceback."""
    if os.environ.get("KRM_SECRETS_DEBUG") == "1":
        raise exc
    return KrmError(
        f"internal error ({type(exc).__name__}: {exc}); please report it with the input that "
        "caused it (KRM_SECRETS_DEBUG=1 shows the traceback)"
    )


def execute(rl: Any, ctx: Context, base: Path) -> tuple[dict, list[KrmError]]:
    """The function on a parsed ResourceList: (output ResourceList with results, errors)."""
    try:
        return process(rl, ctx, base), []
    except Exception as exc:  # noqa: BLE001 (a bug must still give a KRM result, not a traceback)
        if not isinstance(exc, KrmError):
            exc = internal_error(exc)
        out = (
            dict(rl)
            if isinstance(rl, dict)
            else {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": []}
        )
        out["results"] = [*(out.get("results") or []), exc.result()]
        return out, [exc]


def cmd_fn(args: argparse.Namespace | None) -> int:
    """Run as a KRM function: a ResourceList on stdin, the ResourceList with results on stdout."""
    raw = sys.stdin.buffer.read()
    ctx = Context()
    try:
        rl: Any = yamlio.load(raw)
    except yamlio.YamlError as exc:
        line = f" (line {exc.line})" if exc.line else ""
        rl = None
        errors = [KrmError(f"stdin is not a ResourceList: {exc}{line}")]
        out = {
            "apiVersion": "config.kubernetes.io/v1",
            "kind": "ResourceList",
            "items": [],
            "results": [errors[0].result()],
        }
    else:
        out, errors = execute(rl, ctx, Path.cwd())
    for note in ctx.notes:
        print(f"{PROG}: warning: {note}", file=sys.stderr)
    sys.stdout.write(yamlio.dump(out))
    for e in errors:
        print(e.line(), file=sys.stderr)
    return 1 if errors else 0


def _artifact_text(doc: dict, config: Path) -> bytes:
    rel = config.name
    name = doc.get("metadata", {}).get("name", "NAME")
    return (HEADER.format(config=rel, name=name) + yamlio.dump(doc)).encode()


def _generate_one(
    cfg: Path, spec: SecretSpec, ctx: Context, rotate: frozenset[str], prune: bool = False
) -> list[str]:
    base = cfg.parent
    artifact = base / spec.output
    existing = None
    if artifact.exists():
        docs = read_yaml_file(artifact)
        if len(docs) != 1:
            raise KrmError(f"expected exactly one document, found {len(docs)}", str(artifact))
        existing = docs[0]
    if spec.sealed is not None:
        from .sealed import generate_sealed  # noqa: PLC0415

        outcome = generate_sealed(spec, existing, ctx, base, rotate, prune)
    else:
        recips, rules = sops_target(spec, artifact)
        outcome = generate_sops(
            spec, existing, ctx, base, spec.output, recips, rules, rotate, prune
        )
    if outcome.doc is None:
        return [f"{artifact}: up to date"]
    atomic_write(artifact, _artifact_text(outcome.doc, cfg))
    msg = f"{artifact}: written ({'; '.join(outcome.reasons)})"
    return [msg]


def cmd_generate(args: argparse.Namespace) -> int:
    ctx = make_context(not args.non_interactive)
    specs = find_specs(args.paths)
    if not specs:
        raise KrmError(f"no {KIND_SPEC} configs found in {', '.join(args.paths)}")
    for cfg, spec in specs:
        for line in _generate_one(cfg, spec, ctx, frozenset(), args.prune):
            print(line)
    for note in ctx.notes:
        print(f"{PROG}: warning: {note}", file=sys.stderr)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    ctx = make_context(not args.non_interactive)
    if "/" not in args.target:
        raise UsageError("expected NAME/KEY, e.g. postgres-secrets/POSTGRES_PASSWORD")
    name, key = args.target.split("/", 1)
    specs = [(c, s) for c, s in find_specs([args.path]) if s.name == name]
    if not specs:
        raise KrmError(f"no {KIND_SPEC} for Secret {name!r} in {args.path}")
    cfg, spec = specs[0]
    ks = spec.key(key)
    if ks is None:
        raise KrmError(
            f"Secret {name} has no key {key!r} (keys: {', '.join(k.name for k in spec.keys)})",
            str(cfg),
            spec.ref,
            "spec.keys",
        )
    for line in _generate_one(cfg, spec, ctx, frozenset({key})):
        print(line)
    print(f"Rotated {spec.namespace}/{name} {key}. What must follow:")
    if ks.after_rotation:
        print("  " + ks.after_rotation.strip().replace("\n", "\n  "))
    print(
        "  Commit the artifact; the next build gives the Secret a new hash suffix, so the pods "
        "that use it roll."
    )
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    ident = age.Identity.generate()
    text = age.keygen_text(ident, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if args.output:
        out = Path(args.output)
        if out.exists() and not args.force:
            raise KrmError("exists; refusing to overwrite a key (use --force)", str(out))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KrmError(f"cannot create directory: {exc.strerror}", str(out.parent)) from None
        atomic_write(out, text.encode(), mode=0o600)
        print(f"Public key: {ident.recipient}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_decrypt(args: argparse.Namespace) -> int:
    ctx = Context()
    docs = read_yaml_file(Path(args.file))
    out = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "Secret":
            out.append(decrypt_secret(d, ctx, args.file))
        elif sops.is_sops_document(d):
            ring = ctx.keys()
            try:
                opened = sops.open_document(d, ring.identities, ring.tried)
            except sops.SopsError as exc:
                raise KrmError(
                    str(exc), args.file, ResourceRef.of(d), exc.field_path, tried=exc.tried
                ) from None
            out.append(opened.tree)
        else:
            raise KrmError("not a SOPS-encrypted document", args.file, ResourceRef.of(d), "sops")
    if not args.keep_hash_annotation:
        for d in out:
            ann = (d.get("metadata") or {}).get("annotations") or {}
            ann.pop("kustomize.config.k8s.io/needs-hash", None)
            if not ann and isinstance(d.get("metadata"), dict):
                d["metadata"].pop("annotations", None)
    sys.stdout.write(yamlio.dump_all(out))
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    from .sealed import cmd_seal as impl  # noqa: PLC0415

    return impl(args)


def cmd_check(args: argparse.Namespace) -> int:
    from .check import cmd_check as impl  # noqa: PLC0415

    return impl(args)


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415 (the KRM function path skips argparse: faster builds)

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Generate, encrypt (SOPS/age, SealedSecret) and decrypt Kubernetes Secrets; "
        "a KRM function and a CLI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, desc: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=desc or help_,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    s = add(
        "fn",
        "run as a KRM function (ResourceList on stdin, on stdout); what kustomize runs",
        "Run as a KRM function: read a ResourceList on stdin, write it on stdout. With a "
        "SecretDecryptor config (kustomize build --enable-alpha-plugins --enable-exec) it "
        "decrypts SOPS files into Secrets; with a SecretSpec config (kustomize fn run) it "
        "writes the encrypted artifact next to the config.",
    )
    s.set_defaults(func=cmd_fn)

    s = add(
        "generate",
        "create missing values and write encrypted artifacts next to their configs",
        "For each SecretSpec in PATH (files, or directories searched recursively): create the "
        "values that are missing, never change one that exists, and write the encrypted "
        "artifact next to the config, atomically. A second run changes nothing.",
    )
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument(
        "--non-interactive", action="store_true", help="never prompt for user-supplied values"
    )
    s.add_argument(
        "--prune",
        action="store_true",
        help="remove keys from artifacts that their SecretSpec no longer names (needs the key)",
    )
    s.set_defaults(func=cmd_generate)

    s = add(
        "rotate",
        "replace one value (NAME/KEY) and say what must follow",
        "Replace the value of one key of one Secret (generated again, or read again from the "
        "environment, file or prompt), keep every other value, and print what must follow "
        "(for a database password: the role's password in the running database).",
    )
    s.add_argument("path", metavar="PATH", help="a SecretSpec file or a directory holding it")
    s.add_argument(
        "target",
        metavar="NAME/KEY",
        help="Secret name and key, e.g. postgres-secrets/POSTGRES_PASSWORD",
    )
    s.add_argument(
        "--non-interactive", action="store_true", help="never prompt for user-supplied values"
    )
    s.set_defaults(func=cmd_rotate)

    s = add(
        "keygen",
        "make an age key pair (like age-keygen)",
        "Make an age X25519 key pair in age-keygen's format. Prints the key to stdout, or "
        "writes it (mode 0600) to --output and prints the public key on stderr. Put the "
        "public key in .sops.yaml creation_rules.",
    )
    s.add_argument("-o", "--output", help="write the key file here (refuses to overwrite)")
    s.add_argument("--force", action="store_true", help="overwrite an existing key file")
    s.set_defaults(func=cmd_keygen)

    s = add(
        "decrypt",
        "decrypt a SOPS file to stdout (for debugging)",
        "Decrypt a SOPS-encrypted file to stdout, checking its MAC. Secrets come out with all "
        "values in data (base64). Never redirect this into the repository.",
    )
    s.add_argument("file", metavar="FILE")
    s.add_argument("--keep-hash-annotation", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_decrypt)

    s = add(
        "seal",
        "seal a Secret into a SealedSecret offline with the controller's certificate",
        "Seal a Secret manifest (file or - for stdin) into a SealedSecret "
        "(bitnami.com/v1alpha1) with the controller's public certificate, offline. Checks "
        "the certificate's validity and the Secret's final name and namespace.",
    )
    s.add_argument("file", metavar="FILE", help="Secret manifest, or - for stdin")
    s.add_argument("--cert", required=True, help="the controller's certificate (PEM)")
    s.add_argument(
        "--scope",
        choices=("strict", "namespace-wide", "cluster-wide"),
        default=None,
        help="default: the Secret's sealedsecrets.bitnami.com/* annotations, else strict",
    )
    s.add_argument("--namespace", help="namespace if the Secret has none")
    s.add_argument(
        "--raw", action="store_true", help="print only the sealed value of --from-file data"
    )
    s.add_argument("--name", help="with --raw: the Secret name (strict scope)")
    s.add_argument(
        "--batch", action="store_true", help="FILE holds many Secrets (one document each)"
    )
    s.set_defaults(func=cmd_seal)

    s = add(
        "check",
        "verify every artifact: decrypts or is well-formed, no plaintext, MACs hold",
        "Check every SecretSpec artifact and every SOPS / SealedSecret file under PATH: SOPS "
        "files decrypt and their MACs hold (or, without a key, are well-formed); SealedSecrets "
        "are well-formed for their scope; no plaintext Secret is committed.",
    )
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--no-decrypt", action="store_true", help="check form only, do not decrypt")
    s.set_defaults(func=cmd_check)
    return p


def run(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv and not sys.stdin.isatty():
        argv = ["fn"]  # kustomize runs `exec: {path: krm-secrets}` without arguments
    if argv == ["fn"]:
        return cmd_fn(None)  # the hot path of every kustomize build: no argparse
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: usage error: {exc}", file=sys.stderr)
        return 2
    except KrmError as exc:
        print(exc.line(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        print(internal_error(exc).line(), file=sys.stderr)
        return 1


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
