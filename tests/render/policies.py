"""Policy checks on rendered manifests. Each returns a list of violations, one string each,
naming the object and the field, so that a failing test says what to fix and where."""

from __future__ import annotations

import re

import yaml

from render import CLUSTER_SCOPED, containers, ident, pod_spec

NAMESPACE = "backstage"

# References to objects that are made outside the build, each with the reason.
EXTERNAL_SECRETS = {
    # The Ingress certificate is issued into this Secret by cert-manager (or copied by the
    # operator); docs/overlays/production.md says so.
    "backstage-tls": "TLS certificate issued by cert-manager or provided by the operator",
}

# Containers allowed to run as root, each with the reason.
ROOT_ALLOWED = {
    ("Deployment/backstage/postgres", "volume-permissions"): (
        "lab only: chowns the host-path volume, which ignores fsGroup, with CAP_CHOWN alone"
    ),
}

ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _by_kind(objs: list[dict], *kinds: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o.get("kind") in kinds}


def namespaces(objs: list[dict]) -> list[str]:
    bad = []
    for o in objs:
        if o.get("kind") in CLUSTER_SCOPED:
            continue
        ns = o.get("metadata", {}).get("namespace")
        if ns != NAMESPACE:
            bad.append(f"{ident(o)}: metadata.namespace is {ns!r}, expected {NAMESPACE!r}")
    return bad


def image_tags(objs: list[dict]) -> list[str]:
    bad = []
    for c in containers(objs):
        image = c.spec.get("image", "")
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else None
        if tag in (None, "", "latest"):
            bad.append(
                f"{ident(c.owner)}: {c.path}.image {image!r} has no pinned tag or digest"
            )
    return bad


def _secret_keys(objs: list[dict]) -> dict[str, set[str] | None]:
    """Secrets of the build by name, with their keys. SealedSecrets become Secrets of the same
    name in the cluster; their keys are those of encryptedData."""
    keys: dict[str, set[str] | None] = {}
    for o in objs:
        if o.get("kind") == "Secret":
            keys[o["metadata"]["name"]] = set(o.get("data") or {}) | set(o.get("stringData") or {})
        elif o.get("kind") == "SealedSecret":
            keys[o["metadata"]["name"]] = set(o.get("spec", {}).get("encryptedData") or {})
    return keys


