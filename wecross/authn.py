"""End-to-end authentication as a router applies it: the checks of wecross.attest at the owner (requests, users'
signatures, transaction decisions) and at the entry router (answers, headers), with the state they keep.

Split from wecross.router, which decides where a request runs and how it travels; this module decides whether what
arrived is what its signer sent. Every refusal names its check (``details.check`` and ``(check)`` at the end of the
message, since details do not cross the wire) and is counted in :attr:`EndToEnd.auth_refused` (``/status``,
``/metrics`` ``wecross_auth_refused_total``). docs/trusted-results.md, "Threat model", lists them.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography import x509

from wecross import attest
from wecross.errors import RouterError
from wecross.gossip.directory import Directory
from wecross.gossip.record import RecordError
from wecross.logs import untrusted
from wecross.pki.authority import common_name
from wecross.routing.replay import ReplayGuard
from wecross.stub.interfaces import (
    OP_CALL,
    OP_GET_DATA,
    OP_TX_COMMIT,
    OP_TX_PREPARE,
    OP_TX_ROLLBACK,
    OPERATIONS,
    TX_OPERATIONS,
    WRITE_OPERATIONS,
)
from wecross.wire.messages import Request

if TYPE_CHECKING:
    from wecross.config import Settings

#: A participant asks a transaction's coordinator router for its state (args [tx_id]; routed by destination).
OP_TX_STATUS = "txStatus"
#: Operations that change state: deduplicated by request id at the owner, never re-sent once they may have run.
STATEFUL = WRITE_OPERATIONS | TX_OPERATIONS
#: Reads whose answer may come back unsigned by its owner when it carries a proof the entry router checks.
PROVABLE_READS = frozenset({OP_CALL, OP_GET_DATA})
#: Requests whose authenticator must be a signature (wecross.attest: the origin cannot deny them later); other
#: requests may carry a MAC under the key the two routers share. Answers: the same, and txStatus, on which
#: participants commit or roll back.
SIGNED = STATEFUL
SIGNED_ANSWERS = STATEFUL | {OP_TX_STATUS}
#: Decisions and steps a participant takes only from the transaction's coordinator (EndToEnd.from_coordinator).
TX_DECISIONS = frozenset({OP_TX_PREPARE, OP_TX_COMMIT, OP_TX_ROLLBACK})
#: ``header_sig`` of a proof that came inside an answer its owner authenticated whole (EndToEnd.authenticate_result).
_OWNER_AUTHENTICATED = object()
#: Users' signed operations remembered (nonces until they expire), and user certificates' names.
_CLIENT_NONCES = 100_000
#: How many (chain, transaction hash) pairs of verified writes an entry router remembers (proven_or_attested).
_USED_TXS = 65_536


def is_router(sender: str) -> bool:
    """A router acting for itself (header fetches, txStatus, its participant watcher and HTLC service)."""
    return sender == "router" or sender.startswith("router:")


def is_user(sender: str) -> bool:
    """A user's name, as opposed to nobody in particular (plain HTTP) or a router acting for itself."""
    return sender != "anonymous" and not is_router(sender)


def replay_key(request: Request) -> bytes:
    """The owner's replay guard key: origin and request id (one origin cannot pick another's request id)."""
    return request.origin.encode() + b"\x00" + request.request_id


def drop_marks(result: dict[str, Any]) -> dict[str, Any]:
    """Answers that are signed by their owner (every non-read answer is: :meth:`authenticate_result`) and not
    put through the read/write verifier: the marks are ours, not the answer's."""
    result.pop("_attested", None)
    result.pop("header_sig", None)
    return result



