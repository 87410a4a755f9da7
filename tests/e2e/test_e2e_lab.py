"""The lab overlay, brought up exactly as the README says (make lab, i.e. scripts/lab-up.sh),
by a new user (no age key), on a kind cluster of its own; then checked as an operator would."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from e2e import (
    NAMESPACE, REPO, copy_repository, get_json, http_get, measured, psql, rollout, run_logged,
    wait_for,
)

pytestmark = pytest.mark.e2e

CLUSTER = "e2e-lab"


@dataclass
class Lab:
    cluster: object
    repo: Path
    env: dict
    bringup_s: float

    def krm_secrets(self, *args: str) -> str:
        return subprocess.run(
            [str(REPO / ".tools" / "venv" / "bin" / "krm-secrets"), *args], cwd=self.repo,
            env=self.env, capture_output=True, text=True, check=True).stdout

    def lab_up(self, name: str) -> float:
        rc, seconds, log = run_logged(
            [str(self.repo / "scripts" / "lab-up.sh"), "--cluster", CLUSTER],
            name, cwd=self.repo, env=self.env)
        assert rc == 0, f"scripts/lab-up.sh failed (exit {rc}); output in {log}"
        return seconds


@pytest.fixture(scope="module")
def lab(kind_cluster_factory, kind_cluster_release, tmp_path_factory) -> Iterator[Lab]:
    repo = copy_repository(tmp_path_factory.mktemp("lab-repo"))
    user = tmp_path_factory.mktemp("new-user")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_AGE_")}
    env.update({
        "XDG_CONFIG_HOME": str(user / "config"),  # a new user: no age key yet
        "TOOLS_DIR": str(REPO / ".tools"),        # the tools the test command installed
        "GITHUB_TOKEN": "e2e-github-token",
    })
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env["LAB_PORT"] = str(s.getsockname()[1])       # the README's port-forward, on a free port
    env["LAB_RUN_DIR"] = str(user / "run")
    # make lab from a running Docker with the toolchain and images built: it creates the
    # cluster itself, as for a person; the fixture then adopts it (and deletes it at the end).
    lab = Lab(None, repo, env, 0.0)
    try:
        lab.bringup_s = lab.lab_up("lab-up")
    finally:
        lab.cluster = kind_cluster_factory(CLUSTER, adopt=True)
    measured(f"lab bring-up (make lab: cluster, Secrets, load, apply, rollout, port-forward): "
             f"{lab.bringup_s:.0f} s")
    yield lab
    subprocess.run([str(repo / "scripts" / "lab-down.sh"), "--keep-cluster"], env=env, check=False)
    kind_cluster_release(CLUSTER)


def test_all_pods_ready(lab):
    lab.cluster.kubectl(f"--namespace={NAMESPACE}", "wait", "--for=condition=Ready", "pods",
                        "--all", "--timeout=300s")
    pods = get_json(lab.cluster, "pods")["items"]
    assert {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods} == {
        "backstage", "postgres"}


def test_psql_select_version_as_in_the_guide(lab):
    out = psql(lab.cluster, "SELECT version();")
    assert out.startswith("PostgreSQL 17."), out


def test_health_and_catalog_through_the_labs_port_forward(lab):
    """Through the kubectl port-forward that make lab started, as a person uses it."""
    port = int(lab.env["LAB_PORT"])
    ready = http_get(port, "/.backstage/health/v1/readiness")
    assert ready.status == 200, ready
    assert ready.json()["status"] == "ok"
    assert http_get(port, "/healthcheck").status == 200
    catalog = http_get(port, "/api/catalog/entities")
    assert catalog.status == 401, catalog


def test_backstage_keeps_its_data_in_postgres(lab):
    databases = psql(lab.cluster, "SELECT datname FROM pg_database;").split()
    assert "backstage_plugin_catalog" in databases, databases
    tables = psql(lab.cluster, "SELECT count(*) FROM information_schema.tables "
                  "WHERE table_schema = 'public';", database="backstage_plugin_catalog")
    assert int(tables) > 0


def test_data_survives_deleting_the_database_pod(lab):
    token = secrets.token_hex(8)
    psql(lab.cluster, "CREATE TABLE IF NOT EXISTS e2e_probe (token text);"
                      f"INSERT INTO e2e_probe VALUES ('{token}');")
    old = get_json(lab.cluster, "pods", "-l", "app.kubernetes.io/name=postgres")["items"]
    lab.cluster.kubectl(f"--namespace={NAMESPACE}", "delete", "pod", "--wait=true",
                        *[p["metadata"]["name"] for p in old])
    rollout(lab.cluster, "postgres")
    lab.cluster.kubectl(f"--namespace={NAMESPACE}", "wait", "--for=condition=Ready", "pod",
                        "-l", "app.kubernetes.io/name=postgres", "--timeout=180s")
    assert token in psql(lab.cluster, "SELECT token FROM e2e_probe;").split()
    pv = lab.cluster.kubectl("get", "pv", "backstage-postgres-data", "-o",
                             "jsonpath={.spec.persistentVolumeReclaimPolicy}")
    assert pv == "Retain"


def secret_values(lab, prefix: str) -> tuple[str, dict]:
    items = get_json(lab.cluster, "secrets")["items"]
    [secret] = [s for s in items if s["metadata"]["name"].startswith(prefix + "-")]
    return secret["metadata"]["name"], secret["data"]


def test_secrets_are_the_new_users_from_the_plugin(lab):
    rules = yaml.safe_load((lab.repo / ".sops.yaml").read_text())["creation_rules"]
    test_key = yaml.safe_load((REPO / ".sops.yaml").read_text())["creation_rules"][0]["age"]
    lab_rule = next(r for r in rules if "overlays/lab" in r["path_regex"])
    assert lab_rule["age"] != test_key, "lab-up kept the repository's test key for a new user"
    key = Path(lab.env["XDG_CONFIG_HOME"]) / "sops" / "age" / "keys.txt"
    assert lab_rule["age"] in key.read_text()
    name, data = secret_values(lab, "postgres-secrets")
    decrypted = yaml.safe_load(lab.krm_secrets(
        "decrypt", "overlays/lab/secrets/postgres-secrets.sops.yaml"))
    assert data["POSTGRES_PASSWORD"] == decrypted["data"]["POSTGRES_PASSWORD"]
    deployment = get_json(lab.cluster, "deployment", "backstage")
    refs = [e["secretRef"]["name"] for e in
            deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]]
    assert name in refs


def test_rotated_value_rolls_backstage_and_rerun_is_fast(lab):
    before, _ = secret_values(lab, "backstage-secrets")
    old_rs = {r["metadata"]["name"] for r in get_json(
        lab.cluster, "replicasets", "-l", "app.kubernetes.io/name=backstage")["items"]
        if r["spec"]["replicas"]}
    lab.krm_secrets("rotate", "overlays/lab/secrets", "backstage-secrets/BACKEND_SECRET")
    rerun_s = lab.lab_up("lab-up-after-rotate")
    measured(f"lab re-run after a rotation: {rerun_s:.0f} s")
    names = [s["metadata"]["name"] for s in get_json(lab.cluster, "secrets")["items"]
             if s["metadata"]["name"].startswith("backstage-secrets-")]
    assert any(n != before for n in names), names
    rollout(lab.cluster, "backstage")
    new_rs = {r["metadata"]["name"] for r in get_json(
        lab.cluster, "replicasets", "-l", "app.kubernetes.io/name=backstage")["items"]
        if r["spec"]["replicas"]}
    assert new_rs and not (new_rs & old_rs), f"Backstage did not roll: {old_rs} -> {new_rs}"
    deployment = get_json(lab.cluster, "deployment", "backstage")
    refs = [e["secretRef"]["name"] for e in
            deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]]
    [current] = [r for r in refs if r.startswith("backstage-secrets-")]
    assert current != before
    wait_for(lambda: all(
        c.get("ready") for p in get_json(lab.cluster, "pods", "-l",
                                         "app.kubernetes.io/name=backstage")["items"]
        for c in p["status"].get("containerStatuses", [])), 300, "Backstage Ready after roll")
    assert rerun_s < lab.bringup_s


def diagnose(lab) -> subprocess.CompletedProcess:
    """scripts/diagnose.py against the lab, as `make diagnose` runs it."""
    env = {**lab.env, "KUBECONFIG": str(lab.cluster.kubeconfig_path)}
    return subprocess.run(
        [sys.executable, str(lab.repo / "scripts" / "diagnose.py"),
         f"--kubectl={lab.cluster.kubectl_path}"],
        env=env, capture_output=True, text=True, timeout=300)


def test_diagnose_is_quiet_when_healthy_and_names_a_missing_image(lab):
    healthy = diagnose(lab)
    assert healthy.returncode == 0, healthy.stdout[-3000:] + healthy.stderr
    assert "PostgreSQL 17" in healthy.stdout
    assert "none: every pod is Ready" in healthy.stdout
    # A tag that was never loaded: with imagePullPolicy Never, ErrImageNeverPull. The old pod
    # stays (maxUnavailable 0), so this is the one finding.
    lab.cluster.kubectl(f"--namespace={NAMESPACE}", "set", "image", "deployment/backstage",
                        "backstage=backstage:never-loaded")
    try:
        wait_for(lambda: any(
            (cs.get("state", {}).get("waiting") or {}).get("reason") == "ErrImageNeverPull"
            for p in get_json(lab.cluster, "pods", "-l", "app.kubernetes.io/name=backstage")
            ["items"] for cs in p["status"].get("containerStatuses", [])),
            180, "a Backstage pod in ErrImageNeverPull")
        broken = diagnose(lab)
        assert broken.returncode == 1, broken.stdout[-3000:] + broken.stderr
        findings = broken.stdout.split("findings", 1)[-1]
        assert "ErrImageNeverPull" in findings
        assert "kind load docker-image backstage:never-loaded" in findings
    finally:
        lab.cluster.kubectl(f"--namespace={NAMESPACE}", "rollout", "undo",
                            "deployment/backstage")
        rollout(lab.cluster, "backstage")
