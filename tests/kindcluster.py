"""Kind clusters for the `kind` and `e2e` test tiers, built on pytest-kind (pytest-kind-ng).

Registered for the whole test tree by ``tests/conftest.py`` (``pytest_plugins``). Fixtures:

``kind_toolchain`` (session)
    The locally built toolchain (kind, kubectl, kubeseal, node image, kind config), read from
    ``scripts/kind/toolchain.sh env`` (each value can be overridden by the environment variable
    of the same name). Fails, never skips, when something is missing.
``kind_cluster_factory`` (session)
    ``kind_cluster_factory(name, config=None, adopt=False) -> KindCluster``: create cluster
    ``name`` once per session from ``config`` (default: ``scripts/kind/kind-config.yaml``) and
    wait until its nodes are Ready. A cluster that already existed is reused and left alone at
    the end, unless ``adopt`` (a test made it with the project's scripts); clusters this session
    created are deleted at the end (unless ``--keep-cluster``).
``kind_cluster_release`` (session)
    ``kind_cluster_release(name)``: a tier is done with its cluster: logs exported after a
    failure, the cluster deleted (if this session's), so that one cluster runs at a time.
``kind_cluster`` (session)
    One default cluster (``--cluster-name``, default ``pytest-kind``). It replaces
    pytest-kind's fixture of that name, which would download kind and kubectl.

When a test that uses a cluster fails, the cluster's events, pods and node description are
written to ``artifacts/kind/<cluster>/<test>/`` at once, and ``kind export logs`` runs into
``artifacts/kind/<cluster>/logs/`` before the cluster is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_kind import KindCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN = REPO_ROOT / "scripts" / "kind" / "toolchain.sh"
BUILD_HINT = "build it with: scripts/docker-up.sh && scripts/kind/toolchain.sh build"
ENV_NAMES = ("KIND", "KUBECTL", "KUBESEAL", "KIND_NODE_IMAGE", "KIND_CONFIG")


@dataclass(frozen=True)
class Toolchain:
    """Paths and names of the offline kind toolchain."""

    kind: Path
    kubectl: Path
    kubeseal: Path
    node_image: str
    config: Path
    # Traefik, for tests that need an Ingress controller: load it with load_docker_image().
    ingress_image: str = ""

    @classmethod
    def from_env(cls, values: dict[str, str]) -> Toolchain:
        return cls(
            kind=Path(values["KIND"]),
            kubectl=Path(values["KUBECTL"]),
            kubeseal=Path(values["KUBESEAL"]),
            node_image=values["KIND_NODE_IMAGE"],
            config=Path(values["KIND_CONFIG"]),
            ingress_image=values.get("INGRESS_IMAGE", ""),
        )

    def problems(self) -> list[str]:
        """What is missing, one message per item (empty when the toolchain is usable)."""
        found = []
        for label, path in (
            ("kind", self.kind),
            ("kubectl", self.kubectl),
            ("kubeseal", self.kubeseal),
        ):
            if not os.access(path, os.X_OK):
                found.append(f"{label} is not an executable file: {path}")
        if not self.config.is_file():
            found.append(f"kind config not found: {self.config}")
        docker = shutil.which("docker")
        if docker is None:
            found.append("docker client not found in PATH")
            return found
        answer = subprocess.run([docker, "info"], capture_output=True, text=True)
        if answer.returncode != 0:
            found.append("Docker does not answer (run scripts/docker-up.sh)")
            return found
        inspect = subprocess.run(
            [docker, "image", "inspect", self.node_image], capture_output=True, text=True
        )
        if inspect.returncode != 0:
            found.append(f"node image {self.node_image} is not in Docker")
        return found


def parse_exports(text: str) -> dict[str, str]:
    """Parse ``export NAME=value`` lines (the output of ``toolchain.sh env``)."""
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r"export ([A-Z_]+)=(.*)", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def discover_toolchain(environ: dict[str, str] | None = None) -> Toolchain:
    environ = dict(os.environ if environ is None else environ)
    values = {}
    if not all(environ.get(name) for name in ENV_NAMES):
        result = subprocess.run([str(TOOLCHAIN), "env"], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(
                f"{TOOLCHAIN} env failed (exit {result.returncode}): {result.stderr.strip()}\n"
                f"{BUILD_HINT}",
                pytrace=False,
            )
        values = parse_exports(result.stdout)
    values.update(
        {name: environ[name] for name in (*ENV_NAMES, "INGRESS_IMAGE") if environ.get(name)}
    )
    missing = [name for name in ENV_NAMES if name not in values]
    if missing:
        pytest.fail(f"toolchain values missing: {', '.join(missing)}; {BUILD_HINT}", pytrace=False)
    return Toolchain.from_env(values)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-120:]


@dataclass
class ClusterRecord:
    cluster: KindCluster
    created: bool
    create_to_ready_s: float | None = None
    failures: list[str] = field(default_factory=list)
    released: bool = False
    adopted: bool = False


class KindClusters:
    """The clusters of one test session: creation, failure exports and deletion."""

    def __init__(self, toolchain: Toolchain, artifacts: Path, keep: bool) -> None:
        self.toolchain = toolchain
        self.artifacts = artifacts
        self.keep = keep
        self.records: dict[str, ClusterRecord] = {}
        self.state = (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            / "backstage-gitops"
            / "kind-toolchain"
            / "pytest-kind"
        )

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, check=check)

    def exists(self, name: str) -> bool:
        out = self._run(str(self.toolchain.kind), "get", "clusters").stdout
        return name in out.split()

    def get(self, name: str, config: Path | None = None, adopt: bool = False) -> KindCluster:
        """The cluster ``name``, created when missing. With ``adopt``, an existing cluster
        counts as this session's (a test made it with the project's own scripts): it is
        deleted at the end like one created here."""
        if name in self.records:
            return self.records[name].cluster
        self.state.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.state / name / "kubeconfig"
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        # pytest-kind makes a working folder ".pytest-kind/<name>" in the current directory:
        # keep it in the cache, out of the repository.
        with contextlib.chdir(self.state):
            cluster = KindCluster(
                name,
                kubeconfig=kubeconfig,
                image=self.toolchain.node_image,
                kind_path=self.toolchain.kind,
                kubectl_path=self.toolchain.kubectl,
            )
        existed = self.exists(name)
        if existed:
            # Reuse, and leave it in place at the end: this session did not create it.
            self._run(
                str(self.toolchain.kind),
                "export",
                "kubeconfig",
                f"--name={name}",
                f"--kubeconfig={kubeconfig}",
            )
        record = ClusterRecord(
            cluster=cluster, created=not existed or adopt, adopted=existed and adopt
        )
        self.records[name] = record
        start = time.monotonic()
        try:
            cluster.create(config_file=config or self.toolchain.config)
            cluster.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=180s")
        except subprocess.CalledProcessError as error:
            self.export_logs(name, "create-failed")
            pytest.fail(
                f"kind cluster {name} did not become Ready: {error}; "
                f"logs in {self.artifacts / name}",
                pytrace=False,
            )
        record.create_to_ready_s = time.monotonic() - start
        return cluster

    def export_failure(self, name: str, test_id: str) -> Path:
        """Write events, pods and nodes of cluster ``name`` for the failed test ``test_id``."""
        record = self.records[name]
        record.failures.append(test_id)
        target = self.artifacts / name / safe_name(test_id)
        target.mkdir(parents=True, exist_ok=True)
        queries = {
            "events.txt": (
                "get",
                "events",
                "--all-namespaces",
                "--sort-by=.lastTimestamp",
                "-o",
                "wide",
            ),
            "pods.txt": ("get", "pods", "--all-namespaces", "-o", "wide"),
            "describe-pods.txt": ("describe", "pods", "--all-namespaces"),
            "describe-nodes.txt": ("describe", "nodes"),
        }
        for filename, args in queries.items():
            try:
                text = record.cluster.kubectl(*args, stderr=subprocess.STDOUT)
            except subprocess.CalledProcessError as error:
                text = f"kubectl {' '.join(args)} failed: {error.output}"
            (target / filename).write_text(text)
        return target

    def export_logs(self, name: str, label: str = "logs") -> None:
        target = self.artifacts / name / label
        target.mkdir(parents=True, exist_ok=True)
        self._run(
            str(self.toolchain.kind),
            "export",
            "logs",
            str(target),
            f"--name={name}",
            check=False,
        )

    def release(self, name: str) -> None:
        """Done with cluster ``name``: export its logs if a test failed on it, and delete it
        if this session created it. Tiers release their cluster when their module ends, so
        that a 2-core machine runs one cluster at a time."""
        record = self.records.get(name)
        if record is None or record.released:
            return
        record.released = True
        if record.failures:
            self.export_logs(name)
        if record.created and not self.keep:
            record.cluster.delete()

    def finish(self) -> None:
        for name in list(self.records):
            self.release(name)


@pytest.fixture(scope="session")
def kind_toolchain() -> Toolchain:
    toolchain = discover_toolchain()
    problems = toolchain.problems()
    if problems:
        pytest.fail(
            "the offline kind toolchain is not ready:\n  - "
            + "\n  - ".join(problems)
            + f"\n{BUILD_HINT}",
            pytrace=False,
        )
    return toolchain


@pytest.fixture(scope="session")
def _kind_clusters(
    request: pytest.FixtureRequest, kind_toolchain: Toolchain
) -> Iterator[KindClusters]:
    artifacts = Path(os.environ.get("KIND_ARTIFACTS", REPO_ROOT / "artifacts" / "kind"))
    clusters = KindClusters(
        kind_toolchain, artifacts, keep=bool(request.config.getoption("keep_cluster"))
    )
    request.config.stash[_CLUSTERS_KEY] = clusters
    yield clusters
    clusters.finish()


_CLUSTERS_KEY = pytest.StashKey[KindClusters]()


@pytest.fixture(scope="session")
def kind_cluster_factory(_kind_clusters: KindClusters) -> Callable[..., KindCluster]:
    return _kind_clusters.get


@pytest.fixture(scope="session")
def kind_cluster_release(_kind_clusters: KindClusters) -> Callable[[str], None]:
    """release(name): export logs after failures and delete the cluster (if created here)."""
    return _kind_clusters.release


@pytest.fixture(scope="session")
def kind_cluster(
    request: pytest.FixtureRequest, kind_cluster_factory: Callable[..., KindCluster]
) -> KindCluster:
    return kind_cluster_factory(request.config.getoption("cluster_name"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        clusters = item.config.stash.get(_CLUSTERS_KEY, None)
        if clusters is not None:
            used = {
                value.name
                for value in getattr(item, "funcargs", {}).values()
                if isinstance(value, KindCluster)
            }
            if not used and (item.get_closest_marker("kind") or item.get_closest_marker("e2e")):
                # The test reached its cluster through another fixture: export every cluster.
                used = set(clusters.records)
            for name in sorted(used & clusters.records.keys()):
                target = clusters.export_failure(name, item.nodeid)
                report.sections.append(("kind", f"cluster {name}: events and pods in {target}"))
    return report


# --- helpers for tests ---------------------------------------------------------------------

SEALED_SECRETS_MANIFEST = (
    Path(__file__).resolve().parent / "kind" / "manifests" / ("sealed-secrets-controller.yaml")
)


def pinned_versions() -> dict[str, str]:
    """The values of scripts/kind/versions.env."""
    text = (REPO_ROOT / "scripts" / "kind" / "versions.env").read_text()
    return dict(re.findall(r"^([A-Z_]+)=(\S+)", text, flags=re.MULTILINE))


def go_module_dir(module_version: str) -> Path:
    """The folder of a Go module in the module cache (downloaded when missing)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", module_version],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if result.returncode != 0:
        pytest.fail(f"go mod download {module_version} failed: {result.stdout}{result.stderr}")
    return Path(json.loads(result.stdout)["Dir"])


