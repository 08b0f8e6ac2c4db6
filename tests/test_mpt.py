"""Merkle-Patricia proofs: roots and proofs checked against a real anvil block, tampering refused, the verifier total.

The anvil tests are the ground truth: a block with transactions of every type the module supports is mined, and the
roots computed here from the node's raw transactions and JSON receipts must equal the roots in the node's header.
The pure tests cover what one block cannot: many sizes, embedded nodes, malformed input, and hostile proofs.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp  # type: ignore[import-untyped,unused-ignore]
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie.hexary import HexaryTrie  # type: ignore[import-untyped,unused-ignore]
from twisted.trial.unittest import SynchronousTestCase
from web3 import Web3

from wecross.evm import mpt
from wecross.evm.mpt import (
    CHECKS,
    EMPTY_TRIE_ROOT,
    IndexedTrie,
    ProofError,
    decode_receipt,
    encode_receipt,
    index_key,
    prove,
    receipts_root,
    state_proof_check,
    transactions_root,
    trie_root,
    verify,
    verify_path,
    verify_receipt,
    verify_transaction,
)

ANVIL = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "anvil"
GWEI = 10**9
TOPIC_CONSTRUCTOR = b"\xaa" * 32
TOPIC_CALL = b"\xbb" * 32


# --- anvil ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AnvilNode:
    """A real anvil on a free loopback port that mines only on ``evm_mine``, so one block holds many transactions.

    Stopped by the test's cleanup.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        if not ANVIL.exists():
            test.fail(f"{ANVIL} is missing: run `npm install` in the repository root to install anvil")
        port = free_port()
        self.process = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent", "--no-mining"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        test.addCleanup(self.stop)
        self.w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 10}))
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                test.fail(f"anvil exited with {self.process.returncode}: {stderr}")
            try:
                self.chain_id = self.w3.eth.chain_id
                break
            except Exception:
                if time.monotonic() > deadline:
                    test.fail("anvil did not answer within 20 s")
                time.sleep(0.05)

    def rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise AssertionError(f"{method} failed: {response['error']}")
        return response.get("result")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


def contract_init_code() -> bytes:
    """Init code written opcode by opcode: the constructor stores 42 in slot 0 and 0x1234 in slot 5 and emits
    LOG1(TOPIC_CONSTRUCTOR, 42); the deployed code emits LOG2(TOPIC_CALL, caller) with the calldata as data."""
    runtime = (
        bytes.fromhex("36" "6000" "6000" "37")  # CALLDATACOPY(0, 0, CALLDATASIZE)
        + bytes.fromhex("33")  # CALLER (topic 1)
        + b"\x7f" + TOPIC_CALL  # PUSH32 topic 0
        + bytes.fromhex("36" "6000" "a2" "00")  # LOG2(0, CALLDATASIZE, ...); STOP
    )
    constructor = (
        bytes.fromhex("602a" "6000" "55")  # SSTORE(0, 42)
        + bytes.fromhex("611234" "6005" "55")  # SSTORE(5, 0x1234)
        + bytes.fromhex("602a" "6000" "52")  # MSTORE(0, 42)
        + b"\x7f" + TOPIC_CONSTRUCTOR
        + bytes.fromhex("6020" "6000" "a1")  # LOG1(0, 32, TOPIC_CONSTRUCTOR)
    )
    copy_and_return_length = 12
    offset = len(constructor) + copy_and_return_length
    tail = bytes([0x60, len(runtime), 0x60, offset, 0x60, 0x00, 0x39, 0x60, len(runtime), 0x60, 0x00, 0xF3])
    assert len(tail) == copy_and_return_length
    return constructor + tail + runtime


@dataclass
class MinedBlock:
    node: AnvilNode
    block: Any
    raw_txs: list[bytes]
    receipts: list[Any]
    contract: str
    holder: str  # an EOA with a balance and nonce


