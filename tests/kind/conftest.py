"""Fixtures of the kind smoke tier (the cluster fixtures come from tests/kindcluster.py)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

SMOKEAPP = Path(__file__).resolve().parent / "smokeapp"


@pytest.fixture(scope="session")
def smoke_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A locally built image holding only tests/kind/smokeapp, tagged by its source hash."""
    digest = hashlib.sha256()
    for source in sorted(SMOKEAPP.iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    image = f"backstage-gitops/smoke:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return image
    binary = tmp_path_factory.mktemp("smokeapp") / "smokeapp"
    build = subprocess.run(
        ["go", "build", "-trimpath", "-o", str(binary), "."],
        cwd=SMOKEAPP,
        capture_output=True,
        text=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
    )
    if build.returncode != 0:
        pytest.fail(f"go build of {SMOKEAPP} failed:\n{build.stderr}", pytrace=False)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(binary, arcname="smokeapp")
    imported = subprocess.run(
        ["docker", "import", "--change", 'ENTRYPOINT ["/smokeapp"]', "-", image],
        input=archive.getvalue(),
        capture_output=True,
    )
    if imported.returncode != 0:
        pytest.fail(f"docker import {image} failed: {imported.stderr.decode()}", pytrace=False)
    return image
