"""No plaintext secret value in any file of the repository (committed or about to be).

Test-only keys and fixtures live under tests/keys/ and tests/fixtures/ and are exempt; they
open nothing outside the tests."""

import re
import subprocess

import pytest
import yaml

from render import REPO

pytestmark = pytest.mark.render

EXEMPT = ("tests/keys/", "tests/fixtures/", "tests/render/test_render_plaintext.py")
PRIVATE_KEY = re.compile(rb"AGE-SECRET-KEY-1[0-9A-Z]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----")
SOPS_VALUE = re.compile(r"^ENC\[AES256_GCM,data:.*\]$")
# The render goldens hold digests in place of values (render.redact_secrets).
REDACTED_VALUE = re.compile(r"^<redacted>$")
GOLDENS = "tests/render/golden/"


def repository_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f and (REPO / f).is_file()]


def plaintext_findings(path: str, content: bytes) -> list[str]:
    found = []
    if PRIVATE_KEY.search(content):
        found.append(f"{path}: contains a private key")
    if not path.endswith((".yaml", ".yml")):
        return found
    try:
        docs = [d for d in yaml.safe_load_all(content) if isinstance(d, dict)]
    except yaml.YAMLError:
        return found  # not ours to judge here; the render tests parse what they build
    for d in docs:
        if d.get("kind") == "Secret":
            for field in ("data", "stringData"):
                for key, value in (d.get(field) or {}).items():
                    ok = SOPS_VALUE if not path.startswith(GOLDENS) else REDACTED_VALUE
                    if not (isinstance(value, str) and ok.match(value)):
                        name = d.get("metadata", {}).get("name")
                        found.append(f"{path}: Secret/{name}: {field}.{key} is not encrypted")
        if d.get("kind") == "Kustomization":
            for i, gen in enumerate(d.get("secretGenerator") or []):
                if gen.get("literals") or gen.get("files") or gen.get("envs"):
                    found.append(
                        f"{path}: secretGenerator[{i}] ({gen.get('name')}) takes plaintext "
                        "values; use krm-secrets (docs/secrets.md)"
                    )
    return found


def test_no_plaintext_secret_in_the_repository():
    findings = []
    for path in repository_files():
        if path.startswith(EXEMPT):
            continue
        findings += plaintext_findings(path, (REPO / path).read_bytes())
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"kind: Secret\nmetadata: {name: s}\nstringData: {PASSWORD: hunter2}\n",
         "Secret/s: stringData.PASSWORD is not encrypted"),
        (b"kind: Secret\nmetadata: {name: s}\ndata: {K: aGk=}\n", "Secret/s: data.K"),
        (b"kind: Kustomization\nsecretGenerator:\n- name: s\n  literals: [a=b]\n",
         "secretGenerator[0] (s) takes plaintext"),
        (b"# key\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n", "private key"),
    ],
)
def test_plaintext_scan_catches(content, expected):
    [finding] = plaintext_findings("x.yaml", content)
    assert expected in finding


def test_plaintext_scan_accepts_redacted_values_in_goldens_only():
    content = b"kind: Secret\nmetadata: {name: s}\ndata: {K: '<redacted>'}\n"
    assert plaintext_findings("tests/render/golden/lab.yaml", content) == []
    assert plaintext_findings("overlays/lab/secret.yaml", content)


def test_plaintext_scan_accepts_sops_values():
    content = b"kind: Secret\nmetadata: {name: s}\ndata: {K: 'ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]'}\n"
    assert plaintext_findings("x.yaml", content) == []