def mine_mixed_block(test: SynchronousTestCase) -> MinedBlock:
    """One block with legacy, access-list (1), dynamic-fee (2) and set-code (4) transactions, a deployment that
    logs and stores, a call that logs, a failing deployment (status 0), and enough transfers for nested branches."""
    node = AnvilNode(test)
    w3, chain = node.w3, node.chain_id
    alice, bob, carol, dave = (Account.create() for _ in range(4))
    for account in (alice, bob, carol, dave):
        node.rpc("anvil_setBalance", [account.address, hex(10**21)])
    contract = to_checksum_address(keccak(rlp.encode([bytes.fromhex(alice.address[2:]), 2]))[12:])
    fees = {"maxFeePerGas": 4 * GWEI, "maxPriorityFeePerGas": GWEI, "chainId": chain, "value": 0}
    signed = [
        alice.sign_transaction({"nonce": 0, "to": bob.address, "value": 1, "gas": 21000, "gasPrice": 3 * GWEI,
                                "chainId": chain}),
        alice.sign_transaction({"type": 1, "nonce": 1, "to": bob.address, "value": 2, "gas": 30000,
                                "gasPrice": 3 * GWEI, "chainId": chain,
                                "accessList": [{"address": carol.address, "storageKeys": ["0x" + "00" * 32]}]}),
        alice.sign_transaction({"type": 2, "nonce": 2, "data": contract_init_code(), "gas": 200000, **fees}),
        alice.sign_transaction({"type": 2, "nonce": 3, "to": contract, "data": b"hello", "gas": 100000, **fees}),
        bob.sign_transaction({"type": 2, "nonce": 0, "data": b"\xfe", "gas": 60000, **fees}),  # INVALID: fails
        bob.sign_transaction({"type": 4, "nonce": 1, "to": carol.address, "data": b"x", "gas": 200000, **fees,
                              "authorizationList": [Account.sign_authorization(
                                  {"chainId": chain, "address": contract, "nonce": 0}, carol.key)]}),
    ]
    signed += [
        dave.sign_transaction({"nonce": n, "to": alice.address, "value": n + 1, "gas": 21000, "gasPrice": 2 * GWEI,
                               "chainId": chain})
        for n in range(14)
    ]
    for tx in signed:
        w3.eth.send_raw_transaction(tx.raw_transaction)
    node.rpc("evm_mine", [])
    block = w3.eth.get_block("latest")
    test.assertEqual(len(block.transactions), len(signed), "every transaction must land in the one block")
    raw_txs = [bytes(w3.eth.get_raw_transaction(tx_hash)) for tx_hash in block.transactions]
    receipts = list(w3.eth.get_block_receipts(block.number))
    return MinedBlock(node, block, raw_txs, receipts, contract, alice.address)


