"""Write the published test vectors under tests/vectors/, one case per JSON file.

    .venv/bin/python tests/vectors/generate.py           # (re)write every vector file
    .venv/bin/python tests/vectors/generate.py --check   # exit 1 if the files on disk are stale

The output is deterministic (fixed key order, ASCII-only JSON, trailing newline), and the
three directories this script owns (rfc6962/, rfc8032/, rfc8785/) are rewritten from scratch, so a
stale file cannot survive. The script imports nothing from `logline`: the expected values below are
copied from published sources, never computed by the code under test.

Sources, copied verbatim
------------------------

rfc6962/ -- RFC 6962 Merkle tree hashes and proofs, from github.com/transparency-dev/merkle:

* `testonly/constants.go`: `LeafInputs()` (the 8 leaves `""`, `00`, `10`, `2021`, `3031`,
  `40414243`, `5051525354555657`, `606162636465666768696a6b6c6d6e6f`), `NodeHashes()` (every
  perfect subtree of the 8-leaf tree) and `RootHashes()` (the roots of the trees of sizes 0..8).
* `proof/verify_test.go`: `inclusionProofs` (there `leaf` is 1-based; here `index` is 0-based),
  `consistencyProofs`, `roots`, `sha256SomeHash`, and `corruptInclusionProof` /
  `corruptConsistencyProof`, whose corruptions (wrong index or size, wrong, empty or random root,
  trailing or preceding garbage, single-bit flips, removed or inserted component, truncated proof,
  swapped roots) are applied here to every published happy path. The same happy paths are
  published base64-encoded as `testdata/inclusion/N/happy-path.json` and
  `testdata/consistency/N/happy-path.json`.

A few further happy paths (marked "assembled" in their `source`) are the inclusion proofs of every
leaf of the published trees of sizes 2, 4 and 8 and the consistency proofs between power-of-two
sizes: every node in them is a published perfect-subtree hash, picked by position, and every root
is a published root, so nothing in them is computed. The extra corruptions (bit flips of the leaf
hash and the roots, wrong-length hashes, an extra element, an empty proof) are likewise applied to
published values only.

rfc8032/ -- RFC 8032 section 7.1 Ed25519 test vectors TEST 1, 2, 3, 1024 and SHA(abc), as shipped in
github.com/libtom/libtomcrypt `tests/ed25519_test.c` (`s_rfc_8032_7_1_test`); TEST 1-3 also match
github.com/ZcashFoundation/ed25519-zebra `tests/rfc8032.rs`.

rfc8785/ -- RFC 8785 (JCS) canonicalization:

* `cyberphone-*.json`: github.com/cyberphone/json-canonicalization `testdata/input/*.json` and
  `testdata/output/*.json` (arrays, french, simpleString, structures, unicode, values, weird).
  `testdata/output/arrays.json` was not available when these were copied; its expected output
  `[56,{"1":[],"10":null,"d":true}]` is the one published copies of that suite reproduce.
* `rfc8785-3.2.2-sample.json`: the sample of RFC 8785 section 3.2.2, its canonical form from
  section 3.2.3 and its UTF-8 bytes from section 3.2.4.
* `rfc8785-3.2.3-sorting.json`: the property-sorting test data of RFC 8785 section 3.2.3; the RFC
  publishes the expected order of the values, and the expected text is that order serialized with
  the section 3.2.2.2 string rules.
* `rfc8785-appendix-b-*.json`: every row of RFC 8785 Appendix B, Table 1 (IEEE 754 bits -> JSON).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
OWNED_DIRS = ("rfc6962", "rfc8032", "rfc8785")

Vector = dict[str, Any]

# ==================================================================================================
# RFC 6962 -- transparency-dev/merkle testonly/constants.go and proof/verify_test.go
# ==================================================================================================

MERKLE_CONSTANTS = "github.com/transparency-dev/merkle testonly/constants.go"
MERKLE_VERIFY_TEST = "github.com/transparency-dev/merkle proof/verify_test.go"

# LeafInputs()
LEAF_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]

# NodeHashes(): NODE_HASHES[level][index] is the perfect subtree of 2**level leaves
# starting at leaf index * 2**level.
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    [
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ],
]

# RootHashes(): ROOT_HASHES[size] for sizes 0..8 (size 0 is EmptyRootHash()).
ROOT_HASHES = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# verify_test.go: sha256SomeHash, sha256EmptyTreeHash.
SOME_HASH = "abacaba000000000000000000000000000000000000000000060061e00123456"
EMPTY_TREE_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# verify_test.go uses []byte("WrongLeaf") / []byte("WrongRoot"): hashes of the wrong length.
WRONG_LEAF = b"WrongLeaf".hex()
WRONG_ROOT = b"WrongRoot".hex()

# verify_test.go inclusionProofs: (leaf, size, proof) with a 1-based leaf number.
PUBLISHED_INCLUSION: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        ],
    ),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# verify_test.go consistencyProofs: (size1, size2, proof).
PUBLISHED_CONSISTENCY: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def flip_bit(hex_hash: str, mask: int, byte: int = 0) -> str:
    """`hex_hash` with `byte` XORed with `mask` (verify_test.go flips proof[i][0] ^= 8 or 16)."""
    raw = bytearray(bytes.fromhex(hex_hash))
    raw[byte] ^= mask
    return raw.hex()


def assembled_inclusion(index: int, size: int) -> list[str]:
    """The inclusion proof of `index` in a perfect tree of `size` leaves, from NodeHashes()."""
    return [NODE_HASHES[level][(index >> level) ^ 1] for level in range(size.bit_length() - 1)]


def inclusion_case(
    description: str,
    source: str,
    index: int,
    size: int,
    leaf_hash: str,
    proof: list[str],
    root: str,
    *,
    valid: bool,
    leaf_data: str | None = None,
) -> Vector:
    case: Vector = {
        "description": description,
        "source": source,
        "index": index,
        "size": size,
        "leaf_hash": leaf_hash,
        "proof": proof,
        "root": root,
        "valid": valid,
    }
    if leaf_data is not None:
        case["leaf_data"] = leaf_data
    return case


def inclusion_corruptions(index: int, size: int, proof: list[str]) -> dict[str, Vector]:
    """corruptInclusionProof() of verify_test.go, plus a few more, applied to a published case."""
    leaf, root = NODE_HASHES[0][index], ROOT_HASHES[size]
    src = f"{MERKLE_VERIFY_TEST} corruptInclusionProof, applied to index {index}, size {size}"
    extra = f"corruption added here, applied to the published index {index}, size {size}"
    out: dict[str, Vector] = {}

    def bad(name: str, why: str, source: str, **changes: Any) -> None:
        args: dict[str, Any] = {
            "index": index,
            "size": size,
            "leaf_hash": leaf,
            "proof": proof,
            "root": root,
        }
        args.update(changes)
        out[f"{name}-size{size}-index{index}"] = inclusion_case(
            why,
            source,
            args["index"],
            args["size"],
            args["leaf_hash"],
            args["proof"],
            args["root"],
            valid=False,
        )

    bad("wrong-index-minus-1", "leaf index - 1", src, index=index - 1)
    bad("wrong-index-plus-1", "leaf index + 1", src, index=index + 1)
    bad("wrong-index-xor-2", "leaf index ^ 2", src, index=index ^ 2)
    bad("wrong-size-times-2", "tree size * 2", src, size=size * 2)
    bad("wrong-size-div-2", "tree size / 2", src, size=size // 2)
    bad(
        "wrong-leaf",
        "the hash of another published leaf",
        extra,
        leaf_hash=NODE_HASHES[0][(index + 1) % 8],
    )
    bad("malformed-leaf-hash", 'a 9-byte leaf hash ("WrongLeaf")', src, leaf_hash=WRONG_LEAF)
    bad("wrong-root-empty-tree", "the root of the empty tree", src, root=EMPTY_TREE_HASH)
    bad("wrong-root-random", "an arbitrary 32-byte root (sha256SomeHash)", src, root=SOME_HASH)
    bad("malformed-root-empty", "a zero-length root", extra, root="")
    bad("trailing-garbage", "an empty element appended to the proof", src, proof=[*proof, ""])
    bad("trailing-root", "the root appended to the proof", src, proof=[*proof, root])
    bad(
        "extra-proof-element",
        "a 32-byte hash appended to the proof",
        extra,
        proof=[*proof, SOME_HASH],
    )
    bad("preceding-garbage", "an empty element prepended to the proof", src, proof=["", *proof])
    bad("preceding-root", "the root prepended to the proof", src, proof=[root, *proof])
    bad("modified-leaf-bit-3", "bit 3 of the leaf hash flipped", extra, leaf_hash=flip_bit(leaf, 8))
    bad("modified-root-bit-3", "bit 3 of the root flipped", extra, root=flip_bit(root, 8))
    for i, element in enumerate(proof):
        flipped = [*proof[:i], flip_bit(element, 8), *proof[i + 1 :]]
        bad(f"modified-proof-{i}-bit-3", f"bit 3 of proof[{i}] flipped", src, proof=flipped)
    if proof:
        bad("truncated-proof", "the last proof element removed", src, proof=proof[:-1])
        bad("empty-proof", "an empty proof", extra, proof=[])
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        bad("inserted-component", "a hash inserted after proof[0]", src, proof=inserted)
    return out


def inclusion_vectors() -> dict[str, Vector]:
    vectors: dict[str, Vector] = {}
    published = set()
    for leaf_number, size, proof in PUBLISHED_INCLUSION:
        index = leaf_number - 1
        published.add((index, size))
        vectors[f"happy-path-size{size}-index{index}"] = inclusion_case(
            f"published inclusion proof of leaf {index} in the tree of {size} leaves",
            f"{MERKLE_VERIFY_TEST} inclusionProofs {{{leaf_number}, {size}, ...}}, roots, leaves",
            index,
            size,
            NODE_HASHES[0][index],
            proof,
            ROOT_HASHES[size],
            valid=True,
            leaf_data=LEAF_INPUTS[index],
        )
        vectors.update(inclusion_corruptions(index, size, proof))
    for size in (2, 4, 8):
        for index in range(size):
            if (index, size) in published:
                continue
            vectors[f"happy-path-size{size}-index{index}"] = inclusion_case(
                f"inclusion proof of leaf {index} in the perfect tree of {size} leaves",
                f"assembled from {MERKLE_CONSTANTS} NodeHashes() and RootHashes()",
                index,
                size,
                NODE_HASHES[0][index],
                assembled_inclusion(index, size),
                ROOT_HASHES[size],
                valid=True,
                leaf_data=LEAF_INPUTS[index],
            )
    probes = f"{MERKLE_VERIFY_TEST} TestVerifyInclusion probes"
    for index, size in ((0, 0), (1, 0), (2, 1)):
        vectors[f"index-out-of-range-size{size}-index{index}"] = inclusion_case(
            f"leaf {index} does not exist in a tree of {size} leaves",
            probes,
            index,
            size,
            SOME_HASH,
            [],
            EMPTY_TREE_HASH,
            valid=False,
        )
    single = f"{MERKLE_VERIFY_TEST} TestVerifyInclusionSingleEntry"
    vectors["single-entry-empty-leaf-hash"] = inclusion_case(
        "a tree of one leaf, with a zero-length leaf hash",
        single,
        0,
        1,
        "",
        [],
        ROOT_HASHES[1],
        valid=False,
    )
    vectors["single-entry-empty-root"] = inclusion_case(
        "a tree of one leaf, with a zero-length root",
        single,
        0,
        1,
        NODE_HASHES[0][0],
        [],
        "",
        valid=False,
    )
    return vectors


def consistency_case(
    description: str,
    source: str,
    size1: int,
    size2: int,
    root1: str,
    root2: str,
    proof: list[str],
    *,
    valid: bool,
) -> Vector:
    return {
        "description": description,
        "source": source,
        "size1": size1,
        "size2": size2,
        "root1": root1,
        "root2": root2,
        "proof": proof,
        "valid": valid,
    }


def consistency_corruptions(size1: int, size2: int, proof: list[str]) -> dict[str, Vector]:
    """corruptConsistencyProof() of verify_test.go, plus a few more, applied to a published case."""
    root1, root2 = ROOT_HASHES[size1], ROOT_HASHES[size2]
    src = f"{MERKLE_VERIFY_TEST} corruptConsistencyProof, applied to sizes {size1} -> {size2}"
    extra = f"corruption added here, applied to the published sizes {size1} -> {size2}"
    out: dict[str, Vector] = {}

    def bad(name: str, why: str, source: str, **changes: Any) -> None:
        args: dict[str, Any] = {
            "size1": size1,
            "size2": size2,
            "root1": root1,
            "root2": root2,
            "proof": proof,
        }
        args.update(changes)
        out[f"{name}-size{size1}-to-{size2}"] = consistency_case(
            why,
            source,
            args["size1"],
            args["size2"],
            args["root1"],
            args["root2"],
            args["proof"],
            valid=False,
        )

    bad("wrong-size1-minus-1", "size1 - 1", src, size1=size1 - 1)
    bad("wrong-size1-plus-1", "size1 + 1", src, size1=size1 + 1)
    bad("wrong-size1-xor-2", "size1 ^ 2", src, size1=size1 ^ 2)
    bad("wrong-size2-times-2", "size2 * 2", src, size2=size2 * 2)
    bad("wrong-size2-div-2", "size2 / 2", src, size2=size2 // 2)
    bad("malformed-root1", 'a 9-byte root1 ("WrongRoot")', src, root1=WRONG_ROOT)
    bad("malformed-root2", 'a 9-byte root2 ("WrongRoot")', src, root2=WRONG_ROOT)
    bad("wrong-root1", "an arbitrary 32-byte root1", extra, root1=SOME_HASH)
    bad("wrong-root2", "an arbitrary 32-byte root2", extra, root2=SOME_HASH)
    bad("swapped-roots", "root1 and root2 swapped", src, root1=root2, root2=root1)
    bad("modified-root1-bit-4", "bit 4 of root1 flipped", extra, root1=flip_bit(root1, 16))
    bad("modified-root2-bit-4", "bit 4 of root2 flipped", extra, root2=flip_bit(root2, 16))
    bad("empty-proof", "an empty proof", src, proof=[])
    bad("trailing-garbage", "an empty element appended", src, proof=[*proof, ""])
    bad("trailing-root1", "root1 appended to the proof", src, proof=[*proof, root1])
    bad("trailing-root2", "root2 appended to the proof", src, proof=[*proof, root2])
    bad("extra-proof-element", "a 32-byte hash appended", extra, proof=[*proof, SOME_HASH])
    bad("preceding-garbage", "an empty element prepended", src, proof=["", *proof])
    bad("preceding-root1", "root1 prepended to the proof", src, proof=[root1, *proof])
    bad("preceding-root2", "root2 prepended to the proof", src, proof=[root2, *proof])
    bad("preceding-proof-0", "proof[0] prepended to the proof", src, proof=[proof[0], *proof])
    bad("truncated-proof", "the last proof element removed", src, proof=proof[:-1])
    for i, element in enumerate(proof):
        flipped = [*proof[:i], flip_bit(element, 16), *proof[i + 1 :]]
        bad(f"modified-proof-{i}-bit-4", f"bit 4 of proof[{i}] flipped", src, proof=flipped)
    return out


def consistency_vectors() -> dict[str, Vector]:
    vectors: dict[str, Vector] = {}
    for size1, size2, proof in PUBLISHED_CONSISTENCY:
        vectors[f"happy-path-size{size1}-to-{size2}"] = consistency_case(
            f"published consistency proof from size {size1} to size {size2}",
            f"{MERKLE_VERIFY_TEST} consistencyProofs {{{size1}, {size2}, ...}}, roots",
            size1,
            size2,
            ROOT_HASHES[size1],
            ROOT_HASHES[size2],
            proof,
            valid=True,
        )
        if proof:
            vectors.update(consistency_corruptions(size1, size2, proof))
    assembled = f"assembled from {MERKLE_CONSTANTS} NodeHashes() and RootHashes()"
    # Between powers of two the proof is the chain of right siblings above the old tree.
    for size1, size2 in ((1, 2), (1, 4), (2, 4), (2, 8), (4, 8)):
        levels = range(size1.bit_length() - 1, size2.bit_length() - 1)
        proof = [NODE_HASHES[level][1] for level in levels]
        vectors[f"happy-path-size{size1}-to-{size2}"] = consistency_case(
            f"consistency proof from size {size1} to size {size2}",
            assembled,
            size1,
            size2,
            ROOT_HASHES[size1],
            ROOT_HASHES[size2],
            proof,
            valid=True,
        )
    for size in range(2, 9):
        vectors[f"happy-path-size{size}-to-{size}"] = consistency_case(
            f"a tree is consistent with itself (size {size}): empty proof",
            f"{MERKLE_CONSTANTS} RootHashes(); {MERKLE_VERIFY_TEST} TestVerifyConsistency",
            size,
            size,
            ROOT_HASHES[size],
            ROOT_HASHES[size],
            [],
            valid=True,
        )
    edge = f"{MERKLE_VERIFY_TEST} TestVerifyConsistency"

    def case(
        name: str, why: str, s1: int, s2: int, r1: str, r2: str, p: list[str], ok: bool
    ) -> None:
        vectors[name] = consistency_case(why, edge, s1, s2, r1, r2, p, valid=ok)

    empty, r1, r2, r8 = EMPTY_TREE_HASH, ROOT_HASHES[1], ROOT_HASHES[2], ROOT_HASHES[8]
    case("happy-path-size0-to-0", "empty trees, equal roots", 0, 0, empty, empty, [], True)
    case(
        "happy-path-size0-to-8",
        "the empty tree is a prefix of every tree",
        0,
        8,
        empty,
        r8,
        [],
        True,
    )
    case(
        "nonempty-proof-size0-to-8",
        "a proof from the empty tree must be empty",
        0,
        8,
        empty,
        r8,
        [empty],
        False,
    )
    case(
        "nonempty-proof-size0-to-0",
        "equal sizes need an empty proof",
        0,
        0,
        empty,
        empty,
        [empty],
        False,
    )
    case(
        "nonempty-proof-size1-to-1", "equal sizes need an empty proof", 1, 1, r1, r1, [empty], False
    )
    case("different-roots-size1-to-1", "equal sizes need equal roots", 1, 1, empty, r1, [], False)
    case("decreasing-sizes-size1-to-0", "time travel to the past", 1, 0, r1, empty, [], False)
    case("decreasing-sizes-size2-to-1", "time travel to the past", 2, 1, r2, r1, [], False)
    case("empty-proof-size1-to-2", "growing a tree needs a proof", 1, 2, r1, r2, [], False)
    return vectors


def root_vectors() -> dict[str, Vector]:
    return {
        f"size-{size}": {
            "description": f"the root of the tree of the first {size} published leaves",
            "source": f"{MERKLE_CONSTANTS} LeafInputs(), NodeHashes()[0], RootHashes()",
            "size": size,
            "leaf_data": LEAF_INPUTS[:size],
            "leaf_hashes": NODE_HASHES[0][:size],
            "root": ROOT_HASHES[size],
        }
        for size in range(9)
    }


def node_vectors() -> dict[str, Vector]:
    return {
        f"level{level}-index{index}": {
            "description": f"the perfect subtree of {2**level} leaves starting at leaf "
            f"{index * 2**level} of the published 8-leaf tree",
            "source": f"{MERKLE_CONSTANTS} NodeHashes()[{level}][{index}]",
            "level": level,
            "index": index,
            "hash": hash_hex,
        }
        for level, row in enumerate(NODE_HASHES)
        for index, hash_hex in enumerate(row)
    }


# ==================================================================================================
# RFC 8032 section 7.1 -- libtom/libtomcrypt tests/ed25519_test.c (s_rfc_8032_7_1_test)
# ==================================================================================================

ED25519_SOURCE = (
    "RFC 8032 section 7.1, as shipped in github.com/libtom/libtomcrypt tests/ed25519_test.c"
)

TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

# (file name, RFC 8032 test name, secret key, public key, message, signature)
ED25519_VECTORS = [
    (
        "test-1",
        "TEST 1 (empty message)",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "test-2",
        "TEST 2 (1-byte message)",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "test-3",
        "TEST 3 (2-byte message)",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "test-1024",
        "TEST 1024 (1023-byte message)",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "test-sha-abc",
        "TEST SHA(abc) (the 64-byte message is SHA-512 of 'abc')",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


def ed25519_vectors() -> dict[str, Vector]:
    return {
        name: {
            "description": f"RFC 8032 section 7.1 Ed25519 {title}",
            "source": ED25519_SOURCE,
            "secret_key": secret,
            "public_key": public,
            "message": message,
            "signature": signature,
        }
        for name, title, secret, public, message, signature in ED25519_VECTORS
    }


# ==================================================================================================
# RFC 8785 -- cyberphone/json-canonicalization testdata/ and the RFC's own examples
# ==================================================================================================

CYBERPHONE = "github.com/cyberphone/json-canonicalization testdata"
_CODE_POINT = re.compile(r"<U\+([0-9A-F]{4,6})>")


def u(text: str) -> str:
    """Replace `<U+20AC>` markers with the character, so this file stays ASCII and unambiguous."""
    return _CODE_POINT.sub(lambda m: chr(int(m.group(1), 16)), text)


# (name, input JSON text, expected canonical text); the texts are the files' exact contents.
CYBERPHONE_CASES = [
    (
        "arrays",
        '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]',
        '[56,{"1":[],"10":null,"d":true}]',
    ),
    (
        "french",
        u(
            '{\n  "peach": "This sorting order",\n'
            '  "p<U+00E9>ch<U+00E9>": "is wrong according to French",\n'
            '  "p<U+00EA>che": "but canonicalization MUST",\n'
            '  "sin":   "ingnore locale"\n}\n'
        ),
        u(
            '{"peach":"This sorting order","p<U+00E9>ch<U+00E9>":"is wrong according to French",'
            '"p<U+00EA>che":"but canonicalization MUST","sin":"ingnore locale"}'
        ),
    ),
    (
        "simple-string",
        '    "this is a test string 1235"',
        '"this is a test string 1235"',
    ),
    (
        "structures",
        r"""{
  "1": {"f": {"f": "hi","F": 5} ,"\n": 56.0},
  "10": { },
  "": "empty",
  "a": { },
  "111": [ { } ],
  "A": { }
}""",
        r"""{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}""",
    ),
    (
        "unicode",
        '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n',
        u('{"Unnormalized Unicode":"<U+1E0D><U+0307>"}'),
    ),
    (
        "values",
        r"""{
  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}""",
        u(
            r"""{"escaping":"<U+20AC>$\u000f\nA'B\"\\\\\"/","literals":[null,true,false],"""
            r""""numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}"""
        ),
    ),
    (
        "weird",
        r"""{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}
""",
        u(
            '{"1":"One","</script>":"Browser Challenge","<U+0080>":"Control<U+007F>",'
            '"<U+00F6>":"Latin Small Letter O With Diaeresis","<U+20AC>":"Euro Sign",'
            '"<U+1F602>":"Smiley","<U+FB33>":"Hebrew Letter Dalet With Dagesh"}'
        ),
    ),
]

