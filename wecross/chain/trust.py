"""End-to-end verification at the entry router: a result that crossed other routers is checked before the client
sees it.

For a write on a chain type we can verify (one with a verifier), the entry router makes sure it trusts the
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

Nothing here knows a chain type: what a chain's proofs look like is its verifier's business
(:class:`~wecross.chain.verifier.IChainVerifier`, supplied by its stub plugin), found in the ``verifiers`` mapping
by the chain type the directory gives for the owner. A chain type without a verifier is answered as not verified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wecross.chain.headers import HeaderChain, HeaderError
from wecross.chain.store import HeaderStore
from wecross.chain.verifier import OP_EVENTS, ProvenRequest, VerificationError
from wecross.errors import RouterError
from wecross.facade import Invocation
from wecross.ipath import IPath
from wecross.stub.interfaces import OP_TX_COMMIT, WRITE_OPERATIONS

#: Asks ``source`` for headers ``start`` .. ``start + count - 1`` of a chain: (chain, source, start, count).
Fetch = Callable[[str, str, int, int], Deferred[Sequence[Mapping[str, Any]]]]


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
        verifiers: Mapping[str, Any] | None = None,
    ) -> None:
        """``verifiers``: chain type -> IChainVerifier (wecross.stub.service.StubService.verifiers); looked up per
        result, so it may be filled after construction."""
        self.store = store
        self.verifiers: Mapping[str, Any] = {} if verifiers is None else verifiers
        #: (chain, header wire, signer, signature) -> None or raises RouterError: the chain authority's signature
        #: over a header that came inside a proof (set by the router; None: such headers are fetched instead).
        self.authenticate_header: Callable[[str, Mapping[str, Any], str, Any], None] | None = None
        #: (chain, owner) -> the genesis hash in the owner's signed gossip record (set by the router).
        self.genesis_of: Callable[[str, str], str | None] | None = None
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
        verifier = self.verifiers.get(chain_type) if chain_type is not None else None
        request = ProvenRequest(invocation.path.resource, self.resource_kind(str(invocation.path)), invocation.op,
                                invocation.method, tuple(invocation.args), invocation.sender)
        if invocation.op not in WRITE_OPERATIONS and (verifier is None or not verifier.read_provable(request)):
            reason = ("reads carry no proof on this chain type" if verifier is None
                      else str(verifier.unproven_read_reason))
            result["verified"] = {"proof": False, "reason": reason}
            self.counters["unverifiable"] += 1
            return result
        if verifier is None:
            return self._unverifiable(result, chain_type)
        assert chain_type is not None
        number = self._block_of(result, owner, chain, chain_type)
        assert isinstance(owner, str)
        known = self.store.chain(chain, chain_type).hash_of(number)
        if known is not None:
            # The usual case (a read of the trusted head): checked at once, not through a fired Deferred that the
            # caller's Deferred then has to wait on (the same checks either way; this runs for every read).
            return self._check(known, result, invocation.op, request, verifier, chain, owner)
        hashed = self.trusted_hash(chain, chain_type, number, owner)
        return hashed.addCallback(self._check, result, invocation.op, request, verifier, chain, owner)

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
        verifier = self.verifiers.get(chain_type) if chain_type is not None else None
        if verifier is None:
            return self._unverifiable(result, chain_type)
        assert chain_type is not None
        number = self._block_of(result, owner, chain, chain_type)
        assert isinstance(owner, str)
        request = ProvenRequest(path.resource, self.resource_kind(str(path)), OP_TX_COMMIT, "", tuple(args), sender)
        tx_id = str(args[0]) if args else ""

        def check(expected: str) -> dict[str, Any]:
            try:
                checks: list[str] = verifier.check_commit(result, expected, request, tx_id)
            except VerificationError as exc:
                self._refuse(exc.check, exc.message, owner)
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
        verifier = self.verifiers.get(chain_type) if chain_type is not None else None
        if verifier is None or not all("proof" in e for e in events):
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

        request = ProvenRequest(path.resource, self.resource_kind(str(path)), OP_EVENTS, "", (), "")

        def check_all(_: object) -> dict[str, Any]:
            for event in events:
                number = event["block_number"]
                try:
                    checks: list[str] = verifier.check_event(event, hashes[number], request)
                except VerificationError as exc:
                    self._refuse(exc.check, exc.message, owner)
                event["verified"] = {"proof": True, "checks": checks, "block": number,
                                     "header_hash": hashes[number]}
            self.counters["verified"] += len(events)
            return answer

        d: Deferred[Any] = defer.succeed(None)
        d.addCallback(next_block, numbers)
        return d.addCallback(check_all)

    def _check(self, expected: str, result: dict[str, Any], op: str, request: ProvenRequest, verifier: Any,
               chain: str, owner: str) -> dict[str, Any]:
        try:
            if op not in WRITE_OPERATIONS:
                self._check_fresh(result, chain, owner)
                checks: list[str] = verifier.check_read(result, expected, request)
            else:
                checks = verifier.check_write(result, expected, request)
        except VerificationError as exc:
            self._refuse(exc.check, exc.message, owner)
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

    def _check_fresh(self, result: dict[str, Any], chain: str, owner: str) -> None:
        """A proven read names its block: one more than ``max_read_lag`` behind the trusted head is refused (a
        genuine but old answer proves itself as well as a fresh one)."""
        header_chain = self.store.chains[chain]
        number = result["block_number"]
        if header_chain.height - number > self.max_read_lag:
            self._refuse("stale_read", f"the read was answered at block {number} but block {header_chain.height} "
                                       f"is trusted already (max_read_lag {self.max_read_lag})", owner)

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
        signature = result.get("header_sig")
        if not isinstance(header, Mapping) or signature is None or self.authenticate_header is None:
            return  # not signed by the chain's authority: fetched (and authenticated) from the owner instead
        # The owner's signature over the header, by a router the chain's authority admits: a relay cannot slip a
        # self-consistent block of its own above our trusted head (raises proof_invalid, nothing stored).
        self.authenticate_header(chain, header, owner, signature)
        try:
            accepted = header_chain.offer([header], owner)
        except HeaderError as exc:
            self._refuse(exc.check, exc.message, owner)
        if accepted:
            self.store.persist(header_chain, number)

    def _pin(self, header_chain: HeaderChain, owner: str) -> None:
        """A chain with no configured checkpoint is pinned to the genesis its owner states in its signed gossip
        record (checked against its certificate and the chain authority by the directory), never to the first
        header that happens to arrive through a relay."""
        if header_chain.checkpoint is not None or self.genesis_of is None:
            return
        genesis = self.genesis_of(header_chain.chain, owner)
        if not genesis:
            self._refuse("checkpoint", f"no checkpoint is configured for {header_chain.chain} and {owner}'s signed "
                                       f"record states no genesis for it", owner)
        header_chain.checkpoint = genesis.lower().removeprefix("0x")
        header_chain.pinned_by = f"signed record of {owner}"

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
        try:
            self._pin(header_chain, owner)
        except RouterError as exc:
            return defer.fail(exc)
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
