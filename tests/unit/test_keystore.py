"""The local keystore: round trips, file permissions, tampering, and the passphrase helper."""

from __future__ import annotations

import getpass
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logline.canonical import b64decode, b64encode
from logline.errors import InvalidIdentifier, KeystoreError, NotFound, WrongPassphrase
from logline.identity.keys import PrivateKey
from logline.identity.keystore import Keystore, passphrase_from_env_or_prompt

N = 2**10  # the floor Keystore accepts; the default 2**15 is too slow for a unit suite
PASS = "correct horse battery staple"
ALICE = "logline-id://person/alice"
BOB = "logline-id://service/bob"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def flip_ciphertext(entry: dict[str, Any]) -> None:
    raw = bytearray(b64decode(entry["ciphertext"]))
    raw[5] ^= 0x01
    entry["ciphertext"] = b64encode(bytes(raw))


def test_round_trip_sign_and_verify(path: Path) -> None:
    alice, bob = PrivateKey.generate(), PrivateKey.generate()
    store = Keystore.create(path, PASS, n=N)
    store.add(ALICE, alice)
    store.add(BOB, bob)

    reopened = Keystore.open(path, PASS)
    assert reopened.identities() == [ALICE, BOB]
    assert ALICE in reopened and "logline-id://person/carol" not in reopened
    assert reopened.public_key(ALICE) == str(alice.public_key)
    key = reopened.get(ALICE)
    assert key.seed() == alice.seed()
    alice.public_key.verify(key.sign(b"message"), b"message")


def test_file_layout_matches_the_documented_format(path: Path) -> None:
    Keystore.create(path, PASS, n=N).add(ALICE, PrivateKey.generate())
    doc = json.loads(path.read_text())
    assert list(doc) == ["v", "kdf", "check", "keys"]
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == N
    assert len(b64decode(doc["kdf"]["salt"])) == 16
    entry = doc["keys"][ALICE]
    assert set(entry) == {"public_key", "created_at", "nonce", "ciphertext"}
    assert len(b64decode(entry["nonce"])) == 12


def test_file_is_0600_after_every_write_and_leaves_no_temp_files(path: Path) -> None:
    old_umask = os.umask(0)  # the most permissive umask must still yield 0600
    try:
        store = Keystore.create(path, PASS, n=N)
        assert mode(path) == 0o600
        store.add(ALICE, PrivateKey.generate())
        assert mode(path) == 0o600
        store.replace(ALICE, PrivateKey.generate())
        assert mode(path) == 0o600
    finally:
        os.umask(old_umask)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("add_key", [False, True], ids=["empty", "with-key"])
def test_wrong_passphrase(path: Path, add_key: bool) -> None:
    store = Keystore.create(path, PASS, n=N)
    if add_key:
        store.add(ALICE, PrivateKey.generate())
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        Keystore.open(path, PASS + "!")


def test_missing_file_names_the_path(path: Path) -> None:
    with pytest.raises(KeystoreError, match="no keystore at") as info:
        Keystore.open(path, PASS)
    assert str(path) in str(info.value)


def _delete(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


def _set(value: Any, *keys: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _delete("v"),
        _delete("kdf"),
        _delete("kdf", "salt"),
        _delete("check"),
        _delete("check", "nonce"),
        _delete("keys"),
        _delete("keys", ALICE, "ciphertext"),
        _delete("keys", ALICE, "public_key"),
        _set(2, "v"),
        _set("32768", "kdf", "n"),
        _set(True, "kdf", "r"),
        _set(2**40, "kdf", "n"),
        _set(1000, "kdf", "n"),
        _set("argon2", "kdf", "name"),
        _set("not base64!", "kdf", "salt"),
        _set(b64encode(b"short"), "check", "nonce"),
        _set([], "keys"),
        _set("opaque", "keys", ALICE),
        _set("yesterday", "keys", ALICE, "created_at"),
        _set("ed25519:AAAA", "keys", ALICE, "public_key"),
        lambda doc: doc["keys"].update({"alice": doc["keys"].pop(ALICE)}),
    ],
)
def test_malformed_fields_are_corrupt(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    Keystore.create(path, PASS, n=N).add(ALICE, PrivateKey.generate())
    edit(path, change)
    with pytest.raises(KeystoreError, match="is corrupt") as info:
        Keystore.open(path, PASS)
    assert type(info.value) is KeystoreError


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\xff garbage \x89PNG", b"[1, 2]", b'{"v": 1, "v": 1}', b"null", b'{"v": NaN}'],
    ids=["empty", "garbage", "array", "duplicate-key", "null", "nan"],
)
def test_unparseable_files_are_corrupt(path: Path, content: bytes) -> None:
    Keystore.create(path, PASS, n=N)
    path.write_bytes(content)
    with pytest.raises(KeystoreError, match="is corrupt"):
        Keystore.open(path, PASS)


def test_truncated_file_is_corrupt(path: Path) -> None:
    Keystore.create(path, PASS, n=N).add(ALICE, PrivateKey.generate())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeystoreError, match="is corrupt"):
        Keystore.open(path, PASS)


def test_flipped_ciphertext_byte_is_corrupt(path: Path) -> None:
    Keystore.create(path, PASS, n=N).add(ALICE, PrivateKey.generate())
    edit(path, lambda doc: flip_ciphertext(doc["keys"][ALICE]))
    with pytest.raises(KeystoreError, match="is corrupt") as info:
        Keystore.open(path, PASS)
    assert not isinstance(info.value, WrongPassphrase)


