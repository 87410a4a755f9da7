"""Plugins shared by every test tier."""

# Kind cluster fixtures (kind_toolchain, kind_cluster, kind_cluster_factory) and the export of
# logs and events when a cluster test fails: see tests/kindcluster.py and docs/toolchain.md.
pytest_plugins = ("kindcluster",)
