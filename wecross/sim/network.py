"""Many real routers in one process: each a :class:`~wecross.node.RouterNode`, as ``twistd wecross`` runs it.

What differs from a daemon is only what the node is handed: the virtual clock instead of the reactor, simulated
links instead of TCP + TLS, key material made in memory, a seeded random generator, epochs from the virtual clock,
embedded chains writing on the calling thread, and one record verifier shared by all routers. Sharing the verifier
is sound because verification is a pure function of the record's bytes and the trust roots, which every router of
a simulated network has in common: the first router to receive a record checks its certificate chain and
signature for real, the others find the verdict in the memo (and refusals are never memoised).
"""

from __future__ import annotations

import datetime
import hashlib
import random
import shutil
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wecross.config import (
    Address,
    GossipSettings,
    Limits,
    PeerSettings,
    RestSettings,
    RoutingSettings,
    Settings,
    StubConfig,
    Timing,
    TLSPaths,
)
from wecross.gossip.directory import Directory
from wecross.gossip.record import DEFAULT_RECORD_LIMITS, RecordVerifier, RouterRecord, SignedRecord
from wecross.node import RouterNode
from wecross.peer.tls import TLSMaterial
from wecross.pki.serves import serves_extension
from wecross.routing.graph import build_graph
from wecross.sim.clock import SimClock
from wecross.sim.links import SimNet, SimTransports
from wecross.sim.measure import ConvergenceTracker
from wecross.sim.model import SimTopology

#: The resources of every simulated embedded chain (as in the sample configs).
CHAIN_RESOURCES: list[dict[str, Any]] = [
    {"name": "hello", "kind": "kv"},
    {"name": "asset", "kind": "asset", "initial": {"alice": 1000, "bob": 500}},
]


_EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def _seeded_key(seed: int, name: str) -> ec.EllipticCurvePrivateKey:
    digest = hashlib.sha256(f"wecross-sim/{seed}/{name}".encode()).digest()
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # of P-256
    return ec.derive_private_key(int.from_bytes(digest, "big") % (order - 1) + 1, ec.SECP256R1())


def simulated_pki(
    router_ids: list[str], seed: int, serves: Mapping[str, Sequence[str]] | None = None
) -> dict[str, TLSMaterial]:
    """A CA and one certificate per router, all derived from the seed: the same seed gives the same keys,
    serials, dates and (deterministic ECDSA) signatures, hence the same record sizes and the same run.

    Certificates the way ``wecross certs`` makes them for routers (CN and DNS SAN the router id, digitalSignature,
    not a CA, the chains it may serve in the serves extension), but valid from 2025 to 2100 so that a run never
    depends on the day it is made. ``serves`` gives each router's chain patterns; a router it does not list (or
    every router, without it) may serve any chain (``*``).
    """
    root_key = _seeded_key(seed, "ca")
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WeCross Simulation CA")])
    not_after = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name).public_key(root_key.public_key())
        .serial_number(1).not_valid_before(_EPOCH).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(root_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    materials = {}
    for serial, rid in enumerate(router_ids, start=2):
        key = _seeded_key(seed, rid)
        patterns = ("*",) if serves is None or rid not in serves else tuple(serves[rid])
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, rid)])).issuer_name(root_name)
            .public_key(key.public_key()).serial_number(serial).not_valid_before(_EPOCH).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(rid)]), critical=False)
            .add_extension(serves_extension(patterns), critical=False)
            .sign(root_key, hashes.SHA256(), ecdsa_deterministic=True)
        )
        materials[rid] = TLSMaterial(trust_roots=(root,), certificate=cert, private_key=key, chain=())
    return materials


class SharedVerifier(RecordVerifier):
    """One verifier for every simulated router, with a memo of the records it accepted."""

    def __init__(self, material: TLSMaterial) -> None:
        super().__init__(material.trust_roots, cache_size=1 << 20)
        self._accepted: set[tuple[bytes, bytes]] = set()
        self._parsed: dict[bytes, SignedRecord] = {}
        self.memo_hits = 0

    def verify_signed(self, signed: SignedRecord) -> SignedRecord:
        key = (signed.signature, signed.body)
        if key in self._accepted:
            self.memo_hits += 1
            return signed
        super().verify_signed(signed)
        self._accepted.add(key)
        return signed

    def parse(self, blob: bytes) -> SignedRecord:
        """SignedRecord.from_bytes, memoised: every router receives every record, most several times."""
        signed = self._parsed.get(blob)
        if signed is None:
            if len(self._parsed) > 500_000:
                self._parsed.clear()
            signed = SignedRecord.from_bytes(blob, DEFAULT_RECORD_LIMITS)
            self._parsed[blob] = signed
        return signed


