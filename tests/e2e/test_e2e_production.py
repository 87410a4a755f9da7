"""The production overlay on a kind cluster, checked as an operator would.

The overlay is applied unchanged. What a kind cluster lacks is provided around it, not patched
into it: the registry images are built here and loaded under the overlay's own image names,
the sealed-secrets controller runs with the test-only key the committed SealedSecrets were
sealed to, Traefik (built from the Go module proxy by the kind toolchain) serves the Ingress class `traefik`, kind's
default StorageClass is `standard` as in settings.yaml, and a test CA signs `backstage-tls`."""

from __future__ import annotations

import json
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import (
    NAMESPACE, REPO, get_json, http_get, make_test_ca, measured, port_forward, rollout, run_logged,
    wait_for,
)

pytestmark = pytest.mark.e2e

CLUSTER = "e2e-prod"
HOST = "backstage.example.com"
SCRIPTS = REPO / "scripts"


@dataclass
class Production:
    cluster: object
    ca: Path


def render_production() -> str:
    import sys
    sys.path.insert(0, str(REPO / "tests" / "render"))
    from render import build
    return build("overlays/production")


def build_image(script: str, *args: str) -> str:
    rc, _, log = run_logged([str(SCRIPTS / script), *args], f"build-{Path(script).stem}")
    assert rc == 0, f"{script} failed; output in {log}"
    return log.read_text().strip().splitlines()[-1]


@pytest.fixture(scope="module")
def production(kind_cluster_factory, kind_cluster_release, kind_toolchain,
               tmp_path_factory) -> Iterator[Production]:
    from kindcluster import install_sealed_secrets  # the kind tier's fixtures and helpers

    cluster = kind_cluster_factory(CLUSTER)
    # sealed-secrets: the test-only key first, so the controller adopts it instead of making one.
    cluster.kubectl("apply", "-f", str(REPO / "tests" / "keys" /
                                       "sealed-secrets-test-key-secret.yaml"))
    install_sealed_secrets(cluster)
    # Traefik for the Ingress class "traefik" (built by scripts/kind/toolchain.sh build).
    traefik = kind_toolchain.ingress_image
    assert traefik, "the kind toolchain names no Ingress controller image (INGRESS_IMAGE)"
    cluster.load_docker_image(traefik)
    manifest = (Path(__file__).parent / "manifests" / "traefik.yaml").read_text()
    cluster.kubectl("apply", "-f", "-", input=manifest.replace("TRAEFIK_IMAGE", traefik))
    cluster.kubectl("--namespace=traefik", "rollout", "status", "deployment/traefik",
                    "--timeout=180s")
    # The overlay's registry images, built here and loaded under the overlay's names.
    rendered = render_production()
    local = {"backstage": build_image("build-backstage-image.sh"),
             "postgres": build_image("build-postgres-image.sh")}
    for image in sorted({line.split()[-1] for line in rendered.splitlines()
                         if line.strip().startswith("image: ")}):
        source = local["backstage" if "/backstage:" in image else "postgres"]
        subprocess.run(["docker", "tag", source, image], check=True)
        cluster.load_docker_image(image)
    applied = time.monotonic()
    cluster.kubectl("apply", "--server-side", "--field-manager=backstage-gitops", "-f", "-",
                    input=rendered)
    ca, crt, key = make_test_ca(tmp_path_factory.mktemp("tls"), HOST)
    cluster.kubectl(f"--namespace={NAMESPACE}", "create", "secret", "tls", "backstage-tls",
                    f"--cert={crt}", f"--key={key}")
    rollout(cluster, "postgres")
    rollout(cluster, "backstage")
    measured(f"production overlay: apply to 2 Backstage replicas ready "
             f"(SealedSecrets unsealed, volume provisioned): {time.monotonic() - applied:.0f} s")
    yield Production(cluster, ca)
    kind_cluster_release(CLUSTER)


