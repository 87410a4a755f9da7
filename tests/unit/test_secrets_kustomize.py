"""krm-secrets inside real kustomize builds (marker `render`: needs the pinned kustomize).

The lab contract: `kustomize build --enable-alpha-plugins --enable-exec overlays/lab/secrets` with
the test-only key gives exactly two Secrets in namespace backstage, hash-suffixed, and a parent's
references follow the suffix; a build in which the generator did not run fails and says how to
run it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from krm_helpers import AGE_KEY, REPO, REPO_KEYS, VENV_BIN, isolated_env
from krm_secrets import yamlio

pytestmark = pytest.mark.render
FLAGS = ["--enable-alpha-plugins", "--enable-exec"]
LAB = "overlays/lab/secrets"
GUARD = "requires-kustomize-build--enable-alpha-plugins--enable-exec--and-krm-secrets-on-PATH"


def build(
    kustomize: str, target: str, *flags: str, env=None, cwd=REPO
) -> subprocess.CompletedProcess:
    env = env if env is not None else isolated_env(SOPS_AGE_KEY_FILE=str(REPO_KEYS))
    return subprocess.run(
        [kustomize, "build", *flags, target],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_lab_secrets_contract(kustomize_bin):
    proc = build(kustomize_bin, LAB, *FLAGS)
    assert proc.returncode == 0, proc.stderr
    docs = yamlio.load_all(proc.stdout)
    assert [d["kind"] for d in docs] == ["Secret", "Secret"]
    by = {re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]): d for d in docs}
    assert set(by) == {"postgres-secrets", "backstage-secrets"}
    for name, d in by.items():
        assert d["metadata"]["namespace"] == "backstage"
        assert d["metadata"]["name"] != name, "no hash suffix"
        assert "annotations" not in d["metadata"]
    pg = {k: base64.b64decode(v) for k, v in by["postgres-secrets"]["data"].items()}
    bs = {k: base64.b64decode(v) for k, v in by["backstage-secrets"]["data"].items()}
    assert set(pg) == {"POSTGRES_USER", "POSTGRES_PASSWORD"} and pg["POSTGRES_USER"] == b"backstage"
    assert re.fullmatch(rb"[A-Za-z0-9]{32}", pg["POSTGRES_PASSWORD"])
    assert set(bs) == {"GITHUB_TOKEN", "BACKEND_SECRET"} and bs["GITHUB_TOKEN"]
    assert len(base64.b64decode(bs["BACKEND_SECRET"])) == 24


def test_build_is_deterministic_and_works_from_any_directory(kustomize_bin, tmp_path):
    first = build(kustomize_bin, LAB, *FLAGS)
    # A relative key path, as in the README (the test key, or the user's after make lab).
    env = isolated_env(SOPS_AGE_KEY_FILE=os.path.relpath(REPO_KEYS, REPO))
    elsewhere = build(kustomize_bin, str(REPO / LAB), *FLAGS, env=env, cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout == first.stdout


def test_hash_suffix_reaches_references_in_a_parent(kustomize_bin, tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "deployment.yaml").write_text("""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: backstage, namespace: backstage}
spec:
  selector: {matchLabels: {app: backstage}}
  template:
    metadata: {labels: {app: backstage}}
    spec:
      containers:
        - name: backstage
          image: backstage:1.0.0
          envFrom:
            - secretRef: {name: backstage-secrets}
          env:
            - name: POSTGRES_PASSWORD
              valueFrom: {secretKeyRef: {name: postgres-secrets, key: POSTGRES_PASSWORD}}
