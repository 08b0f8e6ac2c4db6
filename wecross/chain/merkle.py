"""Binary Merkle trees over byte strings, with inclusion proofs.

Every stub that can prove inclusion, and every router that checks such a proof, agrees on this one construction, so
it is deliberately small, pure and strict:

* SHA-256 with domain separation (RFC 6962): a leaf is ``H(0x00 || data)``, an inner node ``H(0x01 || left ||
  right)``. Without the prefixes an inner node could be passed off as a leaf (second-preimage attack).
* Odd counts follow RFC 6962: the tree over ``n`` leaves splits at the largest power of two below ``n``. Built level
  by level this is the same as promoting the last node of an odd level unchanged, which is how it is computed here.
* The root of the empty tree is ``H(b"")``.

A proof names the leaf's index, the tree size and the siblings from the leaf up, each with the side it sits on.
The verifier derives the sides again from index and size and insists they agree, so a proof also proves the
position, not only membership -- provided the verifier knows the true tree size (a block header's transaction
count) and passes it as ``size``: the root alone does not fix the size, and e.g. leaf 2 of 3 has the same path as
leaf 1 of 2. Verification never raises: anything malformed is simply not a valid proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEFT",
    "RIGHT",
    "MerkleProof",
    "MerkleTree",
    "from_hex",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "proof_from_wire",
    "root_from_leaf_hashes",
    "to_hex",
    "verify_inclusion",
    "verify_leaf_hash",
]

HASH_SIZE = 32
LEFT = "L"
RIGHT = "R"
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Bounds a proof may not exceed: 64 levels cover any tree that fits in memory, and keep a hostile proof cheap.
_MAX_LEVELS = 64


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def to_hex(digest: bytes) -> str:
    return digest.hex()


def from_hex(text: str) -> bytes:
    """Parse a 32-byte digest written as 64 hex digits (an optional ``0x`` is accepted); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected a hex string, got {type(text).__name__}")
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if len(body) != 2 * HASH_SIZE:
        raise ValueError(f"expected {2 * HASH_SIZE} hex digits, got {len(body)}")
    return bytes.fromhex(body)


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The root over leaves that are already hashed (callers that cache leaf hashes skip re-hashing them)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def _expected_sides(index: int, size: int) -> list[str]:
    """The sides of the siblings on the way from leaf ``index`` to the root, as the tree shape dictates them."""
    sides: list[str] = []
    while size > 1:
        if index % 2:
            sides.append(LEFT)
        elif index + 1 < size:
            sides.append(RIGHT)
        # else: the last node of an odd level is promoted without a sibling.
        index //= 2
        size = (size + 1) // 2
    return sides


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Inclusion proof of leaf ``index`` in a tree of ``size`` leaves: siblings from the leaf up to the root."""

    index: int
    size: int
    siblings: tuple[tuple[str, bytes], ...]

    def to_wire(self) -> dict[str, object]:
        """A msgpack/JSON friendly form: ``{"index", "size", "siblings": [[side, hex], ...]}``."""
        return {
            "index": self.index,
            "size": self.size,
            "siblings": [[side, digest.hex()] for side, digest in self.siblings],
        }


def proof_from_wire(wire: object) -> MerkleProof:
    """Parse the wire form of a proof; ValueError saying what is wrong (type, range, side, digest)."""
    if isinstance(wire, MerkleProof):
        return wire
    if not isinstance(wire, Mapping):
        raise ValueError("a Merkle proof must be a mapping with index, size and siblings")
    index = wire.get("index")
    size = wire.get("size")
    siblings = wire.get("siblings")
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(size, int) or isinstance(size, bool):
        raise ValueError("Merkle proof index and size must be integers")
    if not 0 <= index < size:
        raise ValueError(f"Merkle proof index {index} out of range for size {size}")
    if not isinstance(siblings, (list, tuple)) or len(siblings) > _MAX_LEVELS:
        raise ValueError(f"Merkle proof siblings must be a list of at most {_MAX_LEVELS} entries")
    parsed: list[tuple[str, bytes]] = []
    for entry in siblings:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ValueError("each Merkle proof sibling must be a [side, hash] pair")
        side, digest = entry
        if side not in (LEFT, RIGHT):
            raise ValueError(f"Merkle proof sibling side must be {LEFT!r} or {RIGHT!r}, not {side!r}")
        if isinstance(digest, bytes):
            if len(digest) != HASH_SIZE:
                raise ValueError("Merkle proof sibling hash must be 32 bytes")
            raw = digest
        else:
            raw = from_hex(digest)  # from_hex rejects anything that is not a hex string
        parsed.append((side, raw))
    return MerkleProof(index, size, tuple(parsed))


def _as_digest(value: object) -> bytes:
    if isinstance(value, bytes):
        if len(value) != HASH_SIZE:
            raise ValueError("a root must be 32 bytes")
        return value
    if isinstance(value, str):
        return from_hex(value)
    raise ValueError("a root must be bytes or a hex string")


def verify_leaf_hash(leaf_digest: bytes, proof: object, root: object, size: int | None = None) -> bool:
    """True when ``leaf_digest`` (an already hashed leaf) sits at the proof's index under ``root``.

    ``size``, when given, is the tree size the verifier knows; a proof claiming another size is refused.
    """
    try:
        parsed = proof_from_wire(proof)
        expected_root = _as_digest(root)
        if size is not None and parsed.size != size:
            return False
        if not isinstance(leaf_digest, bytes) or len(leaf_digest) != HASH_SIZE:
            return False
        sides = _expected_sides(parsed.index, parsed.size)
        if len(sides) != len(parsed.siblings):
            return False
        current = leaf_digest
        for want, (side, sibling) in zip(sides, parsed.siblings, strict=True):
            if side != want:
                return False
            current = node_hash(sibling, current) if side == LEFT else node_hash(current, sibling)
        return current == expected_root
    except Exception:  # a hostile proof may be any shape; it is simply not valid
        return False


def verify_inclusion(data: bytes, proof: object, root: object, size: int | None = None) -> bool:
    """True when ``data`` is the leaf at the proof's index of the tree with ``root``; never raises.

    ``proof`` may be a :class:`MerkleProof` or its wire dict, ``root`` 32 bytes or hex; pass ``size`` (the known
    number of leaves) to have the index proven too.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    return verify_leaf_hash(leaf_hash(bytes(data)), proof, root, size)


