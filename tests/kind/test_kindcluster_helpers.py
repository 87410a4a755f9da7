"""Unit tests of the kind fixture's pure helpers (no Docker, no cluster: no marker)."""

from __future__ import annotations

from pathlib import Path

from kindcluster import Toolchain, parse_exports, pinned_versions, safe_name


def test_parse_exports_reads_only_export_lines():
    text = "export KIND=/c/kind\nnoise\nexport KIND_NODE_IMAGE=backstage-gitops/kind-node:v1\n"
    assert parse_exports(text) == {
        "KIND": "/c/kind",
        "KIND_NODE_IMAGE": "backstage-gitops/kind-node:v1",
    }


def test_toolchain_problems_name_each_missing_file(tmp_path: Path):
    toolchain = Toolchain(
        kind=tmp_path / "kind",
        kubectl=tmp_path / "kubectl",
        kubeseal=tmp_path / "kubeseal",
        node_image="backstage-gitops/kind-node:missing",
        config=tmp_path / "kind-config.yaml",
    )
    problems = "\n".join(toolchain.problems())
    for name in ("kind", "kubectl", "kubeseal", "kind-config.yaml"):
        assert str(tmp_path / name) in problems


def test_safe_name_keeps_test_ids_readable():
    assert safe_name("tests/kind/test_smoke.py::test_a[x y]") == (
        "tests_kind_test_smoke.py_test_a_x_y_"
    )


def test_pinned_versions_reads_versions_env():
    versions = pinned_versions()
    assert versions["KIND_VERSION"].startswith("v0.")
    assert versions["KUBERNETES_VERSION"].startswith("v1.")