def install_sealed_secrets(cluster: KindCluster, timeout: str = "180s") -> None:
    """Install the sealed-secrets CRD and controller (kube-system) and wait until it is ready."""
    version = pinned_versions()["SEALED_SECRETS_VERSION"]
    crd = go_module_dir(f"github.com/bitnami-labs/sealed-secrets@{version}") / (
        "helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"
    )
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    manifest = re.sub(
        r"(sealed-secrets-controller):v[0-9][^\s\"]*",
        rf"\1:{version}",
        SEALED_SECRETS_MANIFEST.read_text(),
    )
    cluster.kubectl("apply", "-f", "-", input=manifest)
    cluster.kubectl(
        "--namespace=kube-system",
        "rollout",
        "status",
        "deployment/sealed-secrets-controller",
        f"--timeout={timeout}",
    )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    clusters = config.stash.get(_CLUSTERS_KEY, None)
    if clusters is None or not clusters.records:
        return
    terminalreporter.section("kind clusters")
    for name, record in clusters.records.items():
        if record.adopted:
            ready = "made by the test with the project's scripts"
        elif record.created and record.create_to_ready_s is not None:
            ready = f"create-to-Ready {record.create_to_ready_s:.0f} s"
        else:
            ready = "reused (not created by this session)"
        kept = ", deleted" if record.created and not clusters.keep else ", left in place"
        failures = (
            f"; {len(record.failures)} failed test(s), logs in {clusters.artifacts / name}"
            if record.failures
            else ""
        )
        terminalreporter.write_line(f"{name}: {ready}{kept}{failures}")
