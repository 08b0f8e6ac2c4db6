"""The gossip directory: the newest verified record of every router in the network, and the questions asked of it.

Why one module over 600 lines: every question below reads the same held records and indexes, and each way a record
can be refused or dropped (stale, expired, unauthorised claims, revoked) must keep those indexes consistent.

Sans-IO: a :class:`Directory` is fed blobs and times and answers with blobs, digests and records; the
GossipService decides whom to talk to and when. The anti-entropy exchange it supports (see docs/gossip.md):

1. A sends its :meth:`Directory.digest` to B.
2. B sends back :meth:`Directory.newer_than` of that digest (records A lacks or holds in an older version), and, if
   :meth:`Directory.wanted` of that digest is not empty (A has something B lacks), B's own full digest.
3. A answers that digest with its own ``newer_than``; it wants nothing more from B, having just received it all.

A record that :meth:`Directory.accept` stored (it returns the record) is pushed at once to every neighbour except
the one it came from, so changes travel at link speed and anti-entropy only repairs what pushing missed.

Times are the caller's monotonic seconds; only receive times are kept, so origin clocks never matter.

Chain authority: a record's chain claims are believed only where the certificate that signed it names the chain
(its serves patterns, wecross.pki.serves). Claims it does not cover, and the resources of those chains, are left
out of :meth:`Directory.records` and of every chain and resource question, and counted (``unauthorized_claims``,
:meth:`Directory.unauthorized`); the record itself still counts for its links, zones and transit, so an
over-claiming router keeps relaying. The router core asks :meth:`Directory.authorized`,
:meth:`Directory.signing_key` and :meth:`Directory.genesis_of` before trusting a router for a chain.

Revocation: a record whose certificate chain holds a certificate on the revocation list in force
(:meth:`Directory.set_revocation`) is refused (RecordError reason "revoked", counted in ``rejected_revoked``), and
setting a new list drops the records already held that it names (``revoked_removed``), so the revoked router's
chains, resources and links leave routing at the next rebuild. A user's chain (:meth:`Directory.verify_chain`) is
refused the same way, and :meth:`Directory.is_revoked` answers the REST layer about a client certificate.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wecross.gossip.record import (
    REASONS,
    U64_MAX,
    RecordError,
    RecordVerifier,
    ResourceEntry,
    RouterRecord,
    SignedRecord,
    TrustedLeaf,
    Version,
    leaf_key_der,
)
from wecross.pki.authority import InvalidNameError, validate_router_id
from wecross.pki.revocation import RevocationList

__all__ = ["ChainClash", "Directory", "PublicKey", "authorized_view"]

#: Own-id records seen before our own record is set: kept per signing key, at most this many keys.
_PENDING_OWN_MAX = 16


@dataclass(frozen=True, slots=True)
class ChainClash:
    """Routers claiming one chain path with different genesis hashes (router id -> genesis hash, "" = unknown).

    Every claimant is listed, including those that agree with each other; which one is the real chain is for a
    pinned genesis hash to decide, not for a majority.
    """

    path: str
    genesis_by_router: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Held:
    signed: SignedRecord
    blob: bytes
    received_at: float
    leaf: TrustedLeaf
    #: Chain paths the record claims (as chains or through resources) that its certificate does not authorise.
    unauthorized: tuple[str, ...] = ()


#: A signing key as the router core uses it to check signatures of the router that owns it.
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _chain_of(ipath: str) -> str:
    """``zone.chain`` of a ``zone.chain.resource`` (validated by ResourceEntry: exactly three dot-free parts)."""
    return ipath.rpartition(".")[0]


def authorized_view(record: RouterRecord, leaf: TrustedLeaf) -> tuple[RouterRecord, tuple[str, ...]]:
    """The record as routing may believe it, and the chain paths left out.

    Chains and resources on chains that the signing certificate does not authorise are dropped; everything else
    (zones, transit, links, version) is kept. A record that claims only authorised chains is returned as is.
    """
    authority = leaf.authority
    if authority.any_chain:
        return record, ()
    bad = {c.path for c in record.chains if not authority.authorizes(c.path)}
    bad.update(p for p in {_chain_of(r.ipath) for r in record.resources} if not authority.authorizes(p))
    if not bad:
        return record, ()
    view = dataclasses.replace(
        record,
        chains=tuple(c for c in record.chains if c.path not in bad),
        resources=tuple(r for r in record.resources if _chain_of(r.ipath) not in bad),
    )
    return view, tuple(sorted(bad))


def _as_version(value: Any) -> Version | None:
    """A digest entry as a version, or None when it is not [epoch, seq] (digests come from peers)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    epoch, seq = value
    if type(epoch) is not int or type(seq) is not int or not (0 <= epoch <= U64_MAX and 0 <= seq <= U64_MAX):
        return None
    return (epoch, seq)


