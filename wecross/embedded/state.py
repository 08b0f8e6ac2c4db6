"""The world state: one flat key/value map shared by all resources of a chain, and its Merkle root.

A state key is ``(resource, namespace, key)``: each resource owns the keys under its name and splits them into
namespaces (``d`` data, ``b`` balances, ``m`` metadata), so a kv entry can never collide with a balance or with
another resource's entry.

Two views of the same state live on two threads and never share mutable data:

* :class:`WorldState` (reactor thread): decoded values in a dict, answering reads without touching disk, and
  :class:`Overlay` buffers that let a transaction run against it and be thrown away if it fails.
* :class:`StateTree` (the chain's writer thread): the committed state as sorted encoded keys and cached leaf hashes,
  so a block's state root costs the changed leaves (plus a rebuild of the inner nodes when keys come or go).

The state root is the Merkle root (wecross.chain.merkle) over the leaves ``encode([resource, namespace, key]) ||
encode(value)`` in ascending order of the encoded key. msgpack values are self-delimiting, so the concatenation is
unambiguous.

Proofs. A :class:`StateSnapshot` (a frozen copy of the committed tree, handed to the reactor thread once per block)
proves a key's value by the Merkle path of its leaf, and a key's absence by the two leaves that enclose it in the
sorted order, shown to be neighbours (:func:`check_state_entry`). The root stays the plain Merkle root above: proofs
needed no change to it, so existing chains and their headers are unaffected.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from wecross.chain.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, proof_from_wire, verify_inclusion
from wecross.embedded.block import decode, encode

StateKey = tuple[str, str, str]
#: Marks a key deleted in an overlay (None is a value a kv entry may not hold: writing None deletes the key).
_DELETED = object()


def encode_key(key: StateKey) -> bytes:
    return encode(list(key))


def decode_key(data: bytes) -> StateKey:
    fields = decode(data)
    if not (isinstance(fields, list) and len(fields) == 3 and all(isinstance(part, str) for part in fields)):
        raise ValueError("a state key must be three strings")
    return (fields[0], fields[1], fields[2])


def state_leaf(key_bytes: bytes, value_bytes: bytes) -> bytes:
    return key_bytes + value_bytes


class Readable(Protocol):
    def get(self, key: StateKey) -> Any: ...


class WorldState:
    """The committed state on the reactor thread; changed only by :meth:`apply` once a block is durable."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[StateKey, Any] | None = None) -> None:
        self._data: dict[StateKey, Any] = dict(data or {})

    def get(self, key: StateKey) -> Any:
        return self._data.get(key)

    def apply(self, changes: Mapping[StateKey, Any]) -> None:
        """Install a block's changes; a value of None deletes the key."""
        for key, value in changes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def items(self) -> Iterator[tuple[StateKey, Any]]:
        return iter(self._data.items())

    def __len__(self) -> int:
        return len(self._data)


class Overlay:
    """Buffered writes over a readable state: a transaction runs in one, a block collects its transactions' in one.

    Nothing reaches the parent until :meth:`merge_into_parent`; dropping the overlay undoes the transaction.
    """

    __slots__ = ("_changes", "_parent")

    def __init__(self, parent: Readable) -> None:
        self._parent = parent
        self._changes: dict[StateKey, Any] = {}

    def get(self, key: StateKey) -> Any:
        if key in self._changes:
            value = self._changes[key]
            return None if value is _DELETED else value
        return self._parent.get(key)

    def put(self, key: StateKey, value: Any) -> None:
        self._changes[key] = _DELETED if value is None else value

    def merge_into_parent(self) -> None:
        if not isinstance(self._parent, Overlay):
            raise TypeError("only an overlay over another overlay can be merged")
        self._parent._changes.update(self._changes)
        self._changes = {}

    def changes(self) -> dict[StateKey, Any]:
        """Every written key with its new value (None for a deleted key)."""
        return {key: (None if value is _DELETED else value) for key, value in self._changes.items()}


class ResourceView:
    """What a resource's code sees: its own keys only, addressed by (namespace, key)."""

    __slots__ = ("_resource", "_state")

    def __init__(self, state: Readable, resource: str) -> None:
        self._state = state
        self._resource = resource

    def get(self, namespace: str, key: str) -> Any:
        return self._state.get((self._resource, namespace, key))

    def put(self, namespace: str, key: str, value: Any) -> None:
        if not isinstance(self._state, Overlay):
            raise TypeError("this view is read-only")
        self._state.put((self._resource, namespace, key), value)


@dataclass(slots=True)
class _Undo:
    structural: bool
    previous: dict[bytes, bytes | None]


