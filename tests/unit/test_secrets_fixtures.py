"""Golden fixture folders: tests/fixtures/<behaviour>/{fnconfig.yaml, input.yaml, expected.yaml |
error.yaml}, optional env.yaml. Each case runs twice: the same input gives the same output, and
an authoring (SecretSpec) output fed back in changes nothing.

UPDATE_GOLDENS=1 rewrites expected.yaml / error.yaml after a reviewed change.
Randomness is seeded and time fixed, so SOPS outputs are reproducible; SealedSecret values
(RSA-OAEP randomness is the library's) are unsealed with the test key and shown as digests.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from krm_helpers import AGE_KEY, EMPTY_HOME, REPO, SEALED_KEY, isolated_env, make_ctx
from krm_secrets import sealed, yamlio
from krm_secrets.cli import execute
from krm_secrets.config import KIND_SPEC

FIXTURES = REPO / "tests" / "fixtures"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "fnconfig.yaml").exists())
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"


def _env(case: Path) -> tuple[dict, Path | None]:
    env = isolated_env()
    key: Path | None = AGE_KEY
    f = case / "env.yaml"
    if f.exists():
        for k, v in (yamlio.load(f.read_text()) or {}).items():
            if k == "SOPS_AGE_KEY_FILE":
                key = (REPO / v) if v else None
            else:
                env[k] = str(v)
    return env, key


def _resource_list(case: Path) -> dict:
    fc = yamlio.load((case / "fnconfig.yaml").read_text())
    items = (
        yamlio.load_all((case / "input.yaml").read_text()) if (case / "input.yaml").exists() else []
    )
    return {
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": items,
        "functionConfig": fc,
    }


def _normalise(out: dict, case: Path) -> str:
    priv = load_pem_private_key(SEALED_KEY.read_bytes(), None)
    for item in out.get("items") or []:
        if isinstance(item, dict) and item.get("kind") == sealed.KIND:
            values = sealed.unseal(item, priv)  # proves they open with the controller's key
            item["spec"]["encryptedData"] = {
                k: f"<sealed: sha256 {hashlib.sha256(v).hexdigest()[:16]}>"
                for k, v in values.items()
            }
    return (
        yamlio.dump(out)
        .replace(str(case), "<fixture>")
        .replace(str(REPO), "<repo>")
        .replace(str(EMPTY_HOME), "<home>")
    )


def _run(case: Path, rl: dict, seed: int = 1) -> tuple[dict, list]:
    env, key = _env(case)
    ctx = make_ctx(seed, env, key)
    return execute(rl, ctx, case)


@pytest.mark.parametrize("name", CASES)
def test_fixture(name: str) -> None:
    case = FIXTURES / name
    rl = _resource_list(case)
    out, errors = _run(case, yamlio.load(yamlio.dump(rl)))
    text = _normalise(yamlio.load(yamlio.dump(out)), case)
    golden = case / ("error.yaml" if errors else "expected.yaml")
    other = case / ("expected.yaml" if errors else "error.yaml")
    got = (
        yamlio.dump(out["results"])
        .replace(str(case), "<fixture>")
        .replace(str(REPO), "<repo>")
        .replace(str(EMPTY_HOME), "<home>")
        if errors
        else text
    )
    if UPDATE:
        golden.write_text(got)
        other.unlink(missing_ok=True)
    assert not other.exists(), (
        f"{name}: expected {other.name}, but the function {'failed' if errors else 'succeeded'}"
    )
    assert golden.exists(), f"{name}: no {golden.name}; run with UPDATE_GOLDENS=1 and review it"
    assert got == golden.read_text()

    # Run twice (1): the same input gives the same output.
    out2, errors2 = _run(case, yamlio.load(yamlio.dump(rl)))
    assert [e.result() for e in errors2] == [e.result() for e in errors]
    if not errors:
        assert _normalise(yamlio.load(yamlio.dump(out2)), case) == text
    # Run twice (2): an authoring run over its own output changes nothing.
    if not errors and rl["functionConfig"].get("kind") == KIND_SPEC:
        again = {**rl, "items": out["items"]}
        out3, errors3 = _run(case, yamlio.load(yamlio.dump(again)), seed=2)
        assert not errors3
        assert yamlio.dump(out3["items"]) == yamlio.dump(out["items"])


def test_every_fixture_has_a_golden() -> None:
    for name in CASES:
        case = FIXTURES / name
        assert (case / "expected.yaml").exists() != (case / "error.yaml").exists(), name