def _clash(claims: Mapping[str, str]) -> bool:
    """An empty genesis means "unknown" and clashes with nothing."""
    return len({genesis for genesis in claims.values() if genesis}) > 1


#: A link's figures must move this much before routes are worth recomputing (well inside the table's hysteresis).
_RTT_RELATIVE = 0.1
_LOSS_ABSOLUTE = 0.02
_BANDWIDTH_RELATIVE = 0.25


@functools.lru_cache(maxsize=1 << 16)
def _fingerprint(router_id: str, version: Version) -> int:
    """128 bits standing for one (router, version); XORed over a directory they make its summary checksum."""
    data = f"{router_id}\x00{version[0]}\x00{version[1]}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")


def routing_differs(old: RouterRecord, new: RouterRecord) -> bool:
    """Whether a newer record of a router can change anyone's routes: its zones, transit, the chains it serves
    (path and genesis, not height), its set of links, or a link's figures beyond small jitter."""
    if old.zones != new.zones or old.transit != new.transit:
        return True
    if [(c.path, c.genesis_hash) for c in old.chains] != [(c.path, c.genesis_hash) for c in new.chains]:
        return True
    if len(old.links) != len(new.links):
        return True
    for a, b in zip(old.links, new.links, strict=True):  # both sorted by peer
        if a.peer != b.peer or a.flaps != b.flaps or abs(a.loss - b.loss) > _LOSS_ABSOLUTE:
            return True
        if abs(a.srtt_ms - b.srtt_ms) > _RTT_RELATIVE * max(a.srtt_ms, b.srtt_ms, 1e-9):
            return True
        if abs(a.bandwidth_bps - b.bandwidth_bps) > _BANDWIDTH_RELATIVE * max(a.bandwidth_bps, b.bandwidth_bps, 1.0):
            return True
    return False


