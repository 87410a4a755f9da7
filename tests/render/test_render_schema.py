"""Offline schema validation of every rendered object against Kubernetes 1.34.

Built-in kinds use the OpenAPI schemas that kubernetes-validate ships (strict: unknown fields
are errors). Custom resources are validated against the openAPIV3Schema of their CRDs, taken
from the pinned Go modules of the projects that define them (downloaded by `go mod download`,
kept in Go's module cache, never committed)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from render import TARGETS, ident, load

pytestmark = pytest.mark.render

KUBERNETES_VERSION = "1.34.0"


def sealed_secrets_version() -> str:
    """The controller version the kind toolchain builds and the e2e tier runs."""
    versions = Path(__file__).resolve().parents[2] / "scripts" / "kind" / "versions.env"
    for line in versions.read_text().splitlines():
        if line.startswith("SEALED_SECRETS_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{versions}: no SEALED_SECRETS_VERSION")


# CRDs of the custom resources the overlays use: (module@version, path of the CRD in it).
CRD_SOURCES = [
    (f"github.com/bitnami-labs/sealed-secrets@{sealed_secrets_version()}",
     "helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml"),
    ("sigs.k8s.io/gateway-api@v1.4.0",
     "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"),
]


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict]:
    go = shutil.which("go")
    if not go:
        pytest.fail("Go is needed to fetch the CRD schemas (go mod download)", pytrace=False)
    schemas = {}
    for module, path in CRD_SOURCES:
        proc = subprocess.run(
            [go, "mod", "download", "-json", module],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd="/",
        )
        info = json.loads(proc.stdout or "{}")
        if proc.returncode != 0 or "Dir" not in info:
            pytest.fail(f"go mod download {module} failed: {info.get('Error') or proc.stderr}",
                        pytrace=False)
        crd = yaml.safe_load(Path(info["Dir"], path).read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(obj: dict, crd_schemas) -> str | None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in crd_schemas:
        try:
            jsonschema.validate(obj, crd_schemas[key])
        except jsonschema.ValidationError as e:
            field = ".".join(str(p) for p in e.absolute_path)
            return f"{ident(obj)}: {field}: {e.message}"
        return None
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        field = ".".join(str(p) for p in e.path)
        return f"{ident(obj)}: {field}: {e.message}"
    except kubernetes_validate.SchemaNotFoundError:
        return f"{ident(obj)}: no schema for {key[0]} {key[1]} (add its CRD to CRD_SOURCES)"
    return None


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_kubernetes_1_34(rendered, target, crd_schemas):
    errors = [e for o in load(rendered(target)) if (e := validate(o, crd_schemas))]
    assert not errors, "\n".join(errors)


def test_validation_catches_a_wrong_type_and_an_unknown_field(crd_schemas):
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "n"},
           "spec": {"ports": [{"port": "7007"}], "selectr": {}}}
    assert validate(bad, crd_schemas)
    sealed = {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
              "metadata": {"name": "x"}, "spec": {"encryptedData": {"k": 1}}}
    assert validate(sealed, crd_schemas)
