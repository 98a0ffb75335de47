"""RFC 6962 / RFC 9162 Merkle hashing and proofs: published vectors, a reference model, properties.

Three independent checks of `logline.ledger.merkle`:

* the published vectors in tests/vectors/rfc6962/ (transparency-dev/merkle data, see
  tests/vectors/generate.py), one pytest case per file, happy paths and corruptions;
* a deliberately slow, literal transcription of RFC 6962 section 2.1 (MTH, PATH, PROOF) that the
  fast code must match for every tree of up to 64 leaves and every index / pair of sizes;
* hypothesis properties on trees of up to a few thousand leaves built with `append_nodes`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import VECTORS, load_vectors, vector_drift
from logline.errors import VerificationError
from logline.ledger import merkle
from logline.ledger.merkle import (
    EMPTY_ROOT,
    NodeFetcher,
    NodeId,
    append_nodes,
    consistency_nodes,
    consistency_path,
    fold_right,
    inclusion_nodes,
    inclusion_path,
    leaf_hash,
    range_nodes,
    root_from_inclusion_proof,
    root_from_leaves,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

Case = dict[str, Any]
Store = dict[NodeId, bytes]


# --- vector files -------------------------------------------------------------------------------


def test_vector_files_match_the_generator() -> None:
    assert vector_drift("rfc6962") == [], "run .venv/bin/python tests/vectors/generate.py"


def hashes(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def build_store(leaf_hashes: Sequence[bytes]) -> Store:
    store: Store = {}
    for level, index, node_hash in append_nodes(0, {}, leaf_hashes):
        store[(level, index)] = node_hash
    return store


def fetcher(store: Store, calls: list[NodeId] | None = None) -> NodeFetcher:
    def node(level: int, index: int) -> bytes:
        if calls is not None:
            calls.append((level, index))
        return store[(level, index)]

    return node


@cache
def published_tree() -> tuple[list[bytes], list[bytes], Store]:
    """The 8 published leaf inputs, their published leaf hashes and a store built from them."""
    case = json.loads((VECTORS / "rfc6962/roots/size-8.json").read_text(encoding="utf-8"))
    data, leaves = hashes(case["leaf_data"]), hashes(case["leaf_hashes"])
    return data, leaves, build_store(leaves)


@pytest.mark.parametrize("case", load_vectors("rfc6962/roots"))
def test_published_roots(case: Case) -> None:
    data, leaves, root = hashes(case["leaf_data"]), hashes(case["leaf_hashes"]), case["root"]
    assert [leaf_hash(d) for d in data] == leaves
    assert root_from_leaves(leaves).hex() == root
    assert tree_root(case["size"], fetcher(build_store(leaves))).hex() == root
    assert ref_mth(data).hex() == root


@pytest.mark.parametrize("case", load_vectors("rfc6962/nodes"))
def test_published_nodes(case: Case) -> None:
    _, _, store = published_tree()
    assert store[(case["level"], case["index"])].hex() == case["hash"]


def test_append_nodes_makes_exactly_the_published_nodes() -> None:
    _, _, store = published_tree()
    published = {
        (c.values[0]["level"], c.values[0]["index"]) for c in load_vectors("rfc6962/nodes")
    }
    assert set(store) == published


@pytest.mark.parametrize("case", load_vectors("rfc6962/inclusion"))
def test_inclusion_vector(case: Case) -> None:
    index, size, proof = case["index"], case["size"], hashes(case["proof"])
    leaf, root = bytes.fromhex(case["leaf_hash"]), bytes.fromhex(case["root"])
    if not case["valid"]:
        with pytest.raises(VerificationError):
            verify_inclusion(index, size, leaf, proof, root)
        return
    verify_inclusion(index, size, leaf, proof, root)
    assert root_from_inclusion_proof(index, size, leaf, proof) == root
    assert leaf_hash(bytes.fromhex(case["leaf_data"])) == leaf
    data, _, store = published_tree()
    assert inclusion_path(index, size, fetcher(store)) == proof, "generation differs from published"
    assert ref_path(index, data[:size]) == proof, "the reference model differs from published"


@pytest.mark.parametrize("case", load_vectors("rfc6962/consistency"))
def test_consistency_vector(case: Case) -> None:
    size1, size2, proof = case["size1"], case["size2"], hashes(case["proof"])
    root1, root2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    if not case["valid"]:
        with pytest.raises(VerificationError):
            verify_consistency(size1, size2, proof, root1, root2)
        return
    verify_consistency(size1, size2, proof, root1, root2)
    if size1 > 0:
        data, _, store = published_tree()
        generated = consistency_path(size1, size2, fetcher(store))
        assert generated == proof, "generation differs from published"
        assert ref_proof(size1, data[:size2]) == proof, "the reference model differs"


def valid_cases(folder: str) -> list[Any]:
    return [p for p in load_vectors(folder) if p.values[0]["valid"]]


def flips(value: bytes) -> Iterator[bytes]:
    """`value` with each one of its bits flipped in turn."""
    for bit in range(len(value) * 8):
        flipped = bytearray(value)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bytes(flipped)


@pytest.mark.parametrize("case", valid_cases("rfc6962/inclusion"))
def test_every_single_bit_flip_of_a_published_inclusion_proof_fails(case: Case) -> None:
    index, size, proof = case["index"], case["size"], hashes(case["proof"])
    leaf, root = bytes.fromhex(case["leaf_hash"]), bytes.fromhex(case["root"])
    accepted: list[str] = []
    for bad in flips(leaf):
        if accepts_inclusion(index, size, bad, proof, root):
            accepted.append("leaf")
    for bad in flips(root):
        if accepts_inclusion(index, size, leaf, proof, bad):
            accepted.append("root")
    for i, element in enumerate(proof):
        for bad in flips(element):
            if accepts_inclusion(index, size, leaf, [*proof[:i], bad, *proof[i + 1 :]], root):
                accepted.append(f"proof[{i}]")
    assert accepted == []


@pytest.mark.parametrize(
    "case", [p for p in valid_cases("rfc6962/consistency") if p.values[0]["size1"] > 0]
)
def test_every_single_bit_flip_of_a_published_consistency_proof_fails(case: Case) -> None:
    size1, size2, proof = case["size1"], case["size2"], hashes(case["proof"])
    root1, root2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    accepted: list[str] = []
    for bad in flips(root1):
        if accepts_consistency(size1, size2, proof, bad, root2):
            accepted.append("root1")
    for bad in flips(root2):
        if accepts_consistency(size1, size2, proof, root1, bad):
            accepted.append("root2")
    for i, element in enumerate(proof):
        for bad in flips(element):
            if accepts_consistency(size1, size2, [*proof[:i], bad, *proof[i + 1 :]], root1, root2):
                accepted.append(f"proof[{i}]")
    assert accepted == []


def accepts_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether verification passes; any exception other than VerificationError propagates."""
    try:
        verify_inclusion(index, size, leaf, proof, root)
    except VerificationError:
        return False
    return True


