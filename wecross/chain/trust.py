"""End-to-end verification at the entry router: a result that crossed other routers is checked before the client
sees it.

For a write on a chain type we can verify (the embedded chain today), the entry router makes sure it trusts the
header of the block the owner says holds the transaction (fetching and linking headers back to the pinned genesis,
from ``quorum`` routers serving the chain when the policy asks for more than one), then checks the proofs against
that header: the transaction and the receipt are in the block, the receipt is the one returned, the output is the
receipt's, and the transaction is the one this client asked for (so an old receipt replayed by a relay fails). A
result that fails any check becomes a ``proof_invalid`` error naming the check; a result that passes carries a
``verified`` field saying what was checked. Nothing here trusts the routers between the owner and us.

Reads are proven too where the chain can prove them: an embedded read names its block and carries a state proof of
every key it touched (the entry router replays the read over the proven values), an EVM getData carries
eth_getProof account and storage proofs (getData, and the calls of built-in resources whose storage layout is
known). A proof shows "this was the value at block N", so a genuine but old answer would pass: a read naming a
block more than ``max_read_lag`` blocks behind the newest header we trust for its chain is refused as
``stale_read``. Other EVM calls carry no proof (which storage slots a contract reads is known only to its code), and
say so in ``verified``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wecross.chain.headers import HeaderChain, HeaderError, Rehash
from wecross.chain.store import HeaderStore
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.stub.interfaces import OP_GET_DATA, OP_TX_COMMIT, WRITE_OPERATIONS

#: Asks ``source`` for headers ``start`` .. ``start + count - 1`` of a chain: (chain, source, start, count).
Fetch = Callable[[str, str, int, int], Deferred[Sequence[Mapping[str, Any]]]]


def rehash_for(chain_type: str) -> Rehash | None:
    """How to recompute a header's hash from its abstract form, per chain type (None: linkage and quorum only)."""
    if chain_type == "embedded":
        from wecross.embedded.block import Header

        return lambda wire: Header.from_wire(wire).hash.hex()
    if chain_type == "evm":
        from wecross.chain.evm_checks import header_hash

        return header_hash
    return None


