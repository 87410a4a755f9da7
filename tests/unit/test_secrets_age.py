"""age: our implementation against itself, tampering, and the real age / age-keygen binaries."""

from __future__ import annotations

import subprocess

import pytest
from krm_helpers import AGE_KEY, SeededRng
from krm_secrets import age

SIZES = [0, 1, 100, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 3 * 64 * 1024]


def test_bech32_roundtrip_and_checksum(identity):
    text = str(identity.recipient)
    assert age.Recipient.parse(text) == identity.recipient
    assert age.Identity.parse(str(identity)).secret == identity.secret
    broken = text[:-1] + ("q" if text[-1] != "q" else "p")
    with pytest.raises(age.AgeError, match="checksum"):
        age.Recipient.parse(broken)


@pytest.mark.parametrize("size", SIZES)
def test_roundtrip(identity, size):
    data = SeededRng(size).__call__(size)
    blob = age.encrypt(data, [identity.recipient], SeededRng(1))
    assert age.decrypt(blob, [identity]) == data
    assert age.decrypt(age.dearmor(age.armor(blob)), [identity]) == data


def test_seeded_encryption_is_deterministic(identity):
    a = age.encrypt(b"x", [identity.recipient], SeededRng(7))
    assert a == age.encrypt(b"x", [identity.recipient], SeededRng(7))


def test_flipped_byte_anywhere_is_an_error(identity):
    blob = age.encrypt(b"secret value" * 10, [identity.recipient], SeededRng(3))
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(age.AgeError):
            age.decrypt(bytes(tampered), [identity])


def test_truncated_is_an_error(identity):
    blob = age.encrypt(b"abc", [identity.recipient], SeededRng(3))
    for cut in (1, 16, 17, len(blob) // 2):
        with pytest.raises(age.AgeError):
            age.decrypt(blob[:-cut], [identity])


def test_wrong_key_is_not_garbage(identity, other_identity):
    blob = age.encrypt(b"abc", [identity.recipient], SeededRng(3))
    with pytest.raises(age.NoIdentityMatched):
        age.decrypt(blob, [other_identity])


def test_several_recipients(identity, other_identity):
    blob = age.encrypt(b"abc", [other_identity.recipient, identity.recipient], SeededRng(3))
    assert age.decrypt(blob, [identity]) == b"abc"
    assert age.decrypt(blob, [other_identity]) == b"abc"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armored", [False, True])
def test_real_age_decrypts_ours(tmp_path, age_bin, identity, size, armored):
    data = SeededRng(size + 1)(size)
    blob = age.encrypt(data, [identity.recipient], SeededRng(5))
    f = tmp_path / "f.age"
    f.write_bytes(age.armor(blob).encode() if armored else blob)
    out = subprocess.run(
        [age_bin, "-d", "-i", str(AGE_KEY), str(f)], capture_output=True, check=True
    )
    assert out.stdout == data


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armored", [False, True])
def test_we_decrypt_real_age(tmp_path, age_bin, identity, size, armored):
    data = SeededRng(size + 2)(size)
    src = tmp_path / "plain"
    src.write_bytes(data)
    args = [age_bin, "-e", "-r", str(identity.recipient), "-o", str(tmp_path / "c"), str(src)]
    if armored:
        args.insert(2, "-a")
    subprocess.run(args, check=True, capture_output=True)
    raw = (tmp_path / "c").read_bytes()
    blob = age.dearmor(raw.decode()) if armored else raw
    assert age.decrypt(blob, [identity]) == data


def test_age_keygen_keys_work(tmp_path, age_keygen_bin, age_bin):
    keyfile = tmp_path / "k.txt"
    subprocess.run([age_keygen_bin, "-o", str(keyfile)], check=True, capture_output=True)
    (ident,) = age.parse_identities(keyfile.read_text(), str(keyfile))
    pub = subprocess.run(
        [age_keygen_bin, "-y", str(keyfile)], check=True, capture_output=True, text=True
    )
    assert str(ident.recipient) == pub.stdout.strip()
    f = tmp_path / "x.age"
    f.write_bytes(age.encrypt(b"hi", [ident.recipient]))
    out = subprocess.run(
        [age_bin, "-d", "-i", str(keyfile), str(f)], capture_output=True, check=True
    )
    assert out.stdout == b"hi"


def test_our_keygen_output_is_read_by_age(tmp_path, age_keygen_bin):
    ident = age.Identity.generate()
    keyfile = tmp_path / "k.txt"
    keyfile.write_text(age.keygen_text(ident, "2026-01-01T00:00:00Z"))
    pub = subprocess.run(
        [age_keygen_bin, "-y", str(keyfile)], check=True, capture_output=True, text=True
    )
    assert pub.stdout.strip() == str(ident.recipient)


def test_identity_file_errors_name_the_line():
    with pytest.raises(age.AgeError, match="keys.txt:2"):
        age.parse_identities("# comment\nAGE-SECRET-KEY-1NOTAKEY\n", "keys.txt")


def test_repr_hides_the_secret(identity):
    assert "AGE-SECRET-KEY" not in repr(identity)
