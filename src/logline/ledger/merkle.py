"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs, as pure functions.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(5)]
    >>> nodes = {(level, i): h for level, i, h in append_nodes(0, {}, leaves)}
    >>> proof = inclusion_path(3, 5, lambda level, i: nodes[(level, i)])
    >>> verify_inclusion(3, 5, leaves[3], proof, root_from_leaves(leaves))

Argument names are the same everywhere: `index` (0-based leaf index), `size` (tree size),
`leaf_hash`, `proof` (list of 32-byte hashes), `root`. Verification computes the root implied by a
proof and compares it once, raising `VerificationError` with what was expected and what was found.

Proof *generation* works against any store of perfect-subtree hashes: `node(level, index)` returns
the hash of the perfect subtree of 2**level leaves starting at leaf `index * 2**level`. Every
node of an RFC 6962 proof for any tree size is either such a perfect subtree or an "ephemeral"
right-edge node, which is the hash of a run of perfect subtrees (RFC 9162 §2.1.3);
`inclusion_nodes` and `consistency_nodes` list the perfect subtrees a proof needs, so a store can
fetch them all in one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from logline.errors import VerificationError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
"""(level, index): the perfect subtree of 2**level leaves starting at leaf index * 2**level."""

NodeFetcher = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly less than `size` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of a list of leaf hashes, computed bottom-up in O(n)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# --- the decomposition of a leaf range into perfect subtrees ------------------------------------


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees that exactly cover leaves [begin, end), left to right.

    This is the covering a subtree of an RFC 6962 tree is made of when `begin` is a multiple of the
    subtree's split (as it always is inside proofs): hashing the list right to left with
    `node_hash` gives the subtree's hash.
    """
    nodes: list[NodeId] = []
    while begin < end:
        # largest aligned power of two at `begin` that fits before `end`
        level = (begin & -begin).bit_length() - 1 if begin else 63
        while (1 << level) > end - begin:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Hash a covering of a subtree (from `range_nodes`) into the subtree's hash."""
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def _subtree_hash(begin: int, end: int, node: NodeFetcher) -> bytes:
    return fold_right([node(level, index) for level, index in range_nodes(begin, end)])


# --- proof generation -----------------------------------------------------------------------------


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the sibling subtrees on the path from leaf `index` to the root, leaf first."""
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin = begin + k
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges of the subtrees in the RFC 9162 §2.1.4 consistency proof, in proof order."""
    ranges: list[tuple[int, int]] = []
    begin, end, m = 0, size2, size1
    complete = True
    while True:
        n = end - begin
        if m == n:
            if not complete:
                ranges.append((begin, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin, m = begin + k, m - k
            complete = False
    ranges.reverse()
    return ranges


def _check_inclusion_args(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")


def _check_consistency_args(size1: int, size2: int) -> None:
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")


def inclusion_nodes(index: int, size: int) -> list[NodeId]:
    """Every perfect subtree needed to build the inclusion proof of `index` in a tree of `size`."""
    _check_inclusion_args(index, size)
    return [n for b, e in _inclusion_ranges(index, size) for n in range_nodes(b, e)]


def consistency_nodes(size1: int, size2: int) -> list[NodeId]:
    """Every perfect subtree needed for the consistency proof from `size1` to `size2`."""
    _check_consistency_args(size1, size2)
    return [n for b, e in _consistency_ranges(size1, size2) for n in range_nodes(b, e)]


def inclusion_path(index: int, size: int, node: NodeFetcher) -> list[bytes]:
    """The RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of `size` leaves.

    Precondition: 0 <= index < size. `node(level, i)` returns stored perfect-subtree hashes.
    """
    _check_inclusion_args(index, size)
    return [_subtree_hash(b, e, node) for b, e in _inclusion_ranges(index, size)]


def consistency_path(size1: int, size2: int, node: NodeFetcher) -> list[bytes]:
    """The RFC 9162 §2.1.4.1 consistency proof between tree sizes `size1` and `size2`.

    Precondition: 0 < size1 <= size2. Equal sizes give an empty proof.
    """
    _check_consistency_args(size1, size2)
    return [_subtree_hash(b, e, node) for b, e in _consistency_ranges(size1, size2)]


def tree_root(size: int, node: NodeFetcher) -> bytes:
    """The root of the tree of the first `size` leaves, from stored perfect subtrees."""
    return _subtree_hash(0, size, node) if size else EMPTY_ROOT


# --- proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------------------


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root implied by an inclusion proof; `VerificationError` if the proof is malformed."""
    if not 0 <= index < size:
        raise VerificationError("inclusion proof index", expected=f"< {size}", found=index)
    _check_hashes([leaf_hash, *proof])
    # 1. fn = index, sn = size - 1, r = leaf_hash
    fn, sn, r = index, size - 1, leaf_hash
    # 2. for each p in proof
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof length", expected="shorter", found=len(proof))
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    # 3. sn must be 0 at the end
    if sn != 0:
        raise VerificationError("inclusion proof length", expected="longer", found=len(proof))
    return r


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`."""
    computed = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if computed != root:
        raise VerificationError("inclusion proof root", expected=root.hex(), found=computed.hex())


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of `size2` leaves (`root2`) extends the one of `size1` (`root1`)."""
    if size1 < 0 or size2 < size1:
        raise VerificationError(
            "consistency proof sizes", expected=f"0 <= {size1} <= {size2}", found=(size1, size2)
        )
    _check_hashes([root1, root2, *proof])
    if size1 == size2:
        if proof:
            raise VerificationError("consistency proof length", expected=0, found=len(proof))
        if root1 != root2:
            raise VerificationError("consistency roots", expected=root1.hex(), found=root2.hex())
        return
    if size1 == 0:
        if proof:
            raise VerificationError("consistency proof length", expected=0, found=len(proof))
        return
    if not proof:
        raise VerificationError("consistency proof length", expected="at least 1", found=0)
    # 1. if size1 is a power of two, prepend root1 to the proof
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # 2. fn = size1 - 1, sn = size2 - 1; 3. shift both right while LSB(fn) is set
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # 4. fr = sr = first value
    fr = sr = path[0]
    # 5. for each subsequent value c
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(
                "consistency proof length", expected="shorter", found=len(proof)
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    # 6. sn must be 0, fr must equal root1 and sr must equal root2
    if sn != 0:
        raise VerificationError("consistency proof length", expected="longer", found=len(proof))
    if fr != root1:
        raise VerificationError("consistency proof old root", expected=root1.hex(), found=fr.hex())
    if sr != root2:
        raise VerificationError("consistency proof new root", expected=root2.hex(), found=sr.hex())


def _check_hashes(hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise VerificationError("hash length", expected=HASH_SIZE, found=len(h))


# --- appending ------------------------------------------------------------------------------------


def append_nodes(
    size: int, frontier: dict[int, bytes], leaf_hashes: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees completed by appending `leaf_hashes` to a tree of `size` leaves.

    `frontier` maps level to the hash of the rightmost *incomplete-parent* perfect subtree at that
    level: the nodes `range_nodes(0, size)` returns. It is updated in place. Returns
    (level, index, hash) for every new node, leaves included (level 0).
    """
    new: list[tuple[int, int, bytes]] = []
    for h in leaf_hashes:
        index, level = size, 0
        new.append((0, index, h))
        while index & 1:
            h = node_hash(frontier.pop(level), h)
            index >>= 1
            level += 1
            new.append((level, index, h))
        frontier[level] = h
        size += 1
    return new
