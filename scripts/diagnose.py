#!/usr/bin/env python3
"""Run the Backstage guide's troubleshooting on a namespace and name the likely cause.

usage: scripts/diagnose.py [--namespace backstage] [--context CONTEXT] [--kubectl PATH]

Prints pod status, describe of failing pods, recent logs, recent events, PostgreSQL's
`SELECT version();` and Backstage's health endpoints (through a temporary port-forward), then a
list of findings, each with the likely cause and what to do. Exit code 0 when everything is
healthy, 1 when something was found, 2 when the cluster could not be asked.

Standard library only, so it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    subject: str
    problem: str
    cause: str
    fix: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}\n  likely cause: {self.cause}\n  fix: {self.fix}"


LOG_HINTS = [
    ("ECONNREFUSED", "Backstage cannot reach PostgreSQL (connection refused)",
     "check that the postgres pod is Ready and that POSTGRES_HOST=postgres, POSTGRES_PORT=5432"),
    ("password authentication failed", "PostgreSQL rejected the password",
     "the password in postgres-secrets changed after the database was initialised: "
     "set the role's password in the database (krm-secrets rotate says how) or restore it"),
    ("getaddrinfo ENOTFOUND", "a host name does not resolve",
     "check POSTGRES_HOST and the cluster DNS (kube-system/coredns)"),
    ("Missing required config value", "app-config refers to a value that is not set",
     "a ${VAR} of app-config has no environment variable: check the Secrets' keys"),
    ("POSTGRES_PASSWORD", "PostgreSQL refuses to start without a password",
     "postgres-secrets lacks POSTGRES_PASSWORD: regenerate the Secrets (docs/secrets.md)"),
]


def classify_pod(pod: dict, logs: str = "") -> list[Finding]:
    """Findings for one pod, from its status (as `kubectl get pod -o json` gives it)."""
    name = f"pod/{pod['metadata']['name']}"
    status = pod.get("status", {})
    found: list[Finding] = []
    if status.get("phase") == "Pending":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                msg = cond.get("message", "")
                if "PersistentVolumeClaim" in msg or "volume" in msg.lower():
                    found.append(Finding(name, f"Pending: {msg}",
                        "its PersistentVolumeClaim is not bound (no matching PV, or no "
                        "default StorageClass with dynamic provisioning)",
                        "kubectl -n backstage describe pvc; in the lab the PV "
                        "backstage-postgres-data must exist; elsewhere set storageClassName"))
                elif "Insufficient" in msg:
                    found.append(Finding(name, f"Pending: {msg}",
                        "the nodes lack the CPU or memory the pod requests",
                        "lower the requests in the overlay or add capacity"))
                else:
                    found.append(Finding(name, f"Pending: {msg}", "the scheduler cannot place it",
                                         "kubectl -n backstage describe " + name))
    all_statuses = (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or [])
    for cs in all_statuses:
        if cs.get("name") == "wait-for-postgres" and "running" in (cs.get("state") or {}):
            found.append(Finding(f"{name} init container wait-for-postgres",
                "Backstage waits for PostgreSQL to accept connections",
                "the postgres pod is not Ready (see its status above), or POSTGRES_HOST/"
                "POSTGRES_PORT name the wrong Service or port",
                "kubectl -n backstage get pods,endpoints postgres; "
                "kubectl -n backstage logs " + name + " -c wait-for-postgres"))
            continue
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason", ""), waiting.get("message", "")
        image = cs.get("image", "")
        where = f"{name} container {cs.get('name')}"
        if reason in ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"):
            found.append(Finding(where, f"{reason}: {message}",
                f"image {image} is not on the node and cannot be pulled",
                "load it: kind load docker-image " + image +
                " (or minikube image load); build it with scripts/build-backstage-image.sh "
                "or scripts/build-postgres-image.sh; in production check the registry and "
                "the pull secret registry-credentials"))
        elif reason == "CreateContainerConfigError":
            found.append(Finding(where, f"{reason}: {message}",
                "a Secret or ConfigMap it needs is missing or lacks a key",
                "build with `kustomize build --enable-alpha-plugins --enable-exec` so that "
                "krm-secrets makes the Secrets (kubectl apply -k cannot); check your age key"))
        elif reason == "CrashLoopBackOff":
            hint = next(((p, f) for key, p, f in LOG_HINTS if key in logs), None)
            last = (cs.get("lastState") or {}).get("terminated") or {}
            problem = f"CrashLoopBackOff (last exit {last.get('exitCode', '?')}, " \
                      f"{last.get('reason', '?')})"
            if last.get("reason") == "OOMKilled":
                found.append(Finding(where, problem, "it runs out of memory",
                                     "raise resources.limits.memory in the overlay"))
            elif hint:
                found.append(Finding(where, problem, hint[0], hint[1]))
            else:
                found.append(Finding(where, problem, "the process exits at start",
                                     "read its logs above (kubectl logs --previous)"))
        elif cs.get("started") and not cs.get("ready") and not cs.get("name", "").startswith(
                "volume-"):
            found.append(Finding(where, "running but not Ready",
                "its readiness probe fails (Backstage: /.backstage/health/v1/readiness; "
                "PostgreSQL: pg_isready)", "read its logs and events above"))
    return found


def classify_health(results: dict[str, tuple[int | None, str]]) -> list[Finding]:
    found = []
    for path, (code, body) in results.items():
        if code is None:
            found.append(Finding(f"GET {path}", f"no answer: {body}",
                "connection refused: no Ready backstage pod behind the Service, or the "
                "port-forward could not start", "kubectl -n backstage get pods; see above"))
        elif path == "/api/catalog/entities" and code not in (200, 401):
            found.append(Finding(f"GET {path}", f"HTTP {code}", "the catalog is not serving",
                                 "read the backstage logs above"))
        elif path != "/api/catalog/entities" and code != 200:
            found.append(Finding(f"GET {path}", f"HTTP {code}: {body[:200]}",
                "Backstage is up but not healthy", "read the backstage logs above"))
    return found


class Kubectl:
    def __init__(self, binary: str, namespace: str, context: str | None):
        self.base = [binary] + (["--context", context] if context else [])
        self.namespace = namespace

    def run(self, *args: str, namespaced: bool = True, timeout: int = 60) -> tuple[int, str]:
        cmd = self.base + (["--namespace", self.namespace] if namespaced else []) + list(args)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, f"timed out: {' '.join(cmd)}"
        return p.returncode, p.stdout + p.stderr


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(k: Kubectl) -> dict[str, tuple[int | None, str]]:
    port = free_port()
    pf = subprocess.Popen(k.base + ["--namespace", k.namespace, "port-forward", "svc/backstage",
                                    f"{port}:7007"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    results: dict[str, tuple[int | None, str]] = {}
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if pf.poll() is not None:
                break
            time.sleep(0.3)
        for path in ("/.backstage/health/v1/readiness", "/healthcheck", "/api/catalog/entities"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    results[path] = (r.status, r.read(300).decode(errors="replace"))
            except urllib.error.HTTPError as e:
                results[path] = (e.code, e.read(300).decode(errors="replace"))
            except (urllib.error.URLError, OSError) as e:
                out = pf.stdout.read() if pf.poll() is not None and pf.stdout else ""
                results[path] = (None, f"{e} {out}".strip())
            print(f"GET {path} -> {results[path][0]} {results[path][1][:200]}")
    finally:
        pf.terminate()
        pf.wait(timeout=10)
    return results


def diagnose(k: Kubectl) -> int:
    rc, out = k.run("get", "namespace", k.namespace, namespaced=False)
    if rc != 0:
        print(f"cannot read namespace {k.namespace}: {out.strip()}", file=sys.stderr)
        return 2
    section(f"pods in {k.namespace}")
    print(k.run("get", "pods", "-o", "wide")[1])
    rc, out = k.run("get", "pods", "-o", "json")
    pods = json.loads(out)["items"] if rc == 0 else []
    findings: list[Finding] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        ready = all(c.get("ready") for c in pod.get("status", {}).get("containerStatuses") or [])
        logs = ""
        if not ready or pod["status"].get("phase") != "Running":
            section(f"describe pod/{name}")
            print(k.run("describe", "pod", name)[1])
            for c in pod["spec"].get("initContainers", []) + pod["spec"].get("containers", []):
                for prev in ("--previous", None):
                    args = ["logs", name, "-c", c["name"], "--tail=40"] + ([prev] if prev else [])
                    rc, out = k.run(*args)
                    if rc == 0 and out.strip():
                        section(f"logs {name}/{c['name']}{' (previous)' if prev else ''}")
                        print(out)
                        logs += out
        findings += classify_pod(pod, logs)
    section("recent events")
    print(k.run("get", "events", "--sort-by=.lastTimestamp")[1][-6000:])
    section("PostgreSQL: SELECT version();")
    rc, out = k.run("exec", "deploy/postgres", "--", "sh", "-c",
                    'psql -U "$POSTGRES_USER" -d postgres -c "SELECT version();"', timeout=30)
    print(out)
    if rc != 0:
        findings.append(Finding("deploy/postgres", "psql SELECT version() failed",
                                "PostgreSQL is not running or not accepting connections",
                                "see its pod status and logs above"))
    section("Backstage health through kubectl port-forward svc/backstage")
    findings += classify_health(health(k))
    section("findings")
    if not findings:
        print("none: every pod is Ready, PostgreSQL answers and Backstage is healthy")
        return 0
    for f in findings:
        print(f"- {f}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", "-n", default="backstage")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    parser.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl")
    args = parser.parse_args(argv)
    return diagnose(Kubectl(args.kubectl, args.namespace, args.context))


if __name__ == "__main__":
    sys.exit(main())
