"""Render the repository's kustomizations the way users and CI do, and walk the result.

Pure helpers (no pytest here) so that policy checks can be tested on hand-made objects too.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from agekeys import repository_keys

REPO = Path(__file__).resolve().parents[2]

# What CI renders and checks; the root builds the lab (the quick start).
TARGETS = {
    "root": ".",
    "lab": "overlays/lab",
    "production": "overlays/production",
}

# The flags the krm-secrets generator needs (exec KRM functions are alpha in kustomize v5).
KUSTOMIZE_FLAGS = ["--enable-alpha-plugins", "--enable-exec"]

CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PriorityClass",
    "GatewayClass",
}


class RenderError(RuntimeError):
    pass


def kustomize_binary() -> str:
    path = os.environ.get("KUSTOMIZE") or str(REPO / ".tools" / "bin" / "kustomize")
    if not os.access(path, os.X_OK):
        raise RenderError(
            f"kustomize not found at {path}: run scripts/bootstrap.sh (or set KUSTOMIZE)"
        )
    return path


def _identities_file() -> Path:
    """The test-only key and the user's own (tests/agekeys.py), in a file of this user's."""
    return repository_keys(
        Path(tempfile.gettempdir()) / f"backstage-gitops-render-{os.getuid()}.keys")


def render_environment() -> dict[str, str]:
    """The environment of a render: krm-secrets on PATH and the keys that open the lab."""
    env = dict(os.environ)
    env["SOPS_AGE_KEY_FILE"] = str(_identities_file())
    env.pop("SOPS_AGE_KEY", None)
    venv_bin = REPO / ".tools" / "venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    return env


def build(target: str) -> str:
    """kustomize build of a folder relative to the repository root; the YAML text."""
    cmd = [kustomize_binary(), "build", *KUSTOMIZE_FLAGS, target]
    proc = subprocess.run(
        cmd, cwd=REPO, env=render_environment(), capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def load(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def ident(obj: dict) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind', '?')}/{ns + '/' if ns else ''}{name}"


def redact_secrets(text: str) -> str:
    """The build without its secret material, for goldens: Secret values and SealedSecret
    ciphertexts become placeholders, and the hash suffix of a generated Secret's name (which
    follows its values) becomes <hash>. Goldens then describe the manifests, and stay true in a
    fork that made its own keys and values (make lab does that for a new user)."""
    objs = load(text)
    suffixed = set()
    for obj in objs:
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                values = obj.get(field) or {}
                for key in values:
                    values[key] = "<redacted>"
            name = obj["metadata"]["name"]
            if re.fullmatch(r".+-[a-z0-9]{10}", name):
                suffixed.add(name)
        if obj.get("kind") == "SealedSecret":
            sealed = obj.get("spec", {}).get("encryptedData") or {}
            for key in sealed:
                sealed[key] = "<sealed>"
    out = "---\n".join(yaml.safe_dump(o, sort_keys=True, default_flow_style=False) for o in objs)
    for name in sorted(suffixed, key=len, reverse=True):
        out = re.sub(rf"\b{re.escape(name)}\b", name[:-10] + "<hash>", out)
    return out


@dataclass(frozen=True)
class Container:
    owner: dict
    path: str  # field path of the container, e.g. spec.template.spec.containers[backstage]
    spec: dict
    init: bool


def pod_spec(obj: dict) -> tuple[str, dict] | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return "spec", spec
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return "spec.template.spec", spec.get("template", {}).get("spec", {})
    if kind == "CronJob":
        return (
            "spec.jobTemplate.spec.template.spec",
            spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}),
        )
    return None


def containers(objs: list[dict]) -> Iterator[Container]:
    for obj in objs:
        found = pod_spec(obj)
        if not found:
            continue
        base, spec = found
        for field, init in (("initContainers", True), ("containers", False)):
            for c in spec.get(field) or []:
                yield Container(obj, f"{base}.{field}[{c.get('name')}]", c, init)