def references(objs: list[dict]) -> list[str]:
    """Every Secret, ConfigMap, PVC, PV, ServiceAccount, Service and scale target that an
    object names exists in the same build (and the key, where one is named)."""
    secrets = _secret_keys(objs)
    configmaps = {n: set(o.get("data") or {}) for n, o in _by_kind(objs, "ConfigMap").items()}
    pvcs = _by_kind(objs, "PersistentVolumeClaim")
    pvs = _by_kind(objs, "PersistentVolume")
    sas = _by_kind(objs, "ServiceAccount")
    services = _by_kind(objs, "Service")
    bad: list[str] = []

    def secret(o, field, name, key=None):
        if name in EXTERNAL_SECRETS:
            return
        if name not in secrets:
            bad.append(f"{ident(o)}: {field} names Secret {name!r}, which the build lacks")
        elif key is not None and key not in secrets[name]:
            bad.append(f"{ident(o)}: {field} names key {key!r} missing from Secret {name!r}")

    def configmap(o, field, name, key=None):
        if name not in configmaps:
            bad.append(f"{ident(o)}: {field} names ConfigMap {name!r}, which the build lacks")
        elif key is not None and key not in configmaps[name]:
            bad.append(f"{ident(o)}: {field} names key {key!r} missing from ConfigMap {name!r}")

    for o in objs:
        found = pod_spec(o)
        if found:
            base, spec = found
            sa = spec.get("serviceAccountName")
            if sa and sa not in sas:
                bad.append(f"{ident(o)}: {base}.serviceAccountName {sa!r} is not in the build")
            for i, ref in enumerate(spec.get("imagePullSecrets") or []):
                secret(o, f"{base}.imagePullSecrets[{i}]", ref.get("name"))
            for v in spec.get("volumes") or []:
                field = f"{base}.volumes[{v.get('name')}]"
                if "secret" in v:
                    secret(o, field + ".secret", v["secret"].get("secretName"))
                if "configMap" in v:
                    configmap(o, field + ".configMap", v["configMap"].get("name"))
                if "persistentVolumeClaim" in v:
                    claim = v["persistentVolumeClaim"].get("claimName")
                    if claim not in pvcs:
                        bad.append(f"{ident(o)}: {field} names PVC {claim!r}, not in the build")
        if o.get("kind") == "ServiceAccount":
            for i, ref in enumerate(o.get("imagePullSecrets") or []):
                secret(o, f"imagePullSecrets[{i}]", ref.get("name"))
        if o.get("kind") == "Ingress":
            for i, tls in enumerate(o.get("spec", {}).get("tls") or []):
                secret(o, f"spec.tls[{i}].secretName", tls.get("secretName"))
            for rule in o.get("spec", {}).get("rules") or []:
                for p in rule.get("http", {}).get("paths") or []:
                    svc = p.get("backend", {}).get("service", {}).get("name")
                    if svc not in services:
                        bad.append(f"{ident(o)}: backend service {svc!r} is not in the build")
        if o.get("kind") == "HTTPRoute":
            for rule in o.get("spec", {}).get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    if ref.get("name") not in services:
                        bad.append(f"{ident(o)}: backendRef {ref.get('name')!r} not in build")
        if o.get("kind") == "PersistentVolumeClaim":
            vol = o.get("spec", {}).get("volumeName")
            if vol and vol not in pvs:
                bad.append(f"{ident(o)}: spec.volumeName {vol!r} is not in the build")
        if o.get("kind") == "PersistentVolume":
            claim = o.get("spec", {}).get("claimRef")
            if claim and claim.get("name") not in pvcs:
                bad.append(f"{ident(o)}: spec.claimRef {claim.get('name')!r} not in the build")
        if o.get("kind") == "HorizontalPodAutoscaler":
            target = o.get("spec", {}).get("scaleTargetRef", {})
            if target.get("name") not in _by_kind(objs, target.get("kind", "")):
                bad.append(f"{ident(o)}: spec.scaleTargetRef {target} is not in the build")

    for c in containers(objs):
        for i, ef in enumerate(c.spec.get("envFrom") or []):
            if "secretRef" in ef:
                secret(c.owner, f"{c.path}.envFrom[{i}].secretRef", ef["secretRef"].get("name"))
            if "configMapRef" in ef:
                configmap(c.owner, f"{c.path}.envFrom[{i}]", ef["configMapRef"].get("name"))
        for e in c.spec.get("env") or []:
            src = e.get("valueFrom") or {}
            field = f"{c.path}.env[{e.get('name')}].valueFrom"
            if "secretKeyRef" in src:
                ref = src["secretKeyRef"]
                if not ref.get("optional"):
                    secret(c.owner, field, ref.get("name"), ref.get("key"))
            if "configMapKeyRef" in src:
                ref = src["configMapKeyRef"]
                configmap(c.owner, field, ref.get("name"), ref.get("key"))
    return bad


def selectors(objs: list[dict]) -> list[str]:
    """Services, PodDisruptionBudgets and workload selectors select the pods they are for."""
    pods = []
    bad = []
    for o in objs:
        found = pod_spec(o)
        if not found:
            continue
        labels = o.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        match = o.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        if not match or any(labels.get(k) != v for k, v in match.items()):
            bad.append(f"{ident(o)}: spec.selector {match} does not select its own template")
        pods.append(labels)

    def selects(sel):
        return any(all(p.get(k) == v for k, v in sel.items()) for p in pods)

    for o in objs:
        if o.get("kind") == "Service":
            sel = o.get("spec", {}).get("selector") or {}
            if not sel or not selects(sel):
                bad.append(f"{ident(o)}: spec.selector {sel} selects no pod of the build")
        if o.get("kind") == "PodDisruptionBudget":
            sel = o.get("spec", {}).get("selector", {}).get("matchLabels") or {}
            if not sel or not selects(sel):
                bad.append(f"{ident(o)}: spec.selector {sel} selects no pod of the build")
    return bad


