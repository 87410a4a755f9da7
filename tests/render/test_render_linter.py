"""checkov, a second linter that users trust, over the rendered overlays: no finding that is
not waived, with its reason, in checkov-waivers.yaml."""

import json
import subprocess

import pytest
import yaml

from render import REPO, TARGETS

pytestmark = pytest.mark.render

CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
WAIVERS = yaml.safe_load((REPO / "tests" / "render" / "checkov-waivers.yaml").read_text())


def waived(target: str, check: str, resource: str) -> bool:
    return any(
        w["check"] == check
        and resource in w["resources"]
        and target in w.get("targets", TARGETS)
        for w in WAIVERS
    )


def test_every_waiver_has_a_reason():
    for w in WAIVERS:
        assert len(w.get("reason", "")) > 40, f"waiver {w['check']} needs a real reason"


def test_checkov_finds_nothing_unwaived(rendered, tmp_path):
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run scripts/bootstrap.sh", pytrace=False)
    for target in TARGETS:
        (tmp_path / f"{target}.yaml").write_text(rendered(target))
    proc = subprocess.run(
        [str(CHECKOV), "--directory", str(tmp_path), "--framework", "kubernetes",
         "--output", "json", "--quiet", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode in (0, 1), f"checkov failed to run:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout or "{}")
    reports = report if isinstance(report, list) else [report]
    findings, used = [], set()
    for r in reports:
        for f in r.get("results", {}).get("failed_checks", []):
            target = f["file_path"].strip("/").removesuffix(".yaml")
            if waived(target, f["check_id"], f["resource"]):
                used.add(f["check_id"])
            else:
                findings.append(f"{target}: {f['resource']}: {f['check_id']} {f['check_name']}")
    assert not findings, "checkov findings (fix them or waive them with a reason):\n" + "\n".join(
        sorted(set(findings))
    )
    stale = {w["check"] for w in WAIVERS} - used
    assert not stale, f"waivers that no longer match any finding, remove them: {sorted(stale)}"
