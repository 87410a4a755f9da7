"""SOPS: round trips, tampering, wrong and missing keys, and interop with the real sops binary."""

from __future__ import annotations

import subprocess
from datetime import UTC

import pytest
from krm_helpers import AGE_KEY, FIXED_NOW, SeededRng, isolated_env
from krm_secrets import sops, yamlio

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "demo", "namespace": "backstage", "annotations": {"a": "on"}},
    "type": "Opaque",
    "data": {"A": "YWJj", "EMPTY": "", "NO": "bm8="},
    "stringData": {"word": "no", "octal": "0o17", "n": "123"},
}


def seal(tree=SECRET, recipients=None, seed=1, rules=None):
    from krm_secrets import age

    recips = recipients or [age.parse_identities(AGE_KEY.read_text(), "k")[0].recipient]
    return sops.seal_document(
        tree, recips, rules or sops.Rules(), rng=SeededRng(seed), now=FIXED_NOW
    )


def test_roundtrip(identity):
    doc = seal()
    opened = sops.open_document(yamlio.load(yamlio.dump(doc)), [identity], [])
    assert opened.tree == SECRET
    assert doc["metadata"] == SECRET["metadata"]  # metadata stays plaintext
    assert doc["data"]["EMPTY"] == ""  # as sops does: empty stays empty
    assert doc["data"]["A"].startswith("ENC[AES256_GCM,data:")


def test_reencryption_keeps_unchanged_ciphertext(identity):
    doc = seal()
    opened = sops.open_document(doc, [identity], [])
    tree = {**opened.tree, "data": {**opened.tree["data"], "NEW": "eA=="}}
    again = sops.seal_document(
        tree,
        [],
        opened.rules,
        rng=SeededRng(2),
        now=FIXED_NOW,
        data_key=opened.data_key,
        stash=opened.stash,
        age_entries=doc["sops"]["age"],
    )
    for k in ("A", "NO"):
        assert again["data"][k] == doc["data"][k]
    assert again["stringData"] == doc["stringData"]
    assert sops.open_document(again, [identity], []).tree == tree


def _paths(doc):
    yield ("data", "A")
    yield ("data", "NO")
    yield ("stringData", "word")
    yield ("sops", "mac")


@pytest.mark.parametrize("path", list(_paths(None)))
def test_flipped_byte_in_any_ciphertext_is_an_error(identity, path):
    doc = seal()
    value = doc[path[0]][path[1]]
    inner = value[len("ENC[AES256_GCM,data:") :].split(",")[0]
    import base64

    raw = base64.b64decode(inner)
    for i in range(len(raw)):
        t = bytearray(raw)
        t[i] ^= 1
        tampered = {
            **doc,
            path[0]: {
                **doc[path[0]],
                path[1]: value.replace(inner, base64.b64encode(bytes(t)).decode()),
            },
        }
        with pytest.raises(sops.SopsError):
            sops.open_document(tampered, [identity], [])


@pytest.mark.parametrize("part", ["iv", "tag"])
def test_flipped_iv_or_tag_is_an_error(identity, part):
    import base64
    import re

    doc = seal()
    value = doc["data"]["A"]
    m = re.search(part + r":([^,\]]+)", value)
    raw = bytearray(base64.b64decode(m.group(1)))
    raw[0] ^= 1
    bad = value.replace(m.group(1), base64.b64encode(bytes(raw)).decode())
    with pytest.raises(sops.SopsError, match="authentication failed"):
        sops.open_document({**doc, "data": {**doc["data"], "A": bad}}, [identity], [])


@pytest.mark.parametrize(
    "change", ["name", "namespace", "annotation", "lastmodified", "move-value", "drop-key"]
)
def test_plaintext_changes_break_the_mac(identity, change):
    doc = seal()
    d = yamlio.load(yamlio.dump(doc))
    if change == "name":
        d["metadata"]["name"] = "other"
    elif change == "namespace":
        d["metadata"]["namespace"] = "other"
    elif change == "annotation":
        d["metadata"]["annotations"]["a"] = "off"
    elif change == "lastmodified":
        d["sops"]["lastmodified"] = "2026-01-02T00:00:00Z"
    elif change == "move-value":  # a ciphertext moved to another key fails its path AAD
        d["data"]["NO"] = d["data"]["A"]
    elif change == "drop-key":
        del d["data"]["NO"]
    with pytest.raises(sops.SopsError):
        sops.open_document(d, [identity], [])


