"""One router as a Twisted service tree: the object both ``twistd wecross`` and tests (and the simulator) run.

Start-up order matters and is explicit: stubs first (a router must know what it serves before it tells anyone),
then the router core, then peer links and the listeners. ``ready`` fires when the router accepts traffic, with the
real port numbers (configs may say port 0); a failure at any step fails ``ready`` with a message naming the step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.chain.store import HeaderStore
from wecross.chain.trust import TrustedResults
from wecross.chain.verifier import rehash_lookup
from wecross.config import Settings
from wecross.gossip.directory import Directory
from wecross.gossip.record import RecordSigner, RecordVerifier, SignedRecord
from wecross.gossip.service import GossipService
from wecross.governance.audit_store import AuditStore, regulator_sealer
from wecross.governance.keystore import Keystore, load_kek
from wecross.governance.reload import PolicyFile
from wecross.peer.service import LinkTransports, PeerService
from wecross.peer.tls import TLSMaterial, load_tls_material, rest_server_options
from wecross.peer.transports import TLSTransports
from wecross.pki.revocation import RevocationFile, RevocationList
from wecross.rest.api import make_site
from wecross.router import Router
from wecross.stub.interfaces import IUserAccounts, StubSettings
from wecross.stub.service import StubService
from wecross.tx.coordinator import Coordinator
from wecross.tx.htlc import Htlc, HtlcService
from wecross.tx.log import TxLog
from wecross.tx.participant import ParticipantWatcher
from wecross.wire.limits import Limits as WireLimits

log = Logger()


class StartupError(Exception):
    """The router could not start; the message says which step failed and why."""


@dataclass(frozen=True, slots=True)
class Ports:
    p2p: int | None
    rest: int | None


class RouterNode(MultiService):
    def __init__(
        self,
        settings: Settings,
        reactor: Any = None,
        *,
        transports: LinkTransports | None = None,
        rng: random.Random | None = None,
        material: TLSMaterial | None = None,
        epoch: int | None = None,
        record_verifier: RecordVerifier | None = None,
        record_parser: Callable[[bytes], SignedRecord] | None = None,
        transactions: bool = True,
    ) -> None:
        """The keyword arguments exist for the simulator, which runs many routers in one process: key material made
        in memory, epochs from its virtual clock, and one record verifier (with its caches) shared by all; and no
        transaction layer (``transactions=False``: no log file and log thread per simulated router)."""
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.reactor = reactor
        self.ready: Deferred[Ports] = Deferred()
        self._ports: list[IListeningPort] = []
        self.p2p_port: int | None = None
        self.rest_port: int | None = None

        stub_settings = [StubSettings(s.name, s.zone, s.type, dict(s.options), list(s.resources))
                         for s in settings.stubs]
        self.stubs = StubService(stub_settings, settings.data_dir, list(settings.plugin_dirs))
        self.stubs.setServiceParent(self)
        tls = settings.p2p_tls
        # The router's own key signs its gossip record; the CA admits the records of others (and TLS peers).
        if material is None:
            material = load_tls_material(tls.ca, tls.cert, tls.key, router_id=settings.router_id)
        self.material: TLSMaterial = material
        # Certificate validity is wall-clock time, whatever clock drives the router (the simulator's is virtual).
        self.directory = Directory(settings.router_id, record_verifier or RecordVerifier(self.material.trust_roots),
                                   parse=record_parser)
        # The same key signs the requests this router originates, its answers and its chains' headers
        # (wecross.attest), checked by others against the verified certificate of its gossip record.
        self.router = Router(settings, self.stubs, reactor, self.directory,
                             signing_key=self.material.private_key)
        # Revocation ([p2p] crl): read now, so a router never starts believing nothing is revoked because its list
        # was unreadable (RevocationError, a ValueError like the TLS errors above); then reloaded every crl_reload
        # seconds by a LoopingCall and pushed to the TLS layer, the directory and the peer service.
        self.revocation: RevocationFile | None = None
        self._revocation_loop: LoopingCall | None = None
        if tls.crl is not None:
            self.revocation = RevocationFile(tls.crl.read_bytes, str(tls.crl), self.material.trust_roots,
                                             reactor.seconds(), known_cas=self.material.chain)
        if transports is None:
            transports = TLSTransports(reactor, self.material, settings.p2p_listen, ciphers=tls.ciphers,
                                       connect_timeout=settings.timing.handshake_timeout,
                                       revocation=self.revocation.current if self.revocation else None)
        self.peers = PeerService(
            local_id=settings.router_id,
            zones=settings.zones,
            listen=settings.p2p_listen,
            peers=settings.peers,
            transports=transports,
            handler=self.router,
            timing=settings.timing,
            wire_limits=WireLimits(max_frame=settings.limits.max_frame),
            max_in_flight=settings.limits.max_in_flight,
            clock=reactor,
            rng=rng,
            epoch=epoch,
        )
        self.router.peer_service = self.peers
        if isinstance(transports, TLSTransports):
            transports.on_refusal = lambda refusal: self.peers.note_tls_refusal(refusal.kind)
        if self.revocation is not None:
            self._apply_revocation(self.revocation.current)
        self.gossip = GossipService(
            directory=self.directory,
            signer=RecordSigner.from_material(self.material),
            clock=reactor,
            epoch=self.peers.epoch,
            content=self.router.local_content,
            links=lambda: self.peers.links,
            on_change=self.router.directory_changed,
            interval=settings.gossip.interval,
            fanout=settings.gossip.fanout,
            ttl=settings.gossip.record_ttl,
            rng=rng,
        )
        self.router.gossip = self.gossip
        # The abstract chain: headers of remote chains, checked before any proof against them is believed.
        # Both look the chain type's verifier up in the stub service's mapping, filled when the stubs load.
        self.headers = HeaderStore(settings.data_dir, settings.trust, reactor, rehash_lookup(self.stubs.verifiers))
        self.router.trust = TrustedResults(self.headers, self.router.fetch_headers, self.router.chain_type_of,
                                           self.router.replicas_of, batch=settings.trust.batch,
                                           resource_kind=self.router.resource_kind,
                                           max_read_lag=settings.trust.max_read_lag,
                                           verifiers=self.stubs.verifiers)
        # Headers inside proofs count only with the chain authority's signature; genesis from signed records.
        self.router.trust.authenticate_header = self.router.authenticate_header
        self.router.trust.genesis_of = lambda chain, owner: self.directory.genesis_of(chain, owner)
        self.coordinator: Coordinator | None = None
        self.participant: ParticipantWatcher | None = None
        self.htlc: HtlcService | None = None
        if transactions:
            tx = settings.tx
            fault_file = Path(tx.test_log_fault_file) if tx.test_log_fault_file else None
            self.coordinator = Coordinator(settings.router_id, TxLog(settings.data_dir / "tx-log.sqlite", reactor,
                                                                     synchronous=tx.log_sync, fault_file=fault_file),
                                           self.router, reactor, default_timeout=tx.default_timeout,
                                           max_timeout=tx.max_timeout, rng=rng, retry_max=tx.retry_max,
                                           hold_after_decision=tx.test_hold_after_decision,
                                           hold_between_participants=tx.test_hold_between_participants)
            self.router.coordinator = self.coordinator
            # Records it coordinates are signed; records to adopt must be signed by their coordinator.
            self.coordinator.sign_record = self.router.sign_tx_record
            self.coordinator.verify_record = self.router.verify_tx_record
            self.participant = ParticipantWatcher(self.router, self.stubs.stubs, reactor,
                                                  timeout=tx.participant_timeout, interval=tx.check_interval,
                                                  heuristic=tx.participant_heuristic,
                                                  heuristic_after=tx.participant_heuristic_after)
            self.htlc = HtlcService(settings.router_id, self.router,
                                    TxLog(settings.data_dir / "htlc-log.sqlite", reactor, synchronous=tx.log_sync,
                                          parse=Htlc.from_record),
                                    reactor, interval=tx.htlc_interval, default_margin=tx.htlc_margin)
            self.router.htlc_service = self.htlc
        # Permissions ([governance] acl_file): read now, so a router never starts with rules it could not read
        # (AclError, a ConfigError); reloaded every acl_reload seconds without a restart.
        self._acl_loop: LoopingCall | None = None
        acl = settings.governance.acl_file
        if acl is not None:
            def stat() -> tuple[float, int]:
                info = acl.stat()
                return info.st_mtime, info.st_size

            self.router.governance.policy = PolicyFile(acl.read_bytes, str(acl), reactor.seconds(), stat=stat)
        # Users' chain accounts ([keystore]): opened only when some stub acts from users' own accounts.
        self.keystore: Keystore | None = None
        if any(stub.options.get("per_user_accounts") for stub in settings.stubs):
            self.keystore = Keystore.in_data_dir(
                settings.data_dir, load_kek(settings.keystore.key_file),
                chain_types={f"{s.zone}.{s.name}": s.type for s in settings.stubs},
                create_on_first_use=settings.keystore.create_on_first_use)
            for stub in self.stubs.load().values():
                if IUserAccounts.providedBy(stub):
                    stub.use_keystore(self.keystore)
        # The audit trail (a real router; the simulator's thousands keep none).
        self.audit: AuditStore | None = None
        if transactions and settings.audit.enabled:
            sealer = regulator_sealer(settings.audit.regulator_cert) if settings.audit.regulator_cert else None
            self.audit = AuditStore(settings.audit.file or settings.data_dir / "audit.sqlite", reactor,
                                    settings.router_id, sealer=sealer)
        metrics = None
        if transactions:  # a real router (the simulator's thousands skip the registry)
            from wecross.metrics import RouterMetrics

            metrics = RouterMetrics(self.router, self.participant)
        self.site = make_site(self.router, max_body=settings.rest.max_body, metrics=metrics,
                              header_timeout=settings.rest.header_timeout, body_timeout=settings.rest.body_timeout,
                              max_connections_per_client=settings.rest.max_connections_per_client,
                              limits=settings.limits, governance=self.router.governance, audit=self.audit,
                              is_revoked=self.is_revoked if self.revocation is not None else None,
                              keystore=self.keystore)

    def is_revoked(self, cert: Any) -> bool:
        """Whether the revocation list in force names ``cert`` (x509.Certificate or DER): for the REST layer."""
        return self.directory.is_revoked(cert)

    def _apply_revocation(self, revocation: RevocationList) -> None:
        dropped = self.directory.set_revocation(revocation)
        set_tls = getattr(self.peers.transports, "set_revocation", None)
        if set_tls is not None:
            set_tls(revocation)
        cut = self.peers.apply_revocation(revocation)
        if dropped:
            self.router.directory_changed()
        own = (self.material.certificate, *self.material.chain)
        if revocation.first_revoked(own) is not None:
            log.critical("router {id}: this router's own certificate is revoked: its peers will refuse it",
                         id=self.settings.router_id)
        if dropped or cut:
            log.warn("router {id}: revocation: dropped the records of {dropped}, closed the links to {cut}",
                     id=self.settings.router_id, dropped=dropped, cut=cut)

    def reload_revocation(self) -> None:
        """Look at the revocation file; put a changed valid list in force, keep the old one on an invalid file."""
        if self.revocation is None:
            return
        try:
            self._reload_revocation(self.revocation)
        except Exception:  # the loop must survive whatever one reload meets, or revocations would stop applying
            log.failure("router {id}: revocation reload failed", id=self.settings.router_id)

    def _reload_revocation(self, revocation: RevocationFile) -> None:
        result = revocation.maybe_reload(self.reactor.seconds())
        if result.status == "reloaded":
            log.info("router {id}: revocation list reloaded: {what}", id=self.settings.router_id,
                     what=revocation.current.describe())
            self._apply_revocation(revocation.current)
        elif result.status == "rejected":
            log.error("router {id}: revocation list {source} not loaded, the previous one stays in force: {why}",
                      id=self.settings.router_id, source=revocation.source, why="; ".join(result.errors))

    def startService(self) -> None:
        super().startService()  # starts the stub service; the rest waits for it
        if self.revocation is not None:
            loop = LoopingCall(self.reload_revocation)
            loop.clock = self.reactor
            loop.start(self.settings.p2p_tls.crl_reload, now=False).addErrback(
                lambda failure: log.failure("revocation reload loop stopped", failure))
            self._revocation_loop = loop
        if self.router.governance.policy is not None:
            acl_loop = LoopingCall(self._reload_acl)
            acl_loop.clock = self.reactor
            acl_loop.start(self.settings.governance.acl_reload, now=False).addErrback(
                lambda failure: log.failure("ACL reload loop stopped", failure))
            self._acl_loop = acl_loop
        if self.audit is not None:
            self.audit.open()
            self.router.audit = self.audit.record
        d = self.stubs.ready
        d.addCallback(lambda _: self.headers.start())
        d.addCallback(lambda _: self.router.start())
        d.addCallback(lambda _: self._start_network())
        d.addCallbacks(self._started, self._failed)

    def _start_network(self) -> Deferred[None]:
        self.gossip.setServiceParent(self)  # signs and installs our record before any link can ask for it
        self.peers.setServiceParent(self)
        if self.coordinator is not None and self.participant is not None:
            # After the links: recovery re-sends decisions at once (and retries until routes are up).
            self.coordinator.setServiceParent(self)
            self.participant.setServiceParent(self)
            if self.htlc is not None:
                self.htlc.setServiceParent(self)

        def got_p2p(port: IListeningPort | None) -> Deferred[None]:
            if port is not None:
                self._ports.append(port)
                self.p2p_port = port.getHost().port
            return self._listen_rest()

        return self.peers.listen_now().addCallback(got_p2p)

    def _listen_rest(self) -> Deferred[None]:
        rest = self.settings.rest
        if rest.listen is None:
            return defer.succeed(None)
        if rest.tls is not None:
            material = load_tls_material(rest.tls.ca, rest.tls.cert, rest.tls.key)
            options = rest_server_options(material, require_client_cert=rest.require_client_cert)
            endpoint: Any = SSL4ServerEndpoint(self.reactor, rest.listen.port, options, interface=rest.listen.host)
        else:
            endpoint = TCP4ServerEndpoint(self.reactor, rest.listen.port, interface=rest.listen.host)

        def listening(port: IListeningPort) -> None:
            self._ports.append(port)
            self.rest_port = port.getHost().port
            scheme = "https" if rest.tls else "http"
            log.info("router {id}: REST API at {scheme}://{host}:{port}/", id=self.settings.router_id,
                     scheme=scheme, host=rest.listen.host if rest.listen else "", port=self.rest_port)

        return endpoint.listen(self.site).addCallback(listening)

    def _started(self, _: object) -> None:
        log.info("router {id} ready: zones {zones}, chains {chains}, {n} configured peers",
                 id=self.settings.router_id, zones=list(self.settings.zones),
                 chains=sorted(self.stubs.stubs()), n=len(self.settings.peers))
        self.ready.callback(Ports(self.p2p_port, self.rest_port))

    def _failed(self, failure: Failure) -> None:
        message = failure.getErrorMessage()
        log.critical("router {id} failed to start: {message}", id=self.settings.router_id, message=message)
        self.ready.errback(StartupError(f"router {self.settings.router_id} failed to start: {message}"))

    def _reload_acl(self) -> None:
        try:
            self.router.governance.maybe_reload(self.reactor.seconds(), lambda line: log.warn(
                "router {id}: {line}", id=self.settings.router_id, line=line))
        except Exception:  # the loop must survive whatever one reload meets
            log.failure("router {id}: ACL reload failed", id=self.settings.router_id)

    def stopService(self) -> Deferred[None]:
        if self._revocation_loop is not None and self._revocation_loop.running:
            self._revocation_loop.stop()
        self._revocation_loop = None
        if self._acl_loop is not None and self._acl_loop.running:
            self._acl_loop.stop()
        self._acl_loop = None
        audit, self.audit = self.audit, None
        self.router.audit = None
        self.router.stop()
        ports, self._ports = self._ports, []
        stopping = [defer.maybeDeferred(p.stopListening) for p in ports]
        self.site.close_connections()
        d = defer.gatherResults(stopping, consumeErrors=True)
        d.addBoth(lambda _: super(RouterNode, self).stopService())
        d.addBoth(lambda _: self.headers.stop())
        keystore = self.keystore
        if keystore is not None:
            d.addBoth(lambda result: (keystore.close(), result)[1])
        if audit is not None:
            d.addBoth(lambda result: audit.close().addBoth(lambda _: result))
        return d
