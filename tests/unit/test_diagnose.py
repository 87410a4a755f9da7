"""The diagnose script names the likely cause of the failures of the guide's troubleshooting."""

import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "diagnose", Path(__file__).resolve().parents[2] / "scripts" / "diagnose.py")
diagnose = importlib.util.module_from_spec(spec)
sys.modules["diagnose"] = diagnose  # dataclasses look their module up
spec.loader.exec_module(diagnose)


def pod(waiting=None, phase="Running", conditions=(), last=None, name="backstage"):
    cs = {"name": name, "image": "backstage:1.0.0", "ready": False, "started": False,
          "state": {"waiting": waiting} if waiting else {"running": {}},
          "lastState": {"terminated": last} if last else {}}
    return {"metadata": {"name": "backstage-abc"},
            "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": [cs]}}


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"])
def test_image_pull_names_kind_load(reason):
    [f] = diagnose.classify_pod(pod({"reason": reason, "message": "x"}))
    assert "kind load docker-image backstage:1.0.0" in f.fix


def test_crashloop_with_connection_refused_points_at_postgres():
    [f] = diagnose.classify_pod(
        pod({"reason": "CrashLoopBackOff"}, last={"exitCode": 1, "reason": "Error"}),
        logs="Error: connect ECONNREFUSED 10.96.0.5:5432")
    assert "cannot reach PostgreSQL" in f.cause


def test_crashloop_oom():
    [f] = diagnose.classify_pod(
        pod({"reason": "CrashLoopBackOff"}, last={"exitCode": 137, "reason": "OOMKilled"}))
    assert "memory" in f.cause


def test_pending_on_unbound_claim():
    cond = {"type": "PodScheduled", "status": "False",
            "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims"}
    [f] = diagnose.classify_pod(pod(phase="Pending", conditions=[cond]))
    assert "PersistentVolumeClaim is not bound" in f.cause


def test_missing_secret():
    [f] = diagnose.classify_pod(pod({"reason": "CreateContainerConfigError",
                                     "message": 'secret "postgres-secrets" not found'}))
    assert "--enable-alpha-plugins --enable-exec" in f.fix


def test_connection_refused_on_health():
    [f] = diagnose.classify_health({"/healthcheck": (None, "Connection refused")})
    assert "connection refused" in f.cause


def test_healthy_is_quiet():
    ok = {"/.backstage/health/v1/readiness": (200, '{"status":"ok"}'), "/healthcheck": (200, ""),
          "/api/catalog/entities": (401, "")}
    assert diagnose.classify_health(ok) == []
    assert diagnose.classify_pod(pod()) == []


def test_backstage_waiting_for_postgres_in_its_init_container():
    waiting = pod(phase="Pending")
    waiting["status"]["initContainerStatuses"] = [
        {"name": "wait-for-postgres", "image": "backstage:1.0.0", "ready": False,
         "started": True, "state": {"running": {}}}]
    waiting["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "PodInitializing"}}
    [f] = diagnose.classify_pod(waiting)
    assert "waits for PostgreSQL" in f.problem
    assert "postgres pod is not Ready" in f.cause
