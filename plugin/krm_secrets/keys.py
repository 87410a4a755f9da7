"""Where age identities and recipients come from, following SOPS's conventions.

Identities (private keys), all of them loaded, as `sops` does:
  SOPS_AGE_KEY (the keys themselves), SOPS_AGE_KEY_FILE (a file), SOPS_AGE_KEY_CMD (a command
  printing keys), and $XDG_CONFIG_HOME/sops/age/keys.txt (~/.config/... when unset).
Recipients: spec.format.sops.recipients, else the first `.sops.yaml` creation rule (searched
from the artifact's directory upwards) whose path_regex matches the artifact's path relative to
the `.sops.yaml` directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import age, yamlio
from .sops import DEFAULT_ENCRYPTED_REGEX, Rules


@dataclass
class KeyRing:
    identities: list[age.Identity]
    tried: list[str]
    problems: list[str]


def default_key_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "sops" / "age" / "keys.txt"


def resolve_key_file(path: str, cwd: Path) -> Path:
    """A relative SOPS_AGE_KEY_FILE: from the working directory, then its parents.

    kustomize runs exec functions in the kustomization's directory, so the directory where the
    user typed `SOPS_AGE_KEY_FILE=tests/keys/... kustomize build overlays/lab` is unknown to us;
    looking upwards finds the repository-relative path from any overlay.
    """
    p = Path(path)
    if p.is_absolute():
        return p
    for d in [cwd, *cwd.parents]:
        if (d / p).is_file():
            return d / p
    return cwd / p


def load_identities(env: Mapping[str, str], cwd: Path | None = None) -> KeyRing:
    cwd = (cwd or Path.cwd()).resolve()
    ids: list[age.Identity] = []
    tried: list[str] = []
    problems: list[str] = []

    def add(text: str, source: str) -> None:
        try:
            found = age.parse_identities(text, source)
        except age.AgeError as exc:
            problems.append(str(exc))
            tried.append(f"{source} (unreadable: {exc})")
            return
        ids.extend(found)
        recips = ", ".join(str(i.recipient) for i in found) or "no keys"
        tried.append(f"{source} ({recips})")

    if "SOPS_AGE_KEY" in env:
        add(env["SOPS_AGE_KEY"], "SOPS_AGE_KEY")
    else:
        tried.append("SOPS_AGE_KEY (not set)")
    if "SOPS_AGE_KEY_FILE" in env:
        path = env["SOPS_AGE_KEY_FILE"]
        found = resolve_key_file(path, cwd)
        try:
            add(
                found.read_text(),
                f"SOPS_AGE_KEY_FILE={path}" + (f" ({found})" if str(found) != path else ""),
            )
        except OSError as exc:
            where = (
                f"{path} (looked in {cwd} and its parents)"
                if not Path(path).is_absolute()
                else path
            )
            problems.append(f"SOPS_AGE_KEY_FILE={where}: {exc.strerror}")
            tried.append(f"SOPS_AGE_KEY_FILE={where}: {exc.strerror}")
    else:
        tried.append("SOPS_AGE_KEY_FILE (not set)")
    if "SOPS_AGE_KEY_CMD" in env:
        cmd = env["SOPS_AGE_KEY_CMD"]
        import shlex  # noqa: PLC0415
        import subprocess  # noqa: PLC0415

        try:
            out = subprocess.run(
                shlex.split(cmd), capture_output=True, text=True, check=True, timeout=60
            )
            add(out.stdout, f"SOPS_AGE_KEY_CMD={cmd}")
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            problems.append(f"SOPS_AGE_KEY_CMD={cmd}: {exc}")
            tried.append(f"SOPS_AGE_KEY_CMD={cmd} (failed: {exc})")
    default = default_key_file(env)
    try:
        add(default.read_text(), str(default))
    except FileNotFoundError:
        tried.append(f"{default} (absent)")
    except OSError as exc:
        tried.append(f"{default} ({exc.strerror})")
    return KeyRing(ids, tried, problems)


@dataclass(frozen=True)
class CreationRule:
    config_file: Path
    recipients: tuple[str, ...]
    rules: Rules


class SopsConfigError(Exception):
    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.file = file


def find_sops_config(start: Path) -> Path | None:
    d = start.resolve()
    for cand in [d, *d.parents]:
        f = cand / ".sops.yaml"
        if f.is_file():
            return f
    return None


def _listish(v: object) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return [x.strip() for x in v]
    raise ValueError(f"expected a string or a list of strings, found {v!r}")


def creation_rule_for(artifact: Path) -> CreationRule:
    """Find the .sops.yaml creation rule for an artifact path, as sops does."""
    cfg = find_sops_config(artifact.parent)
    if cfg is None:
        raise SopsConfigError(
            f"no .sops.yaml found in {artifact.parent.resolve()} or its parents, and the "
            "function config names no recipients (spec.format.sops.recipients)"
        )
    try:
        doc = yamlio.load(cfg.read_text())
    except (OSError, yamlio.YamlError) as exc:
        raise SopsConfigError(f"cannot read: {exc}", str(cfg)) from None
    rules_list = doc.get("creation_rules") if isinstance(doc, dict) else None
    if not isinstance(rules_list, list):
        raise SopsConfigError("expected a creation_rules list", str(cfg))
    rel = str(artifact.resolve()).removeprefix(str(cfg.parent.resolve()) + os.sep)
    for i, r in enumerate(rules_list):
        if not isinstance(r, dict):
            raise SopsConfigError(f"creation_rules[{i}]: expected a mapping", str(cfg))
        rx = r.get("path_regex")
        try:
            if rx and not re.search(rx, rel):
                continue
        except re.error as exc:
            raise SopsConfigError(f"creation_rules[{i}].path_regex: {exc}", str(cfg)) from None
        try:
            recips = _listish(r.get("age"))
            for g in r.get("key_groups") or []:
                recips += _listish(g.get("age") if isinstance(g, dict) else None)
        except ValueError as exc:
            raise SopsConfigError(f"creation_rules[{i}].age: {exc}", str(cfg)) from None
        if not recips:
            raise SopsConfigError(
                f"creation_rules[{i}] matches {rel} but names no age recipients", str(cfg)
            )
        rules = Rules(
            encrypted_regex=r.get("encrypted_regex") or None,
            unencrypted_regex=r.get("unencrypted_regex") or None,
            encrypted_suffix=r.get("encrypted_suffix") or None,
            unencrypted_suffix=r.get("unencrypted_suffix") or None,
            mac_only_encrypted=bool(r.get("mac_only_encrypted", False)),
        )
        if not any(
            (
                rules.encrypted_regex,
                rules.unencrypted_regex,
                rules.encrypted_suffix,
                rules.unencrypted_suffix,
            )
        ):
            rules = Rules(encrypted_regex=DEFAULT_ENCRYPTED_REGEX)
        return CreationRule(cfg, tuple(recips), rules)
    raise SopsConfigError(f"no creation rule matches {rel}", str(cfg))