def accepts_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except VerificationError:
        return False
    return True


# --- the reference model: RFC 6962 section 2.1, transcribed literally ----------------------------
# Slow on purpose: lists are sliced and every subtree is rehashed from the leaf inputs, with its own
# hashing, so it shares nothing with the code under test.


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1, over leaf *inputs*."""
    n = len(d)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + d[0])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:n]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 section 2.1.1."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:n])]
    return [*ref_path(m - k, d[k:n]), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 section 2.1.2."""
    return _ref_subproof(m, d, True)


def _ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*_ref_subproof(m, d[:k], b), ref_mth(d[k:n])]
    return [*_ref_subproof(m - k, d[k:n], False), ref_mth(d[:k])]


def ref_path_shape(m: int, n: int) -> list[str]:
    """Which side each PATH(m, D[n]) element hashes in from: what a verifier can check of `n`."""
    if n == 1:
        return []
    k = _k(n)
    return [*ref_path_shape(m, k), "right"] if m < k else [*ref_path_shape(m - k, n - k), "left"]


def ref_proof_shape(m: int, n: int, b: bool = True) -> list[str]:
    """The structure of PROOF(m, D[n]): what a verifier can check of the two sizes."""
    if m == n:
        return [] if b else ["old"]
    k = _k(n)
    if m <= k:
        return [*ref_proof_shape(m, k, b), "right"]
    return [*ref_proof_shape(m - k, n - k, False), "left"]


