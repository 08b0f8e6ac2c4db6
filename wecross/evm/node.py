"""The EVM node as the stub sees it: every JSON-RPC request the stub makes, blocking, with the router's key.

Threads. JSON-RPC blocks, so :class:`EvmNode` runs only on the stub's own thread pool (``threads`` option), never
on the reactor thread.

Signing. The router holds one key (``private_key_file`` or ``private_key_env``) and signs every write with it,
unless the stub hands :meth:`EvmNode.submit` a user's own key from the router's keystore (option
``per_user_accounts``: see wecross.governance.keystore). Nonces are tracked per signing account, each under its own
lock, so concurrent writes from one account do not collide and writes of different accounts do not wait for each
other; each write also reads the node's ``pending`` count (in the round trip that reads its fees and gas), and the
higher of the two wins, so a nonce taken by another sender with the same key is skipped, not reused. Users'
accounts are remembered for at most :data:`USER_SENDERS` accounts, least recently used first out: one forgotten
merely takes its next nonce from the node's count again.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import requests
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak

from wecross.evm._web3 import Web3
from wecross.evm.abi import hex0x, hex_str
from wecross.evm.options import EvmOptions
from wecross.evm.rpc import (
    SENT_REMEMBERED,
    RpcError,
    RpcHttp,
    block_from_json,
    log_from_json,
    receipt_from_json,
    rpc_data,
    rpc_quantity,
)
from wecross.stub.interfaces import (
    StubError,
)

#: Most blocks asked for in one eth_getLogs (nodes refuse or time out on large ranges).
LOG_CHUNK = 2000


#: Most eth_getLogs requests in one JSON-RPC batch.
LOG_BATCH = 8


#: Most blocks whose transactions and receipts one JSON-RPC batch asks for, to prove events.
PROOF_BATCH = 64


_DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, when a London node cannot suggest one


#: Users' signing accounts whose nonce (and parsed key) a node remembers.
USER_SENDERS = 1024


class _Sender:
    """One signing account: its key and the next nonce this router will use (None: ask the node), under ``lock``.
    Its repr shows the address only (eth_keys' PrivateKey prints the key in its repr)."""

    __slots__ = ("address", "key", "lock", "nonce")

    def __init__(self, address: str, key: PrivateKey) -> None:
        self.address = address
        self.key = key
        self.lock = threading.Lock()
        self.nonce: int | None = None

    def __repr__(self) -> str:
        return f"<signer {self.address}>"


class UserKey(Protocol):
    """What :meth:`EvmNode.submit` signs a user's write with: anything with ``address`` and ``secret`` (32 bytes),
    such as wecross.governance.keystore.AccountKey. Declared here so the node needs no governance import."""

    @property
    def address(self) -> str: ...

    @property
    def secret(self) -> bytes: ...


class EvmNode:
    """One node, with the router's signing key. Every method blocks; call it from the pool.

    Requests go as raw JSON-RPC over keep-alive connections (:class:`RpcHttp`), in batches: one HTTP round trip for
    what belongs together, and none of web3's implicit requests (its validation middleware asks eth_chainId before
    every eth_call and eth_estimateGas). web3 is kept for the start and for logs, off the hot paths.
    """

    def __init__(self, where: str, options: EvmOptions) -> None:
        self.where = where
        self.options = options
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(4, options.threads))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        provider = Web3.HTTPProvider(options.rpc, request_kwargs={"timeout": options.rpc_timeout},
                                     session=self.session)
        self.w3 = Web3(provider)
        self.http = RpcHttp(options.rpc, options.rpc_timeout)
        self.account: Any = None
        self._key: PrivateKey | None = None
        self.chain_id = 0
        self.genesis_hash = ""
        #: The router's own signing account (set by open() when there is a key).
        self._router: _Sender | None = None
        #: Users' signing accounts by address, least recently used first; guarded by _users_lock.
        self._users: OrderedDict[str, _Sender] = OrderedDict()
        self._users_lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))
        #: tx hash (hex, no 0x) -> the raw transaction this stub signed, newest last.
        self._sent: dict[str, bytes] = {}
        self._sent_lock = threading.Lock()
        #: Whether the last write was in a block by the time its send returned (an automining dev node): then the
        #: receipt, the block and its receipts are asked for in the same round trip right after the send.
        self.mines_at_once = True

    # -- start
    def open(self) -> None:
        """Check the node and load the key: the start's blocking part."""
        self.chain_id = int(self.w3.eth.chain_id)
        wanted = self.options.chain_id
        if wanted is not None and wanted != self.chain_id:
            raise ValueError(f"{self.where}: option 'chain_id' is {wanted} but the node at {self.options.rpc} "
                             f"reports chain id {self.chain_id}")
        self.genesis_hash = hex_str(self.w3.eth.get_block(0)["hash"])
        key = self._read_key()
        if key is not None:
            try:
                self.account = Account.from_key(key)
            except (ValueError, TypeError):
                source = "private_key_file" if self.options.private_key_file else "private_key_env"
                raise ValueError(f"{self.where}: option {source!r}: not a hex secp256k1 private key") from None
            self._key = PrivateKey(bytes(self.account.key))
            self._router = _Sender(str(self.account.address), self._key)

    def _read_key(self) -> str | None:
        if self.options.private_key_file is not None:
            path = Path(self.options.private_key_file).expanduser()
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"{self.where}: option 'private_key_file': cannot read {path}: "
                                 f"{exc.strerror or exc}") from None
        if self.options.private_key_env is not None:
            value = os.environ.get(self.options.private_key_env)
            if not value:
                raise ValueError(f"{self.where}: option 'private_key_env': environment variable "
                                 f"{self.options.private_key_env} is not set")
            return value.strip()
        return None

    def close(self) -> None:
        self.session.close()
        self.http.close()

    # -- JSON-RPC
    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Send ``calls`` in one HTTP request; their results in order, an :class:`RpcError` for each that failed.

        No answer raises StubError('unavailable'); an answer that is not JSON-RPC, StubError('bad_response').
        """
        requests_: list[dict[str, Any]] = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params} for method, params in calls]
        body: Any = requests_[0] if len(requests_) == 1 else requests_
        try:
            status, data = self.http.post(json.dumps(body, separators=(",", ":")).encode())
        except (OSError, http.client.HTTPException) as exc:
            raise StubError("unavailable", f"{self.where}: node {self.options.rpc} did not answer: "
                                           f"{exc or type(exc).__name__}") from None
        try:
            answer = json.loads(data)
        except ValueError:
            raise StubError("bad_response" if status < 300 else "unavailable",
                            f"{self.where}: node {self.options.rpc} answered HTTP {status} with no JSON-RPC") from None
        answers = answer if isinstance(answer, list) else [answer]
        by_id = {entry.get("id"): entry for entry in answers if isinstance(entry, Mapping)}
        results: list[Any] = []
        for request, (method, _) in zip(requests_, calls, strict=True):
            entry = by_id.get(request["id"])
            if entry is None:
                if len(answers) == 1 and isinstance(answers[0], Mapping) and "error" in answers[0]:
                    entry = answers[0]  # a node that refuses batches answers with one error
                else:
                    raise StubError("bad_response", f"{self.where}: node {self.options.rpc} did not answer {method}")
            error = entry.get("error")
            if error is not None:
                error = error if isinstance(error, Mapping) else {"message": str(error)}
                results.append(RpcError(method, error.get("code"), str(error.get("message", "")), error.get("data")))
            else:
                results.append(entry.get("result"))
        return results

    def ok(self, value: Any) -> Any:
        """A batch result, or the StubError its error means: 'reverted' with the reason, else 'rpc_error'."""
        if isinstance(value, RpcError):
            if value.reverted:
                raise StubError("reverted", value.reason())
            raise StubError("rpc_error", f"{self.where}: node {self.options.rpc}: {value.method}: {value.message}")
        return value

    def rpc(self, method: str, *params: Any) -> Any:
        return self.ok(self.batch([(method, list(params))])[0])

    @staticmethod
    def _tag(block: int | str) -> str:
        return hex(block) if isinstance(block, int) else block

    def bad(self, what: str, exc: Exception) -> StubError:
        return StubError("bad_response", f"{self.where}: node {self.options.rpc} sent a malformed {what}: {exc}")

    # -- reading
    def _call_request(self, to: str, data: bytes, sender: str | None = None) -> dict[str, Any]:
        """An eth_call's request: from ``sender`` if given (the account a replayed write came from), else from the
        router's account when it has one."""
        request: dict[str, Any] = {"to": to, "data": hex0x(data)}
        if sender is not None:
            request["from"] = sender
        elif self.account is not None:
            request["from"] = self.account.address
        return request

    def call(self, to: str, data: bytes, block: int | str = "latest", sender: str | None = None) -> bytes:
        return rpc_data(self.rpc("eth_call", self._call_request(to, data, sender), self._tag(block)))

    def block(self, number: int | str) -> dict[str, Any] | None:
        """The block (transactions as hashes), None if the node has none of that number."""
        raw = self.rpc("eth_getBlockByNumber", self._tag(number), False)
        try:
            return None if raw is None else block_from_json(raw)
        except (ValueError, TypeError) as exc:
            raise self.bad("block", exc) from None

    def head(self) -> int:
        return rpc_quantity(self.rpc("eth_blockNumber"))

    def code(self, address: str) -> bytes:
        return rpc_data(self.rpc("eth_getCode", address, "latest"))

    def _receipt(self, raw: Any) -> dict[str, Any] | None:
        try:
            return None if raw is None else receipt_from_json(raw)
        except (ValueError, TypeError) as exc:
            raise self.bad("receipt", exc) from None

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self._receipt(self.rpc("eth_getTransactionReceipt", tx_hash))

    def receipt_and_head(self, tx_hash: str) -> tuple[dict[str, Any], int] | None:
        """A mined transaction's receipt and the head's number, in one round trip; None while it is not mined."""
        if not self.options.confirmations:
            receipt = self.receipt(tx_hash)
            return None if receipt is None else (receipt, int(receipt["blockNumber"]))
        raw, head = (self.ok(answer) for answer in self.batch([("eth_getTransactionReceipt", [tx_hash]),
                                                               ("eth_blockNumber", [])]))
        receipt = self._receipt(raw)
        return None if receipt is None else (receipt, rpc_quantity(head))

    def receipt_in_latest(self, tx_hash: str) -> tuple[dict[str, Any], tuple[Any, list[Any]] | None] | None:
        """The receipt, with the latest block and its receipts when that is the receipt's block, in one round trip;
        None while the transaction is not mined. Right after a send on an automining node, that is all a proof
        needs."""
        answers = self.batch([("eth_getTransactionReceipt", [tx_hash]), ("eth_getBlockByNumber", ["latest", False]),
                              ("eth_getBlockReceipts", ["latest"])])
        receipt = self._receipt(self.ok(answers[0]))
        if receipt is None:
            return None
        if isinstance(answers[1], RpcError) or isinstance(answers[2], RpcError) or answers[1] is None:
            return receipt, None
        try:
            block = block_from_json(answers[1])
            receipts = [receipt_from_json(entry) for entry in answers[2] or []]
        except (ValueError, TypeError) as exc:
            raise self.bad("block", exc) from None
        same = block["hash"] == receipt["blockHash"] and all(r.get("blockHash") == block["hash"] for r in receipts)
        return receipt, ((block, receipts) if same else None)  # a block came between: fetch the receipt's own

    def block_and_receipts(self, number: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A block (transactions as hashes) and all its receipts, in one round trip."""
        raw_block, raw_receipts = (self.ok(answer) for answer in self.batch([
            ("eth_getBlockByNumber", [hex(number), False]), ("eth_getBlockReceipts", [hex(number)])]))
        if raw_block is None or not isinstance(raw_receipts, list):
            raise StubError("bad_response", f"{self.where}: node {self.options.rpc} has no block {number} (reorg?)")
        try:
            return block_from_json(raw_block), [receipt_from_json(entry) for entry in raw_receipts]
        except (ValueError, TypeError) as exc:
            raise self.bad("block", exc) from None

    def raw_transactions(self, hashes: list[Any]) -> list[bytes]:
        """The signed transactions of a block, by hash: those this stub sent from memory, the others in one batch."""
        keys = [hex_str(tx_hash) for tx_hash in hashes]
        missing = [key for key in keys if key not in self._sent]
        fetched: dict[str, bytes] = {}
        if missing:
            answers = self.batch([("eth_getRawTransactionByHash", ["0x" + key]) for key in missing])
            try:
                fetched = {key: rpc_data(self.ok(answer)) for key, answer in zip(missing, answers, strict=True)}
            except (ValueError, TypeError) as exc:
                raise self.bad("raw transaction", exc) from None
        return [self._sent.get(key) or fetched[key] for key in keys]

    def state_proof(self, address: str, slots: list[int], number: int, call: bytes | None = None) -> tuple[Any, Any]:
        """eth_getProof of ``slots`` of ``address`` at block ``number`` (as the node sent it: JSON hex, which a
        result carries as is), and, in the same round trip, the eth_call ``call`` at that block (None without)."""
        calls: list[tuple[str, list[Any]]] = [("eth_getProof", [address, [f"0x{slot:064x}" for slot in slots],
                                                                hex(number)])]
        if call is not None:
            calls.append(("eth_call", [self._call_request(address, call), hex(number)]))
        answers = self.batch(calls)
        output = rpc_data(self.ok(answers[1])) if call is not None else None
        return self.ok(answers[0]), output

    def logs(self, address: str, from_block: int, to_block: int) -> list[dict[str, Any]]:
        """The logs of ``address`` in blocks ``from_block`` .. ``to_block``, in chunks of :data:`LOG_CHUNK` blocks
        (nodes refuse or time out on large ranges), up to :data:`LOG_BATCH` chunks per round trip; removed logs
        (a reorg) are left out."""
        ranges = [(start, min(to_block, start + LOG_CHUNK - 1)) for start in range(from_block, to_block + 1, LOG_CHUNK)]
        found: list[dict[str, Any]] = []
        for first in range(0, len(ranges), LOG_BATCH):
            answers = self.batch([("eth_getLogs", [{"address": address, "fromBlock": hex(low), "toBlock": hex(high)}])
                                  for low, high in ranges[first:first + LOG_BATCH]])
            for answer in answers:
                entries = self.ok(answer)
                if not isinstance(entries, list):
                    raise self.bad("eth_getLogs answer", ValueError("not a list"))
                try:
                    found.extend(log_entry for log_entry in map(log_from_json, entries)
                                 if not log_entry.get("removed"))
                except (ValueError, TypeError, KeyError) as exc:
                    raise self.bad("log", exc) from None
        return found

    def proof_blocks(self, numbers: list[int]) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]], list[bytes]]]:
        """Block ``n`` -> (the block, its receipts, its raw transactions) for each of ``numbers``: what proofs of
        their transactions and receipts are built from. Two round trips per :data:`PROOF_BATCH` blocks (blocks
        with receipts; raw transactions this stub did not send). A block the node does not have, or cannot give the
        receipts or raw transactions of (a node without eth_getBlockReceipts or eth_getRawTransactionByHash), is left
        out: its events come without proof rather than not at all."""
        found: dict[int, tuple[dict[str, Any], list[dict[str, Any]], list[bytes]]] = {}
        for first in range(0, len(numbers), PROOF_BATCH):
            group = numbers[first:first + PROOF_BATCH]
            answers = self.batch([call for number in group for call in (
                ("eth_getBlockByNumber", [hex(number), False]), ("eth_getBlockReceipts", [hex(number)]))])
            fetched: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
            for position, number in enumerate(group):
                raw_block, raw_receipts = answers[2 * position:2 * position + 2]
                if raw_block is None or isinstance(raw_block, RpcError) or not isinstance(raw_receipts, list):
                    continue
                try:
                    fetched.append((number, block_from_json(raw_block),
                                    [receipt_from_json(entry) for entry in raw_receipts]))
                except (ValueError, TypeError) as exc:
                    raise self.bad("block", exc) from None
            hashes = [tx_hash for _, block, _ in fetched for tx_hash in block["transactions"]]
            try:
                raw_txs = iter(self.raw_transactions(hashes))
            except StubError as exc:
                if exc.code not in ("rpc_error", "reverted"):
                    raise
                continue
            for number, block, receipts in fetched:
                found[number] = (block, receipts, [next(raw_txs) for _ in block["transactions"]])
        return found

    # -- writing
    def _sender(self, user_key: UserKey | None) -> _Sender:
        """The account a write is signed by: the router's, or the user's whose key the stub passed."""
        if user_key is None:
            if self._router is None:
                raise StubError("unsupported", f"{self.where} has no signing key (options 'private_key_file' or "
                                               "'private_key_env'): it serves reads only")
            return self._router
        with self._users_lock:
            sender = self._users.get(user_key.address)
            if sender is not None:
                self._users.move_to_end(user_key.address)
                return sender
        key = PrivateKey(bytes(user_key.secret))
        if key.public_key.to_checksum_address() != user_key.address:
            raise StubError("internal", f"{self.where}: a user's key does not give its stated address "
                                        f"{user_key.address}")
        with self._users_lock:
            sender = self._users.setdefault(user_key.address, _Sender(user_key.address, key))
            self._users.move_to_end(user_key.address)
            while len(self._users) > USER_SENDERS:
                self._users.popitem(last=False)
        return sender

    def balance(self, address: str) -> int:
        return rpc_quantity(self.rpc("eth_getBalance", address, "latest"))

    def submit(self, to: str | None, data: bytes, *, user_key: UserKey | None = None, value: int = 0) -> str:
        """Sign and send (with the router's key, or ``user_key``); the tx hash (0x hex). StubError('reverted') when
        gas estimation shows it would revert.

        One round trip gathers what signing needs: the gas estimate (unless option 'gas_limit'), the latest block's
        base fee, the priority fee or gas price, and the node's pending nonce. Fees are read fresh for every write,
        never cached: a write sent with a stale nonce must not outbid, and so silently replace, a pending
        transaction of the same key (the node refuses an equal bid, and the nonce is then asked again).
        """
        sender = self._sender(user_key)
        address = sender.address
        tx: dict[str, Any] = {"value": value, "data": hex0x(data), "chainId": self.chain_id}
        if to is not None:
            tx["to"] = to
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", []), ("eth_gasPrice", []),
            ("eth_getTransactionCount", [address, "pending"])]
        if self.options.gas_limit is None:
            estimate = {"from": address, "value": hex(value), "data": tx["data"], **({"to": to} if to else {})}
            calls.append(("eth_estimateGas", [estimate]))
        answers = self.batch(calls)
        try:
            if self.options.gas_limit is None:
                estimated = rpc_quantity(self.ok(answers[4]))
                tx["gas"] = estimated + estimated // 5  # state may change before inclusion; unused gas is not charged
            else:
                tx["gas"] = self.options.gas_limit
            latest = self.ok(answers[0])
            base = latest.get("baseFeePerGas") if isinstance(latest, Mapping) else None
            if base is None:
                tx["gasPrice"] = rpc_quantity(self.ok(answers[2]))
            else:
                tip = _DEFAULT_PRIORITY_FEE if isinstance(answers[1], RpcError) else rpc_quantity(answers[1])
                tx.update(maxFeePerGas=2 * rpc_quantity(base) + tip, maxPriorityFeePerGas=tip)
            pending = rpc_quantity(self.ok(answers[3]))
        except (ValueError, TypeError) as exc:
            raise self.bad("answer to a fee, nonce or gas request", exc) from None
        with sender.lock:
            # The node's pending count wins over ours when higher: another sender with this key took nonces.
            nonce = pending if sender.nonce is None else max(sender.nonce, pending)
            for attempt in range(2):
                tx["nonce"] = nonce
                raw = self.sign(tx, sender.key)
                tx_hash = bytes(keccak(raw)).hex()
                try:
                    answer = self.batch([("eth_sendRawTransaction", [hex0x(raw)])])[0]
                except BaseException:
                    sender.nonce = None  # unknown whether the node took it: ask again next time
                    raise
                if isinstance(answer, RpcError):
                    sender.nonce = None
                    text = answer.message.lower()
                    if "already known" not in text:
                        if attempt == 0 and ("nonce" in text or "underpriced" in text):
                            nonce = rpc_quantity(self.rpc("eth_getTransactionCount", address, "pending"))
                            continue
                        self.ok(answer)
                sender.nonce = nonce + 1
                self._remember(tx_hash, raw)
                return "0x" + tx_hash
        raise AssertionError("unreachable")

    def sign(self, tx: Mapping[str, Any], key: PrivateKey | None = None) -> bytes:
        """The signed transaction: EIP-1559 (type 2) with ``maxFeePerGas``, else legacy with EIP-155 replay
        protection (``gasPrice``, for nodes without a base fee). Byte for byte what eth_account makes (signatures
        are deterministic, RFC 6979; tests compare the two), without its generic validation and serialisation,
        which cost more than the ECDSA itself. ``key``: the signer (default the router's key)."""
        key = self._key if key is None else key
        assert key is not None
        to = bytes.fromhex(tx["to"][2:]) if tx.get("to") else b""
        data = bytes.fromhex(tx["data"][2:])
        chain_id = int(tx["chainId"])
        if "gasPrice" in tx:
            fields: list[Any] = [tx["nonce"], tx["gasPrice"], tx["gas"], to, tx["value"], data]
            signature = key.sign_msg_hash(keccak(rlp.encode([*fields, chain_id, 0, 0])))
            signed: bytes = rlp.encode([*fields, signature.v + 35 + 2 * chain_id, signature.r, signature.s])
            return signed
        fields = [chain_id, tx["nonce"], tx["maxPriorityFeePerGas"], tx["maxFeePerGas"], tx["gas"], to, tx["value"],
                  data, []]
        signature = key.sign_msg_hash(keccak(b"\x02" + rlp.encode(fields)))
        payload: bytes = rlp.encode([*fields, signature.v, signature.r, signature.s])
        return b"\x02" + payload

    def _remember(self, tx_hash: str, raw: bytes) -> None:
        """Senders of different accounts call this at once; readers only ``get``."""
        with self._sent_lock:
            self._sent[tx_hash] = raw
            while len(self._sent) > SENT_REMEMBERED:
                del self._sent[next(iter(self._sent))]

    def wait_receipt(self, tx_hash: str) -> dict[str, Any]:
        """Blocking wait, for start-time deployments only; writes from users wait on the reactor instead."""
        deadline = time.monotonic() + self.options.receipt_timeout
        while True:
            receipt = self.receipt(tx_hash)
            if receipt is not None and self.head() - int(receipt["blockNumber"]) >= self.options.confirmations:
                return receipt
            if time.monotonic() > deadline:
                raise StubError("timeout", f"{self.where}: transaction {tx_hash} not confirmed within "
                                           f"{self.options.receipt_timeout} s")
            time.sleep(self.options.poll_interval)

    def replay(self, receipt: Any, data: bytes) -> bytes:
        """Run a mined transaction again as eth_call on its parent block's state: its output, or StubError('reverted').

        Exact when no earlier transaction of the same block touched the same state (always so on an automining dev
        node); otherwise the best a plain JSON-RPC node offers without tracing. Run from the account that sent it,
        so that what the contract does with ``msg.sender`` is replayed too.
        """
        parent = max(0, int(receipt["blockNumber"]) - 1)
        return self.call(receipt["to"], data, parent, receipt.get("from"))
