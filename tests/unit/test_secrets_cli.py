"""The CLI as people use it: help, exit codes, generate/rotate/decrypt/seal/check/keygen, and bad
input: a KRM result or a stderr line naming file, resource and field, exit 1, no traceback,
nothing half-written."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from krm_helpers import AGE_KEY, REPO_KEYS, SEALED_CERT, SEALED_KEY, isolated_env, run_cli
from krm_secrets import cli, sealed, yamlio

COMMANDS = ["fn", "generate", "rotate", "keygen", "decrypt", "seal", "check"]
KEYED = isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY))


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    return proc.stdout.decode()


def fails(proc: subprocess.CompletedProcess, *needles: str, code: int = 1) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


SPEC = """\
apiVersion: secrets.backstage-gitops.dev/v1alpha1
kind: SecretSpec
metadata:
  name: app-secrets
spec:
  secret:
    namespace: backstage
  keys:
    - name: USER
      literal: backstage
    - name: PASSWORD
      generate: {{length: 20}}
      afterRotation: ALTER ROLE backstage WITH PASSWORD '...';
    - name: TOKEN
      fromUser: {{env: TEST_TOKEN}}
  format:
{fmt}
"""
SOPS_FMT = (
    "    sops: {recipients: [age16p0zte068tcxenfjpclltrhq3ldwydwketsejtzjse3kus9lw57sfamllr]}"
)
SEALED_FMT = f"    sealedSecret: {{certificate: {SEALED_CERT}}}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "sops").mkdir()
    (tmp_path / "sops" / "app.yaml").write_text(SPEC.format(fmt=SOPS_FMT))
    (tmp_path / "sealed").mkdir()
    (tmp_path / "sealed" / "app.yaml").write_text(SPEC.format(fmt=SEALED_FMT))
    return tmp_path


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    out = ok(run_cli(command, "--help"))
    assert f"krm-secrets {command}" in out and "Exit codes" in out


def test_top_level_help_and_usage_errors():
    assert "generate" in ok(run_cli("--help"))
    fails(run_cli("frobnicate"), "invalid choice", code=2)
    fails(run_cli("generate"), "required", code=2)


def test_keygen(tmp_path, age_keygen_bin):
    out = ok(run_cli("keygen"))
    assert out.startswith("# created: ") and "AGE-SECRET-KEY-1" in out
    key = tmp_path / "keys" / "k.txt"
    proc = run_cli("keygen", "-o", str(key))
    ok(proc)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = subprocess.run(
        [age_keygen_bin, "-y", str(key)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert pub in proc.stderr.decode()
    before = key.read_bytes()
    fails(run_cli("keygen", "-o", str(key)), "refusing to overwrite")
    assert key.read_bytes() == before


def test_generate_is_idempotent_and_sops_reads_it(project, sops_bin):
    env = {**KEYED, "TEST_TOKEN": "tok"}
    out = ok(run_cli("generate", str(project), env=env))
    assert "written (created)" in out
    snap = snapshot(project)
    assert "sops/app-secrets.sops.yaml" in snap and "sealed/app-secrets.sealed.yaml" in snap
    out = ok(run_cli("generate", str(project), env=env))
    assert out.count("up to date") == 2
    assert snapshot(project) == snap
    dec = subprocess.run(
        [sops_bin, "--decrypt", str(project / "sops" / "app-secrets.sops.yaml")],
        capture_output=True,
        env=KEYED,
        cwd=project,
    )
    assert dec.returncode == 0, dec.stderr
    data = yamlio.load(dec.stdout)["data"]
    assert set(data) == {"USER", "PASSWORD", "TOKEN"}


def test_generate_needs_no_key_when_nothing_is_missing(project):
    ok(run_cli("generate", str(project), env={**KEYED, "TEST_TOKEN": "tok"}))
    snap = snapshot(project)
    ok(run_cli("generate", str(project), env=isolated_env()))
    assert snapshot(project) == snap


def test_generate_missing_user_value_writes_nothing(project):
    err = fails(
        run_cli("generate", "--non-interactive", str(project / "sops"), env=KEYED),
        "app.yaml",
        "SecretSpec app-secrets",
        "spec.keys[2].fromUser",
        "TEST_TOKEN (not set)",
    )
    assert err.count("\n") == 1
    assert sorted(snapshot(project)) == ["sealed/app.yaml", "sops/app.yaml"]


def test_generate_adds_a_new_key_and_keeps_the_others(project):
    env = {**KEYED, "TEST_TOKEN": "tok"}
    ok(run_cli("generate", str(project / "sops"), env=env))
    art = project / "sops" / "app-secrets.sops.yaml"
    before = yamlio.load(art.read_text())
    spec = project / "sops" / "app.yaml"
    spec.write_text(
        spec.read_text().replace("  format:", "    - name: EXTRA\n      literal: x\n  format:")
    )
    ok(run_cli("generate", str(spec), env=env))
    after = yamlio.load(art.read_text())
    for k in ("USER", "PASSWORD", "TOKEN"):
        assert after["data"][k] == before["data"][k]
    assert "EXTRA" in after["data"]


@pytest.mark.parametrize("kind", ["sops", "sealed"])
def test_rotate_changes_one_value_and_says_what_follows(project, kind):
    env = {**KEYED, "TEST_TOKEN": "tok"}
    ok(run_cli("generate", str(project), env=env))
    art = next((project / kind).glob("app-secrets.*.yaml"))
    before = yamlio.load(art.read_text())
    out = ok(run_cli("rotate", str(project / kind), "app-secrets/PASSWORD", env=env))
    assert "ALTER ROLE backstage" in out and "What must follow" in out
    after = yamlio.load(art.read_text())
    if kind == "sops":
        before_v, after_v = before["data"], after["data"]
    else:
        before_v, after_v = before["spec"]["encryptedData"], after["spec"]["encryptedData"]
    assert after_v["PASSWORD"] != before_v["PASSWORD"]
    assert {k: v for k, v in after_v.items() if k != "PASSWORD"} == {
        k: v for k, v in before_v.items() if k != "PASSWORD"
    }
    if kind == "sealed":
        priv = load_pem_private_key(SEALED_KEY.read_bytes(), None)
        assert sealed.unseal(after, priv)["TOKEN"] == b"tok"


def test_rotate_errors(project):
    ok(run_cli("generate", str(project), env={**KEYED, "TEST_TOKEN": "tok"}))
    fails(
        run_cli("rotate", str(project / "sops"), "app-secrets/NOPE", env=KEYED), "has no key 'NOPE'"
    )
    fails(
        run_cli("rotate", str(project / "sops"), "other/PASSWORD", env=KEYED),
        "no SecretSpec for Secret 'other'",
    )
    fails(
        run_cli("rotate", str(project / "sops"), "PASSWORD", env=KEYED), "expected NAME/KEY", code=2
    )
    fails(
        run_cli("rotate", str(project / "sops"), "app-secrets/PASSWORD", env=isolated_env()),
        "no age identity found",
        "SOPS_AGE_KEY_FILE (not set)",
    )


def test_decrypt_wrong_and_missing_key(project, tmp_path):
    ok(run_cli("generate", str(project), env={**KEYED, "TEST_TOKEN": "tok"}))
    art = str(project / "sops" / "app-secrets.sops.yaml")
    out = yamlio.load(ok(run_cli("decrypt", art, env=KEYED)))
    assert out["kind"] == "Secret" and "sops" not in out and "annotations" not in out["metadata"]
    other = tmp_path / "other.key"
    ok(run_cli("keygen", "-o", str(other)))
    wrong = fails(
        run_cli("decrypt", art, env=isolated_env(SOPS_AGE_KEY_FILE=str(other))),
        "wrong key",
        str(other),
    )
    missing = fails(run_cli("decrypt", art, env=isolated_env()), "no age identity found")
    assert wrong != missing


def test_seal_cli(tmp_path):
    secret = tmp_path / "s.yaml"
    secret.write_text(
        yamlio.dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"s{i}", "namespace": "ns"},
                    "stringData": {"k": f"v{i}"},
                }
                for i in range(3)
            ]
        )
    )
    fails(run_cli("seal", str(secret), "--cert", str(SEALED_CERT)), "expected one Secret, found 3")
    docs = yamlio.load_all(ok(run_cli("seal", "--batch", str(secret), "--cert", str(SEALED_CERT))))
    priv = load_pem_private_key(SEALED_KEY.read_bytes(), None)
    assert [sealed.unseal(d, priv) for d in docs] == [{"k": f"v{i}".encode()} for i in range(3)]
    raw = ok(
        run_cli(
            "seal",
            "--raw",
            "--name",
            "n",
            "--namespace",
            "ns",
            "--cert",
            str(SEALED_CERT),
            "-",
            input=b"rawvalue",
        )
    )
    assert sealed.hybrid_decrypt(priv, base64.b64decode(raw), b"ns/n") == b"rawvalue"
    fails(
        run_cli("seal", str(secret), "--cert", str(tmp_path / "missing.crt")),
        "missing.crt",
        "cannot read",
    )


def test_check(project, tmp_path):
    ok(run_cli("generate", str(project), env={**KEYED, "TEST_TOKEN": "tok"}))
    out = ok(run_cli("check", str(project), env=KEYED))
    assert "decrypts, MAC holds" in out and "well-formed SealedSecret" in out
    assert "well-formed (no age key" in ok(run_cli("check", str(project)))
    art = project / "sops" / "app-secrets.sops.yaml"
    art.write_text(art.read_text().replace("name: app-secrets", "name: renamed"))
    (project / "plain.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: p}\ndata: {k: dg==}\n"
    )
    err = fails(
        run_cli("check", str(project), env=KEYED),
        "MAC mismatch",
        "plaintext Secret committed",
        "2 errors",
    )
    assert "plain.yaml" in err


def test_check_the_repository(sops_bin):
    # The test key opens the committed lab Secrets; the user's opens theirs after make lab.
    ok(run_cli("check", "overlays", ".sops.yaml", env=isolated_env(SOPS_AGE_KEY_FILE=str(REPO_KEYS))))


BAD_SPECS = {
    "malformed.yaml": (
        "apiVersion: secrets.backstage-gitops.dev/v1alpha1\nkind: SecretSpec\nspec: [\n",
        "malformed YAML",
    ),
    "wrong-kind.yaml": ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no SecretSpec"),
    "missing-field.yaml": (
        "apiVersion: secrets.backstage-gitops.dev/v1alpha1\nkind: SecretSpec\nmetadata: {name: x}\n"
        "spec: {secret: {namespace: ns}, format: {sops: {}}}\n",
        "spec.keys",
    ),
    "duplicate.yaml": (
        "apiVersion: secrets.backstage-gitops.dev/v1alpha1\nkind: SecretSpec\nkind: SecretSpec\n",
        "duplicate key 'kind'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_input_files(tmp_path, name):
    text, needle = BAD_SPECS[name]
    f = tmp_path / name
    f.write_text(text)
    fails(run_cli("generate", str(f), env=KEYED), str(f), needle)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_unreadable_inputs(tmp_path):
    fails(run_cli("generate", str(tmp_path / "absent.yaml")), "no such file or directory")
    d = tmp_path / "dir.yaml"
    d.mkdir()
    fails(run_cli("decrypt", str(d)), "cannot read", "Is a directory")


def test_unwritable_output_directory(tmp_path):
    spec = tmp_path / "app.yaml"
    spec.write_text(
        SPEC.format(fmt=SOPS_FMT).replace(
            "  format:", "  output: missing-dir/app.sops.yaml\n  format:"
        )
    )
    fails(
        run_cli("generate", str(spec), env={**KEYED, "TEST_TOKEN": "t"}),
        "cannot write into",
        "missing-dir",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["app.yaml"]


def test_a_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "artifact.yaml"
    target.write_bytes(b"old content\n")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(cli.KrmError, match="No space left"):
        cli.atomic_write(target, b"new content\n")
    assert target.read_bytes() == b"old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact.yaml"]


def test_fn_mode_reports_results(tmp_path):
    proc = run_cli("fn", input=b"items: [unclosed\n")
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    out = yamlio.load(proc.stdout)
    assert out["kind"] == "ResourceList" and out["results"][0]["severity"] == "error"
    assert "stdin is not a ResourceList" in proc.stderr.decode()
    proc = run_cli(
        "fn", input=b"apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\n"
    )
    assert proc.returncode == 1
    assert "missing functionConfig" in yamlio.load(proc.stdout)["results"][0]["message"]


def test_fn_mode_without_arguments_reads_stdin():
    proc = run_cli(input=b"apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\n")
    assert proc.returncode == 1 and b"missing functionConfig" in proc.stdout


@pytest.mark.parametrize("kind", ["sops", "sealed"])
def test_a_key_dropped_from_the_spec_is_kept_until_prune(project, kind):
    env = {**KEYED, "TEST_TOKEN": "tok"}
    ok(run_cli("generate", str(project / kind), env=env))
    spec = project / kind / "app.yaml"
    spec.write_text(spec.read_text().replace("    - name: USER\n      literal: backstage\n", ""))
    art = next((project / kind).glob("app-secrets.*.yaml"))
    before = art.read_bytes()
    proc = run_cli("generate", str(spec), env=env)
    assert "up to date" in ok(proc) and "--prune" in proc.stderr.decode()
    assert art.read_bytes() == before
    ok(run_cli("generate", "--prune", str(spec), env=env))
    doc = yamlio.load(art.read_text())
    values = doc["data"] if kind == "sops" else doc["spec"]["encryptedData"]
    assert set(values) == {"PASSWORD", "TOKEN"}


def test_a_new_recipient_reencrypts_only_the_data_key(project, identity, other_identity):
    env = {**KEYED, "TEST_TOKEN": "tok"}
    ok(run_cli("generate", str(project / "sops"), env=env))
    art = project / "sops" / "app-secrets.sops.yaml"
    before = yamlio.load(art.read_text())
    spec = project / "sops" / "app.yaml"
    spec.write_text(
        spec.read_text().replace("recipients: [", f"recipients: [{other_identity.recipient}, ")
    )
    assert "recipients changed" in ok(run_cli("generate", str(spec), env=env))
    after = yamlio.load(art.read_text())
    assert after["data"] == before["data"]
    assert {e["recipient"] for e in after["sops"]["age"]} == {
        str(identity.recipient),
        str(other_identity.recipient),
    }
    from krm_secrets import sops

    assert sops.open_document(after, [other_identity], []).tree["data"]["USER"] == "YmFja3N0YWdl"


def test_check_reads_a_rendered_stream_from_stdin():
    cert = sealed.load_certificate(SEALED_CERT.read_bytes(), "c", datetime.now(UTC))
    one = sealed.build_sealed(
        "s", "backstage", "strict", "Opaque", {}, {}, {"k": b"v"}, cert, os.urandom
    )
    docs = [one]
    good = yamlio.dump_all(docs).encode()
    assert "well-formed SealedSecret" in ok(run_cli("check", "-", input=good))
    docs[0]["metadata"]["name"] = "prefix-s"  # what a namePrefix in an overlay would do
    fails(run_cli("check", "-", input=yamlio.dump_all(docs).encode()), "sealed for backstage/s")