class EndToEnd:
    """One router's end-to-end authentication: its keys (wecross.attest.Authenticator, HeaderSigner), the
    verified keys of others (the gossip directory), and what it remembers against replays."""

    def __init__(self, local_id: str, settings: Settings, clock: Any, directory: Directory,
                 signing_key: attest.PrivateKey | None, replays: ReplayGuard, outcomes: Counter[str]) -> None:
        self.local_id = local_id
        self.settings = settings
        #: IReactorTime (typed Any: zope interface methods do not type-check as methods).
        self.clock = clock
        self.directory = directory
        self.replays = replays
        #: The router's outcome counters (a user's signature that checked out counts as ``client_signed``).
        self.outcomes = outcomes
        #: This router's certificate key: signs the requests it originates, its answers and its chains' headers.
        self.signing_key = signing_key
        self.auth = attest.Authenticator(local_id, signing_key) if signing_key is not None else None
        self.header_signer = attest.HeaderSigner(signing_key) if signing_key is not None else None
        #: End-to-end checks refused, by check (bad_signature, unknown_signer, no_authority, expired, ...).
        self.auth_refused: Counter[str] = Counter()
        #: (chain, tx hash) of writes verified here: an answer naming one again is a replayed receipt.
        self._used_txs: OrderedDict[tuple[str, str], None] = OrderedDict()
        #: (user, nonce) -> expiry (ms) of users' signed operations already run, oldest first.
        self._client_nonces: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        #: leaf certificate (DER) -> its common name, for users' signatures.
        self._client_names: OrderedDict[bytes, str] = OrderedDict()

    def refuse(self, code: str, check: str, message: str, **details: Any) -> NoReturn:
        self.auth_refused[check] += 1
        raise RouterError(code, f"{message} ({check})", {"check": check, **details})

    def authenticate_request(self, request: Request) -> x509.Certificate | None:
        """At the destination, before anything runs: the request is the one its origin signed, not expired, and
        not claiming to live longer than any request may. The origin's key comes from its verified gossip record;
        the sender named inside is the identity the origin vouches for."""
        try:
            if self.auth is None:
                raise attest.AttestError("unknown_signer", "this router has no key to check requests with")
            self.auth.check(request.origin, self.directory.signing_key(request.origin), request.signature,
                            attest.request_body(request.request_id, request.origin, request.destination,
                                                request.expires_ms, request.op, request.ipath, request.method,
                                                request.args, request.sender, request.client_auth,
                                                request.sender_org),
                            signed=request.op in SIGNED)
        except attest.AttestError as exc:
            code = "unknown_signer" if exc.check == "unknown_signer" else "bad_signature"
            self.refuse(code, exc.check, f"request refused by {self.local_id}: {exc.message}",
                        origin=request.origin)
        now_ms = self.clock.seconds() * 1000
        skew_ms = self.settings.limits.clock_skew * 1000
        if now_ms > request.expires_ms + skew_ms:
            self.refuse("timeout", "expired", f"request refused by {self.local_id}: it expired at "
                                              f"{request.expires_ms} ms (now {int(now_ms)} ms)")
        if request.expires_ms > now_ms + self.settings.limits.request_deadline * 1000 + skew_ms:
            self.refuse("bad_request", "expiry_too_far",
                        f"request refused by {self.local_id}: it claims to live until {request.expires_ms} "
                        f"ms, beyond the longest deadline a request may have")
        if is_router(request.sender) and request.sender not in ("router", f"router:{request.origin}"):
            # A router may act for itself (its own services), never as another router.
            self.refuse("forbidden", "router_identity",
                        f"request refused by {self.local_id}: {request.origin} may act as itself, not as "
                        f"{untrusted(request.sender)}")
        if request.client_auth:
            return self._authenticate_client(request, now_ms, skew_ms)
        if self.settings.trust.client_signatures == "required" and is_user(request.sender) \
                and request.op in OPERATIONS:
            self.refuse("unauthenticated", "client_signature",
                        f"request refused by {self.local_id}: operations in a user's name need the user's own "
                        f"signature here ([trust] client_signatures = \"required\"), and "
                        f"{untrusted(request.sender)!s} did not sign this one")
        return None

    def _authenticate_client(self, request: Request, now_ms: float, skew_ms: float) -> x509.Certificate:
        """The user's own signature, when the client holds a key: by a certificate of the network's CA whose name
        is the sender, over exactly this operation, not expired, and each signed operation run once (nonce)."""
        try:
            proof = attest.ClientProof.decode(request.client_auth)
        except attest.AttestError as exc:
            self.refuse("bad_signature", exc.check, f"request refused by {self.local_id}: {exc.message}")
        try:
            key, name = self._client_certificate(proof.chain)
        except RecordError as exc:
            self.refuse("bad_signature", "client_certificate", f"request refused by {self.local_id}: the "
                                                               f"user's certificate: {untrusted(exc.message)}")
        if name != request.sender:
            self.refuse("bad_signature", "client_identity",
                        f"request refused by {self.local_id}: signed by {untrusted(name)}, in the name of "
                        f"{untrusted(request.sender)}")
        try:
            attest.verify(key, proof.signature, attest.client_body(
                request.sender, request.ipath, request.op, request.method, request.args, proof.nonce,
                proof.expires_ms), request.sender)
        except attest.AttestError:
            self.refuse("bad_signature", "client_signature",
                        f"request refused by {self.local_id}: the user's signature is not over this operation")
        if now_ms > proof.expires_ms + skew_ms or \
                proof.expires_ms > now_ms + self.settings.limits.request_deadline * 1000 + skew_ms:
            self.refuse("timeout", "client_expired", f"request refused by {self.local_id}: the user's "
                                                     f"signature expires at {proof.expires_ms} ms")
        nonces = self._client_nonces
        while nonces and next(iter(nonces.values())) < now_ms - skew_ms:
            nonces.popitem(last=False)
        seen = (request.sender, proof.nonce)
        if seen in nonces and not (request.op in STATEFUL and self.replays.seen(replay_key(request))):
            # (A write retried under its request id is answered from the replay guard, not run: that is no reuse.)
            self.refuse("bad_signature", "client_replayed", f"request refused by {self.local_id}: the user's "
                                                            f"signed operation was used already")
        nonces[seen] = proof.expires_ms
        while len(nonces) > _CLIENT_NONCES:
            nonces.popitem(last=False)
        self.outcomes["client_signed"] += 1
        return x509.load_der_x509_certificate(proof.chain[0])

    def _client_certificate(self, chain: tuple[bytes, ...]) -> tuple[attest.PublicKey, str]:
        """The key and common name of a user's certificate chain, checked against the CA (cached by the
        directory's verifier; the name parsed once per leaf)."""
        trusted = self.directory.verify_chain(chain)
        name = self._client_names.get(chain[0])
        if name is None:
            name = common_name(x509.load_der_x509_certificate(chain[0]))
            self._client_names[chain[0]] = name
            while len(self._client_names) > _CLIENT_NONCES:
                self._client_names.popitem(last=False)
        return trusted.public_key, name

    @staticmethod
    def _replay_key(request: Request) -> bytes:
        return request.origin.encode() + b"\x00" + request.request_id

    def authenticate_header(self, chain: str, wire: Mapping[str, Any], signer: str, signature: Any) -> None:
        """A header is taken as ``signer``'s vote only with ``signer``'s signature over it and only if the chain's
        authority (its certificate: wecross.pki serves) admits ``signer`` for ``chain``; otherwise it is refused,
        counted, and never reaches the header store."""
        if not self.directory.authorized(signer, chain):
            self.refuse("proof_invalid", "no_authority", f"{signer} is not authorised to serve {chain}: its "
                                                         f"headers are not taken", router=signer)
        if signature is _OWNER_AUTHENTICATED:
            return  # the header came inside an answer whose authenticator by ``signer`` checked out
        try:
            attest.verify(self.directory.signing_key(signer), signature, attest.header_body(chain, wire), signer)
        except attest.AttestError as exc:
            self.refuse("proof_invalid", "header_signature" if exc.check == "bad_signature" else exc.check,
                        f"header {wire.get('number')!r} of {chain} from {signer}: {exc.message}",
                        router=signer)

    def sign_tx_record(self, record: dict[str, Any]) -> bytes:
        """This router's signature of a transaction record it coordinates (wecross.attest.tx_record_body)."""
        if self.signing_key is None:
            raise RouterError("internal", "this router has no key to sign with")
        return attest.sign(self.signing_key, attest.tx_record_body(record))

    def verify_tx_record(self, record: Any) -> None:
        """Raises RouterError('forbidden') unless ``record`` carries the signature of the coordinator that its
        transaction id names (the only router that can have decided it)."""
        if not isinstance(record, dict):
            raise RouterError("forbidden", "a transaction record must be a map")
        tx_id, coordinator, signature = record.get("tx_id"), record.get("coordinator"), record.get("signature")
        if not isinstance(tx_id, str) or not isinstance(coordinator, str) or not tx_id.startswith(coordinator + ":"):
            raise RouterError("forbidden", "the record's transaction id does not name its coordinator")
        try:
            raw = bytes.fromhex(signature) if isinstance(signature, str) else b""
        except ValueError:
            raw = b""
        key = self.directory.signing_key(coordinator)
        if key is None and coordinator == self.local_id and self.signing_key is not None:
            key = self.signing_key.public_key()
        try:
            attest.verify(key, raw, attest.tx_record_body(record), coordinator)
        except attest.AttestError as exc:
            raise RouterError("forbidden", f"the record of {untrusted(tx_id)} is not signed by its coordinator "
                                           f"{untrusted(coordinator)}: {exc.message}",
                              {"check": "tx_record_signature"}) from None

    def from_coordinator(self, request: Request) -> Request:
        """A participant takes a transaction's steps and decisions from the coordinator its id names; a decision
        from another router (one that adopted the transaction) only with that coordinator's signed record showing
        the same decision (commit: it had decided commit; rollback: it had not), which is then left out of what
        the chain sees."""
        tx_id = request.args[0] if request.args else None
        if not isinstance(tx_id, str) or ":" not in tx_id:
            raise RouterError("bad_args", "a transaction operation names its transaction id first")
        coordinator = tx_id.split(":", 1)[0]
        if request.origin == coordinator:
            return request
        if request.op == OP_TX_PREPARE or len(request.args) != 2:
            self.refuse("forbidden", "tx_coordinator",
                        f"{self.local_id} takes {request.op} of {untrusted(tx_id)} from its coordinator "
                        f"{untrusted(coordinator)} only, not from {request.origin}")
        record = request.args[1]
        self.verify_tx_record(record)
        state = record.get("state")
        decided = state in ("committing", "committed")
        if record.get("tx_id") != tx_id or (request.op == OP_TX_COMMIT) != decided:
            self.refuse("forbidden", "tx_coordinator",
                        f"the signed record of {untrusted(tx_id)} ({untrusted(state)}) does not allow "
                        f"{request.op}")
        return replace(request, args=[tx_id])

    def attest_result(self, result: dict[str, Any], request: Request) -> dict[str, Any]:
        """The owner signs its answer, binding it to the request it answers; a read that carries a proof is
        checked against trusted headers instead and saves the signature."""
        if (request.op in PROVABLE_READS and "proof" in result) or self.auth is None:
            return result
        try:
            result["attestation"] = self.auth.tag(
                request.origin, self.directory.signing_key(request.origin),
                attest.result_body(request.request_id, request.origin, self.local_id, result),
                signed=request.op in SIGNED_ANSWERS)
        except attest.AttestError as exc:
            raise RouterError("internal", f"the answer cannot be signed: {exc.message}") from None
        return result

    def authenticate_result(self, result: dict[str, Any], request_id: bytes, op: str, owner: str) -> None:
        """At the entry router: a signed answer must carry the owner's signature over this very request; an
        unsigned one is let through only as a read with a proof, which the trusted-results check must then prove
        (:meth:`proven_or_attested`)."""
        signature = result.pop("attestation", None)
        if signature is None:
            if op in PROVABLE_READS and "proof" in result:
                result["_attested"] = False
                return
            self.refuse("proof_invalid", "unattested",
                        f"the answer from {owner} is not signed by it", router=owner)
        try:
            assert self.auth is not None  # it made the request
            self.auth.check(owner, self.directory.signing_key(owner), signature,
                            attest.result_body(request_id, self.local_id, owner, result),
                            signed=op in SIGNED_ANSWERS)
        except attest.AttestError as exc:
            self.refuse("proof_invalid", "result_signature" if exc.check == "bad_signature" else exc.check,
                        f"the answer from {owner} failed its signature check: {exc.message}", router=owner)
        result["_attested"] = True
        if "proof" in result:
            # The owner's authenticator covered the proof, its header included (wecross.attest.result_body): the
            # header is the owner's word as surely as with a signature of its own. A marker no wire value equals.
            result["header_sig"] = _OWNER_AUTHENTICATED

    def proven_or_attested(self, result: dict[str, Any], chain: str) -> dict[str, Any]:
        """No downgrade: every forwarded answer is signed by its owner or proven against trusted headers (an
        unsigned read whose proof was not checked is refused); a verified write names a transaction no earlier
        answer named."""
        attested = result.pop("_attested", True)
        result.pop("header_sig", None)
        verified = result.get("verified")
        proven = isinstance(verified, dict) and verified.get("proof") is True
        owner = result.get("router")
        if not attested and not proven:
            self.refuse("proof_invalid", "unattested",
                        f"the read answered by {owner} is neither signed nor proven", router=owner)
        tx_hash = result.get("tx_hash")
        if proven and isinstance(tx_hash, str) and tx_hash and not result.get("replayed"):
            # (An answer marked replayed is the owner's own repeat of one request id's first answer.)
            key = (chain, tx_hash)
            if key in self._used_txs:
                self.refuse("proof_invalid", "replayed_receipt",
                            f"transaction {tx_hash} answered an earlier request already", router=owner)
            self._used_txs[key] = None
            if len(self._used_txs) > _USED_TXS:
                self._used_txs.popitem(last=False)
        return result


    def sign_proof_header(self, result: dict[str, Any], chain: str) -> dict[str, Any]:
        """A proof names its block's header; signed here (once per block) so that the entry router may take it as
        the next trusted header without a fetch."""
        proof = result.get("proof")
        header = proof.get("header") if isinstance(proof, dict) else None
        if isinstance(header, dict) and self.header_signer is not None:
            result["header_sig"] = self.header_signer.sign(chain, header)
        return result