REF_SIZE = 64
REF_DATA = [i.to_bytes(2, "big") * (i % 3) for i in range(REF_SIZE)]  # includes empty leaves


@cache
def ref_tree() -> Store:
    return build_store([leaf_hash(d) for d in REF_DATA])


def test_reference_model_matches_the_published_roots() -> None:
    data, _, _ = published_tree()
    for case in load_vectors("rfc6962/roots"):
        size, root = case.values[0]["size"], case.values[0]["root"]
        assert ref_mth(data[:size]).hex() == root


def test_roots_match_the_reference_for_every_size_up_to_64() -> None:
    node = fetcher(ref_tree())
    leaves = [leaf_hash(d) for d in REF_DATA]
    wrong = [
        n
        for n in range(REF_SIZE + 1)
        if not (ref_mth(REF_DATA[:n]) == tree_root(n, node) == root_from_leaves(leaves[:n]))
    ]
    assert wrong == []
    assert tree_root(0, node) == root_from_leaves([]) == EMPTY_ROOT == ref_mth([])


def test_inclusion_proofs_match_the_reference_for_every_index_up_to_64() -> None:
    store = ref_tree()
    failures: list[str] = []
    for n in range(1, REF_SIZE + 1):
        root = ref_mth(REF_DATA[:n])
        for m in range(n):
            calls: list[NodeId] = []
            proof = inclusion_path(m, n, fetcher(store, calls))
            if proof != ref_path(m, REF_DATA[:n]):
                failures.append(f"inclusion_path({m}, {n}) differs from PATH")
            if not set(calls) <= set(inclusion_nodes(m, n)):
                failures.append(f"inclusion_path({m}, {n}) read nodes inclusion_nodes omits")
            if not accepts_inclusion(m, n, leaf_hash(REF_DATA[m]), proof, root):
                failures.append(f"inclusion proof ({m}, {n}) does not verify")
    assert failures == []


def test_consistency_proofs_match_the_reference_for_every_pair_up_to_64() -> None:
    store = ref_tree()
    failures: list[str] = []
    for n in range(1, REF_SIZE + 1):
        root = ref_mth(REF_DATA[:n])
        for m in range(1, n + 1):
            calls: list[NodeId] = []
            proof = consistency_path(m, n, fetcher(store, calls))
            if proof != ref_proof(m, REF_DATA[:n]):
                failures.append(f"consistency_path({m}, {n}) differs from PROOF")
            if not set(calls) <= set(consistency_nodes(m, n)):
                failures.append(f"consistency_path({m}, {n}) read nodes consistency_nodes omits")
            if not accepts_consistency(m, n, proof, ref_mth(REF_DATA[:m]), root):
                failures.append(f"consistency proof ({m}, {n}) does not verify")
    assert failures == []


def test_range_nodes_cover_ranges_with_aligned_perfect_subtrees() -> None:
    failures: list[tuple[int, int]] = []
    for begin in range(REF_SIZE):
        for end in range(begin + 1, REF_SIZE + 1):
            position = begin
            for level, index in range_nodes(begin, end):
                if index << level != position:
                    failures.append((begin, end))
                position += 1 << level
            if position != end:
                failures.append((begin, end))
    assert failures == []
    store = ref_tree()
    for n in range(1, REF_SIZE + 1):
        assert fold_right([store[i] for i in range_nodes(0, n)]) == ref_mth(REF_DATA[:n])


def test_proof_generation_refuses_impossible_arguments() -> None:
    node = fetcher(ref_tree())
    for index, size in ((0, 0), (3, 3), (-1, 5)):
        with pytest.raises(ValueError):
            inclusion_path(index, size, node)
        with pytest.raises(ValueError):
            inclusion_nodes(index, size)
    for size1, size2 in ((0, 5), (6, 5), (-1, 3)):
        with pytest.raises(ValueError):
            consistency_path(size1, size2, node)
        with pytest.raises(ValueError):
            consistency_nodes(size1, size2)
    assert consistency_path(7, 7, node) == []


# --- properties on big trees --------------------------------------------------------------------

BIG = 4096
EDGE_SIZES = sorted({s for p in range(13) for s in (2**p - 1, 2**p, 2**p + 1) if 1 <= s <= BIG})