class Directory:
    """Newest verified record per router (our own included), with indexes for the router core's questions.

    ``version`` goes up by one on every change of the stored records, so the router can debounce its route
    rebuilds on it. Counters: ``accepted``, ``stale`` (not newer than what we hold: normal with push plus
    anti-entropy), ``rejected`` (by RecordError reason), ``impostor`` (validly certified records for our id signed
    by another key), ``own_stale`` (our own key's records from an earlier life), ``expired``, ``full`` (refused
    because ``max_records`` routers are known already), ``unauthorized_claims`` (chain paths claimed without the
    certificate's authority, summed over every record stored: each is left out of routing and listings).
    """

    def __init__(
        self,
        local_id: str,
        verifier: RecordVerifier,
        *,
        max_records: int = 100_000,
        parse: Callable[[bytes], SignedRecord] | None = None,
    ) -> None:
        """``parse`` replaces :meth:`SignedRecord.from_bytes` (the simulator shares one memo of parsed blobs among
        its routers); it must raise RecordError for what from_bytes refuses."""
        try:
            validate_router_id(local_id)
        except InvalidNameError as exc:
            raise ValueError(str(exc)) from None
        if type(max_records) is not int or max_records < 1:
            raise ValueError(f"max_records must be a positive integer, got {max_records!r}")
        self.local_id = local_id
        self._verifier = verifier
        self._parse = parse if parse is not None else partial(SignedRecord.from_bytes, limits=verifier.limits)
        #: Told (router id, version) of every record stored, ours included: how the simulator follows convergence.
        self.observer: Callable[[str, Version], None] | None = None
        self._max_records = max_records
        self._held: dict[str, _Held] = {}
        self._records: dict[str, RouterRecord] = {}
        self._view = MappingProxyType(self._records)
        # router id -> (version that expired, monotonic time until which that version and older are refused)
        self._tombstones: dict[str, tuple[Version, float]] = {}
        # chain path -> {router id: genesis hash}; iPath -> {router id: entry}
        self._chains: dict[str, dict[str, str]] = {}
        self._resources: dict[str, dict[str, ResourceEntry]] = {}
        self._local_key: bytes | None = None
        # highest version of a record signed with our key that competed with our own (None: never seen one)
        self._echo_floor: Version | None = None
        self._pending_own: dict[bytes, SignedRecord] = {}
        self.version = 0
        #: Bumped only when what routing reads changed (see :func:`routing_differs`): a record refreshed with the
        #: same links and chains, or a chain that grew a block, costs no routing table rebuild anywhere.
        self.routing_version = 0
        # XOR of every held record's version fingerprint: order-free, updated in O(1) per store and removal.
        self._summary = 0
        self.accepted = 0
        self.stale = 0
        self.impostor = 0
        self.own_stale = 0
        self.expired = 0
        self.full = 0
        self.unauthorized_claims = 0
        # router id -> chain paths its current record claims without authority (only routers with some)
        self._unauthorized: dict[str, tuple[str, ...]] = {}
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        #: Records dropped because a new revocation list named their certificate (new ones: rejected["revoked"]).
        self.revoked_removed = 0
        self._revocation: RevocationList | None = None

    # ------------------------------------------------------------------------------------------ our own record

    @property
    def local(self) -> SignedRecord | None:
        held = self._held.get(self.local_id)
        return None if held is None else held.signed

    @property
    def local_version_floor(self) -> Version:
        """The highest version known for our id: our current record's, or that of a record signed with our key
        that came back from the network (an earlier life, or the same version with another body). The next record
        we sign must be above it; :meth:`next_local_version` computes one."""
        local = self.local
        candidates = [v for v in (self._echo_floor, None if local is None else local.version) if v is not None]
        return max(candidates, default=(0, 0))

    @property
    def local_outdated(self) -> bool:
        """True when the network holds a record of ours, signed with our key, that competes with our current one
        (newer, or as new with another body): re-sign at :meth:`next_local_version` and :meth:`set_local` it."""
        local = self.local
        return local is not None and self._echo_floor is not None and self._echo_floor >= local.version

    def next_local_version(self, epoch: int) -> Version:
        """The version to sign our next record with, given the epoch this life of the router uses (its start time):
        ``(epoch, 0)`` when that epoch is above everything known, else one seq above the floor."""
        floor = self.local_version_floor
        if epoch > floor[0]:
            return (epoch, 0)
        if floor[1] < U64_MAX:
            return (floor[0], floor[1] + 1)
        return (floor[0] + 1, 0)

    def set_local(self, signed: SignedRecord) -> None:
        """Install our own (freshly signed) record. It is verified like any other (a record our peers would refuse
        is a configuration error worth raising here) and its version must rise each time (ValueError otherwise)."""
        if signed.router_id != self.local_id:
            raise ValueError(f"our record must be for {self.local_id!r}, not {signed.router_id!r}")
        current = self.local
        if current is not None and signed.version <= current.version:
            raise ValueError(f"our record's version must rise: {signed.version} after {current.version}")
        self._verifier.verify_signed(signed)
        leaf = self._verifier.trusted_leaf(signed)
        self._local_key = leaf_key_der(signed)
        pending, self._pending_own = self._pending_own, {}
        for key, seen in pending.items():
            if key == self._local_key:
                self._note_own_echo(seen, signed)
            else:
                self.impostor += 1
        self._store(signed, signed.to_bytes(), math.inf, leaf)
        self.version += 1

    def _note_own_echo(self, seen: SignedRecord, local: SignedRecord) -> None:
        """A record signed with our key came back; if it competes with ``local``, we must outbid it."""
        if seen.version < local.version or seen.body == local.body:
            self.stale += 1
            return
        self.own_stale += 1
        if self._echo_floor is None or seen.version > self._echo_floor:
            self._echo_floor = seen.version

    # ------------------------------------------------------------------------------------------ anti-entropy

    def summary(self) -> tuple[int, bytes]:
        """(records held, checksum of their versions): equal summaries mean equal digests (a GossipSummary)."""
        return len(self._held), self._summary.to_bytes(16, "big")

    def digest(self) -> dict[str, list[int]]:
        """{router id: [epoch, seq]} of every record held, ours included (the body of a GossipDigest)."""
        return {router_id: list(held.signed.version) for router_id, held in self._held.items()}

    def newer_than(self, digest: Mapping[str, Sequence[int]]) -> list[bytes]:
        """Blobs of the records we hold that the digest's owner lacks or holds in an older version."""
        return [self._held[router_id].blob for router_id in self.newer_ids(digest)]

    def newer_ids(self, digest: Mapping[str, Sequence[int]]) -> list[str]:
        """Router ids of the records we hold that the digest's owner lacks or holds in an older version."""
        out = []
        for router_id, held in self._held.items():
            theirs = digest.get(router_id)
            if theirs is None:
                out.append(router_id)
                continue
            version = _as_version(theirs)
            if version is None or held.signed.version > version:
                out.append(router_id)
        return out

    def wanted(self, digest: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        """The entries of the digest that are newer than what we hold or unknown to us (and not versions we just
        expired): non-empty means "send that peer our digest, it has something for us".

        A newer entry for our own id is wanted too: it is how we learn that we must outbid a record of ours from
        an earlier life.
        """
        out: dict[str, list[int]] = {}
        for router_id, value in digest.items():
            version = _as_version(value)
            if version is None:
                continue
            held = self._held.get(router_id)
            if held is not None:
                if version > held.signed.version:
                    out[router_id] = list(version)
                continue
            tomb = self._tombstones.get(router_id)
            if tomb is not None and version <= tomb[0]:
                continue
            out[router_id] = list(version)
        return out

    def accept(self, blob: bytes, now: float) -> RouterRecord | None:
        """Take a blob from a peer: returns the record if it was stored (push it on to the other neighbours),
        None if it changes nothing (not newer than ours, a version we just expired, or a record for our own id,
        which never replaces ours). Raises :class:`RecordError` for a blob that fails parsing or verification.

        Blobs not newer than what we hold are dropped after parsing, without the (costly) cryptographic checks:
        they change nothing whether genuine or not.
        """
        try:
            signed = self._parse(blob)
        except RecordError as exc:
            self.rejected[exc.reason] += 1
            raise
        router_id = signed.router_id
        if router_id == self.local_id:
            self._accept_own(signed)
            return None
        held = self._held.get(router_id)
        if held is not None and signed.version <= held.signed.version:
            self.stale += 1
            return None
        tomb = self._tombstones.get(router_id)
        if tomb is not None and signed.version <= tomb[0]:
            self.stale += 1
            return None
        if held is None and len(self._held) >= self._max_records:
            self.full += 1
            raise RecordError("too_large", f"directory holds max_records {self._max_records} routers already")
        self._refuse_revoked(signed.cert_chain, f"record of {router_id!r}")  # before the costly signature checks
        leaf = self._verify(signed)
        self._tombstones.pop(router_id, None)
        self._store(signed, blob, now, leaf)
        self.accepted += 1
        self.version += 1
        return signed.record

    def _verify(self, signed: SignedRecord) -> TrustedLeaf:
        try:
            self._verifier.verify_signed(signed)
            return self._verifier.trusted_leaf(signed)
        except RecordError as exc:
            self.rejected[exc.reason] += 1
            raise

    def _accept_own(self, signed: SignedRecord) -> None:
        local = self.local
        if local is not None and (signed.body == local.body or signed.version < local.version):
            self.stale += 1  # our own record (or an older one) echoed back: the common case
            return
        self._verify(signed)
        key = leaf_key_der(signed)
        if local is None:
            # Cannot tell ours from an impostor's before we know our key: keep the newest per key until set_local.
            seen = self._pending_own.get(key)
            if seen is None and len(self._pending_own) >= _PENDING_OWN_MAX:
                self.impostor += 1
            elif seen is None or signed.version > seen.version:
                self._pending_own[key] = signed
            return
        if key == self._local_key:
            self._note_own_echo(signed, local)
        else:
            self.impostor += 1

    # ------------------------------------------------------------------------------------------ expiry

    def expire(self, now: float) -> list[str]:
        """Drop the records not refreshed for longer than their ttl (by our receive time); never our own.

        A dropped version is remembered for another ttl and refused if a slower router offers it again, which would
        otherwise keep a dead router's record bouncing between directories forever.
        """
        dropped = []
        for router_id, held in list(self._held.items()):
            if router_id == self.local_id:
                continue
            ttl = held.signed.record.ttl
            if now - held.received_at > ttl:
                self._remove(router_id)
                self._tombstones[router_id] = (held.signed.version, now + ttl)
                dropped.append(router_id)
        for router_id, (_, until) in list(self._tombstones.items()):
            if until <= now:
                del self._tombstones[router_id]
        if dropped:
            self.expired += len(dropped)
            self.version += 1
        return sorted(dropped)

    # ------------------------------------------------------------------------------------------ queries

    def records(self) -> Mapping[str, RouterRecord]:
        """Router id -> newest record, ours included (a read-only live view), as routing may believe it: chains and
        resources the signing certificate does not authorise are left out (:meth:`signed` has the record as signed).
        """
        return self._view

    def signed(self, router_id: str) -> SignedRecord | None:
        """The router's current record exactly as it signed it, unauthorised claims included."""
        held = self._held.get(router_id)
        return None if held is None else held.signed

    def blob(self, router_id: str) -> bytes | None:
        """The signed blob of a router's record as held (what to push or send)."""
        held = self._held.get(router_id)
        return None if held is None else held.blob

    def received_at(self, router_id: str) -> float | None:
        """When we stored the router's current record (``inf`` for our own)."""
        held = self._held.get(router_id)
        return None if held is None else held.received_at

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, router_id: object) -> bool:
        return router_id in self._held

    def routers_for_chain(self, path: str) -> frozenset[str]:
        """Routers that claim to serve the chain ``zone.chain`` with their certificate's authority (check
        :meth:`clashes` before trusting several)."""
        return frozenset(self._chains.get(path, ()))

    def clashing(self, path: str) -> bool:
        """Whether routers claim the chain with two or more different non-empty genesis hashes (asked per request:
        no copy)."""
        claims = self._chains.get(path)
        return claims is not None and _clash(claims)

    def chain_claims(self, path: str) -> dict[str, str]:
        """Router id -> genesis hash each authorised claimant announces for the chain (for pinned-genesis checks)."""
        return dict(self._chains.get(path, {}))

    def verify_chain(self, ders: tuple[bytes, ...]) -> TrustedLeaf:
        """A certificate chain (a user's) checked against the CA the directory admits records with, and refused
        (RecordError "revoked") when the revocation list in force names any certificate of it."""
        leaf = self._verifier.verify_chain(ders)
        self._refuse_revoked(ders, "certificate chain")
        return leaf

    # ------------------------------------------------------------------------------------------ revocation

    @property
    def revocation(self) -> RevocationList | None:
        return self._revocation

    def is_revoked(self, cert: x509.Certificate | bytes) -> bool:
        """Whether the revocation list in force names ``cert`` (a certificate or its DER): for the REST layer, about
        a client certificate (the chain is checked by TLS; ask for each certificate of it that matters)."""
        revocation = self._revocation
        return revocation is not None and revocation.is_revoked(cert)

    def _refuse_revoked(self, ders: tuple[bytes, ...], what: str) -> None:
        revocation = self._revocation
        if not revocation:
            return
        index = revocation.first_revoked(ders)
        if index is not None:
            self.rejected["revoked"] += 1
            which = "its certificate" if index == 0 else f"CA certificate {index} of its chain"
            raise RecordError("revoked", f"{what}: {which} is on the revocation list")

    def set_revocation(self, revocation: RevocationList) -> list[str]:
        """Put a revocation list in force: records held whose chain it names are dropped now (the router ids,
        sorted), and later ones refused. Never our own record (a router does not stop knowing itself; its peers
        refuse it). ``routing_version`` changes when anything was dropped, so routes are rebuilt without them."""
        self._revocation = revocation
        if not revocation:
            return []
        dropped = [router_id for router_id, held in self._held.items()
                   if router_id != self.local_id and revocation.first_revoked(held.signed.cert_chain) is not None]
        for router_id in dropped:
            self._remove(router_id)
        if dropped:
            self.revoked_removed += len(dropped)
            self.version += 1
        return sorted(dropped)

    def authorized(self, router_id: str, chain_path: str) -> bool:
        """Whether the certificate of the router's current verified record authorises it to serve ``chain_path``
        (whether or not the record claims the chain); False for a router we hold no record of."""
        held = self._held.get(router_id)
        return held is not None and held.leaf.authority.authorizes(chain_path)

    def signing_key(self, router_id: str) -> PublicKey | None:
        """The verified leaf public key of the router's current record (EC or RSA), or None for an unknown router:
        what the router core checks that router's request signatures and header attestations with."""
        held = self._held.get(router_id)
        return None if held is None else held.leaf.public_key

    def serves_patterns(self, router_id: str) -> tuple[str, ...]:
        """The serves patterns of the certificate of the router's current record (empty when unknown)."""
        held = self._held.get(router_id)
        return () if held is None else held.leaf.serves

    def genesis_of(self, chain_path: str, router_id: str) -> str | None:
        """The genesis hash the router's signed record states for the chain, if its certificate authorises the
        chain and the hash is known (a stub that does not know its genesis announces "": None here too)."""
        genesis = self._chains.get(chain_path, {}).get(router_id)
        return genesis or None

    def unauthorized_of(self, router_id: str) -> tuple[str, ...]:
        """The chain paths the router's current record claims without its certificate's authority (ignored)."""
        return self._unauthorized.get(router_id, ())

    def unauthorized(self) -> dict[str, list[str]]:
        """Router id -> the chain paths its current record claims without its certificate's authority (ignored);
        only routers with such claims, for /status."""
        return {router_id: list(paths) for router_id, paths in sorted(self._unauthorized.items())}

    def resource(self, ipath: str) -> ResourceEntry | None:
        """The entry for a resource; when routers describe it differently, the one of the lowest router id."""
        entries = self._resources.get(ipath)
        if not entries:
            return None
        return entries[min(entries)]

    def resources(self) -> list[tuple[ResourceEntry, tuple[str, ...]]]:
        """Every resource with the routers serving it, sorted by iPath; routers describing one iPath differently
        (say, two versions of a contract) give one entry each."""
        out: list[tuple[ResourceEntry, tuple[str, ...]]] = []
        for ipath in sorted(self._resources):
            groups: dict[ResourceEntry, list[str]] = {}
            for router_id, entry in sorted(self._resources[ipath].items()):
                groups.setdefault(entry, []).append(router_id)
            out.extend((entry, tuple(routers)) for entry, routers in groups.items())
        return out

    def clashes(self) -> list[ChainClash]:
        """Chain paths claimed with two or more different non-empty genesis hashes, sorted by path.

        An empty hash means "unknown" and does not clash by itself, but its router is listed with the others.
        """
        out = []
        for path in sorted(self._chains):
            claims = self._chains[path]
            if _clash(claims):
                out.append(ChainClash(path, dict(sorted(claims.items()))))
        return out

    def stats(self) -> dict[str, int]:
        """Flat counters for /status and metrics."""
        out = {
            "records": len(self._held),
            "version": self.version,
            "accepted": self.accepted,
            "stale": self.stale,
            "impostor": self.impostor,
            "own_stale": self.own_stale,
            "expired": self.expired,
            "full": self.full,
            "tombstones": len(self._tombstones),
            "unauthorized_claims": self.unauthorized_claims,
            "unauthorized_chains": sum(len(paths) for paths in self._unauthorized.values()),
            "unauthorized_routers": len(self._unauthorized),
            "revoked_removed": self.revoked_removed,
        }
        out.update({f"rejected_{reason}": count for reason, count in self.rejected.items()})
        return out

    # ------------------------------------------------------------------------------------------ bookkeeping

    def _store(self, signed: SignedRecord, blob: bytes, received_at: float, leaf: TrustedLeaf) -> None:
        router_id = signed.router_id
        record, unauthorized = authorized_view(signed.record, leaf)
        routing_version = self.routing_version
        previous = self._records.get(router_id)
        if router_id in self._held:
            self._remove(router_id)
        self.routing_version = routing_version + (previous is None or routing_differs(previous, record))
        self._held[router_id] = _Held(
            signed, signed.raw if signed.raw is not None else blob, received_at, leaf, unauthorized
        )
        if unauthorized:
            self._unauthorized[router_id] = unauthorized
            self.unauthorized_claims += len(unauthorized)
        self._summary ^= _fingerprint(router_id, signed.version)
        self._records[router_id] = record
        if self.observer is not None:
            self.observer(router_id, signed.version)
        for chain in record.chains:
            self._chains.setdefault(chain.path, {})[router_id] = chain.genesis_hash
        for resource in record.resources:
            self._resources.setdefault(resource.ipath, {})[router_id] = resource

    def _remove(self, router_id: str) -> None:
        self.routing_version += 1
        held = self._held.pop(router_id)
        self._summary ^= _fingerprint(router_id, held.signed.version)
        self._unauthorized.pop(router_id, None)
        record = self._records.pop(router_id)  # the authorised view, which the indexes were built from
        for chain in record.chains:
            claims = self._chains[chain.path]
            del claims[router_id]
            if not claims:
                del self._chains[chain.path]
        for resource in record.resources:
            entries = self._resources[resource.ipath]
            del entries[router_id]
            if not entries:
                del self._resources[resource.ipath]