def tls_context(ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    return ctx


def test_sealed_secrets_were_unsealed_by_the_controller(production):
    sealed = get_json(production.cluster, "sealedsecrets")["items"]
    assert {s["metadata"]["name"] for s in sealed} == {
        "postgres-secrets", "backstage-secrets", "registry-credentials"}
    for s in sealed:
        wait_for(lambda s=s: any(
            c["type"] == "Synced" and c["status"] == "True"
            for c in get_json(production.cluster, "sealedsecret", s["metadata"]["name"])
            .get("status", {}).get("conditions", [])), 120, f"{s['metadata']['name']} Synced")
        secret = get_json(production.cluster, "secret", s["metadata"]["name"])
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "SealedSecret"
        assert set(secret["data"]) == set(s["spec"]["encryptedData"])
    pull = get_json(production.cluster, "secret", "registry-credentials")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"


def test_backstage_through_the_ingress_over_tls(production):
    with port_forward(production.cluster, "svc/traefik", 443, "traefik") as port:
        ctx = tls_context(production.ca)
        health = http_get(port, "/healthcheck", tls=ctx, server_name=HOST)
        assert health.status == 200, health
        ready = http_get(port, "/.backstage/health/v1/readiness", tls=ctx, server_name=HOST)
        assert ready.status == 200 and ready.json()["status"] == "ok", ready
        assert http_get(port, "/api/catalog/entities", tls=ctx, server_name=HOST).status == 401
        # The certificate really is checked: without the test CA the handshake fails.
        untrusted = http_get(port, "/healthcheck", tls=tls_context(None), server_name=HOST)
        assert untrusted.status is None and "CERTIFICATE_VERIFY_FAILED" in untrusted.error


def test_rolling_restart_loses_no_request(production):
    results: list = []
    stop = threading.Event()
    with port_forward(production.cluster, "svc/traefik", 443, "traefik") as port:
        ctx = tls_context(production.ca)

        def client():
            while not stop.is_set():
                results.append(http_get(port, "/healthcheck", tls=ctx, server_name=HOST))
                time.sleep(0.05)

        worker = threading.Thread(target=client)
        worker.start()
        try:
            time.sleep(2)
            production.cluster.kubectl(f"--namespace={NAMESPACE}", "rollout", "restart",
                                       "deployment/backstage")
            rollout(production.cluster, "backstage")
            time.sleep(15)  # the old pods' preStop pause and shutdown
        finally:
            stop.set()
            worker.join()
    failed = [r for r in results if r.status != 200]
    latencies = sorted(r.seconds for r in results)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    measured(f"rolling restart of 2 Backstage replicas through Traefik over TLS: "
             f"{len(results)} requests, {len(failed)} failed, "
             f"median {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
             f"max {latencies[-1] * 1000:.0f} ms")
    assert len(results) > 50
    assert not failed, f"{len(failed)} of {len(results)} failed: {failed[:5]}"


def test_pod_disruption_budget_holds_during_a_drain(production):
    cluster = production.cluster
    [node] = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    name = node["metadata"]["name"]
    try:
        drain = subprocess.run(
            [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig_path}", "drain",
             name, "--pod-selector=app.kubernetes.io/name=backstage", "--ignore-daemonsets",
             "--delete-emptydir-data", "--timeout=30s"],
            capture_output=True, text=True)
        # One node: the evicted pod cannot come back, so the budget must refuse the second.
        assert drain.returncode != 0
        assert "disruption budget" in drain.stdout + drain.stderr
        running = [p for p in get_json(cluster, "pods", "-l",
                                       "app.kubernetes.io/name=backstage")["items"]
                   if p["status"]["phase"] == "Running"
                   and not p["metadata"].get("deletionTimestamp")]
        assert len(running) >= 1
    finally:
        cluster.kubectl("uncordon", name)
    rollout(cluster, "backstage")


def probe_postgres(cluster, pod: str, namespace: str, labels: dict) -> int:
    """Exit code of pg_isready against the postgres Service from a new pod with labels."""
    image = next(c["image"] for c in get_json(cluster, "deployment", "postgres")
                 ["spec"]["template"]["spec"]["containers"])
    spec = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": "registry-credentials"}] if namespace == NAMESPACE
            else [],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 999,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                # The policy controller admits a new pod as a source once it has seen it
                # (kube-router: a second or so), so an allowed pod gets 20 s of attempts; a
                # denied one fails all of them (PostgreSQL's own policy drops it from the start).
                "command": ["sh", "-c",
                            "for i in $(seq 1 20); do pg_isready --timeout=2 "
                            "--host=postgres.backstage.svc.cluster.local --port=5432 && exit 0;"
                            " sleep 1; done; exit 2"],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(spec))
    try:
        def finished():
            status = json.loads(cluster.kubectl(f"--namespace={namespace}", "get", "pod", pod,
                                                "-o", "json"))["status"]
            term = (status.get("containerStatuses") or [{}])[0].get("state", {}).get("terminated")
            return term
        term = wait_for(finished, 120, f"pod {namespace}/{pod} to finish")
        return term["exitCode"]
    finally:
        cluster.kubectl(f"--namespace={namespace}", "delete", "pod", pod, "--wait=false")


def test_only_backstage_reaches_postgres(production):
    cluster = production.cluster
    backstage = {"app.kubernetes.io/name": "backstage", "app.kubernetes.io/instance": "backstage"}
    assert probe_postgres(cluster, "probe-as-backstage", NAMESPACE, backstage) == 0
    assert probe_postgres(cluster, "probe-intruder", NAMESPACE,
                          {"app.kubernetes.io/name": "intruder"}) != 0
    assert probe_postgres(cluster, "probe-other-namespace", "default",
                          {"app.kubernetes.io/name": "backstage"}) != 0
