"""Malformed function configs and ResourceLists: always a KRM error that names the field, never
an internal error (the CLI would turn one into a result too, but it would mean a bug)."""

from __future__ import annotations

import itertools

import pytest
from krm_helpers import REPO, make_ctx
from krm_secrets.cli import execute

API = "secrets.backstage-gitops.dev/v1alpha1"
WEIRD = [None, "text", 5, True, [], [1], {}, {"x": 1}]


def spec_with(path: str, value) -> dict:
    fc = {
        "apiVersion": API,
        "kind": "SecretSpec",
        "metadata": {"name": "x"},
        "spec": {
            "secret": {"namespace": "n"},
            "keys": [{"name": "k", "literal": "v"}],
            "format": {"sops": {"recipients": ["age1x"]}},
        },
    }
    cur = fc
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    if isinstance(cur, list):
        cur[int(parts[-1])] = value
    else:
        cur[parts[-1]] = value
    return fc


PATHS = [
    "metadata",
    "metadata.name",
    "spec",
    "spec.secret",
    "spec.secret.namespace",
    "spec.secret.type",
    "spec.keys",
    "spec.keys.0",
    "spec.keys.0.name",
    "spec.keys.0.literal",
    "spec.format",
    "spec.format.sops",
    "spec.format.sops.recipients",
    "spec.output",
]


@pytest.mark.parametrize("path,value", list(itertools.product(PATHS, WEIRD)))
def test_weird_spec_fields_are_krm_errors(path, value):
    rl = {"kind": "ResourceList", "items": [], "functionConfig": spec_with(path, value)}
    out, errors = execute(rl, make_ctx(), REPO)
    if errors:
        assert "internal error" not in errors[0].message, errors[0].message
        assert out["results"][0]["severity"] == "error"


@pytest.mark.parametrize(
    "rl",
    [
        None,
        "text",
        [],
        {"kind": "ResourceList", "items": "x", "functionConfig": {}},
        {
            "kind": "ResourceList",
            "items": [None, 1, "x"],
            "functionConfig": {"kind": "SecretDecryptor"},
        },
        {
            "kind": "ResourceList",
            "functionConfig": {
                "apiVersion": API,
                "kind": "SecretDecryptor",
                "metadata": {"name": "d"},
                "spec": {"files": "a"},
            },
        },
        {
            "kind": "ResourceList",
            "functionConfig": {
                "apiVersion": API,
                "kind": "SecretDecryptor",
                "metadata": {"name": "d"},
                "spec": {"files": [None]},
            },
        },
        {
            "kind": "ResourceList",
            "functionConfig": {
                "apiVersion": API,
                "kind": "SecretDecryptor",
                "metadata": {"name": "d"},
                "spec": {"files": ["tests/keys/age.key"]},
            },
        },
    ],
)
def test_weird_resource_lists_are_krm_errors(rl):
    out, errors = execute(rl, make_ctx(), REPO)
    assert errors and "internal error" not in errors[0].message, errors[0].message