def test_wrong_key_and_missing_key_differ(identity, other_identity):
    doc = seal()
    with pytest.raises(sops.WrongKey, match="wrong key") as wrong:
        sops.open_document(doc, [other_identity], ["SOPS_AGE_KEY_FILE=/x (age1...)"])
    assert str(identity.recipient) in str(wrong.value)
    assert str(other_identity.recipient) in str(wrong.value)
    with pytest.raises(sops.MissingKey, match="no age identity found") as missing:
        sops.open_document(doc, [], ["SOPS_AGE_KEY (not set)"])
    assert missing.value.tried == ["SOPS_AGE_KEY (not set)"]


def test_sops_decrypts_ours(tmp_path, sops_bin):
    f = tmp_path / "s.sops.yaml"
    f.write_text(yamlio.dump(seal()))
    out = subprocess.run(
        [sops_bin, "--decrypt", str(f)],
        capture_output=True,
        text=True,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
    )
    assert out.returncode == 0, out.stderr
    assert yamlio.load(out.stdout) == SECRET


def test_sops_detects_our_mac_over_metadata(tmp_path, sops_bin):
    d = seal()
    d["metadata"]["name"] = "renamed"
    f = tmp_path / "s.sops.yaml"
    f.write_text(yamlio.dump(d))
    out = subprocess.run(
        [sops_bin, "--decrypt", str(f)],
        capture_output=True,
        text=True,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
    )
    assert out.returncode != 0 and "MAC mismatch" in out.stderr


@pytest.mark.parametrize("regex", [None, "^(data|stringData)$"])
def test_we_decrypt_what_sops_wrote(tmp_path, sops_bin, identity, regex):
    src = tmp_path / "s.yaml"
    src.write_text(yamlio.dump(SECRET) + "# a trailing comment\n")
    args = [sops_bin, "--encrypt", "--age", str(identity.recipient)]
    if regex:
        args += ["--encrypted-regex", regex]
    out = subprocess.run(
        [*args, str(src)], capture_output=True, text=True, env=isolated_env(), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    opened = sops.open_document(yamlio.load(out.stdout), [identity], [])
    assert opened.tree == SECRET


def test_we_decrypt_sops_typed_values(tmp_path, sops_bin, identity):
    src = tmp_path / "t.yaml"
    src.write_text(
        "i: 42\nf: 1.5\nb: true\ns: 'x'\nl: [1, two]\nnested: {deep: {k: v}}\nnull_value: null\n"
    )
    out = subprocess.run(
        [sops_bin, "--encrypt", "--age", str(identity.recipient), str(src)],
        capture_output=True,
        text=True,
        env=isolated_env(),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    opened = sops.open_document(yamlio.load(out.stdout), [identity], [])
    assert opened.tree == {
        "i": 42,
        "f": 1.5,
        "b": True,
        "s": "x",
        "l": [1, "two"],
        "nested": {"deep": {"k": "v"}},
        "null_value": None,
    }


def test_sops_decrypts_our_typed_values(tmp_path, sops_bin):
    tree = {"i": 42, "f": 1.5, "b": False, "s": "x", "l": [1, "two"], "n": None}
    f = tmp_path / "t.yaml"
    f.write_text(yamlio.dump(seal(tree, rules=sops.Rules(encrypted_regex=None))))
    out = subprocess.run(
        [sops_bin, "--decrypt", str(f)],
        capture_output=True,
        text=True,
        env=isolated_env(SOPS_AGE_KEY_FILE=str(AGE_KEY)),
    )
    assert out.returncode == 0, out.stderr
    assert yamlio.load(out.stdout) == tree


def test_unsupported_key_groups_are_named(identity):
    doc = seal()
    doc["sops"] = {**doc["sops"], "age": [], "pgp": [{"fp": "X"}]}
    with pytest.raises(sops.SopsError, match="no age recipients.*pgp"):
        sops.open_document(doc, [identity], [])


def test_go_time_format():
    from datetime import datetime, timedelta, timezone

    assert (
        sops.format_time(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    )
    tz = timezone(timedelta(hours=-5, minutes=-30))
    assert sops.format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)) == "2026-01-02T03:04:05-05:30"
