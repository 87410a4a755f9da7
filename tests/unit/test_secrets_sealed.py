"""SealedSecrets: hybrid round trips per scope, label binding, tampering, certificate checks, and
interop with the real kubeseal (built from the Go module proxy by the kubeseal_bin fixture)."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID
from krm_helpers import SEALED_CERT, SEALED_KEY, SeededRng
from krm_secrets import sealed, yamlio
from krm_secrets.errors import KrmError

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PRIV = load_pem_private_key(SEALED_KEY.read_bytes(), None)
PUB = sealed.load_certificate(SEALED_CERT.read_bytes(), "cert", NOW)
VALUES = {"bin": bytes(range(256)), "empty": b"", "crlf": b"a\r\nb", "no": b"no"}
SCOPES = ["strict", "namespace-wide", "cluster-wide"]


def make(scope: str, name: str = "s", ns: str = "backstage") -> dict:
    return sealed.build_sealed(
        name, ns, scope, "Opaque", {"app": "x"}, {"note": "kept"}, VALUES, PUB, SeededRng(1)
    )


@pytest.mark.parametrize("scope", SCOPES)
def test_roundtrip(scope):
    doc = yamlio.load(yamlio.dump(make(scope)))
    assert sealed.unseal(doc, PRIV) == VALUES
    sealed.well_formed(doc, "x")


@pytest.mark.parametrize(
    "scope,moved,opens",
    [
        ("strict", {"name": "other"}, False),
        ("strict", {"namespace": "other"}, False),
        ("namespace-wide", {"name": "other"}, True),
        ("namespace-wide", {"namespace": "other"}, False),
        ("cluster-wide", {"name": "other", "namespace": "other"}, True),
    ],
)
def test_label_binds_name_and_namespace(scope, moved, opens):
    doc = make(scope)
    doc["metadata"].update(moved)
    if opens:
        assert sealed.unseal(doc, PRIV) == VALUES
    else:
        with pytest.raises(sealed.SealError, match="sealed for another"):
            sealed.unseal(doc, PRIV)


def test_scope_annotation_removed_is_an_error():
    doc = make("namespace-wide")
    del doc["metadata"]["annotations"][sealed.NS_WIDE]
    with pytest.raises(sealed.SealError):
        sealed.unseal(doc, PRIV)


def test_flipped_byte_anywhere_is_an_error():
    ct = sealed.hybrid_encrypt(PUB, b"secret", b"ns/n", SeededRng(2))
    for i in list(range(0, len(ct), 7)) + [len(ct) - 1]:
        t = bytearray(ct)
        t[i] ^= 1
        with pytest.raises(sealed.SealError):
            sealed.hybrid_decrypt(PRIV, bytes(t), b"ns/n")


def test_wrong_private_key():
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(sealed.SealError):
        sealed.unseal(make("strict"), other)


def test_format_is_the_controllers():
    ct = sealed.hybrid_encrypt(PUB, b"v", b"", SeededRng(3))
    assert int.from_bytes(ct[:2], "big") == 512  # 4096-bit RSA ciphertext length prefix
    assert len(ct) == 2 + 512 + 1 + 16  # + AES-GCM ciphertext and tag


def _cert(days_from: int, days_to: int, key=None) -> bytes:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    c = (
        x509.CertificateBuilder()
        .subject_name(n)
        .issuer_name(n)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW + timedelta(days=days_from))
        .not_valid_after(NOW + timedelta(days=days_to))
        .sign(key, hashes.SHA256())
    )
    return c.public_bytes(serialization.Encoding.PEM)


def test_certificate_validity():
    with pytest.raises(KrmError, match="expired"):
        sealed.load_certificate(_cert(-10, -1), "c", NOW)
    with pytest.raises(KrmError, match="not valid yet"):
        sealed.load_certificate(_cert(1, 10), "c", NOW)
    with pytest.raises(KrmError, match="not a PEM"):
        sealed.load_certificate(b"garbage", "c", NOW)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KrmError, match="1024 bits"):
        sealed.load_certificate(_cert(-1, 1, small), "c", NOW)


@pytest.mark.parametrize(
    "secret,message",
    [
        ({"metadata": {"name": "x"}}, "needs the Secret's final namespace"),
        ({"metadata": {"name": "Bad_Name", "namespace": "ns"}}, "invalid Secret name"),
        ({"metadata": {"name": "x", "namespace": "NS!"}}, "invalid namespace"),
    ],
)
def test_final_name_and_namespace_are_checked(secret, message):
    with pytest.raises(KrmError, match=message):
        sealed.seal_secret(
            {"apiVersion": "v1", "kind": "Secret", "data": {"k": "dg=="}, **secret},
            PUB,
            None,
            SeededRng(1),
            "in.yaml",
        )


def test_cluster_wide_needs_no_namespace():
    doc = sealed.seal_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "x", "annotations": {sealed.CLUSTER_WIDE: "true"}},
            "stringData": {"k": "v"},
        },
        PUB,
        None,
        SeededRng(1),
        "in.yaml",
    )
    assert sealed.unseal(doc, PRIV) == {"k": b"v"}


def test_well_formed_catches_a_rename():
    doc = make("strict")
    doc["metadata"]["name"] = "renamed"
    with pytest.raises(KrmError, match="sealed for backstage/s"):
        sealed.well_formed(doc, "rendered")


def test_last_applied_annotation_is_stripped():
    doc = sealed.seal_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "x",
                "namespace": "n",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{leak}"},
            },
            "data": {"k": "dg=="},
        },
        PUB,
        None,
        SeededRng(1),
        "in.yaml",
    )
    assert "leak" not in yamlio.dump(doc)


@pytest.mark.parametrize("scope", SCOPES)
def test_kubeseal_recovery_unseal_opens_ours(kubeseal_bin, tmp_path, scope):
    doc = make(scope, name="app", ns="backstage")
    out = subprocess.run(
        [
            kubeseal_bin,
            "--recovery-unseal",
            "--recovery-private-key",
            str(SEALED_KEY),
            "-o",
            "json",
        ],
        input=yamlio.dump(doc).encode(),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    secret = json.loads(out.stdout)
    assert {k: base64.b64decode(v or "") for k, v in secret["data"].items()} == VALUES
    assert secret["metadata"]["name"] == "app" and secret["metadata"]["namespace"] == "backstage"
    assert secret["metadata"]["labels"] == {"app": "x"}


@pytest.mark.parametrize("scope", SCOPES)
def test_we_unseal_what_kubeseal_sealed(kubeseal_bin, tmp_path, scope):
    ann = {
        "strict": {},
        "namespace-wide": {sealed.NS_WIDE: "true"},
        "cluster-wide": {sealed.CLUSTER_WIDE: "true"},
    }[scope]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app", "namespace": "backstage", "annotations": ann},
        "data": {k: base64.b64encode(v).decode() for k, v in VALUES.items() if v},
    }
    out = subprocess.run(
        [kubeseal_bin, "--cert", str(SEALED_CERT), "-o", "yaml"],
        input=yamlio.dump(secret).encode(),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    doc = yamlio.load(out.stdout)
    assert sealed.scope_of(doc) == scope
    sealed.well_formed(doc, "kubeseal")
    assert sealed.unseal(doc, PRIV) == {k: v for k, v in VALUES.items() if v}


def test_kubeseal_raw_interop(kubeseal_bin, tmp_path):
    f = tmp_path / "v"
    f.write_bytes(b"raw\x00value")
    out = subprocess.run(
        [
            kubeseal_bin,
            "--raw",
            "--cert",
            str(SEALED_CERT),
            "--scope",
            "strict",
            "--name",
            "n",
            "--namespace",
            "ns",
            "--from-file",
            str(f),
        ],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert sealed.hybrid_decrypt(PRIV, base64.b64decode(out.stdout), b"ns/n") == b"raw\x00value"