CYBERPHONE_FILES = {"simple-string": "simpleString"}

RFC8785_SAMPLE_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC8785_SAMPLE_OUTPUT = u(
    r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"""
    r""""string":"<U+20AC>$\u000f\nA'B\"\\\\\"/"}"""
)
RFC8785_SAMPLE_BYTES = """
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d
"""

RFC8785_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
# RFC 8785 section 3.2.3: "Expected argument order after sorting property strings".
RFC8785_SORTING_ORDER = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]
RFC8785_SORTING_OUTPUT = u(
    r"""{"\r":"Carriage Return","1":"One","<U+0080>":"Control","""
    r""""<U+00F6>":"Latin Small Letter O With Diaeresis","<U+20AC>":"Euro Sign","""
    r""""<U+1F600>":"Emoji: Grinning Face","<U+FB33>":"Hebrew Letter Dalet With Dagesh"}"""
)

# RFC 8785 Appendix B, Table 1: (IEEE 754 bits, JSON representation or None for an error, comment).
RFC8785_NUMBERS: list[tuple[str, str | None, str]] = [
    ("0000000000000000", "0", "Zero"),
    ("8000000000000000", "0", "Minus zero"),
    ("0000000000000001", "5e-324", "Min pos number"),
    ("8000000000000001", "-5e-324", "Min neg number"),
    ("7fefffffffffffff", "1.7976931348623157e+308", "Max pos number"),
    ("ffefffffffffffff", "-1.7976931348623157e+308", "Max neg number"),
    ("4340000000000000", "9007199254740992", "Max pos int (1)"),
    ("c340000000000000", "-9007199254740992", "Max neg int (1)"),
    ("4430000000000000", "295147905179352830000", "~2**68 (2)"),
    ("7fffffffffffffff", None, "NaN (3)"),
    ("7ff0000000000000", None, "Infinity (3)"),
    ("44b52d02c7e14af5", "9.999999999999997e+22", ""),
    ("44b52d02c7e14af6", "1e+23", ""),
    ("44b52d02c7e14af7", "1.0000000000000001e+23", ""),
    ("444b1ae4d6e2ef4e", "999999999999999700000", ""),
    ("444b1ae4d6e2ef4f", "999999999999999900000", ""),
    ("444b1ae4d6e2ef50", "1e+21", ""),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7", ""),
    ("3eb0c6f7a0b5ed8d", "0.000001", ""),
    ("41b3de4355555553", "333333333.3333332", ""),
    ("41b3de4355555554", "333333333.33333325", ""),
    ("41b3de4355555555", "333333333.3333333", ""),
    ("41b3de4355555556", "333333333.3333334", ""),
    ("41b3de4355555557", "333333333.33333343", ""),
    ("becbf647612f3696", "-0.0000033333333333333333", ""),
    ("43143ff3c1cb0959", "1424953923781206.2", "Round to even (4)"),
]


def jcs_case(
    description: str,
    source: str,
    *,
    input_text: str | None,
    expected: str | None,
    ieee754: str | None = None,
    **more: Any,
) -> Vector:
    case: Vector = {
        "description": description,
        "source": source,
        "input": input_text,
        "expected": expected,
        "valid": expected is not None,
    }
    if ieee754 is not None:
        case["ieee754"] = ieee754
    case.update(more)
    return case


def jcs_vectors() -> dict[str, Vector]:
    vectors: dict[str, Vector] = {}
    for name, input_text, expected in CYBERPHONE_CASES:
        file = CYBERPHONE_FILES.get(name, name)
        vectors[f"cyberphone-{name}"] = jcs_case(
            f"JCS reference test data {file}.json",
            f"{CYBERPHONE}/input/{file}.json and {CYBERPHONE}/output/{file}.json",
            input_text=input_text,
            expected=expected,
        )
    vectors["rfc8785-3.2.2-sample"] = jcs_case(
        "the sample of RFC 8785 section 3.2.2, canonicalized (section 3.2.3) to UTF-8 (3.2.4)",
        "RFC 8785 sections 3.2.2, 3.2.3 and 3.2.4",
        input_text=RFC8785_SAMPLE_INPUT,
        expected=RFC8785_SAMPLE_OUTPUT,
        expected_hex="".join(RFC8785_SAMPLE_BYTES.split()),
    )
    vectors["rfc8785-3.2.3-sorting"] = jcs_case(
        "property names sort by UTF-16 code units (a non-BMP character before U+FB33)",
        "RFC 8785 section 3.2.3 (test data and the published order of its values)",
        input_text=RFC8785_SORTING_INPUT,
        expected=RFC8785_SORTING_OUTPUT,
        expected_value_order=RFC8785_SORTING_ORDER,
    )
    for bits, number_text, comment in RFC8785_NUMBERS:
        what = f" ({comment})" if comment else ""
        vectors[f"rfc8785-appendix-b-{bits}"] = jcs_case(
            f"IEEE 754 {bits}{what} serializes as {number_text}"
            if number_text is not None
            else f"IEEE 754 {bits}{what} is not a JSON number and must be refused",
            "RFC 8785 Appendix B, Table 1",
            input_text=None,
            expected=number_text,
            ieee754=bits,
        )
    return vectors


# ==================================================================================================
# writing
# ==================================================================================================

BUILDERS: dict[str, Callable[[], dict[str, Vector]]] = {
    "rfc6962/inclusion": inclusion_vectors,
    "rfc6962/consistency": consistency_vectors,
    "rfc6962/roots": root_vectors,
    "rfc6962/nodes": node_vectors,
    "rfc8032": ed25519_vectors,
    "rfc8785": jcs_vectors,
}


def render(case: Vector) -> str:
    return json.dumps(case, indent=2, ensure_ascii=True) + "\n"


def build() -> dict[str, str]:
    """Every vector file: path relative to tests/vectors/ -> exact file contents."""
    files: dict[str, str] = {}
    for folder, builder in BUILDERS.items():
        for name, case in builder().items():
            files[f"{folder}/{name}.json"] = render(case)
    return dict(sorted(files.items()))


def on_disk() -> dict[str, str]:
    """The vector files currently under the directories this script owns."""
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for folder in OWNED_DIRS
        for path in sorted((ROOT / folder).rglob("*.json"))
    }


def write() -> int:
    files = build()
    for relative in set(on_disk()) - set(files):
        (ROOT / relative).unlink()
    for relative, text in files.items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
    return len(files)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        stale = sorted(set(build().items()) ^ set(on_disk().items()))
        for relative in sorted({name for name, _ in stale}):
            print(f"stale: tests/vectors/{relative}", file=sys.stderr)
        return 1 if stale else 0
    if argv[1:]:
        print("usage: generate.py [--check]", file=sys.stderr)
        return 2
    print(f"wrote {write()} vector files under {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