def test_ciphertexts_swapped_between_identities_are_detected(path: Path) -> None:
    store = Keystore.create(path, PASS, n=N)
    store.add(ALICE, PrivateKey.generate())
    store.add(BOB, PrivateKey.generate())

    def swap(doc: dict[str, Any]) -> None:
        a, b = doc["keys"][ALICE], doc["keys"][BOB]
        for field in ("nonce", "ciphertext"):
            a[field], b[field] = b[field], a[field]

    edit(path, swap)
    with pytest.raises(KeystoreError, match="is corrupt"):
        Keystore.open(path, PASS)


def test_entry_moved_to_another_identity_is_detected(path: Path) -> None:
    # Moving a whole entry under another name must fail too: the id is bound, not just the key.
    store = Keystore.create(path, PASS, n=N)
    store.add(ALICE, PrivateKey.generate())
    edit(path, lambda doc: doc["keys"].update({BOB: doc["keys"].pop(ALICE)}))
    with pytest.raises(KeystoreError, match="is corrupt"):
        Keystore.open(path, PASS)


def test_edited_public_key_is_detected(path: Path) -> None:
    Keystore.create(path, PASS, n=N).add(ALICE, PrivateKey.generate())
    edit(path, _set(str(PrivateKey.generate().public_key), "keys", ALICE, "public_key"))
    with pytest.raises(KeystoreError, match="is corrupt"):
        Keystore.open(path, PASS)


def test_unknown_identity_is_not_found(path: Path) -> None:
    store = Keystore.create(path, PASS, n=N)
    with pytest.raises(NotFound, match="no key for 'logline-id://person/carol'"):
        store.get("logline-id://person/carol")
    with pytest.raises(NotFound):
        store.public_key(ALICE)
    with pytest.raises(NotFound):
        store.replace(ALICE, PrivateKey.generate())


def test_add_refuses_duplicates_and_bad_ids(path: Path) -> None:
    store = Keystore.create(path, PASS, n=N)
    store.add(ALICE, PrivateKey.generate())
    with pytest.raises(KeystoreError, match="already has a key"):
        store.add(ALICE, PrivateKey.generate())
    with pytest.raises(InvalidIdentifier):
        store.add("alice", PrivateKey.generate())
    assert Keystore.open(path, PASS).identities() == [ALICE]


def test_create_refuses_to_overwrite(path: Path) -> None:
    Keystore.create(path, PASS, n=N).add(ALICE, PrivateKey.generate())
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(path, "other passphrase", n=N)
    assert path.read_bytes() == before


@pytest.mark.parametrize("n", [2**9, 3000, 2**21])
def test_create_refuses_weak_or_absurd_cost(path: Path, n: int) -> None:
    with pytest.raises(KeystoreError, match="power of two"):
        Keystore.create(path, PASS, n=n)


def test_create_refuses_empty_passphrase(path: Path) -> None:
    with pytest.raises(KeystoreError, match="empty passphrase"):
        Keystore.create(path, "", n=N)
    assert not path.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("loose_mode", [0o640, 0o604, 0o660])
def test_group_or_other_access_is_refused(path: Path, loose_mode: int) -> None:
    Keystore.create(path, PASS, n=N)
    path.chmod(loose_mode)
    with pytest.raises(KeystoreError, match="chmod 600"):
        Keystore.open(path, PASS)


def test_secrets_never_appear_in_file_or_repr(path: Path) -> None:
    key = PrivateKey.generate()
    store = Keystore.create(path, PASS, n=N)
    store.add(ALICE, key)
    text = path.read_text()
    secrets = [PASS, key.seed().hex(), b64encode(key.seed())]
    for shown in (text, repr(store), str(store), repr(Keystore.open(path, PASS))):
        for secret in secrets:
            assert secret not in shown
    assert repr(store) == f"Keystore(path={str(path)!r}, identities=1)"


def test_replace_rotates_the_key(path: Path) -> None:
    old, new = PrivateKey.generate(), PrivateKey.generate()
    store = Keystore.create(path, PASS, n=N)
    store.add(ALICE, old)
    old_ciphertext = json.loads(path.read_text())["keys"][ALICE]["ciphertext"]
    store.replace(ALICE, new)

    assert store.get(ALICE).seed() == new.seed()
    reopened = Keystore.open(path, PASS)
    assert reopened.get(ALICE).seed() == new.seed()
    assert reopened.public_key(ALICE) == str(new.public_key)
    assert old_ciphertext not in path.read_text()
    assert str(old.public_key) not in path.read_text()


def test_unicode_passphrase_is_normalized(path: Path) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    Keystore.create(path, composed, n=N).add(ALICE, PrivateKey.generate())
    assert Keystore.open(path, decomposed).identities() == [ALICE]


def test_passphrase_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLINE_PASSPHRASE", PASS)
    monkeypatch.setattr(getpass, "getpass", _no_prompt)
    assert passphrase_from_env_or_prompt() == PASS
    assert passphrase_from_env_or_prompt(confirm=True) == PASS


def test_empty_env_passphrase_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLINE_PASSPHRASE", "")
    monkeypatch.setattr(getpass, "getpass", _no_prompt)
    with pytest.raises(KeystoreError, match="empty passphrase"):
        passphrase_from_env_or_prompt()


def test_prompt_with_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGLINE_PASSPHRASE", raising=False)
    answers = iter([PASS, PASS, PASS, "typo", ""])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert passphrase_from_env_or_prompt(confirm=True) == PASS
    with pytest.raises(KeystoreError, match="do not match"):
        passphrase_from_env_or_prompt(confirm=True)
    with pytest.raises(KeystoreError, match="empty passphrase"):
        passphrase_from_env_or_prompt()


def _no_prompt(prompt: str = "") -> str:
    raise AssertionError("prompted although LOGLINE_PASSPHRASE is set")