class SharedGraphs:
    """Routing graphs shared between routers whose directories hold exactly the same records.

    ``build_graph`` is a pure function of the records; the directory's summary (record count and the checksum of
    every (router, version)) names that set in O(1). After convergence a thousand routers hold one set of records:
    they build its graph once instead of a thousand times. Each router still runs its own routing table (its own
    Dijkstra, transit and zone rules, hysteresis) on it.
    """

    def __init__(self, size: int = 16) -> None:
        self._graphs: OrderedDict[tuple[int, bytes], Any] = OrderedDict()
        self._size = size
        self.hits = 0
        self.builds = 0

    def builder(self, directory: Directory) -> Callable[[Mapping[str, RouterRecord]], Any]:
        def build(records: Mapping[str, RouterRecord]) -> Any:
            key = directory.summary()
            graph = self._graphs.get(key)
            if graph is not None:
                self.hits += 1
                self._graphs.move_to_end(key)
                return graph
            self.builds += 1
            graph = build_graph(records)
            self._graphs[key] = graph
            if len(self._graphs) > self._size:
                self._graphs.popitem(last=False)
            return graph

        return build


class SimNetwork:
    """The routers of one topology on one clock, started, stopped and crashed on command."""

    def __init__(
        self,
        topology: SimTopology,
        workdir: Path,
        *,
        seed: int = 0,
        timing: Timing | None = None,
        gossip: GossipSettings | None = None,
        routing: RoutingSettings | None = None,
        limits: Limits | None = None,
        clock: SimClock | None = None,
    ) -> None:
        self.topology = topology
        self.workdir = workdir
        self.seed = seed
        self.clock = clock or SimClock()
        self.timing = timing or Timing(heartbeat_interval=1.0, dead_after=3, handshake_timeout=5.0,
                                       backoff_initial=0.5, backoff_max=8.0)
        self.gossip = gossip or GossipSettings()
        self.routing = routing or RoutingSettings()
        self.limits = limits or Limits(request_deadline=10.0)
        # Chains start from genesis in every run: data left by an earlier run in the same place would change heights
        # (and so records and results). Within a run, a restarted router finds its chain as it left it.
        shutil.rmtree(workdir / "data", ignore_errors=True)
        self.net = SimNet(self.clock, topology.links, seed)
        self.tracker = ConvergenceTracker(self._held_version)
        self.nodes: dict[str, RouterNode] = {}
        self.starts: dict[str, int] = {}
        #: Called with (router id, node) after each start, before the node runs: how a run attaches its counters.
        self.started_hooks: list[Callable[[str, RouterNode], None]] = []
        self._materials = self._make_pki()
        self.verifier = SharedVerifier(next(iter(self._materials.values())))
        self.graphs = SharedGraphs()
        # Who dials whom: the link's first router, as in topology files.
        self._dials: dict[str, list[str]] = {rid: [] for rid in topology.routers}
        for link in topology.links:
            self._dials[link.a].append(link.b)

    def _held_version(self, holder: str, router_id: str) -> Any:
        node = self.nodes.get(holder)
        record = node.directory.records().get(router_id) if node is not None else None
        return None if record is None else record.version

    def _make_pki(self) -> dict[str, TLSMaterial]:
        """Each router's certificate authorises exactly the chains its topology gives it (as settings() makes
        its stubs): the simulated network runs under the same chain authority as a deployed one."""
        serves = {rid: tuple(f"{spec.zones[0]}.{chain}" for chain in spec.chains)
                  for rid, spec in self.topology.routers.items()}
        return simulated_pki(sorted(self.topology.routers), self.seed, serves)

    def settings(self, router_id: str) -> Settings:
        spec = self.topology.routers[router_id]
        placeholder = self.workdir / "no-file"
        stubs = tuple(StubConfig(name=chain, zone=spec.zones[0], type="embedded", options={},
                                 resources=[dict(r) for r in CHAIN_RESOURCES]) for chain in spec.chains)
        return Settings(
            source=self.workdir / f"{router_id}.sim",
            router_id=router_id,
            zones=spec.zones,
            data_dir=self.workdir / "data" / router_id,
            p2p_listen=Address(router_id, 1),
            p2p_tls=TLSPaths(placeholder, placeholder, placeholder),
            peers=tuple(PeerSettings(Address(peer, 1), id=peer) for peer in self._dials[router_id]),
            rest=RestSettings(listen=None, tls=None, require_client_cert=False, max_body=1 << 20),
            timing=self.timing,
            limits=self.limits,
            stubs=stubs,
            transit=spec.transit,
            gossip=self.gossip,
            routing=self.routing,
        )

    # -- life cycle -----------------------------------------------------------------------------------------------

    def running(self, router_id: str) -> bool:
        node = self.nodes.get(router_id)
        return node is not None and bool(node.running)

    def start(self, router_id: str) -> RouterNode:
        """Start (or restart, with a new epoch and the chain data it had) one router."""
        if self.running(router_id):
            return self.nodes[router_id]
        count = self.starts.get(router_id, 0) + 1
        self.starts[router_id] = count
        self.net.silent.discard(router_id)
        node = RouterNode(
            self.settings(router_id),
            self.clock,
            transports=SimTransports(self.net, router_id),
            rng=random.Random(f"{self.seed}/{router_id}/{count}"),
            material=self._materials[router_id],
            epoch=int(self.clock.seconds() * 1000) + count,
            record_verifier=self.verifier,
            record_parser=self.verifier.parse,
            transactions=False,
        )
        node.router.id_prefix = random.Random(f"{self.seed}/{router_id}/{count}/ids").randbytes(8)
        node.headers.simulate(self.clock)
        for stub in node.stubs.load().values():
            ledger = getattr(stub, "ledger", None)
            if ledger is not None:
                ledger.simulate(self.clock)
        self.tracker.router_up(router_id)
        node.directory.observer = self.tracker.observer(router_id)
        node.router.graph_builder = self.graphs.builder(node.directory)
        self.nodes[router_id] = node
        for hook in self.started_hooks:
            hook(router_id, node)
        node.startService()
        return node

    def start_all(self) -> None:
        for router_id in sorted(self.topology.routers):
            self.start(router_id)

    def stop(self, router_id: str) -> None:
        """A graceful stop: the router says BYE and closes its links; its neighbours hear it at once."""
        node = self.nodes.get(router_id)
        if node is None or not node.running:
            return
        self.tracker.router_down(router_id)
        node.stopService()

    def crash(self, router_id: str) -> None:
        """The machine vanishes: nothing it had in flight arrives, nobody is told; heartbeats will notice."""
        node = self.nodes.get(router_id)
        if node is None or not node.running:
            return
        self.net.silent.add(router_id)
        self.tracker.router_down(router_id)
        node.stopService()

    def stop_all(self) -> None:
        for router_id in sorted(self.nodes):
            self.stop(router_id)
        self.clock.advance(1.0)

    # -- ground truth -----------------------------------------------------------------------------------------------

    def live(self) -> set[str]:
        return set(self.tracker.live)

    def physically_consistent(self) -> bool:
        """Every running router's newest record lists exactly its up links to running routers, all measured."""
        live = self.tracker.live
        expected: dict[str, set[str]] = {rid: set() for rid in live}
        for link in self.net.links.values():
            spec = link.spec
            if spec.up and spec.a in live and spec.b in live:
                expected[spec.a].add(spec.b)
                expected[spec.b].add(spec.a)
        for rid in live:
            node = self.nodes[rid]
            local = node.directory.local
            if local is None:
                return False
            if {info.peer for info in local.record.links} != expected[rid]:
                return False
        return True

    def components(self) -> list[set[str]]:
        """The running routers grouped by what they can physically reach (one group unless partitioned)."""
        live = self.tracker.live
        graph = nx.Graph()
        graph.add_nodes_from(live)
        graph.add_edges_from((link.spec.a, link.spec.b) for link in self.net.links.values()
                             if link.spec.up and link.spec.a in live and link.spec.b in live)
        return [set(c) for c in nx.connected_components(graph)]

    def records_converged_within(self, components: list[set[str]]) -> bool:
        """Every running router holds the newest record of every router it can reach. O(sum of |C|²): the
        partitioned case only; one component is what the incremental tracker answers in O(1)."""
        latest = self.tracker.latest
        for component in components:
            for holder in component:
                records = self.nodes[holder].directory.records()
                for rid in component:
                    record = records.get(rid)
                    if record is None or record.version != latest.get(rid):
                        return False
        return True

    def converged(self) -> bool:
        return self.tracker.records_converged and self.physically_consistent()