@cache
def big_tree() -> tuple[list[bytes], Store]:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(BIG)]
    return leaves, build_store(leaves)


@cache
def big_root(size: int) -> bytes:
    leaves, _ = big_tree()
    return root_from_leaves(leaves[:size])


sizes = st.one_of(st.integers(1, BIG), st.sampled_from(EDGE_SIZES))


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    index = draw(st.one_of(st.integers(0, size - 1), st.sampled_from([0, size - 1])))
    return size, index


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(sizes)
    size1 = draw(st.one_of(st.integers(1, size2), st.sampled_from([1, size2 - 1 or 1, size2])))
    return size1, size2


def flip_bit(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def inclusion_of(size: int, index: int) -> tuple[bytes, list[bytes], bytes]:
    leaves, store = big_tree()
    return leaves[index], inclusion_path(index, size, fetcher(store)), big_root(size)


def consistency_of(size1: int, size2: int) -> tuple[list[bytes], bytes, bytes]:
    _, store = big_tree()
    return consistency_path(size1, size2, fetcher(store)), big_root(size1), big_root(size2)


@settings(max_examples=150, deadline=None)
@given(size_and_index())
def test_every_inclusion_proof_verifies(arg: tuple[int, int]) -> None:
    size, index = arg
    leaf, proof, root = inclusion_of(size, index)
    _, store = big_tree()
    assert tree_root(size, fetcher(store)) == root
    verify_inclusion(index, size, leaf, proof, root)
    assert len(proof) == len(ref_path_shape(index, size))


@settings(max_examples=150, deadline=None)
@given(two_sizes())
def test_every_consistency_proof_verifies(arg: tuple[int, int]) -> None:
    size1, size2 = arg
    proof, root1, root2 = consistency_of(size1, size2)
    verify_consistency(size1, size2, proof, root1, root2)
    assert len(proof) == len(ref_proof_shape(size1, size2))


@settings(max_examples=150, deadline=None)
@given(size_and_index(), st.data())
def test_flipping_any_bit_breaks_an_inclusion_proof(
    arg: tuple[int, int], data: st.DataObject
) -> None:
    size, index = arg
    leaf, proof, root = inclusion_of(size, index)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 leaf, -1 root)")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        leaf = flip_bit(leaf, bit)
    elif target == -1:
        root = flip_bit(root, bit)
    else:
        proof[target] = flip_bit(proof[target], bit)
    with pytest.raises(VerificationError):
        verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(two_sizes(), st.data())
def test_flipping_any_bit_breaks_a_consistency_proof(
    arg: tuple[int, int], data: st.DataObject
) -> None:
    size1, size2 = arg
    proof, root1, root2 = consistency_of(size1, size2)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 root1, -1 root2)")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        root1 = flip_bit(root1, bit)
    elif target == -1:
        root2 = flip_bit(root2, bit)
    else:
        proof[target] = flip_bit(proof[target], bit)
    with pytest.raises(VerificationError):
        verify_consistency(size1, size2, proof, root1, root2)


@settings(max_examples=100, deadline=None)
@given(size_and_index(), st.data())
def test_a_wrong_index_fails(arg: tuple[int, int], data: st.DataObject) -> None:
    size, index = arg
    leaf, proof, root = inclusion_of(size, index)
    other = data.draw(st.integers(-1, size + 1).filter(lambda i: i != index), label="index")
    with pytest.raises(VerificationError):
        verify_inclusion(other, size, leaf, proof, root)


@settings(max_examples=100, deadline=None)
@given(size_and_index(), st.data())
def test_a_wrong_size_fails_unless_the_proof_has_the_same_shape(
    arg: tuple[int, int], data: st.DataObject
) -> None:
    """RFC 9162 verification only sees the size through the proof's shape (which side each hash
    joins from); a wrong size is caught unless it gives the leaf the very same path. Checkpoints
    sign (size, root) together, which is what binds the size."""
    size, index = arg
    leaf, proof, root = inclusion_of(size, index)
    other = data.draw(st.integers(-1, 2 * BIG).filter(lambda s: s != size), label="size")
    same_shape = index < other and ref_path_shape(index, other) == ref_path_shape(index, size)
    assert accepts_inclusion(index, other, leaf, proof, root) == same_shape


