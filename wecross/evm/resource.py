"""One contract on an EVM chain as an IResource: calls, writes and the transaction-layer hooks, with proofs.

A resource turns a router operation into a contract call (checked against the ABI, then run on the stub's pool)
and its answer into a Result. Reads of the built-in contracts are proven with ``eth_getProof``
(:func:`wecross.evm.checks.check_read`); writes carry the proofs the stub builds per block.

Who may write. Built-in ``asset`` resources enforce the embedded chain's rules on behalf of the router's users:
a transfer only from the caller's own account, a mint only by the configured ``issuer``. A generic ``contract``
resource has no such checks: any user who can reach it writes with the router's key, unless the stub's option
``per_user_accounts`` is on, when each user writes with its own key from the router's keystore and the contract
enforces its own rules on ``msg.sender`` (see :meth:`EvmStub.signing_user`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from eth_abi.exceptions import DecodingError
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from wecross.evm import checks as evm_checks
from wecross.evm.abi import BUILTIN_CONTRACTS, READ, WRITE, AbiFunction, hex_str, to_wire
from wecross.evm.builtin import (
    EXTRA_READS,
    HTLC_STATES,
    PUBLIC_METHODS,
    TX_COMMITTED,
    TX_NONE,
    TX_PREPARED,
    TX_ROLLED_BACK,
    contract_call,
    embedded_style,
    in_context,
    step_name,
)
from wecross.evm.headers import abstract_header
from wecross.evm.resource_config import ResourceSpec
from wecross.evm.rpc import rpc_quantity
from wecross.stub.interfaces import (
    OP_HTLC_LOCK,
    OP_HTLC_TIMEOUT,
    OP_HTLC_UNLOCK,
    OP_TX_COMMIT,
    OP_TX_PREPARE,
    OP_TX_ROLLBACK,
    IResource,
    ResourceInfo,
    Result,
    StubError,
)

if TYPE_CHECKING:  # the stub holds its resources and each resource its stub
    from wecross.evm.stub import EvmStub



#: Failures after which the outcome of a transaction-layer write is unknown: the stub reads the transaction's state
#: back from the contract so that its listing of prepared transactions stays the chain's.
UNCERTAIN = frozenset({"timeout", "unavailable", "shutting_down", "bad_response", "rpc_error"})


@implementer(IResource)
class EvmResource:
    """One contract on the chain; its methods are the contract's ABI functions (for the built-in kinds, those of
    :data:`PUBLIC_METHODS`: the rest are the transaction layer's, reached through the IResource hooks)."""

    def __init__(self, stub: EvmStub, spec: ResourceSpec) -> None:
        self._stub = stub
        self.spec = spec
        self.abi = spec.abi
        #: Set at start for resources the stub deploys.
        self.address: str | None = spec.address
        public = PUBLIC_METHODS.get(spec.kind)
        methods = {name: mode for name, mode in spec.abi.methods.items()
                   if public is None or step_name(name) in public}
        self.info = ResourceInfo(name=spec.name, kind=spec.kind, methods=methods, description=spec.description)
        self.where = f"{stub.zone}.{stub.name}.{spec.name}"
        #: Whether the contract has the transaction layer's functions (known at start): a built-in resource given by
        #: the address of a contract deployed before them has not.
        self.tx_capable = False

    def _public(self, method: Any, mode: str) -> None:
        """Refuse the transaction layer's functions through call and sendTransaction, as if they were not there:
        they would skip the checks the hooks make (who may transfer what, which transaction is whose)."""
        public = PUBLIC_METHODS.get(self.spec.kind)
        if public is None:
            return
        allowed = public | EXTRA_READS[self.spec.kind] if mode == READ else public
        if step_name(method) not in allowed:
            listing = ", ".join(f"{f.pretty()} ({f.mode})" for name in sorted(allowed)
                                for f in self.abi.functions.get(name, []))
            raise StubError("unknown_method", f"{self.where} has no method {method!r}; methods: {listing}")

    def _ready(self, sender: Any) -> str:
        self._stub.check_running()
        if not isinstance(sender, str):
            raise StubError("bad_args", "the sender must be a string")
        if self.address is None:
            raise StubError("unavailable", f"{self.where} has no contract address yet")
        return self.address

    def call(self, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """A read; for the built-in contracts' storage reads (kv ``get``, asset ``balanceOf``, ``totalSupply`` and
        ``htlcStatus``: see :data:`wecross.evm.checks.LAYOUT`) with a state proof, read at one fixed block."""
        try:
            address = self._ready(sender)
            self._public(method, READ)
            function = self.abi.lookup(self.where, method, args, READ)
            data, values = self.abi.encode(self.where, function, list(args))
        except StubError as exc:
            return defer.fail(exc)
        if self.spec.kind == "asset" and function.name == "htlcStatus" and not self.tx_capable:
            return defer.fail(StubError("unsupported", f"{self.where}: the contract at {address} predates the "
                                                       "transaction layer (it holds no HTLCs)"))
        plan = evm_checks.read_plan(self.spec.kind, function.name, values) if self.spec.kind != "contract" else None
        if plan is not None:
            return self._stub.in_pool(in_context, self.where, function, self._proven_call, address, function, data,
                                      plan)
        return self._stub.in_pool(self._call, address, function, data)

    def _call(self, address: str, function: AbiFunction, data: bytes) -> Result:
        return Result(output=self._decoded(address, function,
                                           in_context(self.where, function, self._stub.node.call, address, data)))

    def _decoded(self, address: str, function: AbiFunction, output: bytes) -> Any:
        try:
            return self.abi.decode_output(function, output)
        except DecodingError as exc:
            raise StubError("bad_response", f"{self.where}.{function.name} returned what its ABI does not describe "
                                            f"({exc}); is {address} the right contract?") from None

    def _proven_call(self, address: str, function: AbiFunction, data: bytes, plan: evm_checks.ReadPlan) -> Result:
        """The read at the head block, with the eth_getProof of the slots that hold its value and the block's
        header: what :func:`wecross.evm.checks.check_read` verifies.

        Two round trips (the head block; the proof and the eth_call together at that block), three when the value
        has strings of 32 bytes or more (their data slots, known once their length slots are read). The value
        rebuilt from the slots must be what the contract returns, else the contract does not have the built-in
        layout and the read fails rather than carry a proof of something else.
        """
        node = self._stub.node
        block = node.block("latest")
        if block is None:
            raise StubError("bad_response", f"{self.where}: node {node.options.rpc} has no latest block")
        number = int(block["number"])
        first = evm_checks.first_slots(plan)
        account, raw_output = node.state_proof(address, first, number, data)
        assert raw_output is not None
        output = self._htlc_output(address, function, raw_output) if plan.value_type == "htlc" else \
            self._decoded(address, function, raw_output)
        try:
            storage = self._proven_storage(account)
            more = evm_checks.more_slots(plan, storage)
        except evm_checks.TooLong:
            return Result(output=output, block_number=number)  # too long to prove: the verifier says no_proof
        except (KeyError, TypeError, ValueError) as exc:
            raise node.bad("eth_getProof result", exc) from None
        if more:
            account, _ = node.state_proof(address, [*first, *more], number)
            try:
                storage = self._proven_storage(account)
            except (KeyError, TypeError, ValueError) as exc:
                raise node.bad("eth_getProof result", exc) from None
        try:
            value = evm_checks.decode_value(plan, storage)
        except (KeyError, ValueError) as exc:
            raise node.bad("eth_getProof result", exc) from None
        if not evm_checks.output_is(value, output):
            raise StubError("bad_response", f"{self.where}.{function.name}: the contract at {address} returned "
                                            f"another value than its storage holds at the {self.spec.kind} contract's "
                                            f"slots; is it the built-in contract?")
        proof = {"kind": "state", "header": abstract_header(block, node.chain_id).to_wire(), "account": account}
        return Result(output=output, block_number=number, proof=proof)

    @staticmethod
    def _proven_storage(account: Any) -> dict[int, int]:
        """The slot -> value map of an eth_getProof result (as the node sent it: the proof is checked elsewhere)."""
        return {rpc_quantity(entry["key"]): rpc_quantity(entry["value"]) for entry in account["storageProof"]}

    def send_transaction(self, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        args = embedded_style(self.spec.kind, method, list(args), sender)
        try:
            address = self._ready(sender)
            self._public(method, WRITE)
            function = self.abi.lookup(self.where, method, args, WRITE)
            data, values = self.abi.encode(self.where, function, list(args))
            self._authorise(function, values, sender)
            user = self._stub.signing_user(self, sender)
        except StubError as exc:
            return defer.fail(exc)
        return self._stub.transact(self, address, function, data, user)

    def _authorise(self, function: AbiFunction, values: list[Any], sender: str) -> None:
        """The asset rules the contract cannot know (its only signer is the router): see the module docstring."""
        if self.spec.kind != "asset":
            return
        if function.name == "transfer" and values[0] != sender:
            raise StubError("forbidden", f"{self.where}: {sender} may transfer only from its own account, "
                                         f"not from {values[0]!r}")
        if function.name == "mint":
            if self.spec.issuer is None:
                raise StubError("forbidden", f"{self.where}: this asset has no issuer, nobody may mint")
            if sender != self.spec.issuer:
                raise StubError("forbidden", f"{self.where}: only the issuer may mint, not {sender}")

    def get_data(self, key: str, sender: str) -> Deferred[Result]:
        if self.spec.kind == "kv":
            return self.call("get", [key], sender)
        if self.spec.kind == "asset":
            return self.call("balanceOf", [key], sender)
        return defer.fail(StubError("unsupported", f"resource {self.where} (contract) does not support getData; "
                                                   "use call"))

    def set_data(self, key: str, value: Any, sender: str) -> Deferred[Result]:
        if self.spec.kind != "kv":
            return defer.fail(StubError("unsupported", f"resource {self.where} ({self.spec.kind}) does not support "
                                                       "setData; use sendTransaction"))
        return self.send_transaction("set", [key, value], sender)

    def __repr__(self) -> str:
        return f"<EvmResource {self.where} ({self.spec.kind}) at {self.address}>"

    # -- the transaction layer (2PC and HTLC) --------------------------------------------------------------------
    # Every hook is one mined transaction of the built-in contract (see :func:`contract_call` for which), answered
    # with the Result, receipt and proof of a sendTransaction; the contract holds the locks, the tentative steps and
    # the HTLCs, so the chain is the durable record. Operations on one transaction (or HTLC) of one resource run one
    # after the other: a commit retried while the first is being mined reads the state the first left.
    def _tx_ready(self, op: str, method: str, args: list[Any], sender: Any) -> tuple[str, AbiFunction, bytes,
                                                                                     list[Any]]:
        """The address, function, calldata and checked arguments of a transaction-layer operation; StubError."""
        address = self._ready(sender)
        name, call_args = contract_call(self.spec.kind, op, method, args, sender)
        if not self.tx_capable:
            raise StubError("unsupported", f"{self.where}: the contract at {address} predates the transaction layer "
                                           f"(it has no {name} function); deploy the current "
                                           f"{BUILTIN_CONTRACTS[self.spec.kind]}")
        function = self.abi.lookup(self.where, name, call_args, WRITE)
        data, values = self.abi.encode(self.where, function, call_args)
        return address, function, data, values

    def _guarded(self, tx_id: str, work: Deferred[Result]) -> Deferred[Result]:
        """``work``, and after a failure that leaves its outcome unknown, the transaction's state read back into the
        stub's listing before the failure is passed on."""
        def failed(failure: Failure) -> Any:
            error = failure.value
            if not isinstance(error, StubError) or error.code not in UNCERTAIN:
                return failure
            return self._stub.resync(self, tx_id, doubtful=True).addCallback(lambda _: failure)

        return work.addErrback(failed)

    def prepare(self, tx_id: str, method: str, args: list[Any], sender: str) -> Deferred[Result]:
        """One step of transaction ``tx_id`` (kv ``set``, asset ``transfer``), checked against the state as the
        transaction has changed it so far and recorded, with its locks, by the contract: durable once mined, which
        is before this answers. A key (account) another transaction holds: StubError('locked'), nothing changed."""
        try:
            address, function, data, values = self._tx_ready(OP_TX_PREPARE, method, [tx_id, list(args)], sender)
            if self.spec.kind == "asset" and values[1] != sender:
                raise StubError("forbidden", f"{self.where}: {sender} may transfer only from its own account, "
                                             f"not from {values[1]!r}")
        except StubError as exc:
            return defer.fail(exc)
        step = [to_wire(value) for value in values[1:]]

        def prepared(result: Result) -> Result:
            self._stub.note_step(self, tx_id, step, _block_time(result))
            return result

        def run() -> Deferred[Result]:
            return self._guarded(tx_id, self._stub.transact(self, address, function, data).addCallback(prepared))

        return self._stub.serially(("tx", self.spec.name, tx_id), run)

    def commit(self, tx_id: str) -> Deferred[Result]:
        """Apply every step of ``tx_id`` in one mined transaction and release its locks. Again on a committed
        transaction: that same transaction's Result (found by its TxCommitted log). StubError('unknown_tx') for a
        transaction never prepared here, StubError('rolled_back') for one rolled back."""
        return self._end(tx_id, OP_TX_COMMIT)

    def rollback(self, tx_id: str) -> Deferred[Result]:
        """Drop ``tx_id``'s steps and release its locks in one mined transaction. Again on a rolled-back
        transaction: that transaction's Result; on one never prepared here, a Result without a transaction
        (``known`` false). StubError('already_committed') for a committed one."""
        return self._end(tx_id, OP_TX_ROLLBACK)

    def _end(self, tx_id: str, op: str) -> Deferred[Result]:
        try:
            address, function, data, _ = self._tx_ready(op, "", [tx_id], "")
        except StubError as exc:
            return defer.fail(exc)
        committing = op == OP_TX_COMMIT
        event = "TxCommitted" if committing else "TxRolledBack"

        def output(steps: int) -> dict[str, Any]:
            # The steps' outputs, as the embedded chain's commit gives them: set and transfer return nothing.
            return {"committed": tx_id, "outputs": [None] * steps} if committing else \
                {"rolled_back": tx_id, "known": True}

        def ended(result: Result, steps: int) -> Result:
            self._stub.note_ended(self, tx_id, finished=True)
            return _with_output(result, output(steps))

        def decide(info: TxInfo) -> Any:
            if info.state == TX_PREPARED:
                return self._stub.transact(self, address, function, data).addCallback(ended, len(info.steps))
            if info.state == (TX_COMMITTED if committing else TX_ROLLED_BACK):
                self._stub.note_ended(self, tx_id, finished=True)
                found = self._stub.in_pool(self._stub.recorded, self, event, tx_id, info.done_block)
                return found.addCallback(lambda result: _with_output(result, output(self._applied(result))))
            self._stub.note_ended(self, tx_id, finished=info.state != TX_NONE)
            if committing:
                # The participant contract (wecross.stub.interfaces): a commit after a rollback is "rolled_back",
                # one never prepared here "unknown_tx", as on the embedded chain.
                if info.state == TX_ROLLED_BACK:
                    raise StubError("rolled_back", f"{self.where}: transaction {tx_id} was rolled back; there is "
                                                   "nothing to commit")
                raise StubError("unknown_tx", f"{self.where}: transaction {tx_id} was never prepared here; there is "
                                              "nothing to commit")
            if info.state == TX_COMMITTED:
                raise StubError("already_committed", f"{self.where}: transaction {tx_id} is committed; it cannot be "
                                                     "rolled back")
            return Result(output={"rolled_back": tx_id, "known": False})

        def run() -> Deferred[Result]:
            return self._guarded(tx_id, self._stub.in_pool(self.tx_info, address, tx_id).addCallback(decide))

        return self._stub.serially(("tx", self.spec.name, tx_id), run)

    def _applied(self, result: Result) -> int:
        """How many steps a commit's Result applied: one Set (kv) or Transfer (asset) log each."""
        name = "Set" if self.spec.kind == "kv" else "Transfer"
        logs = result.receipt.get("logs", []) if result.receipt is not None else []
        return sum(1 for entry in logs if isinstance(entry, Mapping) and entry.get("name") == name)

    def tx_info(self, address: str, tx_id: str, block: int | str = "latest") -> TxInfo:
        """What the contract records of ``tx_id`` (blocking: runs on the pool)."""
        function = self.abi.functions["txInfo"][0]
        data, _ = self.abi.encode(self.where, function, [tx_id])
        raw = in_context(self.where, function, self._stub.node.call, address, data, block)
        return TxInfo.decoded(self._decoded(address, function, raw))

    def lock(self, htlc_id: str, hash_lock: str, timelock: float, args: list[Any], sender: str) -> Deferred[Result]:
        """Move ``amount`` from the sender's account into escrow under HTLC ``htlc_id`` (args [receiver, amount]);
        the time lock is the chain's block time, in whole seconds (a fraction rounds up)."""
        try:
            address, function, data, values = self._tx_ready(
                OP_HTLC_LOCK, "", [htlc_id, hash_lock, timelock, list(args)], sender)
        except StubError as exc:
            return defer.fail(exc)
        _, owner, receiver, amount, lock_hash, lock_time = values
        record = {"state": "locked", "sender": owner, "receiver": receiver, "amount": to_wire(amount),
                  "hash_lock": bytes(lock_hash).hex(), "timelock": lock_time}
        return self._htlc(htlc_id, address, function, data, record)

    def unlock(self, htlc_id: str, secret: str, sender: str) -> Deferred[Result]:
        """Pay HTLC ``htlc_id``'s amount to its receiver: anyone who shows the secret may, before the time lock."""
        try:
            address, function, data, _ = self._tx_ready(OP_HTLC_UNLOCK, "", [htlc_id, secret], sender)
        except StubError as exc:
            return defer.fail(exc)
        return self._htlc(htlc_id, address, function, data, None)

    def timeout(self, htlc_id: str, sender: str) -> Deferred[Result]:
        """Return HTLC ``htlc_id``'s amount to its sender, from the time lock on (anyone may ask)."""
        try:
            address, function, data, _ = self._tx_ready(OP_HTLC_TIMEOUT, "", [htlc_id], sender)
        except StubError as exc:
            return defer.fail(exc)
        return self._htlc(htlc_id, address, function, data, None)

    def _htlc(self, htlc_id: str, address: str, function: AbiFunction, data: bytes,
              record: dict[str, Any] | None) -> Deferred[Result]:
        """The HTLC write; its output is the HTLC's record after it (as htlcStatus gives it): known beforehand for
        a lock, read at the write's block after an unlock or refund (final states: no later write changes them)."""
        status = self.abi.functions["htlcStatus"][0]
        query, _ = self.abi.encode(self.where, status, [htlc_id])

        def written(result: Result) -> Any:
            if record is not None:
                return _with_output(result, record)
            read = self._stub.in_pool(self._htlc_record, address, status, query, result.block_number or "latest")
            return read.addCallback(lambda found: _with_output(result, found))

        def run() -> Deferred[Result]:
            return self._stub.transact(self, address, function, data).addCallback(written)

        return self._stub.serially(("htlc", self.spec.name, htlc_id), run)

    def _htlc_record(self, address: str, function: AbiFunction, data: bytes,
                     block: int | str = "latest") -> dict[str, Any] | None:
        """``htlcStatus(id)`` at ``block``, unproven (the output of an HTLC write: the record after it)."""
        return self._htlc_output(address, function,
                                 in_context(self.where, function, self._stub.node.call, address, data, block))

    def _htlc_output(self, address: str, function: AbiFunction, raw: bytes) -> dict[str, Any] | None:
        """``htlcStatus(id)``'s return data as the transaction layer reads it: {state, sender, receiver, amount,
        hash_lock, timelock, secret (once unlocked)}, or None for an id never locked here."""
        try:
            state, timelock, hash_lock, amount, sender, receiver, secret = self._decoded(address, function, raw)
        except (TypeError, ValueError):
            raise StubError("bad_response", f"{self.where}.htlcStatus returned what its ABI does not describe") \
                from None
        if state not in HTLC_STATES:
            return None
        status = {"state": HTLC_STATES[state], "sender": sender, "receiver": receiver, "amount": amount,
                  "hash_lock": hex_str(hash_lock), "timelock": timelock}
        if HTLC_STATES[state] == "unlocked":
            status["secret"] = hex_str(secret)
        return status


@dataclass(frozen=True, slots=True)
class TxInfo:
    """A transaction as a built-in contract records it (``txInfo``): state (TX_*), the block time of its first
    prepare, the block of its commit or rollback, and its steps' arguments while prepared."""

    state: int
    since: float
    done_block: int
    steps: list[list[Any]]

    @classmethod
    def decoded(cls, output: Any) -> TxInfo:
        try:
            state, since, done_block, steps = output
            return cls(int(state), float(since), int(done_block), [list(step) for step in steps])
        except (TypeError, ValueError):
            raise StubError("bad_response", "txInfo returned what its ABI does not describe") from None


def _with_output(result: Result, output: Any) -> Result:
    """A transaction-layer Result with its output (the contract functions return nothing) in it and its receipt."""
    receipt = None if result.receipt is None else {**result.receipt, "output": output}
    return replace(result, output=output, receipt=receipt)


def _block_time(result: Result) -> float:
    """The time of the block a Result's transaction is in (its proof's header), else now."""
    header = result.proof.get("header") if result.proof is not None else None
    stamp = header.get("timestamp") if isinstance(header, Mapping) else None
    return float(stamp) if isinstance(stamp, (int, float)) else time.time()
