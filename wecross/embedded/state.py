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
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from wecross.chain.merkle import MerkleTree, leaf_hash
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


class StateTree:
    """Sorted encoded keys, cached leaf hashes and the Merkle tree over them (writer thread only).

    :meth:`apply` moves the tree to a block's state and remembers how to go back, because the block may still fail
    to reach the disk; :meth:`revert` then restores the committed state.
    """

    __slots__ = ("_hashes", "_keys", "_tree", "_undo")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._hashes: dict[bytes, bytes] = {}
        for key_bytes, value_bytes in items:
            self._hashes[key_bytes] = leaf_hash(state_leaf(key_bytes, value_bytes))
        self._keys: list[bytes] = sorted(self._hashes)
        self._tree = MerkleTree(self._hashes[key] for key in self._keys)
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


def encode_changes(changes: Mapping[StateKey, Any]) -> dict[bytes, bytes | None]:
    """Encode a block's changes for the writer thread and the database (None stays None: deleted)."""
    return {encode_key(key): (None if value is None else encode(value)) for key, value in changes.items()}


def state_root_of(items: Iterable[tuple[StateKey, Any]]) -> bytes:
    """The root of a whole state given as decoded items (genesis, and tests that recompute roots)."""
    return StateTree((encode_key(key), encode(value)) for key, value in items).root