class TrustedResults:
    def __init__(
        self,
        store: HeaderStore,
        fetch: Fetch,
        chain_type_of: Callable[[str, str], str | None],
        replicas_of: Callable[[str], Sequence[str]],
        *,
        batch: int = 256,
        resource_kind: Callable[[str], str | None] = lambda ipath: None,
        max_read_lag: int = 16,
    ) -> None:
        self.store = store
        self.fetch = fetch
        self.chain_type_of = chain_type_of
        self.replicas_of = replicas_of
        self.batch = batch
        self.max_read_lag = max_read_lag
        #: iPath -> the resource's kind as its owner announces it (picks the built-in ABI for EVM checks).
        self.resource_kind = resource_kind
        #: chain -> those waiting for the header fetch under way (one fetch per chain at a time).
        self._fetching: dict[str, list[Deferred[None]]] = {}
        self.counters: dict[str, int] = {"verified": 0, "refused": 0, "unverifiable": 0, "headers_fetched": 0}

    # -- results ------------------------------------------------------------------------------------------------------

    def verify(self, result: dict[str, Any], invocation: Invocation) -> Deferred[dict[str, Any]] | dict[str, Any]:
        owner = result.get("router")
        chain = invocation.path.chain_path
        chain_type = self.chain_type_of(chain, owner) if isinstance(owner, str) else None
        if invocation.op not in WRITE_OPERATIONS and not (
                chain_type == "embedded" or (chain_type == "evm" and self._evm_read_provable(invocation))):
            reason = ("this EVM call carries no state proof: which storage slots a contract's method reads is known "
                      "only to its code (built-in resources' reads are proven)" if chain_type == "evm"
                      else "reads carry no proof on this chain type")
            result["verified"] = {"proof": False, "reason": reason}
            self.counters["unverifiable"] += 1
            return result
        if chain_type not in ("embedded", "evm"):
            return self._unverifiable(result, chain_type)
        assert chain_type is not None
        number = self._block_of(result, owner, chain, chain_type)
        assert isinstance(owner, str)
        hashed = self.trusted_hash(chain, chain_type, number, owner)
        return hashed.addCallback(self._check, result, invocation, chain, owner)

    def _unverifiable(self, result: dict[str, Any], chain_type: str | None) -> dict[str, Any]:
        result["verified"] = {"proof": False, "reason": f"no verifier for chain type {chain_type!r} yet"}
        self.counters["unverifiable"] += 1
        return result

    def _block_of(self, result: dict[str, Any], owner: object, chain: str, chain_type: str) -> int:
        """The block a proven result names (refused as malformed without one, or without an owner); its header is
        taken from the proof when it is the next block of the trusted chain."""
        number = result.get("block_number")
        if type(number) is not int or number < 0 or not isinstance(owner, str):
            self._refuse("malformed", "the result names no block or no owner", owner)
        assert isinstance(owner, str) and isinstance(number, int)
        self._extend_from_proof(chain, chain_type, number, owner, result)
        return number

    def verify_commit(self, result: dict[str, Any], path: IPath, args: list[Any],
                      sender: str) -> Deferred[dict[str, Any]] | dict[str, Any]:
        """A 2PC commit's answer from another router, checked before the coordinator believes it: the commit is a
        chain transaction of that transaction id, in a block linked to the trusted header chain. (A forged
        acknowledgement would make the coordinator call a transaction committed that a participant later rolls
        back.)"""
        owner = result.get("router")
        chain = path.chain_path
        chain_type = self.chain_type_of(chain, owner) if isinstance(owner, str) else None
        if chain_type not in ("embedded", "evm"):
            return self._unverifiable(result, chain_type)
        assert chain_type is not None
        number = self._block_of(result, owner, chain, chain_type)
        assert isinstance(owner, str)

        def check(expected: str) -> dict[str, Any]:
            if chain_type == "evm":
                from wecross.chain.evm_checks import EvmCheckError, check_write
                from wecross.evm.stub import contract_call

                kind = self.resource_kind(str(path)) or ""
                try:
                    name, call_args = contract_call(kind, OP_TX_COMMIT, "", list(args), sender)
                    checks = check_write(result, expected, resource_kind=kind, method=name, args=call_args,
                                         sender=sender)
                except EvmCheckError as exc:
                    self._refuse(exc.check, exc.message, owner)
                except RouterError as exc:  # StubError: not a resource that commits
                    self._refuse("tx_mismatch", exc.message, owner)
            else:
                from wecross.embedded.verify import check_commit_proof

                failed = check_commit_proof(result, tx_id=str(args[0]), resource=path.resource,
                                            expected_header_hash=expected)
                if failed is not None:
                    self._refuse(failed[0], failed[1], owner)
                checks = ["header_linked", "tx_inclusion", "receipt_inclusion", "commit_of_this_tx"]
            result["verified"] = {"proof": True, "checks": checks, "block": number, "header_hash": expected}
            self.counters["verified"] += 1
            return result

        return self.trusted_hash(chain, chain_type, number, owner).addCallback(check)

    def verify_events(self, answer: dict[str, Any], path: IPath) -> Deferred[dict[str, Any]] | dict[str, Any]:
        """An events poll answered by another router: every event is checked against the trusted header of its
        block (its receipt is in the block, the event is in the receipt, of this resource) before the client sees
        any; one that fails refuses the whole answer, naming the check."""
        owner = answer.get("router")
        chain = path.chain_path
        chain_type = self.chain_type_of(chain, owner) if isinstance(owner, str) else None
        output = answer.get("output")
        events = output.get("events") if isinstance(output, dict) else None
        if not events:
            return answer
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            self._refuse("malformed", "the events answer is not a list of events", owner)
        checker = self._event_checker(chain_type, path)
        if checker is None or not all("proof" in e for e in events):
            for event in events:
                event["verified"] = {"proof": False, "reason": f"no event proofs for chain type {chain_type!r} yet"}
            self.counters["unverifiable"] += len(events)
            return answer
        assert isinstance(owner, str) and chain_type is not None
        numbers = sorted({e.get("block_number") for e in events}, key=lambda n: n if type(n) is int else -1)
        if any(type(n) is not int or n < 0 for n in numbers):
            self._refuse("malformed", "an event names no block", owner)
        hashes: dict[int, str] = {}

        def next_block(_: object, remaining: list[int]) -> Deferred[Any] | None:
            if not remaining:
                return None
            number = remaining[0]
            d = self.trusted_hash(chain, chain_type, number, owner)
            d.addCallback(lambda h: hashes.__setitem__(number, h))
            return d.addCallback(next_block, remaining[1:])

        def check_all(_: object) -> dict[str, Any]:
            for event in events:
                number = event["block_number"]
                checks = checker(event, hashes[number], owner)
                event["verified"] = {"proof": True, "checks": checks, "block": number,
                                     "header_hash": hashes[number]}
            self.counters["verified"] += len(events)
            return answer

        d: Deferred[Any] = defer.succeed(None)
        d.addCallback(next_block, numbers)
        return d.addCallback(check_all)

    def _event_checker(self, chain_type: str | None,
                       path: IPath) -> Callable[[dict[str, Any], str, Any], list[str]] | None:
        if chain_type == "embedded":
            try:
                from wecross.embedded.verify import EVENT_PROOF_CHECKS, check_event_proof
            except ImportError:
                return None

            def embedded(event: dict[str, Any], expected: str, owner: Any) -> list[str]:
                failed = check_event_proof(event, expected_header_hash=expected, resource=path.resource)
                if failed is not None:
                    self._refuse(failed[0], failed[1], owner)
                return ["header_linked", *EVENT_PROOF_CHECKS]

            return embedded
        if chain_type == "evm":
            try:
                from wecross.chain.evm_checks import EvmCheckError, check_event
            except ImportError:
                return None

            def evm(event: dict[str, Any], expected: str, owner: Any) -> list[str]:
                try:
                    checks: list[str] = check_event(event, expected,
                                                    resource_kind=self.resource_kind(str(path)))
                except EvmCheckError as exc:
                    self._refuse(exc.check, exc.message, owner)
                if event.get("resource") != path.resource:
                    self._refuse("event_mismatch", f"an event of {event.get('resource')!r} in the stream of "
                                                   f"{path.resource!r}", owner)
                return checks

            return evm
        return None

    def _check(self, expected: str, result: dict[str, Any], invocation: Invocation, chain: str,
               owner: str) -> dict[str, Any]:
        if invocation.op not in WRITE_OPERATIONS:
            checks = self._check_read(expected, result, invocation, chain, owner)
        elif self.chain_type_of(chain, owner) == "evm":
            checks = self._check_evm(expected, result, invocation, owner)
        else:
            from wecross.embedded.verify import check_write_proof

            expected_tx: dict[str, Any] = {"resource": invocation.path.resource, "method": invocation.method,
                                           "args": list(invocation.args), "sender": invocation.sender}
            failed = check_write_proof(result, expected_header_hash=expected, expected_tx=expected_tx)
            if failed is not None:
                self._refuse(failed[0], failed[1], owner)
            checks = ["header_linked", "tx_inclusion", "receipt_inclusion", "receipt_matches", "output_matches",
                      "tx_matches_request"]
        header_chain = self.store.chains[chain]
        result["verified"] = {
            "proof": True,
            "checks": checks,
            "block": result["block_number"],
            "header_hash": expected,
            "trust": {"checkpoint": header_chain.checkpoint, "pinned_by": header_chain.pinned_by,
                      "quorum": header_chain.quorum},
        }
        self.counters["verified"] += 1
        return result

    def _check_read(self, expected: str, result: dict[str, Any], invocation: Invocation, chain: str,
                    owner: str) -> list[str]:
        header_chain = self.store.chains[chain]
        number = result["block_number"]
        if header_chain.height - number > self.max_read_lag:
            self._refuse("stale_read", f"the read was answered at block {number} but block {header_chain.height} "
                                       f"is trusted already (max_read_lag {self.max_read_lag})", owner)
        if self.chain_type_of(chain, owner) == "evm":
            from wecross.chain.evm_checks import EvmCheckError, check_read

            kind = self.resource_kind(str(invocation.path))
            try:
                if invocation.op == OP_GET_DATA:
                    return check_read(result, expected, resource_kind=kind,
                                      key=invocation.args[0] if invocation.args else None)
                return check_read(result, expected, resource_kind=kind, method=invocation.method,
                                  args=list(invocation.args))
            except EvmCheckError as exc:
                self._refuse(exc.check, exc.message, owner)
        from wecross.embedded.verify import READ_PROOF_CHECKS, check_read_proof

        expected_read = {"resource": invocation.path.resource, "op": invocation.op, "method": invocation.method,
                         "args": list(invocation.args)}
        try:
            failed = check_read_proof(result, expected_header_hash=expected, expected_read=expected_read)
        except ValueError as exc:  # the request itself is not a read the chain could have answered
            self._refuse("read_mismatch", str(exc), owner)
        if failed is not None:
            self._refuse(failed[0], failed[1], owner)
        return ["header_linked", *READ_PROOF_CHECKS]

    def _evm_read_provable(self, invocation: Invocation) -> bool:
        if invocation.op == OP_GET_DATA:
            return True
        from wecross.chain.evm_checks import read_plan

        return read_plan(self.resource_kind(str(invocation.path)), invocation.method, list(invocation.args)) is not None

    def _check_evm(self, expected: str, result: dict[str, Any], invocation: Invocation, owner: str) -> list[str]:
        from wecross.chain.evm_checks import EvmCheckError, check_write

        method, args = invocation.method, list(invocation.args)
        if invocation.op == "setData":
            method = "set"
        try:
            return check_write(result, expected, resource_kind=self.resource_kind(str(invocation.path)),
                               method=method, args=args, sender=invocation.sender)
        except EvmCheckError as exc:
            self._refuse(exc.check, exc.message, owner)

    def _extend_from_proof(self, chain: str, chain_type: str, number: int, owner: str,
                           result: Mapping[str, Any]) -> None:
        """The proof carries the block's header. When it is the next block of the trusted chain and the policy
        needs no second router, it is checked (hash, link to our head) and taken as is: a run of writes then costs
        no header fetch at all, instead of one round trip to the owner each."""
        header_chain = self.store.chain(chain, chain_type)
        if header_chain.quorum != 1 or number != header_chain.height + 1 or number == 0:
            return
        proof = result.get("proof")
        header = proof.get("header") if isinstance(proof, Mapping) else None
        if not isinstance(header, Mapping):
            return
        try:
            accepted = header_chain.offer([header], owner)
        except HeaderError as exc:
            self._refuse(exc.check, exc.message, owner)
        if accepted:
            self.store.persist(header_chain, number)

    def _refuse(self, check: str, message: str, owner: object) -> NoReturn:
        self.counters["refused"] += 1
        raise RouterError("proof_invalid", f"the result from {owner} failed verification ({check}): {message}",
                          {"check": check, "router": owner})

    # -- headers ------------------------------------------------------------------------------------------------------

    def trusted_hash(self, chain: str, chain_type: str, number: int, owner: str) -> Deferred[str]:
        """The trusted hash of block ``number``, fetching and checking headers as needed (one fetch per chain at a
        time: concurrent results wait for it instead of fetching the same headers twice)."""
        header_chain = self.store.chain(chain, chain_type)
        known = header_chain.hash_of(number)
        if known is not None:
            return defer.succeed(known)
        waiting = self._fetching.get(chain)
        if waiting is not None:
            # Wait for the fetch under way, then look again. (Not a DeferredLock: releasing one hands over to the
            # next waiter inside the previous one's callback, and a few hundred concurrent reads then overflowed
            # the stack.)
            later: Deferred[None] = Deferred()
            waiting.append(later)
            return later.addCallback(lambda _: self.trusted_hash(chain, chain_type, number, owner))
        self._fetching[chain] = []

        def wake(result: Any) -> Any:
            for d in self._fetching.pop(chain, []):
                d.callback(None)
            return result

        return self._extend(header_chain, number, owner).addBoth(wake)

    def _extend(self, header_chain: HeaderChain, number: int, owner: str) -> Deferred[str]:
        known = header_chain.hash_of(number)
        if known is not None:
            return defer.succeed(known)
        if number < header_chain.checkpoint_number:
            return defer.fail(RouterError(
                "proof_invalid", f"block {number} of {header_chain.chain} is below the configured checkpoint "
                                 f"(block {header_chain.checkpoint_number}): it cannot be trusted",
                {"check": "below_checkpoint"}))
        sources = [owner] + [r for r in self.replicas_of(header_chain.chain) if r != owner]
        if len(sources) < header_chain.quorum:
            return defer.fail(RouterError(
                "proof_invalid", f"headers of {header_chain.chain} cannot be trusted (quorum): the policy needs "
                                 f"{header_chain.quorum} routers serving it, {len(sources)} known",
                {"check": "quorum"}))
        start = header_chain.height + 1
        count = min(self.batch, number - start + 1)
        fetches = [self.fetch(header_chain.chain, source, start, count) for source in sources[:header_chain.quorum]]
        d = defer.gatherResults(fetches, consumeErrors=True)

        def offer(batches: list[Sequence[Mapping[str, Any]]]) -> Deferred[str]:
            before = header_chain.height
            for source, batch in zip(sources, batches, strict=False):
                self.counters["headers_fetched"] += len(batch)
                try:
                    header_chain.offer(batch, source)
                except HeaderError as exc:
                    raise RouterError("proof_invalid", f"headers of {header_chain.chain} from {source} refused "
                                                       f"({exc.check}): {exc.message}",
                                      {"check": exc.check, "router": source}) from None
            if header_chain.height <= before:
                raise RouterError("proof_invalid", f"no trusted header for block {number} of {header_chain.chain}: "
                                                   f"the routers asked gave none that links up",
                                  {"check": "link"})
            self.store.persist(header_chain, before + 1)
            return self._extend(header_chain, number, owner)

        def unwrap(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, defer.FirstError):
                sub: Failure = error.subFailure
                return sub
            return failure

        return d.addErrback(unwrap).addCallback(offer)