class AnvilBlockTests(SynchronousTestCase):
    """Roots and proofs of a real block: the header is the judge."""

    def setUp(self) -> None:
        self.mined = mine_mixed_block(self)
        self.block = self.mined.block

    def test_block_has_every_kind(self) -> None:
        receipts = self.mined.receipts
        self.assertEqual({r.type for r in receipts}, {0, 1, 2, 4})
        self.assertIn(0, {r.status for r in receipts})
        self.assertTrue(any(len(r.logs) == 1 and r.contractAddress for r in receipts))
        self.assertTrue(any(len(r.logs) == 1 and len(r.logs[0].topics) == 2 for r in receipts))

    def test_roots_equal_the_header(self) -> None:
        self.assertEqual(transactions_root(self.mined.raw_txs), bytes(self.block.transactionsRoot))
        encoded = [encode_receipt(receipt) for receipt in self.mined.receipts]
        self.assertEqual(receipts_root(encoded), bytes(self.block.receiptsRoot))

    def test_receipts_from_raw_json_encode_alike(self) -> None:
        """The raw JSON-RPC form (hex strings, no web3 formatting) encodes to the same bytes as web3's."""
        raw = self.mined.node.rpc("eth_getBlockReceipts", [hex(self.block.number)])
        self.assertEqual([encode_receipt(r) for r in raw], [encode_receipt(r) for r in self.mined.receipts])

    def test_every_transaction_proof_verifies(self) -> None:
        tx_root = self.block.transactionsRoot.hex()  # hex without 0x, as BlockHeader carries it
        tree = IndexedTrie(self.mined.raw_txs)
        for index, tx_hash in enumerate(self.block.transactions):
            proof = tree.prove(index)
            self.assertEqual(verify_transaction(tx_root, proof, tx_hash, index=index), self.mined.raw_txs[index])
            self.assertEqual(verify_transaction("0x" + tx_root, proof, bytes(tx_hash).hex()), self.mined.raw_txs[index])
            with self.assertRaises(ProofError) as caught:
                verify_transaction(tx_root, proof, self.block.transactions[(index + 1) % len(self.block.transactions)])
            self.assertEqual(caught.exception.check, "hash_mismatch")

    def test_every_receipt_proof_verifies(self) -> None:
        receipt_root = bytes(self.block.receiptsRoot)
        tree = IndexedTrie(encode_receipt(r) for r in self.mined.receipts)
        for receipt in self.mined.receipts:
            index = receipt.transactionIndex
            decoded = verify_receipt(receipt_root, tree.prove(index), receipt, index=index)
            self.assertEqual(decoded["status"], receipt.status)
            self.assertEqual(decoded["type"], receipt.type)
            self.assertEqual(decoded["cumulativeGasUsed"], receipt.cumulativeGasUsed)
            self.assertEqual([log["data"] for log in decoded["logs"]], [bytes(log.data).hex() for log in receipt.logs])
            self.assertEqual(
                [log["address"] for log in decoded["logs"]], [log.address[2:].lower() for log in receipt.logs]
            )

    def test_receipt_that_differs_from_the_given_one_is_refused(self) -> None:
        receipt_root = bytes(self.block.receiptsRoot)
        tree = IndexedTrie(encode_receipt(r) for r in self.mined.receipts)
        logged = next(r for r in self.mined.receipts if r.logs and r.status == 1)
        proof = tree.prove(logged.transactionIndex)
        forged_log = {**dict(logged.logs[0]), "data": b"forged"}
        for forged, field in [
            ({**dict(logged), "status": 0}, "status"),
            ({**dict(logged), "cumulativeGasUsed": logged.cumulativeGasUsed + 1}, "cumulativeGasUsed"),
            ({**dict(logged), "logs": [forged_log]}, "logs"),
            ({**dict(logged), "logs": []}, "logs"),
            ({"status": 1, "logs": [forged_log]}, "logs"),
        ]:
            with self.assertRaises(ProofError) as caught:
                verify_receipt(receipt_root, proof, forged)
            self.assertEqual(caught.exception.check, "receipt_mismatch", field)
            self.assertIn(field, caught.exception.message)
        # A receipt with only some fields is compared on those.
        self.assertEqual(verify_receipt(receipt_root, proof, {"status": 1})["status"], 1)

    def test_tampered_proofs_fail_with_the_right_check(self) -> None:
        tx_root = bytes(self.block.transactionsRoot)
        tree = IndexedTrie(self.mined.raw_txs)
        proof = tree.prove(3)
        self.assertGreaterEqual(len(proof["nodes"]), 2)

        def check_of(root: Any, tampered: Any, **kwargs: Any) -> str:
            with self.assertRaises(ProofError) as caught:
                verify(root, tampered, **kwargs)
            return caught.exception.check

        altered_value = bytearray(bytes.fromhex(proof["value"]))
        altered_value[-1] ^= 1
        self.assertEqual(check_of(tx_root, {**proof, "value": altered_value.hex()}), "value_mismatch")
        nodes = [bytes.fromhex(n) for n in proof["nodes"]]
        leaf = bytearray(nodes[-1])
        leaf[-1] ^= 1
        self.assertEqual(check_of(tx_root, {**proof, "nodes": [*proof["nodes"][:-1], leaf.hex()]}), "missing_node")
        root_node = bytearray(nodes[0])
        root_node[5] ^= 1
        self.assertEqual(check_of(tx_root, {**proof, "nodes": [root_node.hex(), *proof["nodes"][1:]]}),
                         "root_mismatch")
        self.assertEqual(check_of(bytes(self.block.receiptsRoot), proof), "root_mismatch")
        self.assertEqual(check_of(bytes(self.block.stateRoot), proof), "root_mismatch")
        self.assertEqual(check_of(tx_root, {**proof, "nodes": proof["nodes"][:-1]}), "missing_node")
        self.assertEqual(check_of(tx_root, {**proof, "nodes": []}), "missing_node")
        self.assertEqual(check_of(tx_root, proof, index=4), "key_mismatch")
        self.assertEqual(check_of(tx_root, {**proof, "key": index_key(4).hex()}), "key_mismatch")
        other = tree.prove(12)
        self.assertEqual(check_of(tx_root, {**proof, "nodes": [*proof["nodes"], other["nodes"][-1]]}), "extra_node")
        self.assertEqual(check_of(tx_root, {**proof, "nodes": [*proof["nodes"], proof["nodes"][-1]]}), "extra_node")
        # Another position's nodes and value under this position's index and key: the path does not lead there.
        relabelled = {**other, "index": 3, "key": proof["key"]}
        self.assertIn(check_of(tx_root, relabelled), ("missing_node", "value_mismatch", "extra_node"))
        self.assertEqual(check_of(tx_root, {**proof, "nodes": list(reversed(proof["nodes"]))}), "root_mismatch")
        if len(proof["nodes"]) >= 3:
            swapped = [proof["nodes"][0], proof["nodes"][2], proof["nodes"][1], *proof["nodes"][3:]]
            self.assertEqual(check_of(tx_root, {**proof, "nodes": swapped}), "malformed")
        # Past the last transaction: the trie proves there is nothing there.
        beyond = len(self.mined.raw_txs)
        absent_nodes = [n.hex() for n in tree.nodes_for(index_key(beyond))]
        self.assertEqual(verify_path(tx_root, index_key(beyond), absent_nodes), b"")
        self.assertEqual(
            check_of(tx_root, {"index": beyond, "key": index_key(beyond).hex(), "value": "01", "nodes": absent_nodes}),
            "value_mismatch",
        )

    def test_state_proofs_against_the_state_root(self) -> None:
        w3 = self.mined.node.w3
        state_root = bytes(self.block.stateRoot)
        slots = ["0x" + "00" * 32, "0x" + "00" * 31 + "05", "0x" + "00" * 31 + "07"]
        result = w3.eth.get_proof(self.mined.contract, slots, self.block.number)
        checked = state_proof_check(state_root, result)
        self.assertEqual(checked["address"], self.mined.contract[2:].lower())
        self.assertEqual(checked["nonce"], 1)
        self.assertEqual(checked["codeHash"], keccak(bytes(w3.eth.get_code(self.mined.contract))).hex())
        self.assertEqual(list(checked["storage"].values()), [42, 0x1234, 0])
        # The raw JSON form checks alike.
        raw = self.mined.node.rpc("eth_getProof", [self.mined.contract, slots, hex(self.block.number)])
        self.assertEqual(state_proof_check("0x" + state_root.hex(), raw), checked)
        # An EOA with a balance, and an account that does not exist (proven absent).
        holder = state_proof_check(state_root, w3.eth.get_proof(self.mined.holder, [], self.block.number))
        self.assertEqual(holder["balance"], w3.eth.get_balance(self.mined.holder, self.block.number))
        self.assertEqual(holder["nonce"], 4)
        stranger = Account.create().address
        nobody = state_proof_check(state_root, w3.eth.get_proof(stranger, [slots[0]], self.block.number))
        self.assertEqual((nobody["nonce"], nobody["balance"], nobody["storageHash"]), (0, 0, EMPTY_TRIE_ROOT.hex()))

        def check_of(root: Any, claimed: Any) -> str:
            with self.assertRaises(ProofError) as caught:
                state_proof_check(root, claimed)
            return caught.exception.check

        self.assertEqual(check_of(state_root, {**dict(result), "balance": 1}), "account_mismatch")
        self.assertEqual(check_of(state_root, {**dict(result), "nonce": 2}), "account_mismatch")
        # Another account's address: its key leads elsewhere in the trie, off the proven path.
        self.assertIn(check_of(state_root, {**dict(result), "address": self.mined.holder}),
                      ("missing_node", "account_mismatch"))
        forged_slot = {**dict(result.storageProof[0]), "value": 43}
        self.assertEqual(check_of(state_root, {**dict(result), "storageProof": [forged_slot]}), "storage_mismatch")
        other_proof = result.storageProof[1].proof
        moved = {**dict(result.storageProof[0]), "proof": other_proof}
        self.assertIn(check_of(state_root, {**dict(result), "storageProof": [moved]}),
                      ("missing_node", "storage_mismatch", "extra_node"))
        self.assertEqual(check_of(state_root, {**dict(result), "accountProof": result.accountProof[:-1]}),
                         "missing_node")
        # Another trusted root (anvil reports the empty root as its genesis state root, so no older block serves).
        self.assertEqual(check_of(bytes(self.block.receiptsRoot), result), "root_mismatch")
        self.assertEqual(check_of(state_root, {"address": self.mined.contract}), "malformed")


