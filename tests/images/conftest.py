"""Fixtures of the image tests (marker ``images``): build the images with the repository's
scripts (seconds when nothing changed) and give each test a set of Docker resources that is
removed when the test ends."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from imagetools import Resources, build, run


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if shutil.which("docker") is None:
        pytest.fail(
            "docker is not installed: the image tests need a Docker engine (scripts/docker-up.sh)"
        )
    proc = run(["docker", "info"], check=False, timeout=30)
    if proc.returncode != 0:
        pytest.fail(
            "Docker does not answer ('docker info' failed): start it first (scripts/docker-up.sh)\n"
            + proc.stderr
        )


@pytest.fixture(scope="session")
def postgres_image(docker_ready) -> str:
    return build("build-postgres-image.sh")


@pytest.fixture(scope="session")
def backstage_image(docker_ready) -> str:
    return build("build-backstage-image.sh")


@pytest.fixture
def resources(request) -> Iterator[Resources]:
    res = Resources()
    yield res
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        res.dump_logs()
    res.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