class MerkleTree:
    """A tree kept level by level so that the root, any proof and a changed leaf cost O(log n) after building.

    Used where many proofs come from one tree (every transaction of a block) and where a few leaves change between
    roots (the state tree when a block only updates existing keys).
    """

    __slots__ = ("_hex_levels", "_levels")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = []
        #: Hex of every node, made on the first wire proof: a block's proofs share most of their siblings.
        self._hex_levels: list[list[str]] | None = None
        self._build(list(leaf_hashes))

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleTree:
        return cls(leaf_hash(leaf) for leaf in leaves)

    def _build(self, hashes: list[bytes]) -> None:
        self._hex_levels = None
        self._levels = [hashes]
        while len(self._levels[-1]) > 1:
            self._levels.append(_next_level(self._levels[-1]))

    def __len__(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        if not self._levels[0]:
            return EMPTY_ROOT
        return self._levels[-1][0]

    def leaf_hash_at(self, index: int) -> bytes:
        return self._levels[0][index]

    def proof(self, index: int) -> MerkleProof:
        size = len(self)
        if not 0 <= index < size:
            raise IndexError(f"leaf index {index} out of range for a tree of {size} leaves")
        siblings: list[tuple[str, bytes]] = []
        position = index
        for level in self._levels[:-1]:
            if position % 2:
                siblings.append((LEFT, level[position - 1]))
            elif position + 1 < len(level):
                siblings.append((RIGHT, level[position + 1]))
            position //= 2
        return MerkleProof(index, size, tuple(siblings))

    def proof_wire(self, index: int) -> dict[str, object]:
        """``self.proof(index).to_wire()``, cheaper when many proofs come from one tree."""
        size = len(self)
        if not 0 <= index < size:
            raise IndexError(f"leaf index {index} out of range for a tree of {size} leaves")
        if self._hex_levels is None:
            self._hex_levels = [[digest.hex() for digest in level] for level in self._levels]
        siblings: list[list[str]] = []
        position = index
        for level in self._hex_levels[:-1]:
            if position % 2:
                siblings.append([LEFT, level[position - 1]])
            elif position + 1 < len(level):
                siblings.append([RIGHT, level[position + 1]])
            position //= 2
        return {"index": index, "size": size, "siblings": siblings}

    def update(self, index: int, new_leaf_hash: bytes) -> None:
        """Replace one (hashed) leaf and recompute only its path to the root."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf index {index} out of range for a tree of {len(self)} leaves")
        self._hex_levels = None
        self._levels[0][index] = new_leaf_hash
        position = index
        for depth in range(1, len(self._levels)):
            below = self._levels[depth - 1]
            position //= 2
            left = 2 * position
            parent = node_hash(below[left], below[left + 1]) if left + 1 < len(below) else below[left]
            self._levels[depth][position] = parent

    def rebuild(self, leaf_hashes: Iterable[bytes]) -> None:
        """Start over with a new leaf list (inserted or removed leaves shift every position after them)."""
        self._build(list(leaf_hashes))
