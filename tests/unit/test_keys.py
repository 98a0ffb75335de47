"""Ed25519 keys: the RFC 8032 section 7.1 vectors, key text round trips, tampering, domains.

The vectors in tests/vectors/rfc8032/ are TEST 1, 2, 3, 1024 and SHA(abc) of RFC 8032 section 7.1;
see tests/vectors/generate.py for their source.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import load_vectors, vector_drift
from logline.errors import ParseError, SignatureError, VerificationError
from logline.identity.keys import (
    KEY_SIZE,
    SIGNATURE_SIZE,
    SPAN_DOMAIN,
    PrivateKey,
    PublicKey,
    domain_message,
)

Case = dict[str, Any]


RFC8032 = load_vectors("rfc8032")


def test_vector_files_match_the_generator() -> None:
    assert vector_drift("rfc8032") == [], "run .venv/bin/python tests/vectors/generate.py"
    assert sorted(p.id for p in RFC8032) == [
        "test-1",
        "test-1024",
        "test-2",
        "test-3",
        "test-sha-abc",
    ]


def unpack(case: Case) -> tuple[bytes, bytes, bytes, bytes]:
    return (
        bytes.fromhex(case["secret_key"]),
        bytes.fromhex(case["public_key"]),
        bytes.fromhex(case["message"]),
        bytes.fromhex(case["signature"]),
    )


def flip_bit(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@pytest.mark.parametrize("case", RFC8032)
def test_rfc8032_vector_signs_and_verifies(case: Case) -> None:
    secret, public, message, signature = unpack(case)
    key = PrivateKey.from_seed(secret)
    assert key.public_key == PublicKey(public)
    assert key.seed() == secret
    assert key.sign(message) == signature, "Ed25519 signing is deterministic (RFC 8032 5.1.6)"
    PublicKey(public).verify(signature, message)
    key.public_key.verify(key.sign(message), message)


@pytest.mark.parametrize("case", RFC8032)
def test_rfc8032_vector_tampering_is_a_signature_error(case: Case) -> None:
    _, public, message, signature = unpack(case)
    key = PublicKey(public)
    accepted = []
    for bit in range(SIGNATURE_SIZE * 8):
        try:
            key.verify(flip_bit(signature, bit), message)
        except SignatureError:
            continue
        accepted.append(bit)
    assert accepted == [], "a signature with one bit flipped verified"
    tampered = [message + b"\x00", message[:-1]] if message else [b"\x00"]
    tampered += [flip_bit(message, bit) for bit in range(min(len(message) * 8, 64))]
    for bad in tampered:
        with pytest.raises(SignatureError):
            key.verify(signature, bad)


def test_the_rfc8032_messages_are_what_the_rfc_says() -> None:
    messages = {p.id: bytes.fromhex(p.values[0]["message"]) for p in RFC8032}
    assert messages["test-1"] == b""
    assert len(messages["test-1024"]) == 1023
    assert messages["test-sha-abc"] == hashlib.sha512(b"abc").digest()


# --- text form ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", RFC8032)
def test_public_key_text_round_trip(case: Case) -> None:
    _, public, _, _ = unpack(case)
    key = PublicKey(public)
    text = str(key)
    assert text == "ed25519:" + base64.b64encode(public).decode("ascii")
    assert PublicKey.parse(text) == key
    assert str(PublicKey.parse(text)) == text


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE))
def test_generated_keys_round_trip_through_text(seed: bytes) -> None:
    key = PrivateKey.from_seed(seed)
    assert PublicKey.parse(str(key.public_key)) == key.public_key


B64_32 = base64.b64encode(b"\xfb\xef\xbe\xff\xff\xff" * 5 + b"\xfb\xef").decode("ascii")
assert "+" in B64_32 and "/" in B64_32 and B64_32.endswith("=")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("ed25519", id="no-colon"),
        pytest.param("ed25519:", id="no-key"),
        pytest.param(B64_32, id="no-prefix"),
        pytest.param("Ed25519:" + B64_32, id="prefix-case"),
        pytest.param("ssh-ed25519:" + B64_32, id="other-prefix"),
        pytest.param("ed448:" + B64_32, id="other-algorithm"),
        pytest.param(" ed25519:" + B64_32, id="leading-space"),
        pytest.param("ed25519: " + B64_32, id="space-after-colon"),
        pytest.param("ed25519:" + B64_32 + "\n", id="trailing-newline"),
        pytest.param("ed25519:" + B64_32.rstrip("="), id="missing-padding"),
        pytest.param("ed25519:" + B64_32[:-2] + "!=", id="bad-character"),
        pytest.param("ed25519:" + B64_32.replace("+", "-").replace("/", "_"), id="url-alphabet"),
        pytest.param("ed25519:" + base64.b64encode(bytes(31)).decode(), id="31-bytes"),
        pytest.param("ed25519:" + base64.b64encode(bytes(33)).decode(), id="33-bytes"),
        pytest.param("ed25519:" + base64.b64encode(bytes(64)).decode(), id="64-bytes"),
        pytest.param("ed25519:é" + B64_32[1:], id="non-ascii"),
        pytest.param("ed25519:" + B64_32 + ":" + B64_32, id="two-keys"),
    ],
)
def test_public_key_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        PublicKey.parse(text)


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_raw_keys_and_seeds_of_the_wrong_size_are_parse_errors(size: int) -> None:
    with pytest.raises(ParseError):
        PublicKey(bytes(size))
    with pytest.raises(ParseError):
        PrivateKey.from_seed(bytes(size))


# --- verification ---------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200), st.data())
def test_sign_verify_and_tamper(seed: bytes, message: bytes, data: st.DataObject) -> None:
    key = PrivateKey.from_seed(seed)
    signature = key.sign(message)
    assert len(signature) == SIGNATURE_SIZE
    key.public_key.verify(signature, message)
    bit = data.draw(st.integers(0, SIGNATURE_SIZE * 8 - 1), label="signature bit")
    with pytest.raises(SignatureError):
        key.public_key.verify(flip_bit(signature, bit), message)
    other = data.draw(st.binary(max_size=200).filter(lambda m: m != message), label="message")
    with pytest.raises(SignatureError):
        key.public_key.verify(signature, other)


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 128])
def test_signatures_of_the_wrong_length_are_signature_errors(size: int) -> None:
    key = PrivateKey.from_seed(bytes(32))
    signature = key.sign(b"m")
    with pytest.raises(SignatureError):
        key.public_key.verify((signature * 3)[:size], b"m")


def test_a_signature_by_another_key_is_a_signature_error() -> None:
    alice, bob = PrivateKey.from_seed(b"a" * 32), PrivateKey.from_seed(b"b" * 32)
    with pytest.raises(SignatureError) as raised:
        bob.public_key.verify(alice.sign(b"hello"), b"hello")
    assert isinstance(raised.value, VerificationError)


def test_generated_keys_differ_and_work() -> None:
    one, two = PrivateKey.generate(), PrivateKey.generate()
    assert one.seed() != two.seed()
    assert one.public_key != two.public_key
    one.public_key.verify(one.sign(b"x"), b"x")
    with pytest.raises(SignatureError):
        two.public_key.verify(one.sign(b"x"), b"x")


# Encodings (RFC 8032 5.1.2) of points of small order: y = 0 (order 4), y = 1 (the neutral element),
# y = p - 1 (order 2) and the two y of the points of order 8 (libsodium's blocklist). With R the
# neutral element or A itself and S = 0, [S]B = R + [k]A holds whenever [k]A or [k + 1]A is the
# neutral element: a fixed share of all messages, so nobody needs a private key to "sign" them.
SMALL_ORDER_KEYS = [
    pytest.param("00" * 32, id="y=0-order-4"),
    pytest.param("01" + "00" * 31, id="neutral-element"),
    pytest.param("ec" + "ff" * 30 + "7f", id="y=p-1-order-2"),
    pytest.param(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", id="order-8-a"
    ),
    pytest.param(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", id="order-8-b"
    ),
]


@pytest.mark.parametrize("raw_hex", SMALL_ORDER_KEYS)
def test_no_forged_signature_verifies_under_a_small_order_public_key(raw_hex: str) -> None:
    raw, neutral = bytes.fromhex(raw_hex), (1).to_bytes(32, "little")
    forged = [(r + bytes(32), b"message %d" % i) for i in range(64) for r in (raw, neutral)]
    accepted = []
    for signature, message in forged:
        try:
            PublicKey(raw).verify(signature, message)
        except (ParseError, SignatureError):
            continue
        accepted.append(message)
    assert accepted == []


# --- secrets and domains --------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_the_repr_of_a_private_key_never_shows_the_seed(seed: bytes) -> None:
    key = PrivateKey.from_seed(seed)
    shown = repr(key) + str(key) + f"{key!r} {[key]} {key}"
    for form in (
        seed.hex(),
        seed.hex().upper(),
        base64.b64encode(seed).decode(),
        base64.urlsafe_b64encode(seed).decode().rstrip("="),
        repr(seed),
    ):
        assert form not in shown
    assert str(key.public_key) in repr(key)


def test_a_private_key_has_no_instance_dict_to_leak_through() -> None:
    key = PrivateKey.from_seed(bytes(range(32)))
    assert not hasattr(key, "__dict__")
    with pytest.raises(AttributeError):
        key.extra = 1  # type: ignore[attr-defined]


def test_domain_message_layout() -> None:
    assert domain_message(SPAN_DOMAIN, b"data") == b"logline/span/v1\x00data"
    assert domain_message(b"d", b"") == b"d\x00"


DOMAINS = [SPAN_DOMAIN, b"logline/checkpoint/v1", b"logline/span/v2", b"logline/span/v1x", b""]


@pytest.mark.parametrize("domain_a", DOMAINS)
def test_a_signature_for_one_domain_does_not_verify_for_another(domain_a: bytes) -> None:
    key = PrivateKey.from_seed(hashlib.sha256(b"domain test").digest())
    data = hashlib.sha256(b"span").digest()
    signature = key.sign(domain_message(domain_a, data))
    key.public_key.verify(signature, domain_message(domain_a, data))
    for domain_b in DOMAINS:
        if domain_b != domain_a:
            with pytest.raises(SignatureError):
                key.public_key.verify(signature, domain_message(domain_b, data))
    with pytest.raises(SignatureError):
        key.public_key.verify(signature, data)


@settings(max_examples=50, deadline=None)
@given(
    st.binary(min_size=1, max_size=24).filter(lambda d: b"\x00" not in d),
    st.binary(min_size=1, max_size=24).filter(lambda d: b"\x00" not in d),
    st.binary(max_size=64),
)
def test_domain_messages_of_distinct_labels_never_collide(a: bytes, b: bytes, data: bytes) -> None:
    if a != b:
        assert domain_message(a, data) != domain_message(b, data)