class RecordingState:
    """A read-only view that remembers every key read through it, so a read can be proven key by key."""

    __slots__ = ("_state", "touched")

    def __init__(self, state: Readable) -> None:
        self._state = state
        #: Keys in the order first read (a dict keeps the order and drops repeats).
        self.touched: dict[StateKey, None] = {}

    def get(self, key: StateKey) -> Any:
        self.touched[key] = None
        return self._state.get(key)


class _StateMerkle(MerkleTree):
    """A MerkleTree that can be copied cheaply: the levels are copied, not re-hashed."""

    __slots__ = ()

    def copy(self) -> _StateMerkle:
        twin = _StateMerkle()
        twin._levels = [list(level) for level in self._levels]
        return twin


class StateTree:
    """Sorted encoded keys, cached leaf hashes and the Merkle tree over them (writer thread only).

    :meth:`apply` moves the tree to a block's state and remembers how to go back, because the block may still fail
    to reach the disk; :meth:`revert` then restores the committed state. :meth:`snapshot` hands a frozen copy of
    the committed tree to the reactor thread, which proves reads with it.
    """

    __slots__ = ("_hashes", "_keys", "_tree", "_undo")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._hashes: dict[bytes, bytes] = {}
        for key_bytes, value_bytes in items:
            self._hashes[key_bytes] = leaf_hash(state_leaf(key_bytes, value_bytes))
        self._keys: list[bytes] = sorted(self._hashes)
        self._tree = _StateMerkle(self._hashes[key] for key in self._keys)
        self._undo: _Undo | None = None

    @property
    def root(self) -> bytes:
        return self._tree.root

    def __len__(self) -> int:
        return len(self._keys)

    def apply(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Apply encoded changes (None deletes) and return the new root; :meth:`revert` undoes the last apply."""
        previous = {key: self._hashes.get(key) for key in changes}
        structural = any((new is None) != (previous[key] is None) for key, new in changes.items())
        self._set(changes, structural)
        self._undo = _Undo(structural, previous)
        return self._tree.root

    def commit(self) -> None:
        """The block is durable; forget how to undo it."""
        self._undo = None

    def snapshot(self) -> StateSnapshot:
        """A copy of the committed tree for another thread: O(n) list copies, no hashing.

        Copying (rather than sharing and copying on the next write) keeps the two threads from ever touching the
        same list; at a few pointers per key it costs far less than the block's own fsync.
        """
        return StateSnapshot(list(self._keys), self._tree.copy())

    def revert(self) -> None:
        undo = self._undo
        if undo is None:
            return
        self._undo = None
        for key, old in undo.previous.items():
            if old is None:
                self._hashes.pop(key, None)
            else:
                self._hashes[key] = old
        if undo.structural:
            self._keys = sorted(self._hashes)
            self._tree.rebuild(self._hashes[key] for key in self._keys)
        else:
            for key in undo.previous:
                self._tree.update(bisect.bisect_left(self._keys, key), self._hashes[key])

    def _set(self, changes: Mapping[bytes, bytes | None], structural: bool) -> None:
        for key, value in changes.items():
            if value is None:
                if self._hashes.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
                continue
            new_hash = leaf_hash(state_leaf(key, value))
            if key not in self._hashes:
                bisect.insort(self._keys, key)
            self._hashes[key] = new_hash
            if not structural:
                self._tree.update(bisect.bisect_left(self._keys, key), new_hash)
        if structural:
            self._tree.rebuild(self._hashes[key] for key in self._keys)


class StateProofError(ValueError):
    """A state proof that does not prove what it claims; ``check`` names the failed check."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """The state tree of one committed block, frozen: proves a key's value, or its absence, against that root.

    Proof entries (wire values; bytes as hex):

    * present: ``{"key", "value", "index", "size", "siblings"}``: the encoded key and value, and the Merkle proof of
      the leaf ``key || value``;
    * absent: ``{"key", "absent": true, "left", "right"}``: the leaves just below and just above the key in the
      sorted order (each a present entry, or None at the ends of the order, both None for the empty state).
      Adjacency needs no trusted leaf count: the two Merkle paths must meet at one node, the left leaf rightmost
      under its left child and the right leaf leftmost under its right child, which is what consecutive indices
      under one claimed size force (see :func:`check_state_entry`).
    """

    keys: list[bytes]
    tree: MerkleTree

    @property
    def root(self) -> bytes:
        return self.tree.root

    def prove(self, key_bytes: bytes, value_of: Callable[[bytes], bytes | None]) -> dict[str, Any]:
        """The proof entry for one encoded key; ``value_of`` gives the encoded value of a key in this state.

        Raises StateProofError("internal", ...) when ``value_of`` disagrees with the tree: the caller handed in
        the values of another block.
        """
        keys = self.keys
        index = bisect.bisect_left(keys, key_bytes)
        if index < len(keys) and keys[index] == key_bytes:
            return self._leaf(index, value_of)
        return {
            "key": key_bytes.hex(),
            "absent": True,
            "left": self._leaf(index - 1, value_of) if index > 0 else None,
            "right": self._leaf(index, value_of) if index < len(keys) else None,
        }

    def _leaf(self, index: int, value_of: Callable[[bytes], bytes | None]) -> dict[str, Any]:
        key_bytes = self.keys[index]
        value_bytes = value_of(key_bytes)
        if value_bytes is None or leaf_hash(state_leaf(key_bytes, value_bytes)) != self.tree.leaf_hash_at(index):
            raise StateProofError("internal", "the state values and the state tree are of different blocks")
        wire: dict[str, Any] = {"key": key_bytes.hex(), "value": value_bytes.hex()}
        wire.update(self.tree.proof(index).to_wire())
        return wire


def _hex_bytes(entry: Mapping[str, Any], field: str) -> bytes:
    text = entry.get(field)
    if not isinstance(text, str):
        raise StateProofError("malformed", f"state proof field {field!r} must be a hex string")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise StateProofError("malformed", f"state proof field {field!r} is not hex") from None


def _proven_leaf(entry: object, root: bytes, check: str) -> tuple[bytes, bytes, int, int]:
    """(key bytes, value bytes, index, size) of a leaf proven under ``root``; StateProofError(check) if not."""
    if not isinstance(entry, Mapping):
        raise StateProofError("malformed", "a state proof leaf must be a map")
    key_bytes, value_bytes = _hex_bytes(entry, "key"), _hex_bytes(entry, "value")
    try:
        decode_key(key_bytes)  # exactly one key, so the leaf splits into key and value one way only
    except Exception:
        raise StateProofError("malformed", "a proven state key is not a state key") from None
    try:
        proof = proof_from_wire(entry)
    except ValueError as exc:
        raise StateProofError("malformed", f"state proof: {exc}") from None
    if not verify_inclusion(state_leaf(key_bytes, value_bytes), proof, root):
        raise StateProofError(check, f"state key {key_bytes.hex()} with its value is not under the state root")
    return key_bytes, value_bytes, proof.index, proof.size


def check_state_entry(entry: object, root: bytes) -> tuple[bytes, bytes | None]:
    """(encoded key, encoded value or None when proven absent) of a proof entry checked against ``root``.

    StateProofError with check ``state_inclusion`` (a present key's leaf is not under the root), ``state_absence``
    (an absence proof that does not exclude the key) or ``malformed``.
    """
    if not isinstance(entry, Mapping):
        raise StateProofError("malformed", "a state proof entry must be a map")
    if entry.get("absent") is not True:
        key_bytes, value_bytes, _, _ = _proven_leaf(entry, root, "state_inclusion")
        try:
            decode(value_bytes)
        except Exception:
            raise StateProofError("malformed", "a proven state value does not decode") from None
        return key_bytes, value_bytes
    key_bytes = _hex_bytes(entry, "key")
    left, right = entry.get("left"), entry.get("right")
    if left is None and right is None:
        if root != EMPTY_ROOT:
            raise StateProofError("state_absence", f"state key {key_bytes.hex()}: the state is not empty")
        return key_bytes, None
    below = None if left is None else _proven_leaf(left, root, "state_absence")
    above = None if right is None else _proven_leaf(right, root, "state_absence")
    if below is not None and not below[0] < key_bytes:
        raise StateProofError("state_absence", f"state key {key_bytes.hex()}: the left neighbour is not below it")
    if above is not None and not key_bytes < above[0]:
        raise StateProofError("state_absence", f"state key {key_bytes.hex()}: the right neighbour is not above it")
    if below is not None and above is not None:
        adjacent = below[3] == above[3] and above[2] == below[2] + 1
    elif below is not None:
        adjacent = below[2] == below[3] - 1  # the last leaf: every sibling on its path is on the left
    else:
        assert above is not None
        adjacent = above[2] == 0  # the first leaf: every sibling on its path is on the right
    if not adjacent:
        raise StateProofError("state_absence", f"state key {key_bytes.hex()}: its neighbours are not adjacent "
                                               "leaves, another key may sit between them")
    return key_bytes, None


def encode_changes(changes: Mapping[StateKey, Any]) -> dict[bytes, bytes | None]:
    """Encode a block's changes for the writer thread and the database (None stays None: deleted)."""
    return {encode_key(key): (None if value is None else encode(value)) for key, value in changes.items()}


def state_root_of(items: Iterable[tuple[StateKey, Any]]) -> bytes:
    """The root of a whole state given as decoded items (genesis, and tests that recompute roots)."""
    return StateTree((encode_key(key), encode(value)) for key, value in items).root
