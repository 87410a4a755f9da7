"""Policy checks on the rendered output of every target (DESIGN.md section 3), and proof that
each check catches what it is for."""

import copy

import pytest

import policies
from render import TARGETS, load

pytestmark = pytest.mark.render


@pytest.mark.parametrize("check", policies.CHECKS)
@pytest.mark.parametrize("target", TARGETS)
def test_policy(rendered, target, check):
    violations = policies.CHECKS[check](load(rendered(target)))
    assert not violations, f"{target}: {check}:\n" + "\n".join(violations)


# Each check must fail on the mistake it exists for: break a good build and look.


@pytest.fixture(scope="module")
def lab(rendered):
    return load(rendered("lab"))


def find(objs, kind, name):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def backstage_container(objs):
    dep = find(objs, "Deployment", "backstage")
    return dep["spec"]["template"]["spec"]["containers"][0]


def test_namespace_check_names_the_object(lab):
    objs = copy.deepcopy(lab)
    find(objs, "Service", "postgres")["metadata"]["namespace"] = "default"
    assert policies.namespaces(objs) == [
        "Service/default/postgres: metadata.namespace is 'default', expected 'backstage'"
    ]


@pytest.mark.parametrize("image", ["backstage", "backstage:latest", "registry:5000/backstage"])
def test_image_check_rejects_unpinned(lab, image):
    objs = copy.deepcopy(lab)
    backstage_container(objs)["image"] = image
    [violation] = policies.image_tags(objs)
    assert "containers[backstage].image" in violation


def test_image_check_accepts_digest_and_registry_port(lab):
    objs = copy.deepcopy(lab)
    backstage_container(objs)["image"] = "registry:5000/backstage@sha256:" + "0" * 64
    assert policies.image_tags(objs) == []


def test_references_check_finds_a_missing_secret_and_key(lab):
    objs = copy.deepcopy(lab)
    c = backstage_container(objs)
    c["envFrom"][0]["secretRef"]["name"] = "nope"
    secret_name = c["envFrom"][1]["secretRef"]["name"]
    c["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": secret_name,
                                                                 "key": "MISSING"}}})
    violations = policies.references(objs)
    assert any("envFrom[0].secretRef names Secret 'nope'" in v for v in violations)
    assert any("key 'MISSING'" in v for v in violations)


def test_references_check_finds_missing_configmap_pvc_and_serviceaccount(lab):
    objs = copy.deepcopy(lab)
    objs = [o for o in objs if o["kind"] not in {"ConfigMap", "PersistentVolumeClaim",
                                                 "ServiceAccount"}]
    text = "\n".join(policies.references(objs))
    assert "ConfigMap" in text and "PVC 'postgres-storage-claim'" in text
    assert "serviceAccountName 'backstage'" in text


def test_selector_check_finds_a_service_that_selects_nothing(lab):
    objs = copy.deepcopy(lab)
    find(objs, "Service", "backstage")["spec"]["selector"] = {"app.kubernetes.io/name": "x"}
    [violation] = policies.selectors(objs)
    assert violation.startswith("Service/backstage/backstage: spec.selector")


def test_app_config_check_finds_an_undefined_variable(lab):
    objs = copy.deepcopy(lab)
    c = backstage_container(objs)
    c["env"] = [e for e in c["env"] if e["name"] != "BACKSTAGE_BASE_URL"]
    violations = policies.app_config_variables(objs)
    assert violations and all("${BACKSTAGE_BASE_URL}" in v for v in violations)


def test_probe_and_resource_check(lab):
    objs = copy.deepcopy(lab)
    c = backstage_container(objs)
    del c["readinessProbe"]
    del c["resources"]["limits"]
    assert policies.probes_and_resources(objs) == [
        "Deployment/backstage/backstage: spec.template.spec.containers[backstage]"
        ".readinessProbe is missing",
        "Deployment/backstage/backstage: spec.template.spec.containers[backstage]"
        ".resources.limits.memory is missing",
    ]


def test_non_root_check(lab):
    objs = copy.deepcopy(lab)
    dep = find(objs, "Deployment", "backstage")
    dep["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")
    violations = policies.run_as_non_root(objs)
    assert len(violations) == 2, violations
    assert "initContainers[wait-for-postgres].securityContext.runAsNonRoot is not true" in (
        violations[0] + violations[1])
    assert any(".containers[backstage].securityContext.runAsNonRoot is not true" in v
               for v in violations), violations
