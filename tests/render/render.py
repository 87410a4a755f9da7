"""Render the repository's kustomizations the way users and CI do, and walk the result.

Pure helpers (no pytest here) so that policy checks can be tested on hand-made objects too.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

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


def test_environment() -> dict[str, str]:
    """The environment of a render: the test-only age key opens the committed lab Secrets."""
    env = dict(os.environ)
    key = REPO / "tests" / "keys" / "age.key"
    if key.exists():
        env["SOPS_AGE_KEY_FILE"] = str(key)
        env.pop("SOPS_AGE_KEY", None)
    venv_bin = REPO / ".tools" / "venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    return env


def build(target: str) -> str:
    """kustomize build of a folder relative to the repository root; the YAML text."""
    cmd = [kustomize_binary(), "build", *KUSTOMIZE_FLAGS, target]
    proc = subprocess.run(
        cmd, cwd=REPO, env=test_environment(), capture_output=True, text=True, timeout=120
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
    """Replace each Secret value by a digest, so goldens carry no secret value but still
    change when a value does."""
    out = []
    for obj in load(text):
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                values = obj.get(field) or {}
                for key, value in values.items():
                    raw = base64.b64decode(value) if field == "data" else value.encode()
                    values[key] = "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
        out.append(yaml.safe_dump(obj, sort_keys=True, default_flow_style=False))
    return "---\n".join(out)


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
