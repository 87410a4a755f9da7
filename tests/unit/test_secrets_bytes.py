"""Values are bytes: whatever goes in comes out exactly, through every path a value takes
(krm-secrets decrypt, sops --decrypt, the kustomize build, the sealed-secrets key)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from krm_helpers import AGE_KEY, SEALED_CERT, SEALED_KEY, SeededRng, isolated_env, run_cli
from krm_secrets import sealed, yamlio

VALUES = {
    "binary": bytes(range(256)),
    "crlf": b"one\r\ntwo\r\n",
    "nul": b"\x00",
    "nul-inside": b"a\x00b",
    "invalid-utf8": b"\xc3\x28\xa0\xa1\xff",
    "leading-zeros": b"000123",
    "yaml11-no": b"no",
    "yaml11-on": b"on",
    "yaml11-off": b"Off",
    "yaml11-y": b"y",
    "null-word": b"null",
    "tilde": b"~",
    "octal": b"0o17",
    "float-like": b"1e3",
    "colon-space": b"key: value",
    "hash": b"# not a comment",
    "quotes": b"'\"",
    "trailing-newline": b"x\n",
    "only-newlines": b"\n\n",
    "spaces": b"  padded  ",
    "unicode": "héllo ✓ 🔑".encode(),
    "long": SeededRng(11)(300_000),
}
RECIPIENT = "age16p0zte068tcxenfjpclltrhq3ldwydwketsejtzjse3kus9lw57sfamllr"


def spec(fmt: str) -> str:
    keys = "".join(
        f"    - name: {k}\n      literalBase64: {base64.b64encode(v).decode()}\n"
        for k, v in VALUES.items()
    )
    keys += "    - name: from-file\n      fromUser: {file: value.bin}\n"
    keys += "    - name: empty\n      literal: ''\n"
    return (
        "apiVersion: secrets.backstage-gitops.dev/v1alpha1\nkind: SecretSpec\n"
        "metadata: {name: bytes}\n"
        f"spec:\n  secret: {{namespace: ns}}\n  keys:\n{keys}  format:\n{fmt}\n"
    )


EXPECTED = {**VALUES, "from-file": SeededRng(12)(5000) + b"\r\n\x00", "empty": b""}


@pytest.fixture
def sops_artifact(tmp_path: Path) -> Path:
    (tmp_path / "value.bin").write_bytes(EXPECTED["from-file"])
    (tmp_path / "bytes.yaml").write_text(spec(f"    sops: {{recipients: [{RECIPIENT}]}}"))
    proc = run_cli("generate", str(tmp_path), env=isolated_env())
    assert proc.returncode == 0, proc.stderr.decode()
    return tmp_path / "bytes.sops.yaml"


def decoded(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}


def test_krm_secrets_decrypt_gives_the_bytes(sops_artifact):
    proc = run_cli("decrypt", str(sops_artifact), env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)))
    assert proc.returncode == 0, proc.stderr.decode()
    assert decoded(yamlio.load(proc.stdout)) == EXPECTED


def test_sops_decrypt_gives_the_bytes(sops_artifact, sops_bin):
    proc = subprocess.run(
        [sops_bin, "--decrypt", str(sops_artifact)],
        capture_output=True,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
        cwd=sops_artifact.parent,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert decoded(yamlio.load(proc.stdout)) == EXPECTED


@pytest.mark.render
def test_kustomize_build_gives_the_bytes(sops_artifact, kustomize_bin):
    d = sops_artifact.parent
    (d / "kustomization.yaml").write_text(
        "generators:\n- |-\n  apiVersion: secrets.backstage-gitops.dev/v1alpha1\n"
        "  kind: SecretDecryptor\n"
        "  metadata:\n    name: d\n    annotations:\n      config.kubernetes.io/function: |\n"
        "        exec: {path: krm-secrets}\n  spec: {files: [bytes.sops.yaml]}\n"
    )
    proc = subprocess.run(
        [kustomize_bin, "build", "--enable-alpha-plugins", "--enable-exec", str(d)],
        capture_output=True,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
    )
    assert proc.returncode == 0, proc.stderr.decode()
    (secret,) = yamlio.load_all(proc.stdout)
    assert decoded(secret) == EXPECTED


def test_sealed_values_unseal_to_the_bytes(tmp_path, kubeseal_bin):
    (tmp_path / "value.bin").write_bytes(EXPECTED["from-file"])
    (tmp_path / "bytes.yaml").write_text(spec(f"    sealedSecret: {{certificate: {SEALED_CERT}}}"))
    proc = run_cli("generate", str(tmp_path), env=isolated_env())
    assert proc.returncode == 0, proc.stderr.decode()
    art = tmp_path / "bytes.sealed.yaml"
    priv = load_pem_private_key(SEALED_KEY.read_bytes(), None)
    assert sealed.unseal(yamlio.load(art.read_text()), priv) == EXPECTED
    out = subprocess.run(
        [
            kubeseal_bin,
            "--recovery-unseal",
            "--recovery-private-key",
            str(SEALED_KEY),
            "-o",
            "json",
        ],
        input=art.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert decoded(json.loads(out.stdout)) == EXPECTED


def test_we_read_yaml_12_words_as_sops_does(tmp_path, sops_bin, identity):
    from krm_secrets import sops

    src = tmp_path / "s.yaml"
    src.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: w, annotations: {a: yes}}\n"
        "stringData:\n  a: no\n  b: on\n  c: off\n  d: y\n"
    )
    out = subprocess.run(
        [
            sops_bin,
            "--encrypt",
            "--age",
            str(identity.recipient),
            "--encrypted-regex",
            "^(data|stringData)$",
            str(src),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=isolated_env(),
    )
    assert out.returncode == 0, out.stderr
    opened = sops.open_document(yamlio.load(out.stdout), [identity], [])  # the MAC holds
    assert opened.tree["stringData"] == {"a": "no", "b": "on", "c": "off", "d": "y"}
    assert opened.tree["metadata"]["annotations"] == {"a": "yes"}
