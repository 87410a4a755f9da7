"""Smoke tests of a kind cluster made by the offline toolchain (scripts/kind/).

Each test checks one thing the end-to-end tier relies on. They share one cluster (the
``kind_cluster`` fixture of tests/kindcluster.py) and one namespace, and wait on conditions,
never on bare sleeps.
"""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
import time
import uuid

import pytest
from kindcluster import install_sealed_secrets

pytestmark = pytest.mark.kind

NAMESPACE = "smoke"
SERVER = "echo"


def manifest(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def run_pod_phase(
    cluster,
    name: str,
    image: str,
    args: list[str],
    volumes: str = "",
    labels: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Run a pod to completion in NAMESPACE; return its final phase and its log."""
    container = {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "args": args}
    spec = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    if volumes:
        spec["spec"]["volumes"] = [
            {"name": "data", "persistentVolumeClaim": {"claimName": volumes}}
        ]
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    cluster.kubectl("apply", "-f", "-", input=json.dumps(spec))
    phase = wait_for_phase(cluster, name, ("Succeeded", "Failed"), timeout_s=120)
    log = cluster.kubectl(f"--namespace={NAMESPACE}", "logs", name, stderr=subprocess.STDOUT)
    return phase, log


def run_pod(cluster, name: str, image: str, args: list[str], **options) -> str:
    """Run a pod to completion in NAMESPACE and return its log; fail with the log unless it
    succeeded."""
    phase, log = run_pod_phase(cluster, name, image, args, **options)
    if phase != "Succeeded":
        pytest.fail(f"pod {name} ended in phase {phase}; log:\n{log}")
    return log


def wait_for_phase(cluster, name: str, phases: tuple[str, ...], timeout_s: float) -> str:
    """Poll pod ``name`` until its phase is one of ``phases``; return that phase."""
    deadline = time.monotonic() + timeout_s
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.kubectl(
            f"--namespace={NAMESPACE}", "get", f"pod/{name}", "-o", "jsonpath={.status.phase}"
        )
        if phase in phases:
            return phase
        time.sleep(1)
    return phase or "unknown"


@pytest.fixture(scope="module")
def cluster(kind_cluster, smoke_image, kind_cluster_release):
    """The shared cluster with the smoke image loaded and an echo server behind a Service.

    The namespace is made afresh (a reused cluster may hold one from an earlier run) and
    deleted at the end."""
    kind_cluster.load_docker_image(smoke_image)
    kind_cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    kind_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=manifest(
            f"""
            apiVersion: v1
            kind: Namespace
            metadata:
              name: {NAMESPACE}
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {SERVER}
              namespace: {NAMESPACE}
            spec:
              replicas: 1
              selector:
                matchLabels: {{app: {SERVER}}}
              template:
                metadata:
                  labels: {{app: {SERVER}}}
                spec:
                  containers:
                    - name: server
                      image: {smoke_image}
                      imagePullPolicy: IfNotPresent
                      args: [serve, ":8080"]
                      ports: [{{name: http, containerPort: 8080}}]
                      readinessProbe:
                        httpGet: {{path: /, port: http}}
            ---
            apiVersion: v1
            kind: Service
            metadata:
              name: {SERVER}
              namespace: {NAMESPACE}
            spec:
              selector: {{app: {SERVER}}}
              ports: [{{name: http, port: 80, targetPort: http}}]
            """
        ),
    )
    kind_cluster.kubectl(
        f"--namespace={NAMESPACE}", "rollout", "status", f"deployment/{SERVER}", "--timeout=120s"
    )
    yield kind_cluster
    kind_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    kind_cluster_release(kind_cluster.name)


def test_nodes_are_ready(kind_cluster):
    nodes = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert nodes, "the cluster has no nodes"
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", f"node {node['metadata']['name']} is not Ready"


def test_coredns_resolves_a_service_name(cluster, smoke_image):
    cluster_ip = cluster.kubectl(
        f"--namespace={NAMESPACE}", "get", f"service/{SERVER}", "-o", "jsonpath={.spec.clusterIP}"
    )
    out = run_pod(
        cluster, "resolve", smoke_image, ["resolve", f"{SERVER}.{NAMESPACE}.svc.cluster.local"]
    )
    assert cluster_ip in out.split(), f"resolved {out!r}, expected the ClusterIP {cluster_ip}"


def test_pod_reaches_pod_through_cluster_ip_service(cluster, smoke_image):
    server_pod = cluster.kubectl(
        f"--namespace={NAMESPACE}",
        "get",
        "pods",
        "-l",
        f"app={SERVER}",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    )
    out = run_pod(cluster, "client", smoke_image, ["get", f"http://{SERVER}/"])
    assert out.strip() == f"hello from {server_pod}"


def test_pvc_binds_on_default_storage_class_and_keeps_data(cluster, smoke_image):
    classes = json.loads(cluster.kubectl("get", "storageclass", "-o", "json"))["items"]
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults, "no default StorageClass"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=manifest(
            f"""
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata:
              name: data
              namespace: {NAMESPACE}
            spec:
              accessModes: [ReadWriteOnce]
              resources:
                requests:
                  storage: 16Mi
            """
        ),
    )
    token = uuid.uuid4().hex
    run_pod(cluster, "writer", smoke_image, ["write", "/data/token", token], volumes="data")
    phase = cluster.kubectl(
        f"--namespace={NAMESPACE}", "get", "pvc/data", "-o", "jsonpath={.status.phase}"
    )
    assert phase == "Bound"
    cluster.kubectl(f"--namespace={NAMESPACE}", "delete", "pod/writer", "--wait=true")
    out = run_pod(cluster, "reader", smoke_image, ["read", "/data/token"], volumes="data")
    assert out.strip() == token


def test_loaded_image_runs_with_if_not_present(cluster, smoke_image):
    pods = json.loads(
        cluster.kubectl(
            f"--namespace={NAMESPACE}", "get", "pods", "-l", f"app={SERVER}", "-o", "json"
        )
    )["items"]
    assert pods
    container = pods[0]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["image"] == smoke_image
    status = pods[0]["status"]["containerStatuses"][0]
    assert status["ready"] is True
    # The image reached the node through `kind load docker-image`: the kubelet found it there.
    pod = pods[0]["metadata"]["name"]
    events = json.loads(
        cluster.kubectl(
            f"--namespace={NAMESPACE}",
            "get",
            "events",
            "-o",
            "json",
            f"--field-selector=involvedObject.name={pod}",
        )
    )["items"]
    messages = [e["message"] for e in events if e["reason"] in ("Pulled", "Pulling")]
    assert messages == [f'Container image "{smoke_image}" already present on machine'], messages


def test_sealed_secrets_controller_unseals_a_sealed_secret(cluster, kind_toolchain, tmp_path):
    install_sealed_secrets(cluster)
    cert = tmp_path / "cert.pem"
    kubeseal_env = {"KUBECONFIG": str(cluster.kubeconfig_path)}
    fetched = subprocess.run(
        [
            str(kind_toolchain.kubeseal),
            "--fetch-cert",
            "--controller-namespace=kube-system",
            "--controller-name=sealed-secrets-controller",
        ],
        capture_output=True,
        text=True,
        env=kubeseal_env,
        timeout=120,
    )
    assert fetched.returncode == 0, fetched.stderr
    cert.write_text(fetched.stdout)
    value = f"test-only-{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "smoke-sealed", "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }
    sealed = subprocess.run(
        [str(kind_toolchain.kubeseal), f"--cert={cert}", "--format=json"],
        input=json.dumps(secret),
        capture_output=True,
        text=True,
        check=False,
    )
    assert sealed.returncode == 0, sealed.stderr
    assert value not in sealed.stdout
    cluster.kubectl("apply", "-f", "-", input=sealed.stdout)
    cluster.kubectl(
        f"--namespace={NAMESPACE}",
        "wait",
        "secret/smoke-sealed",
        "--for=create",
        "--timeout=60s",
    )
    data = cluster.kubectl(
        f"--namespace={NAMESPACE}",
        "get",
        "secret/smoke-sealed",
        "-o",
        "jsonpath={.data.password}",
    )
    assert base64.b64decode(data).decode() == value


def test_network_policy_is_enforced(cluster, smoke_image):
    """Only pods labelled role=allowed reach the echo server once a policy selects it."""
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=manifest(
            f"""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata:
              name: echo-allowed-only
              namespace: {NAMESPACE}
            spec:
              podSelector:
                matchLabels: {{app: {SERVER}}}
              policyTypes: [Ingress]
              ingress:
                - from:
                    - podSelector:
                        matchLabels: {{role: allowed}}
                  ports:
                    - port: 8080
            """
        ),
    )
    try:
        # The policy takes effect asynchronously: the first denied attempt marks the moment.
        deny_args = ["get", f"http://{SERVER}/", "5"]
        denied = None
        for attempt in range(6):
            phase, _ = run_pod_phase(cluster, f"denied-{attempt}", smoke_image, deny_args)
            if phase == "Failed":
                denied = attempt
                break
        assert denied is not None, "a pod without role=allowed still reached the server"
        phase, log = run_pod_phase(cluster, "denied-again", smoke_image, deny_args)
        assert phase == "Failed", f"a later unlabelled pod reached the server: {log}"
        out = run_pod(
            cluster,
            "allowed",
            smoke_image,
            ["get", f"http://{SERVER}/", "20"],
            labels={"role": "allowed"},
        )
        assert out.startswith("hello from ")
    finally:
        cluster.kubectl(
            f"--namespace={NAMESPACE}", "delete", "networkpolicy/echo-allowed-only", "--wait=true"
        )
