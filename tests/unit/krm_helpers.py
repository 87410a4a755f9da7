"""Helpers of the krm-secrets unit tests: test-only keys, seeded randomness, real tools.

A test that needs a tool that is missing FAILS with the command that installs it; kubeseal is
built from the Go module proxy into the cache when absent.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agekeys import repository_keys
from krm_secrets.core import Context
from krm_secrets.keys import load_identities

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "tests" / "keys"
AGE_KEY = KEYS / "age.key"
SEALED_CERT = KEYS / "sealed-secrets-test.crt"
SEALED_KEY = KEYS / "sealed-secrets-test.key"
FIXED_NOW = datetime(2026, 1, 1, tzinfo=UTC)
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backstage-gitops"
KUBESEAL_VERSION = "v0.36.6"
VENV_BIN = Path(sys.executable).parent
# An empty home for the tools the tests run (removed at exit): no user key or config leaks in.
EMPTY_HOME = Path(tempfile.mkdtemp(prefix="krm-secrets-test-home-"))
atexit.register(shutil.rmtree, EMPTY_HOME, ignore_errors=True)


# The keys that open the repository's lab Secrets (tests/agekeys.py), read before the tests
# isolate their environment.
REPO_KEYS = repository_keys(EMPTY_HOME / "repository-keys.txt")


class SeededRng:
    """Deterministic 'randomness' for tests: same seed, same bytes."""

    def __init__(self, seed: int = 1):
        self._r = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._r.randbytes(n)


def isolated_env(**extra: str) -> dict[str, str]:
    """An environment with no age key but the ones a test gives (no ~/.config/sops leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["HOME"] = str(EMPTY_HOME)
    env["XDG_CONFIG_HOME"] = str(EMPTY_HOME / "config")  # so no ~/.config/sops/age key leaks in
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def make_ctx(
    seed: int = 1, env: dict[str, str] | None = None, key_file: Path | None = AGE_KEY
) -> Context:
    env = env if env is not None else isolated_env()
    if key_file is not None:
        env = {**env, "SOPS_AGE_KEY_FILE": str(key_file)}
    ctx = Context(rng=SeededRng(seed), now=lambda: FIXED_NOW, env=env)
    ctx.keyring = load_identities(env, REPO)
    return ctx


def need_tool(name: str, install: str) -> str:
    for cand in (VENV_BIN / name, REPO / ".tools" / "bin" / name):
        if cand.exists():
            return str(cand)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: {install}", pytrace=False)
    return found


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "krm-secrets"), *args],
        env=env if env is not None else isolated_env(),
        input=input,
        capture_output=True,
        cwd=cwd or REPO,
        timeout=120,
    )
