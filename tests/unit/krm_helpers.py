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


def _repository_keys() -> Path:
    """The keys that open the repository's lab Secrets: the test-only key (the committed ones)
    and the user's own key, read before the tests isolate their environment. `make lab` gives
    a new user their own values encrypted to their key, and the tests must still pass after it
    (the README runs `make lab`, then `make test`)."""
    parts = [AGE_KEY.read_text()]
    own = os.environ.get("SOPS_AGE_KEY_FILE") or str(
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "sops/age/keys.txt"
    )
    if os.path.isfile(own):
        parts.append(Path(own).read_text())
    if os.environ.get("SOPS_AGE_KEY"):
        parts.append(os.environ["SOPS_AGE_KEY"])
    combined = EMPTY_HOME / "repository-keys.txt"
    fd = os.open(combined, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(parts) + "\n")
    return combined


REPO_KEYS = _repository_keys()


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
