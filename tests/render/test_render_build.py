"""Every overlay builds with the pinned kustomize, deterministically, and matches its golden."""

import os
import statistics
import time

import pytest

from render import REPO, TARGETS, build, load, redact_secrets

pytestmark = pytest.mark.render

GOLDEN_DIR = REPO / "tests" / "render" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"


@pytest.mark.parametrize("target", TARGETS)
def test_build_is_byte_identical_across_runs(rendered, target):
    assert build(TARGETS[target]) == rendered(target)


@pytest.mark.parametrize("target", TARGETS)
def test_build_matches_golden(rendered, target):
    golden = GOLDEN_DIR / f"{target}.yaml"
    got = redact_secrets(rendered(target))
    if UPDATE:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert golden.exists(), f"{golden} is missing: run UPDATE_GOLDENS=1 pytest -m render"
    assert got == golden.read_text(), (
        f"kustomize build {TARGETS[target]} differs from {golden.relative_to(REPO)}; review the "
        "diff and regenerate with UPDATE_GOLDENS=1 pytest -m render"
    )


def test_root_builds_the_lab(rendered):
    assert rendered("root") == rendered("lab")


def test_lab_and_production_differ_where_they_should(rendered):
    lab = {(o["kind"], o["metadata"]["name"]) for o in load(rendered("lab"))}
    prod = {(o["kind"], o["metadata"]["name"]) for o in load(rendered("production"))}
    assert ("PersistentVolume", "backstage-postgres-data") in lab - prod
    assert {("Ingress", "backstage"), ("PodDisruptionBudget", "backstage"),
            ("HorizontalPodAutoscaler", "backstage"), ("NetworkPolicy", "default-deny")} <= prod - lab


@pytest.mark.parametrize("target", ["lab", "production"])
def test_render_time_median_under_two_seconds(target):
    times = []
    for _ in range(5):
        start = time.perf_counter()
        build(TARGETS[target])
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"kustomize build {TARGETS[target]}: median {median:.3f} s of {len(times)} runs")
    assert median < 2.0, f"rendering {target} took a median {median:.2f} s (goal: under 2 s)"
