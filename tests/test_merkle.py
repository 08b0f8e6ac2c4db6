"""Merkle trees: roots against an independent RFC 6962 definition, proofs for every position, tampering refused."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wecross.chain import merkle
from wecross.chain.merkle import (
    EMPTY_ROOT,
    LEFT,
    RIGHT,
    MerkleProof,
    MerkleTree,
    from_hex,
    leaf_hash,
    merkle_root,
    proof_from_wire,
    to_hex,
    verify_inclusion,
    verify_leaf_hash,
)


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962 section 2.1, written recursively as the RFC states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


class RootTests(SynchronousTestCase):
    def test_empty_tree(self) -> None:
        self.assertEqual(merkle_root([]), hashlib.sha256(b"").digest())
        self.assertEqual(MerkleTree().root, EMPTY_ROOT)

    def test_single_leaf_is_its_leaf_hash(self) -> None:
        self.assertEqual(merkle_root([b"x"]), hashlib.sha256(b"\x00x").digest())

    def test_domain_separation(self) -> None:
        """A leaf equal to the concatenation of two leaf hashes does not give the root of those two leaves."""
        a, b = leaf_hash(b"a"), leaf_hash(b"b")
        self.assertNotEqual(merkle_root([a + b]), merkle_root([b"a", b"b"]))

    def test_roots_match_rfc6962_for_sizes_0_to_70(self) -> None:
        for n in range(71):
            leaves = leaves_of(n)
            with self.subTest(n=n):
                self.assertEqual(merkle_root(leaves), rfc6962_root(leaves))
                self.assertEqual(MerkleTree.from_leaves(leaves).root, rfc6962_root(leaves))

    def test_order_matters(self) -> None:
        self.assertNotEqual(merkle_root([b"a", b"b"]), merkle_root([b"b", b"a"]))

    def test_hex_helpers(self) -> None:
        digest = merkle_root([b"a"])
        self.assertEqual(from_hex(to_hex(digest)), digest)
        self.assertEqual(from_hex("0x" + to_hex(digest)), digest)
        for bad in ("abc", "zz" * 32, 5):
            with self.subTest(bad=bad):
                self.assertRaises(ValueError, from_hex, bad)

    def test_ten_thousand_leaves(self) -> None:
        leaves = [i.to_bytes(4, "big") for i in range(10_000)]
        tree = MerkleTree.from_leaves(leaves)
        self.assertEqual(tree.root, rfc6962_root(leaves))
        for index in (0, 1, 4095, 4096, 9998, 9999):
            self.assertTrue(verify_inclusion(leaves[index], tree.proof(index), tree.root))


class ProofTests(SynchronousTestCase):
    def test_every_index_of_sizes_1_to_33(self) -> None:
        for n in range(1, 34):
            leaves = leaves_of(n)
            tree = MerkleTree.from_leaves(leaves)
            for index in range(n):
                with self.subTest(n=n, index=index):
                    proof = tree.proof(index)
                    self.assertTrue(verify_inclusion(leaves[index], proof, tree.root))
                    # the wire form (hex strings, lists) verifies too, against a hex root
                    self.assertTrue(verify_inclusion(leaves[index], proof.to_wire(), to_hex(tree.root)))
                    self.assertEqual(proof_from_wire(proof.to_wire()), proof)
                    # the same proof does not fit any other leaf
                    if n > 1:
                        other = leaves[(index + 1) % n]
                        self.assertFalse(verify_inclusion(other, proof, tree.root))

    def test_proof_out_of_range(self) -> None:
        tree = MerkleTree.from_leaves(leaves_of(3))
        self.assertRaises(IndexError, tree.proof, 3)
        self.assertRaises(IndexError, tree.proof, -1)

    def _tampered(self, wire: dict[str, Any]) -> list[tuple[str, Any]]:
        siblings = wire["siblings"]
        first_side, first_hash = siblings[0]
        flipped = ("0" if first_hash[0] != "0" else "1") + first_hash[1:]
        other_side = RIGHT if first_side == LEFT else LEFT
        return [
            ("flipped sibling bit", {**wire, "siblings": [[first_side, flipped], *siblings[1:]]}),
            ("wrong side", {**wire, "siblings": [[other_side, first_hash], *siblings[1:]]}),
            ("missing sibling", {**wire, "siblings": siblings[1:]}),
            ("extra sibling", {**wire, "siblings": [*siblings, [RIGHT, first_hash]]}),
            ("reordered siblings", {**wire, "siblings": list(reversed(siblings))}),
            ("other index", {**wire, "index": (wire["index"] + 1) % wire["size"]}),
            ("other size", {**wire, "size": wire["size"] + 1}),
            ("negative index", {**wire, "index": -1}),
            ("index beyond size", {**wire, "index": wire["size"]}),
            ("bool index", {**wire, "index": True}),
            ("string size", {**wire, "size": "12"}),
            ("bad side", {**wire, "siblings": [["X", first_hash], *siblings[1:]]}),
            ("short hash", {**wire, "siblings": [[first_side, first_hash[:10]], *siblings[1:]]}),
            ("not hex", {**wire, "siblings": [[first_side, "zz" * 32], *siblings[1:]]}),
            ("sibling not a pair", {**wire, "siblings": [[first_side], *siblings[1:]]}),
            ("siblings not a list", {**wire, "siblings": "abc"}),
            ("no siblings key", {"index": wire["index"], "size": wire["size"]}),
            ("not a mapping", [wire["index"], wire["size"]]),
            ("none", None),
            ("huge", {**wire, "siblings": [[RIGHT, first_hash]] * 1000}),
        ]

    def test_tampered_proofs_fail_without_raising(self) -> None:
        leaves = leaves_of(13)
        tree = MerkleTree.from_leaves(leaves)
        for index in range(13):
            wire = tree.proof(index).to_wire()
            for label, bad in self._tampered(wire):
                with self.subTest(index=index, tamper=label):
                    self.assertFalse(verify_inclusion(leaves[index], bad, tree.root, size=13))

    def test_size_must_be_known_to_prove_the_index(self) -> None:
        """Leaf 2 of 3 has the same path as leaf 1 of 2: only the known size tells them apart."""
        leaves = leaves_of(3)
        tree = MerkleTree.from_leaves(leaves)
        forged = {**tree.proof(2).to_wire(), "index": 1, "size": 2}
        self.assertTrue(verify_inclusion(leaves[2], forged, tree.root))
        self.assertFalse(verify_inclusion(leaves[2], forged, tree.root, size=3))
        self.assertTrue(verify_inclusion(leaves[2], tree.proof(2), tree.root, size=3))

    def test_bad_roots_and_leaves(self) -> None:
        leaves = leaves_of(5)
        tree = MerkleTree.from_leaves(leaves)
        proof = tree.proof(2)
        for root in (b"short", "nothex", None, 7, to_hex(merkle_root(leaves_of(6)))):
            with self.subTest(root=root):
                self.assertFalse(verify_inclusion(leaves[2], proof, root))
        self.assertFalse(verify_inclusion("not bytes", proof, tree.root))  # type: ignore[arg-type]
        self.assertFalse(verify_leaf_hash(b"short", proof, tree.root))

    def test_single_leaf_proof_is_empty(self) -> None:
        tree = MerkleTree.from_leaves([b"only"])
        proof = tree.proof(0)
        self.assertEqual(proof, MerkleProof(0, 1, ()))
        self.assertTrue(verify_inclusion(b"only", proof, tree.root))


class UpdateTests(SynchronousTestCase):
    def test_update_matches_rebuild(self) -> None:
        for n in range(1, 20):
            leaves = leaves_of(n)
            tree = MerkleTree.from_leaves(leaves)
            for index in range(n):
                leaves[index] = f"new-{index}".encode()
                tree.update(index, leaf_hash(leaves[index]))
                with self.subTest(n=n, index=index):
                    self.assertEqual(tree.root, rfc6962_root(leaves))
                    self.assertTrue(verify_inclusion(leaves[index], tree.proof(index), tree.root))

    def test_wire_proofs_follow_updates(self) -> None:
        leaves = leaves_of(11)
        tree = MerkleTree.from_leaves(leaves)
        for index in range(11):
            self.assertEqual(tree.proof_wire(index), tree.proof(index).to_wire())
        leaves[3] = b"changed"
        tree.update(3, leaf_hash(leaves[3]))
        for index in range(11):
            self.assertEqual(tree.proof_wire(index), tree.proof(index).to_wire())
            self.assertTrue(verify_inclusion(leaves[index], tree.proof_wire(index), tree.root, size=11))
        self.assertRaises(IndexError, tree.proof_wire, 11)

    def test_rebuild(self) -> None:
        tree = MerkleTree.from_leaves(leaves_of(4))
        tree.rebuild(leaf_hash(leaf) for leaf in leaves_of(9))
        self.assertEqual(tree.root, rfc6962_root(leaves_of(9)))
        self.assertEqual(len(tree), 9)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=40), min_size=1, max_size=80), st.data())
    def test_random_trees(self, leaves: list[bytes], data: st.DataObject) -> None:
        tree = MerkleTree.from_leaves(leaves)
        self.assertEqual(tree.root, rfc6962_root(leaves))
        index = data.draw(st.integers(0, len(leaves) - 1))
        proof = tree.proof(index)
        self.assertTrue(verify_inclusion(leaves[index], proof.to_wire(), tree.root))
        changed = data.draw(st.binary(max_size=40).filter(lambda b: b != leaves[index]))
        self.assertFalse(verify_inclusion(changed, proof, tree.root))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=16), min_size=2, max_size=40), st.data())
    def test_random_sibling_mutation_fails(self, leaves: list[bytes], data: st.DataObject) -> None:
        tree = MerkleTree.from_leaves(leaves)
        index = data.draw(st.integers(0, len(leaves) - 1))
        proof = tree.proof(index)
        position = data.draw(st.integers(0, len(proof.siblings) - 1))
        side, digest = proof.siblings[position]
        bit = data.draw(st.integers(0, 8 * len(digest) - 1))
        mutated = bytearray(digest)
        mutated[bit // 8] ^= 1 << (bit % 8)
        siblings = list(proof.siblings)
        siblings[position] = (side, bytes(mutated))
        bad = MerkleProof(proof.index, proof.size, tuple(siblings))
        self.assertFalse(verify_inclusion(leaves[index], bad, tree.root))

    @settings(max_examples=300, deadline=None)
    @given(st.recursive(st.none() | st.integers() | st.text() | st.binary(),
                        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=10))
    def test_garbage_proofs_never_raise(self, garbage: Any) -> None:
        self.assertFalse(verify_inclusion(b"x", garbage, merkle.merkle_root([b"x", b"y"])))