@settings(max_examples=100, deadline=None)
@given(two_sizes(), st.data())
def test_a_wrong_size1_fails(arg: tuple[int, int], data: st.DataObject) -> None:
    size1, size2 = arg
    proof, root1, root2 = consistency_of(size1, size2)
    other = data.draw(st.integers(-1, size2 + 1).filter(lambda s: s != size1), label="size1")
    # From the empty tree, everything is consistent (and the proof must be empty).
    expected = other == 0 and not proof
    assert accepts_consistency(other, size2, proof, root1, root2) == expected


@settings(max_examples=100, deadline=None)
@given(two_sizes(), st.data())
def test_a_wrong_size2_fails_unless_the_proof_has_the_same_shape(
    arg: tuple[int, int], data: st.DataObject
) -> None:
    size1, size2 = arg
    proof, root1, root2 = consistency_of(size1, size2)
    other = data.draw(st.integers(0, 2 * BIG).filter(lambda s: s != size2), label="size2")
    same_shape = size1 <= other and ref_proof_shape(size1, other) == ref_proof_shape(size1, size2)
    assert accepts_consistency(size1, other, proof, root1, root2) == same_shape


bad_lengths = st.integers(0, 65).filter(lambda n: n != merkle.HASH_SIZE)


@settings(max_examples=150, deadline=None)
@given(size_and_index(), st.data())
def test_a_hash_of_the_wrong_length_is_a_verification_error(
    arg: tuple[int, int], data: st.DataObject
) -> None:
    size, index = arg
    leaf, proof, root = inclusion_of(size, index)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 leaf, -1 root)")
    malformed = data.draw(st.binary(min_size=1, max_size=1), label="fill") * data.draw(bad_lengths)
    if target == -2:
        leaf = malformed
    elif target == -1:
        root = malformed
    else:
        proof[target] = malformed
    with pytest.raises(VerificationError):
        verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(two_sizes(), st.data())
def test_a_consistency_hash_of_the_wrong_length_is_a_verification_error(
    arg: tuple[int, int], data: st.DataObject
) -> None:
    size1, size2 = arg
    proof, root1, root2 = consistency_of(size1, size2)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 root1, -1 root2)")
    malformed = data.draw(st.binary(min_size=1, max_size=1), label="fill") * data.draw(bad_lengths)
    if target == -2:
        root1 = malformed
    elif target == -1:
        root2 = malformed
    else:
        proof[target] = malformed
    with pytest.raises(VerificationError):
        verify_consistency(size1, size2, proof, root1, root2)


any_hash = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))
any_size = st.one_of(st.integers(-3, 70), st.integers(-(2**64), 2**64))


@settings(max_examples=300, deadline=None)
@given(any_size, any_size, any_hash, st.lists(any_hash, max_size=70), any_hash)
def test_inclusion_verification_of_garbage_raises_only_verification_error(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> None:
    try:
        computed = root_from_inclusion_proof(index, size, leaf, proof)
    except VerificationError:
        return
    assert len(computed) == merkle.HASH_SIZE
    accepts_inclusion(index, size, leaf, proof, root)


@settings(max_examples=300, deadline=None)
@given(any_size, any_size, st.lists(any_hash, max_size=70), any_hash, any_hash)
def test_consistency_verification_of_garbage_raises_only_verification_error(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    accepts_consistency(size1, size2, proof, root1, root2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=12))
def test_appending_in_batches_builds_the_same_store_and_frontier(batches: list[int]) -> None:
    leaves, store = big_tree()
    size = 0
    frontier: dict[int, bytes] = {}
    built: Store = {}
    for batch in batches:
        new = append_nodes(size, frontier, leaves[size : size + batch])
        assert all(level > 0 or index >= size for level, index, _ in new)
        built.update({(level, index): node_hash for level, index, node_hash in new})
        size += batch
        assert frontier == {level: store[(level, i)] for level, i in range_nodes(0, size)}
    assert built == {key: value for key, value in store.items() if (key[1] + 1) << key[0] <= size}


def test_a_tree_of_one_leaf_has_the_leaf_as_root() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(0, 1, leaf, [], leaf)
    assert root_from_leaves([leaf]) == leaf