def _container_env_names(c, objs) -> set[str]:
    names = {e["name"] for e in c.spec.get("env") or []}
    secrets = _secret_keys(objs)
    configmaps = {n: set(o.get("data") or {}) for n, o in _by_kind(objs, "ConfigMap").items()}
    for ef in c.spec.get("envFrom") or []:
        if "secretRef" in ef:
            names |= secrets.get(ef["secretRef"].get("name"), set()) or set()
        if "configMapRef" in ef:
            names |= configmaps.get(ef["configMapRef"].get("name"), set())
    return names


def _variables(node) -> set[str]:
    """${VAR} substitutions in the string values of a parsed config (comments do not count;
    $${VAR} is Backstage's escape for a literal)."""
    if isinstance(node, dict):
        return set().union(set(), *(_variables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(set(), *(_variables(v) for v in node))
    if isinstance(node, str):
        return set(ENV_VAR.findall(node.replace("$${", "")))
    return set()


def app_config_variables(objs: list[dict]) -> list[str]:
    """Every ${VAR} in the app-config files mounted into Backstage is set on its container."""
    bad = []
    configmaps = _by_kind(objs, "ConfigMap")
    found_backstage = False
    for c in containers(objs):
        if c.spec.get("name") != "backstage" or c.init:
            continue
        found_backstage = True
        env = _container_env_names(c, objs)
        _, spec = pod_spec(c.owner)
        for v in spec.get("volumes") or []:
            cm = configmaps.get((v.get("configMap") or {}).get("name"))
            if not cm:
                continue
            for file, text in (cm.get("data") or {}).items():
                if not file.endswith((".yaml", ".yml")):
                    continue
                for var in sorted(_variables(yaml.safe_load(text))):
                    if var not in env:
                        bad.append(
                            f"ConfigMap/{cm['metadata'].get('namespace')}/"
                            f"{cm['metadata']['name']}: data.{file} uses ${{{var}}}, which "
                            f"{ident(c.owner)} {c.path} does not define"
                        )
    if not found_backstage:
        bad.append("no container named backstage in the build")
    return bad


def probes_and_resources(objs: list[dict]) -> list[str]:
    bad = []
    for c in containers(objs):
        where = f"{ident(c.owner)}: {c.path}"
        if not c.init:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c.spec:
                    bad.append(f"{where}.{probe} is missing")
        res = c.spec.get("resources") or {}
        for field in ("requests.cpu", "requests.memory", "limits.memory"):
            group, name = field.split(".")
            if name not in (res.get(group) or {}):
                bad.append(f"{where}.resources.{field} is missing")
    return bad


def run_as_non_root(objs: list[dict]) -> list[str]:
    bad = []
    for c in containers(objs):
        _, spec = pod_spec(c.owner)
        pod_sc = spec.get("securityContext") or {}
        sc = c.spec.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        key = (ident(c.owner), c.spec.get("name"))
        if key in ROOT_ALLOWED:
            continue
        where = f"{ident(c.owner)}: {c.path}"
        if non_root is not True:
            bad.append(f"{where}.securityContext.runAsNonRoot is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}.securityContext.allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            bad.append(f"{where}.securityContext.capabilities.drop lacks ALL")
    return bad


CHECKS = {
    "namespace": namespaces,
    "image-tags": image_tags,
    "references": references,
    "selectors": selectors,
    "app-config-variables": app_config_variables,
    "probes-and-resources": probes_and_resources,
    "run-as-non-root": run_as_non_root,
}