""")
    rel = os.path.relpath(REPO / LAB, parent)
    (parent / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        f"  - deployment.yaml\n  - {rel}\n"
    )
    proc = build(kustomize_bin, str(parent), *FLAGS)
    assert proc.returncode == 0, proc.stderr
    docs = {
        d["kind"] + "/" + d["metadata"]["name"].rsplit("-", 1)[0]: d
        for d in yamlio.load_all(proc.stdout)
    }
    pg = docs["Secret/postgres-secrets"]["metadata"]["name"]
    bs = docs["Secret/backstage-secrets"]["metadata"]["name"]
    c = next(d for d in yamlio.load_all(proc.stdout) if d["kind"] == "Deployment")
    c = c["spec"]["template"]["spec"]["containers"][0]
    assert c["envFrom"][0]["secretRef"]["name"] == bs
    assert c["env"][0]["valueFrom"]["secretKeyRef"]["name"] == pg
    assert "DecryptionReceipt" not in proc.stdout and "SecretDecryptor" not in proc.stdout


def test_without_exec_the_build_fails_and_says_how(kustomize_bin):
    proc = build(kustomize_bin, LAB, "--enable-alpha-plugins")  # what kubectl kustomize can do
    assert proc.returncode != 0 and proc.stdout == ""
    assert GUARD in proc.stderr


def test_without_plugin_flags_the_build_fails(kustomize_bin):
    proc = build(kustomize_bin, LAB)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "external plugins disabled" in proc.stderr


def test_without_krm_secrets_on_path_the_build_fails(kustomize_bin):
    env = isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY))
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if p and not (Path(p) / "krm-secrets").exists()
    )
    proc = build(kustomize_bin, LAB, *FLAGS, env=env)
    assert proc.returncode != 0 and '"krm-secrets": executable file not found' in proc.stderr


def test_without_the_key_the_build_fails_and_lists_what_was_tried(kustomize_bin):
    proc = build(kustomize_bin, LAB, *FLAGS, env=isolated_env())
    assert proc.returncode != 0 and proc.stdout == ""
    assert "no age identity found" in proc.stderr and "SOPS_AGE_KEY_FILE (not set)" in proc.stderr


def test_kustomize_fn_run_authors_artifacts(kustomize_bin, tmp_path, sops_bin):
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / LAB, pkg)
    for f in pkg.glob("*.sops.yaml"):
        f.unlink()
    (tmp_path / ".sops.yaml").write_text(
        (REPO / ".sops.yaml").read_text().replace("^overlays/lab/secrets/", "^pkg/")
    )
    env = isolated_env(SOPS_AGE_KEY_FILE=str(REPO_KEYS), GITHUB_TOKEN="from-env")
    run = [kustomize_bin, "fn", "run", ".", "--enable-exec"]
    proc = subprocess.run(run, cwd=pkg, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    arts = sorted(f.name for f in pkg.glob("*.sops.yaml"))
    assert arts == ["backstage-secrets.sops.yaml", "postgres-secrets.sops.yaml"]
    snap = {f.name: f.read_bytes() for f in pkg.iterdir()}
    proc = subprocess.run(run, cwd=pkg, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {f.name: f.read_bytes() for f in pkg.iterdir()} == snap, "a second run changed files"
    dec = subprocess.run(
        [sops_bin, "--decrypt", "backstage-secrets.sops.yaml"],
        cwd=pkg,
        env=env,
        capture_output=True,
        text=True,
    )
    assert dec.returncode == 0, dec.stderr
    assert base64.b64decode(yamlio.load(dec.stdout)["data"]["GITHUB_TOKEN"]) == b"from-env"
    # and the package still builds
    out = build(kustomize_bin, str(pkg), *FLAGS, env=env)
    assert out.returncode == 0, out.stderr
    assert len(yamlio.load_all(out.stdout)) == 2


def test_kustomize_fn_run_from_elsewhere_says_where_to_run(kustomize_bin, tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / LAB, pkg)
    proc = subprocess.run(
        [kustomize_bin, "fn", "run", str(pkg), "--enable-exec"],
        cwd=tmp_path,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "from the package directory" in proc.stderr


def test_venv_has_krm_secrets():
    assert (VENV_BIN / "krm-secrets").exists()


@pytest.mark.parametrize("flags", [[], ["--enable-alpha-plugins"]])
def test_kubectl_kustomize_cannot_run_exec_functions_and_fails(flags):
    """kubectl's embedded kustomize has no --enable-exec: the build (and so `kubectl apply -k`)
    must fail before anything is applied, not deploy without Secrets."""
    from krm_helpers import need_tool

    kubectl = need_tool("kubectl", "install kubectl (a Debian/Google Cloud SDK package)")
    proc = subprocess.run(
        [kubectl, "kustomize", *flags, LAB],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
        timeout=120,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert GUARD in proc.stderr or "external plugins disabled" in proc.stderr


def test_the_benchmark_script_runs(kustomize_bin, kubeseal_bin):
    """scripts/bench-secrets.py in its smallest form, so that the figures in docs/secrets.md can
    always be made again."""
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench-secrets.py"),
            "--runs",
            "1",
            "--keys",
            "3",
            "--seal-runs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": isolated_env()["PATH"], "KUSTOMIZE": kustomize_bin},
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "krm-secrets exec generator" in proc.stdout
        and "`kubeseal --raw` once per key" in proc.stdout
    )