# --- pure -------------------------------------------------------------------------------------------------------


def values_of(n: int, width: int = 40) -> list[bytes]:
    return [f"value-{i}-".encode().ljust(width, b"*") for i in range(n)]


def plain_root(values: list[bytes]) -> bytes:
    """The root built key by key with no batching, as an independent reference for IndexedTrie."""
    trie = HexaryTrie({})
    for index, value in enumerate(values):
        trie[rlp.encode(index)] = value
    root: bytes = trie.root_hash
    return root


class TrieTests(SynchronousTestCase):
    def test_empty_trie(self) -> None:
        self.assertEqual(EMPTY_TRIE_ROOT.hex(), "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
        self.assertEqual(trie_root([]), EMPTY_TRIE_ROOT)
        self.assertEqual(transactions_root([]), EMPTY_TRIE_ROOT)
        with self.assertRaises(ProofError) as caught:
            verify(EMPTY_TRIE_ROOT, {"index": 0, "key": "80", "value": "01", "nodes": []})
        self.assertEqual(caught.exception.check, "value_mismatch")

    def test_keys_are_rlp_of_the_index(self) -> None:
        self.assertEqual(index_key(0), b"\x80")
        self.assertEqual(index_key(1), b"\x01")
        self.assertEqual(index_key(127), b"\x7f")
        self.assertEqual(index_key(128), b"\x81\x80")
        self.assertEqual(index_key(1000), b"\x82\x03\xe8")
        for bad in (-1, True, "1", 1.0):
            with self.assertRaises(ProofError):
                index_key(bad)  # type: ignore[arg-type]

    def test_roots_and_proofs_for_many_sizes(self) -> None:
        for n in [*range(1, 20), 127, 128, 129, 300]:
            values = values_of(n)
            tree = IndexedTrie(values)
            self.assertEqual(tree.root, plain_root(values), n)
            self.assertEqual(len(tree), n)
            for index in sorted({0, min(1, n - 1), n // 2, n - 1, min(n - 1, 127), min(n - 1, 128)}):
                proof = tree.prove(index)
                self.assertEqual(verify(tree.root, proof, index=index), values[index])
                # The trie package's own proof checker agrees on our nodes.
                decoded = [rlp.decode(bytes.fromhex(node)) for node in proof["nodes"]]
                self.assertEqual(HexaryTrie.get_from_proof(tree.root, index_key(index), decoded), values[index])
            with self.assertRaises(IndexError):
                tree.prove(n)

    def test_small_values_are_embedded(self) -> None:
        """Values this short make nodes under 32 bytes, which sit inside their parents and are not listed."""
        values = [bytes([i + 1]) for i in range(40)]
        tree = IndexedTrie(values)
        self.assertEqual(tree.root, plain_root(values))
        for index in range(40):
            proof = prove(values, index)
            self.assertLessEqual(len(proof["nodes"]), 2)
            self.assertEqual(verify(tree.root.hex(), proof), values[index])

    def test_single_value(self) -> None:
        proof = prove([b"\x01"], 0)
        self.assertEqual(len(proof["nodes"]), 1)  # the root is hashed even when shorter than 32 bytes
        self.assertEqual(verify(trie_root([b"\x01"]), proof), b"\x01")

    def test_wire_form(self) -> None:
        proof = prove(values_of(5), 2)
        self.assertEqual(set(proof), {"index", "key", "value", "nodes"})
        self.assertEqual(proof["key"], "02")
        for text in [proof["key"], proof["value"], *proof["nodes"]]:
            self.assertIsInstance(text, str)
            self.assertEqual(text, text.lower())
            self.assertFalse(text.startswith("0x"))
        prefixed = {**proof, "key": "0x02", "value": "0x" + proof["value"],
                    "nodes": ["0x" + n for n in proof["nodes"]]}
        self.assertEqual(verify(trie_root(values_of(5)), prefixed), values_of(5)[2])
        as_bytes = {**proof, "value": bytes.fromhex(proof["value"]),
                    "nodes": [bytes.fromhex(n) for n in proof["nodes"]]}
        self.assertEqual(verify(trie_root(values_of(5)), as_bytes), values_of(5)[2])

    def test_bad_values_are_refused(self) -> None:
        for bad in ([b""], ["00"], [None]):
            with self.assertRaises(ProofError):
                IndexedTrie(bad)  # type: ignore[arg-type]

    def test_malformed_proofs(self) -> None:
        values = values_of(20)
        root = trie_root(values)
        proof = prove(values, 7)
        cases: list[tuple[Any, Any]] = [
            (root, None),
            (root, []),
            (root, "proof"),
            (root, {"index": 7}),
            (root, {**proof, "index": "7"}),
            (root, {**proof, "index": -1}),
            (root, {**proof, "index": True}),
            (root, {**proof, "nodes": "f8"}),
            (root, {**proof, "nodes": [1, 2]}),
            (root, {**proof, "nodes": ["zz"]}),
            (root, {**proof, "nodes": ["abc"]}),
            (root, {**proof, "nodes": ["00"] * 500}),
            (root, {**proof, "value": 5}),
            (root[:31], proof),
            (root.hex() + "00", proof),
            ("not hex" * 9, proof),
            (None, proof),
            (12345, proof),
        ]
        for bad_root, bad_proof in cases:
            with self.assertRaises(ProofError) as caught:
                verify(bad_root, bad_proof)
            self.assertEqual(caught.exception.check, "malformed", repr(bad_proof)[:80])
            self.assertIsInstance(caught.exception, ValueError)

    def test_exports_and_checks(self) -> None:
        for name in mpt.__all__:
            self.assertTrue(hasattr(mpt, name), name)
        self.assertIn("root_mismatch", CHECKS)
        self.assertEqual(ProofError("bad_node", "x").check, "bad_node")
        self.assertEqual(str(ProofError("bad_node", "x")), "bad_node: x")

    def test_node_hashing_to_root_but_not_a_node(self) -> None:
        """A 'root node' the attacker picked the root for: it hashes right but is no trie node."""
        for garbage in (b"\x05", b"\xc0", b"\xc3\x01\x02\x03", rlp.encode([b"\x20", [b"x"]]), b"\xff" * 40):
            with self.assertRaises(ProofError) as caught:
                verify(keccak(garbage), {"index": 0, "key": "80", "value": "01", "nodes": [garbage.hex()]})
            self.assertIn(caught.exception.check, ("bad_node", "value_mismatch", "malformed"))


# --- receipts ---------------------------------------------------------------------------------------------------

BLOOM = bytes(range(256))
LOG = {"address": "0x" + "11" * 20, "topics": ["0x" + "22" * 32, "0x" + "33" * 32], "data": "0xdeadbeef"}


class ReceiptTests(SynchronousTestCase):
    def test_legacy_receipt_is_a_bare_list(self) -> None:
        receipt = {"type": 0, "status": 1, "cumulativeGasUsed": 21000, "logsBloom": BLOOM, "logs": [LOG]}
        expected = rlp.encode([1, 21000, BLOOM, [[b"\x11" * 20, [b"\x22" * 32, b"\x33" * 32], b"\xde\xad\xbe\xef"]]])
        self.assertEqual(encode_receipt(receipt), expected)
        self.assertEqual(encode_receipt({k: v for k, v in receipt.items() if k != "type"}), expected)

    def test_typed_receipts_are_prefixed(self) -> None:
        for kind in (1, 2, 3, 4):
            receipt = {"type": hex(kind), "status": "0x0", "cumulativeGasUsed": "0x5208", "logsBloom": BLOOM.hex(),
                       "logs": []}
            encoded = encode_receipt(receipt)
            self.assertEqual(encoded, bytes([kind]) + rlp.encode([b"", 21000, BLOOM, []]))
            decoded = decode_receipt(encoded)
            self.assertEqual((decoded["type"], decoded["status"], decoded["root"]), (kind, 0, None))
            self.assertEqual(decoded["cumulativeGasUsed"], 21000)

    def test_pre_byzantium_root(self) -> None:
        receipt = {"root": "0x" + "ab" * 32, "cumulativeGasUsed": 7, "logsBloom": BLOOM, "logs": [LOG]}
        decoded = decode_receipt(encode_receipt(receipt))
        self.assertEqual((decoded["status"], decoded["root"]), (None, "ab" * 32))

    def test_round_trip_and_snake_case(self) -> None:
        receipt = {"type": 2, "status": 1, "cumulative_gas_used": 10**12, "logs_bloom": BLOOM, "logs": [LOG, LOG]}
        decoded = decode_receipt(encode_receipt(receipt))
        self.assertEqual(encode_receipt(decoded), encode_receipt(receipt))
        self.assertEqual(decoded["logs"][0], {"address": "11" * 20, "topics": ["22" * 32, "33" * 32],
                                              "data": "deadbeef"})

    def test_receipt_proof_round_trip(self) -> None:
        receipts = [
            {"type": i % 3, "status": i % 2, "cumulativeGasUsed": 21000 * (i + 1), "logsBloom": BLOOM,
             "logs": [LOG] * (i % 3)}
            for i in range(10)
        ]
        encoded = [encode_receipt(r) for r in receipts]
        root = receipts_root(encoded)
        for index, receipt in enumerate(receipts):
            decoded = verify_receipt(root, prove(encoded, index), receipt, index=index)
            self.assertEqual(decoded["status"], receipt["status"])

    def test_bad_receipts(self) -> None:
        good = {"type": 2, "status": 1, "cumulativeGasUsed": 1, "logsBloom": BLOOM, "logs": []}
        for bad in [
            {**good, "type": 0x7E},
            {**good, "type": 5},
            {**good, "status": 2},
            {k: v for k, v in good.items() if k != "status"},
            {k: v for k, v in good.items() if k != "logs"},
            {**good, "logsBloom": b"\x00"},
            {**good, "cumulativeGasUsed": -1},
            {**good, "cumulativeGasUsed": "12"},
            {**good, "logs": [{**LOG, "address": "0x11"}]},
            {**good, "logs": [{**LOG, "topics": "0x22"}]},
            {**good, "logs": ["log"]},
        ]:
            with self.assertRaises(ProofError) as caught:
                encode_receipt(bad)
            self.assertEqual(caught.exception.check, "malformed")
        for value in [b"", b"\x05\xc0", b"\x02\xc0", b"\xc4\x01\x02\x03\x04", b"\x00" + rlp.encode([1, 1, BLOOM, []]),
                      rlp.encode([2, 1, BLOOM, []]), rlp.encode([1, b"\x00\x01", BLOOM, []])]:
            with self.assertRaises(ProofError) as caught:
                decode_receipt(value)
            self.assertEqual(caught.exception.check, "bad_value", value[:8])

    def test_proven_value_that_is_no_receipt(self) -> None:
        values = [b"not a receipt at all, but long enough"]
        with self.assertRaises(ProofError) as caught:
            verify_receipt(trie_root(values), prove(values, 0))
        self.assertEqual(caught.exception.check, "bad_value")

    def test_empty_expected_receipt(self) -> None:
        encoded = [encode_receipt({"status": 1, "cumulativeGasUsed": 1, "logsBloom": BLOOM, "logs": []})]
        with self.assertRaises(ProofError) as caught:
            verify_receipt(receipts_root(encoded), prove(encoded, 0), {"transactionHash": "0x00"})
        self.assertEqual(caught.exception.check, "malformed")


# --- fuzzing ----------------------------------------------------------------------------------------------------

FUZZ_VALUES = [*values_of(40, 20), b"\x01", b"\x02" * 3]
FUZZ_TREE = IndexedTrie(FUZZ_VALUES)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

wire_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=20),
                      st.binary(max_size=40), st.floats(allow_nan=True))
wire_value = st.recursive(wire_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)


def canonical(proof: dict[str, Any]) -> tuple[Any, ...]:
    return (proof["index"], bytes.fromhex(proof["key"]), bytes.fromhex(proof["value"]),
            tuple(bytes.fromhex(node) for node in proof["nodes"]))


class FuzzTests(SynchronousTestCase):
    @FUZZ
    @given(index=st.integers(0, len(FUZZ_VALUES) - 1), data=st.data())
    def test_any_change_to_a_proof_is_refused(self, index: int, data: st.DataObject) -> None:
        proof = FUZZ_TREE.prove(index)
        mutated: dict[str, Any] = {**proof, "nodes": list(proof["nodes"])}
        for _ in range(data.draw(st.integers(1, 3))):
            action = data.draw(st.sampled_from(["flip", "drop", "dup", "swap", "insert", "index", "key", "value",
                                                "truncate", "extend"]))
            nodes = mutated["nodes"]
            if action == "flip" and any(nodes):
                at = data.draw(st.sampled_from([i for i, node in enumerate(nodes) if node]))
                raw = bytearray(bytes.fromhex(nodes[at]))
                byte = data.draw(st.integers(0, len(raw) - 1))
                raw[byte] ^= data.draw(st.integers(1, 255))
                nodes[at] = raw.hex()
            elif action == "drop" and nodes:
                nodes.pop(data.draw(st.integers(0, len(nodes) - 1)))
            elif action == "dup" and nodes:
                nodes.append(data.draw(st.sampled_from(nodes)))
            elif action == "swap" and len(nodes) > 1:
                i, j = data.draw(st.permutations(range(len(nodes))))[:2]
                nodes[i], nodes[j] = nodes[j], nodes[i]
            elif action == "insert":
                nodes.insert(data.draw(st.integers(0, len(nodes))), data.draw(st.binary(min_size=1, max_size=80)).hex())
            elif action == "index":
                mutated["index"] = data.draw(st.integers(0, 200))
            elif action == "key":
                mutated["key"] = data.draw(st.binary(min_size=0, max_size=3)).hex()
            elif action == "value":
                mutated["value"] = data.draw(st.binary(min_size=0, max_size=30)).hex()
            elif action == "truncate" and any(nodes):
                at = data.draw(st.sampled_from([i for i, node in enumerate(nodes) if node]))
                nodes[at] = nodes[at][: 2 * data.draw(st.integers(0, len(nodes[at]) // 2 - 1))]
            elif action == "extend" and nodes:
                at = data.draw(st.integers(0, len(nodes) - 1))
                nodes[at] = nodes[at] + data.draw(st.binary(min_size=1, max_size=4)).hex()
        if canonical(mutated) == canonical(proof):
            self.assertEqual(verify(FUZZ_TREE.root, mutated), FUZZ_VALUES[index])
            return
        with self.assertRaises(ProofError) as caught:
            verify(FUZZ_TREE.root, mutated)
        self.assertIn(caught.exception.check, CHECKS)

    @FUZZ
    @given(root=st.one_of(st.binary(min_size=32, max_size=32), wire_value), proof=wire_value)
    def test_arbitrary_input_gives_proof_error(self, root: Any, proof: Any) -> None:
        with self.assertRaises(ProofError):
            verify(root, proof)
        with self.assertRaises(ProofError):
            verify_receipt(root, proof, proof if isinstance(proof, dict) else None)
        with self.assertRaises(ProofError):
            state_proof_check(root, proof)
        with self.assertRaises(ProofError):
            verify_transaction(root, proof, proof)  # type: ignore[arg-type]

    @FUZZ
    @given(nodes=st.lists(st.binary(max_size=120), min_size=1, max_size=5), key=st.binary(max_size=4),
           value=st.binary(max_size=40), index=st.integers(0, 300))
    def test_random_nodes_under_their_own_root(self, nodes: list[bytes], key: bytes, value: bytes, index: int) -> None:
        """The attacker picks the root, so the first node always 'matches': the walk must still fail cleanly."""
        proof = {"index": index, "key": key.hex(), "value": value.hex(), "nodes": [n.hex() for n in nodes]}
        try:
            verify(keccak(nodes[0]), proof)
        except ProofError as exc:
            self.assertIn(exc.check, CHECKS)
        try:
            verify_path(keccak(nodes[0]), key, proof["nodes"])
        except ProofError as exc:
            self.assertIn(exc.check, CHECKS)

    @FUZZ
    @given(value=st.binary(min_size=0, max_size=400))
    def test_decode_receipt_is_total(self, value: bytes) -> None:
        try:
            decoded = decode_receipt(value)
        except ProofError as exc:
            self.assertEqual(exc.check, "bad_value")
        else:
            self.assertEqual(encode_receipt(decoded), value)  # only canonical receipts decode

    @FUZZ
    @given(result=st.dictionaries(st.sampled_from(["address", "accountProof", "nonce", "balance", "storageHash",
                                                   "codeHash", "storageProof"]), wire_value))
    def test_state_proof_check_is_total(self, result: dict[str, Any]) -> None:
        with self.assertRaises(ProofError):
            state_proof_check(FUZZ_TREE.root, result)

