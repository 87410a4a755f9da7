"""The age identities that open the repository's lab Secrets, for the tests that build or
check them: the test-only key (it opens the committed ones) and, after it, the user's own keys
as sops would find them (`make lab` gives a new user their own values, encrypted to their key,
and the tests must pass after it: the README runs `make lab`, then `make test`)."""

from __future__ import annotations

import os
from pathlib import Path

TEST_KEY = Path(__file__).resolve().parent / "keys" / "age.key"


def repository_keys(target: Path) -> Path:
    """Write the identities to target (mode 0600) and return it."""
    parts = [TEST_KEY.read_text()]
    own = os.environ.get("SOPS_AGE_KEY_FILE") or str(
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "sops/age/keys.txt"
    )
    if os.path.isfile(own):
        parts.append(Path(own).read_text())
    if os.environ.get("SOPS_AGE_KEY"):
        parts.append(os.environ["SOPS_AGE_KEY"])
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(parts) + "\n")
    return target
