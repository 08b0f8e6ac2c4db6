"""Any Ethereum JSON-RPC node as a stub (anvil in tests; geth, besu, FISCO BCOS 3 in web3 mode in production).

Over 600 lines on purpose: :class:`EvmStub` is one concern, the stub's life cycle and its answers to the router
(start, deployment, headers, events with proofs, the transactions in doubt, whose key signs a write), sharing the
pool, the node and the per-key serialisation; its parts live in the modules it imports (options, ABI, resource
config, JSON-RPC, node, headers, resources).

Threads. JSON-RPC blocks, so every request runs on the stub's own thread pool (``threads`` option), never on the
reactor thread. Right after a send the receipt is asked for once, with the latest block and its receipts (on an
automining dev node that is the write's block, and the whole write takes three round trips); where it is not there
yet, waiting is driven from the reactor (a poll job every ``poll_interval``), so a burst of writes does not park one
pool thread per transaction.

Reads. ``get``, ``balanceOf``, ``totalSupply`` and ``htlcStatus`` of the built-in contracts are read at one
block, with the ``eth_getProof`` of the storage slots that hold the value and that block's header; see
:func:`wecross.evm.checks.check_read`. Other reads carry no proof.

Events carry Merkle-Patricia proofs of their transaction and receipt and the position of their log in it, built
per block from the block's own transactions and receipts; see :meth:`EvmStub.events` and
:func:`wecross.evm.checks.check_event`.

Users' accounts (option ``per_user_accounts``). A write to a generic ``contract`` resource is then signed with the
sender's own key from the router's keystore (wecross.governance.keystore), handed over by :meth:`EvmStub.use_keystore`
before start, so the contract sees the user as ``msg.sender``; the built-in contracts, whose rules take the sender as
an argument and whose transaction layer only their deploying router may drive, keep the router's key. With
``fund_new_accounts``, an account that holds nothing gets that amount from the router's key before its first write
in this stub's life (dev chains: production chains fund accounts their own way).
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import requests
from eth_abi.exceptions import DecodingError
from eth_utils.address import is_hex_address, to_checksum_address
from eth_utils.crypto import keccak
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, DeferredLock
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from wecross.evm import mpt
from wecross.evm._web3 import ContractLogicError, Web3Exception
from wecross.evm.abi import BUILTIN_CONTRACTS, WRITE, AbiFunction, ContractAbi, hex0x, hex_str
from wecross.evm.builtin import (
    LOCK_NAMES,
    TX_COMMITTED,
    TX_PREPARED,
    TX_ROLLED_BACK,
    TX_STEP_METHODS,
    in_context,
    reverted_error,
)
from wecross.evm.headers import abstract_header
from wecross.evm.node import LOG_CHUNK, EvmNode, UserKey
from wecross.evm.options import parse_options
from wecross.evm.resource import EvmResource, TxInfo
from wecross.evm.resource_config import parse_resource
from wecross.evm.rpc import block_from_json, rpc_data
from wecross.stub.interfaces import (
    BlockHeader,
    ChainState,
    EventPages,
    IEventSource,
    IResource,
    IStub,
    IUserAccounts,
    Result,
    StubError,
    StubSettings,
)

_T = TypeVar("_T")
log = Logger()


CHAIN_TYPE = "evm"


#: Seconds between two readings of the transactions in doubt (see EvmStub.resync).
DOUBT_INTERVAL = 5.0


#: Addresses of contracts this stub deployed, per chain (genesis hash), kept in the stub's data_dir.
DEPLOYMENTS_FILE = "deployments.json"


def _revert_reason(exc: ContractLogicError) -> str:
    message = str(exc.message or "execution reverted")
    prefix = "execution reverted: "
    return message[len(prefix):] if message.startswith(prefix) else message


@implementer(IStub, IEventSource, IUserAccounts)
class EvmStub(EventPages):
    """One EVM chain reached over JSON-RPC; ``data_dir`` keeps the addresses of contracts it deployed."""

    chain_type = CHAIN_TYPE

    def __init__(self, settings: StubSettings, data_dir: Path, *, reactor: Any = None) -> None:
        where = settings.checked_where()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor: Any = reactor
        self.name = settings.name
        self.zone = settings.zone
        self.where = where
        self.data_dir = data_dir
        self.options = parse_options(where, settings.options)
        self._resources: dict[str, EvmResource] = {}
        for entry in settings.resources:
            spec = parse_resource(where, settings.zone, settings.name, entry, self.options)
            if spec.name in self._resources:
                raise ValueError(f"{where}: resource {spec.name!r} is configured twice")
            self._resources[spec.name] = EvmResource(self, spec)
        self.node = EvmNode(where, self.options)
        self._status = "new"
        self._pool: ThreadPool | None = None
        self._shutdown_trigger: Any = None
        self._jobs: set[Deferred[Any]] = set()
        self._sleeps: set[Deferred[None]] = set()
        #: One lock per transaction (HTLC) and resource with work in progress: see EvmResource's hooks.
        self._serial: dict[tuple[str, ...], DeferredLock] = {}
        #: (resource, tx id) -> listing entry of a transaction prepared there (see prepared_transactions).
        self._prepared: dict[tuple[str, str], dict[str, Any]] = {}
        #: (resource, tx id) -> until when a transaction whose prepare may still be mined is asked for (see resync).
        self._doubtful: dict[tuple[str, str], float] = {}
        self._doubts_asked = -math.inf
        #: The router's keystore (use_keystore), for per_user_accounts; typed loosely: the EVM package does not
        #: import the governance one, the keystore comes from the node.
        self._keystore: Any = None
        #: Users' addresses found funded (or funded) in this stub's life; guarded by _fund_lock.
        self._funded: set[str] = set()
        self._fund_lock = threading.Lock()

    def use_keystore(self, keystore: Any) -> None:
        """The router's keystore (wecross.governance.keystore.Keystore), before :meth:`start`: with the option
        ``per_user_accounts``, writes to ``contract`` resources are signed with the sender's key from it. A setter
        rather than a field of StubSettings: the settings mirror the config (plain data, compared and shown in
        messages), while the keystore is a live object holding the key-encryption key."""
        if self._status != "new":
            raise RuntimeError(f"{self.where}: use_keystore() must come before start()")
        self._keystore = keystore

    @property
    def per_user(self) -> bool:
        """Whether writes to ``contract`` resources are signed with the sender's own key."""
        return self.options.per_user_accounts

    @property
    def chain_path(self) -> str:
        return f"{self.zone}.{self.name}"

    def signing_user(self, resource: EvmResource, sender: str) -> str | None:
        """Whose key signs ``sender``'s write to ``resource``: ``sender`` for a ``contract`` resource when
        ``per_user_accounts`` is on, else None (the router's key). StubError at once for a sender that can have no
        account (``anonymous``, a router, a name no certificate can carry), before any work is queued."""
        if not self.per_user or resource.spec.kind != "contract":
            return None
        from wecross.governance.keystore import KeystoreError, check_user

        try:
            return check_user(sender)
        except KeystoreError as exc:
            raise StubError(exc.code, f"{resource.where}: writes here are signed with the sender's own account, "
                                      f"and {exc.message}") from None

    # -- life cycle ----------------------------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        """The node's chain id (known after start)."""
        return self.node.chain_id

    @property
    def signer(self) -> str | None:
        """The address of the router's signing key, if it has one (known after start)."""
        return None if self.node.account is None else str(self.node.account.address)

    def start(self) -> Deferred[None]:
        """Start the pool, check the node (and chain_id), load the key, deploy what needs deploying."""
        if self._status != "new":
            return defer.fail(StubError("internal", f"{self.where} was already started"))
        if self.per_user and (self._keystore is None or not self._keystore.unlocked):
            why = "none was given (the router opens it from [keystore] in its config)" if self._keystore is None \
                else "it has no key-encryption key"
            return defer.fail(ValueError(f"{self.where}: option 'per_user_accounts' needs the router's keystore, "
                                         f"and {why}; or set 'per_user_accounts' to false"))
        self._status = "starting"
        pool = ThreadPool(minthreads=0, maxthreads=self.options.threads, name=f"wecross-evm-{self.zone}.{self.name}")
        pool.start()
        self._pool = pool
        if IReactorCore.providedBy(self._reactor):
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("during", "shutdown", pool.stop)

        def started(prepared: dict[tuple[str, str], dict[str, Any]]) -> None:
            if self._status != "starting":  # stopped meanwhile; stop() releases the pool
                return
            self._prepared = prepared
            self._status = "running"
            log.info("{stub}: chain id {chain_id}, genesis {genesis}, signer {signer}", stub=self.where,
                     chain_id=self.node.chain_id, genesis=self.node.genesis_hash[:16], signer=self.signer)

        def failed(failure: Failure) -> Any:
            if self._status != "starting":
                return failure
            self._status = "failed"
            return self._release().addCallback(lambda _: failure)

        return self._run(self._open).addCallbacks(started, failed)

    def _open(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The start's blocking part; returns the transactions the contracts hold prepared (for the listing)."""
        self.node.open()
        self._deploy_missing()
        for resource in self._resources.values():
            assert resource.address is not None
            code = self.node.code(resource.address)
            if not code:
                raise ValueError(f"{self.where}: resource {resource.spec.name!r}: no contract at "
                                 f"{resource.address} on chain id {self.node.chain_id}")
            if resource.spec.kind in BUILTIN_CONTRACTS:
                # solc's dispatcher compares the selector pushed by a PUSH4 (0x63): a contract deployed before the
                # transaction layer lacks commit(string), and its resource then refuses the hooks ('unsupported').
                resource.tx_capable = b"\x63" + resource.abi.functions["commit"][0].selector in code
        return self._load_prepared()

    def _load_prepared(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every prepared transaction of every built-in resource, read at one block: what a restarted stub lists."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        capable = [r for r in self._resources.values() if r.tx_capable]
        if not capable:
            return found
        block = self.node.head()
        for resource in capable:
            assert resource.address is not None
            function = resource.abi.functions["preparedTxs"][0]
            raw = in_context(resource.where, function, self.node.call, resource.address, function.selector, block)
            ids = resource._decoded(resource.address, function, raw)
            if not ids:
                continue
            info = resource.abi.functions["txInfo"][0]
            answers = self.node.batch([
                ("eth_call", [self.node._call_request(resource.address, resource.abi.encode(resource.where, info,
                                                                                            [tx_id])[0]), hex(block)])
                for tx_id in ids])
            for tx_id, answer in zip(ids, answers, strict=True):
                recorded = TxInfo.decoded(resource._decoded(resource.address, info, rpc_data(self.node.ok(answer))))
                if recorded.state == TX_PREPARED:
                    found[(resource.spec.name, tx_id)] = self._listing_entry(resource, tx_id, recorded)
        return found

    def _deploy_missing(self) -> None:
        """Deploy each resource without an address, or reuse what this stub deployed on this chain before.

        A deployment is remembered under the chain's genesis hash and the resource's name and init code, and reused
        only while the same runtime code is still at its address: a new dev chain, a renamed resource or a
        recompiled contract gets a fresh deployment.
        """
        missing = [r for r in self._resources.values() if r.address is None]
        if not missing:
            return
        path = self.data_dir / DEPLOYMENTS_FILE
        try:
            known = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict) or not isinstance(known.get(self.node.genesis_hash, {}), dict):
            known = {}
        here = known.setdefault(self.node.genesis_hash, {})
        for resource in missing:
            assert resource.spec.abi.bytecode is not None
            key = f"{resource.spec.name}/{keccak(hexstr=resource.spec.abi.bytecode).hex()[:16]}"
            entry = here.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("address"), str) \
                    and is_hex_address(entry["address"]) \
                    and keccak(self.node.code(entry["address"])).hex() == entry.get("code_hash"):
                resource.address = to_checksum_address(entry["address"])
                continue
            resource.address = self._deploy(resource)
            here[key] = {"address": resource.address, "code_hash": keccak(self.node.code(resource.address)).hex()}
            self.data_dir.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
            temporary.replace(path)

    def _deploy(self, resource: EvmResource) -> str:
        spec = resource.spec
        assert spec.abi.bytecode is not None
        receipt = self.node.wait_receipt(self.node.submit(None, bytes.fromhex(spec.abi.bytecode[2:])))
        if receipt["status"] != 1 or not receipt.get("contractAddress"):
            raise StubError("reverted", f"{self.where}: deploying resource {spec.name!r} failed")
        address = to_checksum_address(receipt["contractAddress"])
        method = "set" if spec.kind == "kv" else "mint"
        for key, value in spec.initial.items():
            function = spec.abi.lookup(resource.where, method, [key, value], WRITE)
            data, _ = spec.abi.encode(resource.where, function, [key, value])
            done = self.node.wait_receipt(self.node.submit(address, data))
            if done["status"] != 1:
                raise StubError("reverted", f"{self.where}: {spec.name}.{method}({key!r}, {value!r}) at deploy failed")
        log.info("{stub}: deployed {resource} ({kind}) at {address}", stub=self.where, resource=spec.name,
                 kind=spec.kind, address=address)
        return address

    def stop(self) -> Deferred[None]:
        """Refuse new work, wake receipt waits (they answer 'shutting_down'), let RPCs in flight end, stop the pool."""
        if self._status in ("new", "stopped", "failed"):
            self._status = "stopped"
            return defer.succeed(None)
        self._status = "stopped"
        for sleep in list(self._sleeps):
            sleep.cancel()
        in_flight = defer.DeferredList(list(self._jobs))
        return in_flight.addCallback(lambda _: self._release())

    def _release(self) -> Deferred[None]:
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # idle by now: every job has answered
        self.node.close()
        return defer.succeed(None)

    def check_running(self) -> None:
        if self._status != "running":
            code = "shutting_down" if self._status == "stopped" else "unavailable"
            raise StubError(code, f"{self.where} is not running ({self._status})")

    def in_pool(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Run blocking web3 work on the pool; node failures become StubErrors a caller can act on."""
        try:
            self.check_running()
        except StubError as exc:
            return defer.fail(exc)
        return self._run(fn, *args)

    def _run(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        if self._pool is None:
            return defer.fail(StubError("unavailable", f"{self.where} is not running"))
        job: Deferred[_T] = deferToThreadPool(self._reactor, self._pool, fn, *args)
        # stop() waits on a Deferred of its own per job, never on the job's: a callback added to the job by stop()
        # would run after the caller's and change what the caller's chain ends with (a DeferredList consuming
        # errors turned a write's "shutting_down" into a success with None).
        finished: Deferred[None] = Deferred()
        self._jobs.add(finished)

        def done(result: Any) -> Any:
            self._jobs.discard(finished)
            finished.callback(None)
            if isinstance(result, Failure):
                return self._translate(result)
            return result

        return job.addBoth(done)

    def _translate(self, failure: Failure) -> Failure:
        """Node failures as StubErrors (raised: an errback that raises passes the new failure on)."""
        error = failure.value
        if isinstance(error, requests.RequestException):
            raise StubError("unavailable", f"{self.where}: node {self.options.rpc} did not answer: {error}")
        if isinstance(error, ContractLogicError):
            raise StubError("reverted", _revert_reason(error))
        if isinstance(error, Web3Exception) and not isinstance(error, StubError):
            raise StubError("rpc_error", f"{self.where}: node {self.options.rpc}: {error}")
        return failure

    def _sleep(self, seconds: float) -> Deferred[None]:
        sleep: Deferred[None] = deferLater(self._reactor, seconds, lambda: None)
        self._sleeps.add(sleep)

        def woke(result: Any) -> Any:
            self._sleeps.discard(sleep)
            if isinstance(result, Failure) and isinstance(result.value, CancelledError):
                raise StubError("shutting_down", f"{self.where} stopped while a write waited for its receipt; "
                                                 "it may still be mined")
            return result

        return sleep.addBoth(woke)

    # -- writes --------------------------------------------------------------------------------------------------
    def transact(self, resource: EvmResource, address: str, function: AbiFunction, data: bytes,
                 user: str | None = None) -> Deferred[Result]:
        """Sign (with the router's key, or ``user``'s from the keystore) and send; on an automining node the Result
        is built in the same pool job (receipt, block and receipts fetched in one round trip after the send), else
        the receipt (and confirmations) is awaited from the reactor and the Result built after.

        Round trips per write on an automining node: three (fees/nonce/gas, send, receipt with its block); a
        user's first write in the stub's life with ``fund_new_accounts`` adds a balance read (and, for an empty
        account, the funding transaction and its receipt).
        """
        sent = self.in_pool(self._send, resource, address, function, data, user)

        def then(outcome: Result | str) -> Any:
            if isinstance(outcome, Result):
                return outcome
            waited = self._await_receipt(outcome)
            waited.addCallback(lambda receipt: self.in_pool(self._finish, resource, function, data, receipt, None))
            return waited.addErrback(sent_then_stopped, outcome)

        def sent_then_stopped(failure: Failure, tx_hash: str) -> Failure:
            # Stopped after the transaction went out (whether in a receipt poll or between two): say that it may
            # still be mined, as the sleeping wait does, not only that the stub is not running.
            error = failure.value
            if isinstance(error, StubError) and error.code == "shutting_down" \
                    and "may still be mined" not in error.message:
                raise StubError("shutting_down", f"{self.where} stopped while write {hex_str(tx_hash)} waited for "
                                                 "its receipt; it may still be mined")
            return failure

        return sent.addCallback(then)

    def _send(self, resource: EvmResource, address: str, function: AbiFunction, data: bytes,
              user: str | None = None) -> Result | str:
        if user is None:
            tx_hash = in_context(resource.where, function, self.node.submit, address, data)
        else:
            key = self._user_key(user)
            try:
                tx_hash = in_context(resource.where, function, functools.partial(self.node.submit, user_key=key),
                                     address, data)
            except StubError as exc:
                if exc.code == "rpc_error" and "insufficient funds" in exc.message.lower():
                    raise StubError("insufficient_funds", f"{resource.where}: {user}'s account {key.address} cannot "
                                                          "pay for this write's gas; fund it (on a dev chain, the stub "
                                                          "option 'fund_new_accounts' does)") from None
                raise
        if self.options.confirmations or not self.node.mines_at_once:
            return tx_hash
        found = self.node.receipt_in_latest(tx_hash)
        if found is None:
            self.node.mines_at_once = False  # poll from the reactor, this time and from now on
            return tx_hash
        receipt, fetched = found
        return self._finish(resource, function, data, receipt, fetched)

    def _user_key(self, user: str) -> UserKey:
        """``user``'s key on this chain from the keystore (created there on first use if it allows), funded first
        when ``fund_new_accounts`` says so and the account holds nothing. Blocking: on the pool."""
        from wecross.governance.keystore import KeystoreError

        try:
            key: UserKey = self._keystore.signer(user, self.chain_path)
        except KeystoreError as exc:
            raise StubError(exc.code, f"{self.where}: {exc.message}") from None
        amount = self.options.fund_new_accounts
        if amount:
            with self._fund_lock:  # two first writes of one user at once: one funding
                if key.address not in self._funded:
                    if self.node.balance(key.address) == 0:
                        receipt = self.node.wait_receipt(self.node.submit(key.address, b"", value=amount))
                        if int(receipt["status"]) != 1:
                            raise StubError("insufficient_funds", f"{self.where}: funding {user}'s new account "
                                                                  f"{key.address} from the router's key failed")
                        log.info("{stub}: funded {user}'s account {address} with {amount} wei", stub=self.where,
                                 user=user, address=key.address, amount=amount)
                    self._funded.add(key.address)
        return key

    @defer.inlineCallbacks
    def _await_receipt(self, tx_hash: str) -> Any:
        """Poll until the receipt is there (and confirmed). The first waits are short and double up to
        ``poll_interval``: an automining node includes a transaction a moment after its send returns, and a write
        that just missed it should not wait a whole interval; a real chain costs four more polls per write."""
        deadline = self._reactor.seconds() + self.options.receipt_timeout
        delay = self.options.poll_interval / 16
        first = True
        while True:
            found = yield self.in_pool(self.node.receipt_and_head, tx_hash)
            if found is not None:
                receipt, head = found
                if first:
                    self.node.mines_at_once = True
                if head - int(receipt["blockNumber"]) >= self.options.confirmations:
                    return receipt
            if self._reactor.seconds() >= deadline:
                waited = "confirmed" if found is not None else "included in a block"
                raise StubError("timeout", f"{self.where}: transaction {hex_str(tx_hash)} was not {waited} within "
                                           f"{self.options.receipt_timeout:g} s; it may still be mined")
            first = False
            yield self._sleep(delay)
            delay = min(2 * delay, self.options.poll_interval)

    def _finish(self, resource: EvmResource, function: AbiFunction, data: bytes, receipt: Any,
                fetched: tuple[Any, list[Any]] | None) -> Result:
        tx_hash = hex_str(receipt["transactionHash"])
        number = int(receipt["blockNumber"])
        if int(receipt["status"]) != 1:
            raise reverted_error(resource.where, function.name, self._mined_revert_reason(receipt, data, number),
                            f" (transaction {tx_hash} reverted in block {number})")
        output = None
        if function.outputs:
            try:
                output = resource.abi.decode_output(function, self.node.replay(receipt, data))
            except (StubError, DecodingError):
                output = None
        return Result(output=output, tx_hash=tx_hash, block_number=number,
                      receipt=self._receipt_wire(receipt, output), proof=self._proof(receipt, fetched))

    def _mined_revert_reason(self, receipt: Any, data: bytes, number: int) -> str:
        """Why a mined transaction reverted, by replaying it: on its parent block's state (exact when it is its
        block's first transaction that touches the state it reads), else on its own block's, where what an earlier
        transaction of the block did is seen (a lock another transaction took just before)."""
        try:
            self.node.replay(receipt, data)
        except StubError as exc:
            return exc.message
        try:
            self.node.call(receipt["to"], data, number, receipt.get("from"))
        except StubError as exc:
            return exc.message
        return "reverted on chain (a replay did not; state changed in between)"

    def _proof(self, receipt: Any, fetched: tuple[Any, list[Any]] | None = None) -> dict[str, Any]:
        """Merkle-Patricia proofs that the transaction and its receipt are in their block, and the block's header
        (with its RLP where the node hashes headers the Ethereum way), for the entry router to check.

        Built from every transaction and receipt of the block: the tries are the block's, recomputed here; if they
        do not give the header's roots the node is lying or the encoding is wrong, and no proof is better than a
        false one. ``fetched`` is the block and its receipts when the caller has them already; raw transactions
        this stub sent are not fetched back.
        """
        number = int(receipt["blockNumber"])
        block, receipts = fetched if fetched is not None else self.node.block_and_receipts(number)
        raw_txs = self.node.raw_transactions(list(block["transactions"]))
        header = abstract_header(block, self.node.chain_id)
        txs = mpt.IndexedTrie(raw_txs)
        rcpts = mpt.IndexedTrie([mpt.encode_receipt(r) for r in receipts])
        if txs.root.hex() != header.tx_root or rcpts.root.hex() != header.receipt_root:
            raise StubError("bad_response", f"{self.where}: block {number}'s transactions or receipts do not give "
                                            f"the header's roots; no proof can be made")
        index = int(receipt["transactionIndex"])
        if index >= len(raw_txs) or bytes(keccak(raw_txs[index])).hex() != hex_str(receipt["transactionHash"]):
            raise StubError("bad_response", f"{self.where}: block {number} does not hold transaction "
                                            f"{hex_str(receipt['transactionHash'])} at index {index} (reorg?)")
        return {"kind": "mpt", "tx": txs.prove(index), "receipt": rcpts.prove(index), "header": header.to_wire()}

    def _receipt_wire(self, receipt: Any, output: Any) -> dict[str, Any]:
        index = int(receipt["transactionIndex"])
        return {
            "status": "ok",
            "output": output,
            "tx_hash": hex_str(receipt["transactionHash"]),
            "block_number": int(receipt["blockNumber"]),
            "block_hash": hex_str(receipt["blockHash"]),
            "index": index,
            "transaction_index": index,
            "gas_used": int(receipt["gasUsed"]),
            "from": to_checksum_address(receipt["from"]),
            "to": to_checksum_address(receipt["to"]) if receipt.get("to") else None,
            "logs": [self._decode_log(entry) for entry in receipt["logs"]],
        }

    def _decode_log(self, entry: Any) -> dict[str, Any]:
        address = to_checksum_address(entry["address"])
        for resource in self._resources.values():
            if resource.address == address:
                decoded = resource.abi.decode_log(entry)
                decoded["resource"] = resource.spec.name
                return decoded
        return ContractAbi({}, {}, {}).decode_log(entry)

    # -- the transaction layer ----------------------------------------------------------------------------------
    def prepared_transactions(self) -> list[dict[str, Any]]:
        """The transactions prepared on this chain's built-in resources, oldest first, one entry per transaction and
        resource: {tx_id, resource, steps: [{method, args, sender, output}], locks: [``key:<key>`` or
        ``balance:<account>``], since}. ``since`` is the
        block time of the transaction's first prepare there (the chain's clock, unix seconds).

        The contracts are the record: the stub reads their prepared transactions at start (a restarted stub lists
        what it prepared before), then follows its own prepares, commits and rollbacks; an operation whose outcome
        it could not learn (a receipt that timed out) has the transaction's state read back from its contract.
        """
        self._ask_doubtful()
        entries = sorted(self._prepared.values(), key=lambda entry: (entry["since"], entry["tx_id"]))
        return [{**entry, "steps": [{**step, "args": list(step["args"])} for step in entry["steps"]],
                 "locks": list(entry["locks"])} for entry in entries]

    @staticmethod
    def _listing_entry(resource: EvmResource, tx_id: str, info: TxInfo) -> dict[str, Any]:
        entry: dict[str, Any] = {"tx_id": tx_id, "resource": resource.spec.name, "steps": [], "locks": [],
                                 "since": info.since}
        for step in info.steps:
            EvmStub._add_step(resource, entry, step)
        return entry

    @staticmethod
    def _add_step(resource: EvmResource, entry: dict[str, Any], step: list[Any]) -> None:
        """A step as the embedded chain lists one: {method, args, sender, output}. The contract records no sender
        for a kv step (None); an asset transfer's is its ``from``. Locks: ``key:<key>``, ``balance:<account>``."""
        kind = resource.spec.kind
        entry["steps"].append({"method": TX_STEP_METHODS[kind][0], "args": list(step),
                               "sender": step[0] if kind == "asset" else None, "output": None})
        for name in step[:1] if kind == "kv" else step[:2]:
            lock = f"{LOCK_NAMES[kind]}:{name}"
            if lock not in entry["locks"]:
                entry["locks"].append(lock)

    def note_step(self, resource: EvmResource, tx_id: str, step: list[Any], since: float) -> None:
        """A prepare of ``tx_id`` was mined (``since``: its block's time, used if it is the transaction's first)."""
        key = (resource.spec.name, tx_id)
        entry = self._prepared.get(key)
        if entry is None:
            entry = self._prepared[key] = {"tx_id": tx_id, "resource": resource.spec.name, "steps": [], "locks": [],
                                           "since": since}
        self._add_step(resource, entry, step)

    def note_ended(self, resource: EvmResource, tx_id: str, *, finished: bool = False) -> None:
        """``tx_id`` is not prepared on ``resource`` (``finished``: it is committed or rolled back, so no longer in
        doubt either)."""
        self._prepared.pop((resource.spec.name, tx_id), None)
        if finished:
            self._doubtful.pop((resource.spec.name, tx_id), None)

    def resync(self, resource: EvmResource, tx_id: str, *, doubtful: bool = False) -> Deferred[None]:
        """Read ``tx_id``'s state on ``resource`` back from its contract into the listing (called in the
        transaction's turn: see :meth:`serially`). Never fails: if the node cannot say either, the listing stays as
        it was.

        ``doubtful``: after an operation whose outcome is unknown, its transaction may still be mined (a prepare
        whose receipt timed out, a commit). The transaction then stays in doubt, read again by
        :meth:`prepared_transactions`, until it has ended or ``receipt_timeout`` has passed twice."""
        address = resource.address
        assert address is not None
        key = (resource.spec.name, tx_id)
        if doubtful:
            self._doubtful.setdefault(key, self._reactor.seconds() + 2 * self.options.receipt_timeout)

        def learnt(info: TxInfo) -> None:
            if info.state == TX_PREPARED:
                self._prepared[key] = self._listing_entry(resource, tx_id, info)
            else:
                self.note_ended(resource, tx_id)
            if info.state in (TX_COMMITTED, TX_ROLLED_BACK) or self._doubtful.get(key, 0) <= self._reactor.seconds():
                self._doubtful.pop(key, None)

        def failed(failure: Failure) -> None:
            log.warn("{resource}: could not read transaction {tx} back: {error}", resource=resource.where, tx=tx_id,
                     error=failure.getErrorMessage())

        return self._run(resource.tx_info, address, tx_id).addCallbacks(learnt, failed)

    def _ask_doubtful(self) -> None:
        """Read the transactions in doubt back (at most every DOUBT_INTERVAL seconds), each in its turn."""
        now = self._reactor.seconds()
        if not self._doubtful or now < self._doubts_asked + DOUBT_INTERVAL or self._status != "running":
            return
        self._doubts_asked = now
        for name, tx_id in list(self._doubtful):
            resource = self._resources.get(name)
            if resource is None:
                continue
            self.serially(("tx", name, tx_id), functools.partial(self.resync, resource, tx_id))

    def serially(self, key: tuple[str, ...], work: Callable[[], Deferred[_T]]) -> Deferred[_T]:
        """``work()`` once the work queued before under ``key`` has answered (see EvmResource's hooks)."""
        lock = self._serial.get(key)
        if lock is None:
            lock = self._serial[key] = DeferredLock()

        def forget(result: Any) -> Any:
            if not lock.locked and not lock.waiting and self._serial.get(key) is lock:
                del self._serial[key]
            return result

        done: Deferred[_T] = lock.run(work)
        return done.addBoth(forget)

    def recorded(self, resource: EvmResource, event: str, tx_id: str, block: int) -> Result:
        """The Result of the transaction that ended ``tx_id`` in ``block``, found again by its ``event`` log (whose
        first topic after the signature is keccak(tx_id)): what a repeated commit or rollback answers."""
        assert resource.address is not None
        topic = next(e.topic for e in resource.abi.events.values() if e.name == event)
        logs = self.node.rpc("eth_getLogs", {"address": resource.address, "fromBlock": hex(block),
                                             "toBlock": hex(block),
                                             "topics": [hex0x(topic), hex0x(keccak(tx_id.encode("utf-8")))]})
        if not isinstance(logs, list) or not logs or not isinstance(logs[0], Mapping):
            raise StubError("bad_response", f"{resource.where}: transaction {tx_id} ended in block {block}, but the "
                                            f"node has no {event} log of it there (reorg?)")
        receipt = self.node.receipt(str(logs[0].get("transactionHash")))
        if receipt is None:
            raise StubError("bad_response", f"{resource.where}: the node has no receipt of the transaction that ended "
                                            f"{tx_id} in block {block}")
        return Result(output=None, tx_hash=hex_str(receipt["transactionHash"]),
                      block_number=int(receipt["blockNumber"]), receipt=self._receipt_wire(receipt, None),
                      proof=self._proof(receipt))

    # -- IStub reads ---------------------------------------------------------------------------------------------
    def chain_state(self) -> Deferred[ChainState]:
        return self.in_pool(self._chain_state)

    def _chain_state(self) -> ChainState:
        head = self.node.block("latest")
        if head is None:
            raise StubError("bad_response", f"{self.where}: node {self.options.rpc} has no latest block")
        return ChainState(CHAIN_TYPE, int(head["number"]), hex_str(head["hash"]), self.node.genesis_hash)

    def header(self, number: int) -> Deferred[BlockHeader]:
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            return defer.fail(StubError("no_such_block", f"{self.where} has no block {number!r}"))
        return self.in_pool(self._header, number)

    def _header(self, number: int) -> BlockHeader:
        block = self.node.block(number)
        if block is None:
            raise StubError("no_such_block", f"{self.where} has no block {number}; height is {self.node.head()}")
        return abstract_header(block, self.node.chain_id)

    def headers(self, start: int, count: int) -> Deferred[list[BlockHeader]]:
        """Headers ``start`` .. ``start + count - 1`` in one JSON-RPC batch (beyond IStub: :meth:`header` costs one
        request each); the run stops at the node's head, so fewer may come back, never none for a block it has."""
        if any(isinstance(n, bool) or not isinstance(n, int) for n in (start, count)) or start < 0 or count < 1:
            return defer.fail(StubError("bad_args", f"headers needs a block number >= 0 and a count >= 1, not "
                                                    f"{start!r}, {count!r}"))
        return self.in_pool(self._headers, start, min(count, LOG_CHUNK))

    def _headers(self, start: int, count: int) -> list[BlockHeader]:
        answers = self.node.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(start, start + count)])
        found: list[BlockHeader] = []
        for answer in answers:
            raw = self.node.ok(answer)
            if raw is None:
                break
            try:
                found.append(abstract_header(block_from_json(raw), self.node.chain_id))
            except (ValueError, TypeError) as exc:
                raise self.node.bad("block", exc) from None
        if not found:
            raise StubError("no_such_block", f"{self.where} has no block {start}; height is {self.node.head()}")
        return found

    def resources(self) -> list[IResource]:
        return [cast(IResource, resource) for resource in self._resources.values()]

    def resource(self, name: str) -> IResource | None:
        return cast(IResource | None, self._resources.get(name))

    # -- beyond IStub --------------------------------------------------------------------------------------------
    def events(self, resource: str, from_block: int, *, proofs: bool = True) -> Deferred[list[dict[str, Any]]]:
        """Decoded logs of ``resource``'s contract from ``from_block`` to the head (a long poll serves them).

        Each is {name, args, address, resource, block_number, block_hash, tx_hash, transaction_index, log_index,
        proof}; name is None, with raw ``topics`` and ``data``, for a log the ABI does not describe, and an event of
        a generic ``contract`` resource carries its raw ``topics`` and ``data`` always (an entry router has no ABI
        to check its decoding with). ``proof`` (unless ``proofs`` is false) is {"kind": "mpt", "header": the
        block's header (wire form, with its RLP), "receipt": the Merkle-Patricia proof of the transaction's receipt
        under the receipts root, "tx": that of the raw transaction under the transactions root, "log_position": the
        log's index in the receipt's logs}: see :func:`wecross.evm.checks.check_event`. An event whose block
        the stub cannot prove (a node whose tries do not give its header's roots, a block reorganised meanwhile)
        comes without a proof.

        Round trips: the head, the logs (one per :data:`LOG_BATCH` chunks of :data:`LOG_CHUNK` blocks), and per
        :data:`PROOF_BATCH` blocks that have events, their blocks with their receipts and, for transactions other
        routers sent, the raw transactions.
        """
        found = self._resources.get(resource)
        if found is None:
            return defer.fail(StubError("unknown_resource", f"{self.where} has no resource {resource!r}; resources: "
                                                            f"{', '.join(self._resources)}"))
        if isinstance(from_block, bool) or not isinstance(from_block, int) or from_block < 0:
            return defer.fail(StubError("bad_args", f"from_block must be a non-negative integer, not {from_block!r}"))
        return self.in_pool(self._events, found, from_block, proofs)

    def _events(self, resource: EvmResource, from_block: int, proofs: bool = True) -> list[dict[str, Any]]:
        assert resource.address is not None
        head = self.node.head()
        if from_block > head:
            return []
        entries = self.node.logs(resource.address, from_block, head)
        found: list[dict[str, Any]] = []
        for entry in entries:
            decoded = resource.abi.decode_log(entry)
            decoded["resource"] = resource.spec.name
            if resource.spec.kind == "contract" and "topics" not in decoded:
                decoded["topics"] = [hex0x(topic) for topic in entry.get("topics", [])]
                decoded["data"] = hex0x(entry.get("data", b""))
            found.append(decoded)
        if proofs and entries:
            self._prove_events(entries, found)
        return found

    def _prove_events(self, entries: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        """Add its ``proof`` to each event (``events[i]`` decoded from ``entries[i]``) whose block can be proven."""
        blocks = self.node.proof_blocks(sorted({int(entry["blockNumber"]) for entry in entries}))
        tries: dict[int, tuple[BlockHeader, mpt.IndexedTrie, mpt.IndexedTrie, list[dict[str, Any]]] | None] = {}
        for number, (block, receipts, raw_txs) in blocks.items():
            header = abstract_header(block, self.node.chain_id)
            try:
                txs = mpt.IndexedTrie(raw_txs)
                rcpts = mpt.IndexedTrie([mpt.encode_receipt(receipt) for receipt in receipts])
            except mpt.ProofError:
                tries[number] = None
                continue
            same = txs.root.hex() == header.tx_root and rcpts.root.hex() == header.receipt_root
            tries[number] = (header, txs, rcpts, receipts) if same else None
        for entry, event in zip(entries, events, strict=True):
            built = tries.get(int(entry["blockNumber"]))
            if built is None:
                continue
            header, txs, rcpts, receipts = built
            index = int(entry["transactionIndex"])
            if header.hash != hex_str(entry["blockHash"]) or index >= len(receipts) \
                    or hex_str(receipts[index]["transactionHash"]) != hex_str(entry["transactionHash"]):
                continue  # the block changed since the logs were read (a reorg): no proof rather than a wrong one
            positions = [position for position, log_entry in enumerate(receipts[index]["logs"])
                         if log_entry.get("logIndex") == entry.get("logIndex")]
            if len(positions) != 1:
                continue
            event["proof"] = {"kind": "mpt", "header": header.to_wire(), "receipt": rcpts.prove(index),
                              "tx": txs.prove(index), "log_position": positions[0]}

    def receipt(self, tx_hash: str) -> Deferred[Result | None]:
        """The Result of an included transaction (logs decoded, output None), or None: answers a retried write."""
        if not isinstance(tx_hash, str) or not re.match(r"^(0x)?[0-9a-fA-F]{64}$", tx_hash):
            return defer.fail(StubError("bad_args", f"not a transaction hash: {tx_hash!r}"))
        return self.in_pool(self._stored_receipt, "0x" + hex_str(tx_hash))

    def _stored_receipt(self, tx_hash: str) -> Result | None:
        receipt = self.node.receipt(tx_hash)
        if receipt is None:
            return None
        wire = self._receipt_wire(receipt, None)
        if int(receipt["status"]) != 1:
            wire["status"] = "reverted"
        return Result(output=None, tx_hash=wire["tx_hash"], block_number=wire["block_number"], receipt=wire)

    def __repr__(self) -> str:
        return f"<EvmStub {self.zone}.{self.name} {self.options.rpc}>"
