"""The build scripts fail early with clear errors, and reuse images whose content is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from imagetools import SCRIPTS, docker

pytestmark = pytest.mark.images

APP = SCRIPTS.parent / "images" / "backstage-app"


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPTS / "build-backstage-image.sh"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def small_app_copy(tmp_path):
    """The app's top-level files and backend package, without node_modules."""
    app = tmp_path / "app"
    shutil.copytree(
        APP,
        app,
        ignore=shutil.ignore_patterns("node_modules", "dist", "dist-types", ".yarn"),
    )
    return app


def test_missing_yarn_lock_is_a_clear_error(docker_ready, tmp_path):
    app = small_app_copy(tmp_path)
    (app / "yarn.lock").unlink()
    proc = run_script(str(app))
    assert proc.returncode != 0
    assert "yarn.lock is missing" in proc.stderr, proc.stderr


def test_node_version_outside_engines_is_a_clear_error(docker_ready, tmp_path):
    app = small_app_copy(tmp_path)
    package = json.loads((app / "package.json").read_text())
    assert package["engines"]["node"] == "22 || 24"
    proc = run_script("--node-version", "20.19.0", str(app))
    assert proc.returncode != 0
    assert "does not match the app's engines.node '22 || 24'" in proc.stderr, proc.stderr


def test_unknown_option_prints_usage(docker_ready):
    proc = run_script("--no-such-option")
    assert proc.returncode != 0
    assert "Usage:" in proc.stderr


def test_unchanged_rebuild_takes_seconds(backstage_image, postgres_image):
    image_id = docker("image", "inspect", "--format", "{{.Id}}", backstage_image).stdout
    for script in ("build-backstage-image.sh", "build-postgres-image.sh"):
        start = time.monotonic()
        proc = subprocess.run([str(SCRIPTS / script)], capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        assert "is current" in proc.stderr, proc.stderr
        assert elapsed < 30, f"{script} took {elapsed:.1f} s with nothing changed"
    assert docker("image", "inspect", "--format", "{{.Id}}", backstage_image).stdout == image_id


def test_load_flags_call_kind_and_minikube(backstage_image, tmp_path):
    """--kind-load and --minikube-load hand the image to `kind load docker-image` and
    `minikube image load` (stand-ins on PATH record the calls; no cluster is needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("kind", "minikube"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(SCRIPTS / "build-backstage-image.sh"), "--kind-load", "lab", "--minikube-load", "mk"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert calls.read_text().splitlines() == [
        f"kind load docker-image --name lab {backstage_image}",
        f"minikube --profile mk image load {backstage_image}",
    ]
