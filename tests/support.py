"""Shared fixtures for the router tests: a PKI made once per run, router settings, routers started for real."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred

from wecross.config import Settings, settings_from_dict
from wecross.node import RouterNode
from wecross.pki import authority

ROUTER_IDS = ("router-a", "router-b", "router-c", "router-d", "router-e", "router-f", "router-g", "router-h")
#: Routers whose certificates authorise only some chains (wecross certs --serves), for chain authority and tamper
#: tests: a router-x running a stub for payment.bank-a announces it, and every other router ignores the claim.
RESTRICTED_ROUTERS: dict[str, tuple[str, ...]] = {
    "router-w": (),  # a certificate without any serves pattern: authorised for nothing
    "router-x": ("nowhere.*",),
    "router-y": ("payment.bank-a",),
    "router-z": ("evidence.*",),
}


@cache
def pki() -> Path:
    """One CA with an intermediate, router certs for ROUTER_IDS (each may serve any chain, '*') and for
    RESTRICTED_ROUTERS (only the chains listed there), and a CA of strangers with one router cert."""
    base = Path(tempfile.mkdtemp(prefix="wecross-pki-"))
    root, intermediate = authority.create_ca_chain(1)
    authority.write_certificates(base / "ca.crt", [root.cert])
    serves = {**dict.fromkeys(ROUTER_IDS, ("*",)), **RESTRICTED_ROUTERS}
    for rid, patterns in serves.items():
        leaf = authority.issue_router_cert(intermediate, rid, serves=patterns)
        authority.write_certificates(base / rid / "chain.pem", leaf.full_chain)
        authority.write_private_key(base / rid / "key.pem", leaf.key)
    # Users: alice (no organisation: the oldest tests know her so), bob of org Court, carol of org BankA.
    for user, org in (("alice", None), ("bob", "Court"), ("carol", "BankA")):
        client = authority.issue_client_cert(intermediate, user, org=org)
        authority.write_certificates(base / user / "chain.pem", client.full_chain)
        authority.write_private_key(base / user / "key.pem", client.key)
    (stranger_root,) = authority.create_ca_chain(0, root_name="Stranger CA")
    authority.write_certificates(base / "stranger" / "ca.crt", [stranger_root.cert])
    for rid in ("router-a", "router-b"):
        leaf = authority.issue_router_cert(stranger_root, rid, serves=("*",))
        authority.write_certificates(base / "stranger" / rid / "chain.pem", leaf.full_chain)
        authority.write_private_key(base / "stranger" / rid / "key.pem", leaf.key)
    return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def router_settings(
    router_id: str,
    workdir: Path,
    *,
    zone: str = "payment",
    zones: list[str] | None = None,
    chain: str | None = None,
    resources: list[dict[str, Any]] | None = None,
    peers: list[dict[str, Any]] | None = None,
    p2p_port: int = 0,
    rest: bool = True,
    timing: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    cert_dir: Path | None = None,
) -> Settings:
    certs = cert_dir or pki() / router_id
    document: dict[str, Any] = {
        "router": {"id": router_id, "zones": zones or [zone], "data_dir": str(workdir / router_id)},
        "p2p": {
            "listen": f"127.0.0.1:{p2p_port}",
            "ca": str((cert_dir.parent if cert_dir else pki()) / "ca.crt"),
            "cert": str(certs / "chain.pem"),
            "key": str(certs / "key.pem"),
            "peers": peers or [],
        },
        "timing": {"heartbeat_interval": 0.2, "dead_after": 3, "backoff_initial": 0.05, "backoff_max": 0.5,
                   **(timing or {})},
        "limits": limits or {},
        "gossip": {"interval": 0.2, "record_ttl": 5.0},
        "routing": {"rebuild_delay": 0.02},
        "stubs": [],
    }
    if rest:
        document["rest"] = {"listen": "127.0.0.1:0"}
    if chain is not None:
        document["stubs"].append({
            "name": chain, "zone": zone, "type": "embedded",
            "resources": resources if resources is not None else [
                {"name": "hello", "kind": "kv"},
                {"name": "asset", "kind": "asset", "initial": {"alice": 1000, "anonymous": 100}},
            ],
        })
    return settings_from_dict(document, workdir / f"{router_id}.toml")


def start(settings: Settings) -> Deferred[RouterNode]:
    """A started router; if it cannot start, whatever it did start is stopped before the failure is passed on."""
    node = RouterNode(settings, reactor)
    node.startService()

    def failed(failure: Any) -> Deferred[Any]:
        return stop(node).addBoth(lambda _: failure)

    return node.ready.addCallbacks(lambda _: node, failed)


def stop(node: RouterNode) -> Deferred[None]:
    if not node.running:
        return defer.succeed(None)
    return defer.maybeDeferred(node.stopService)


def until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Deferred[None]:
    """Poll a condition on the reactor (never sleeping it); fail the test if it does not hold in time."""
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def loop() -> Any:
        while not predicate():
            if reactor.seconds() > deadline:  # type: ignore[attr-defined]
                raise AssertionError(f"condition not met within {timeout} s: {predicate}")
            yield deferLater(reactor, interval, lambda: None)

    return loop()


class Network:
    """Several routers on 127.0.0.1 linked as a topology says: ``links`` are (u, v) pairs, u dials v."""

    def __init__(self, workdir: Path, routers: dict[str, dict[str, Any]], links: list[tuple[str, str]],
                 adjust: Callable[[str, Settings], Settings] | None = None) -> None:
        """``routers``: id -> {"zones", "chain" (optional), "resources" (optional: the chain's resources)};
        ``adjust(router id, settings)`` returns a router's settings changed for a test (trust, tx, REST TLS...)."""
        self.workdir = workdir
        self.spec = routers
        self.links = links
        self.adjust = adjust
        self.ports = {rid: free_port() for rid in routers}
        self.nodes: dict[str, RouterNode] = {}

    def settings(self, rid: str) -> Settings:
        spec = self.spec[rid]
        peers = [{"address": f"127.0.0.1:{self.ports[v]}", "id": v} for u, v in self.links if u == rid]
        settings = router_settings(rid, self.workdir, zones=spec["zones"], zone=spec["zones"][0],
                                   chain=spec.get("chain"), resources=spec.get("resources"), peers=peers,
                                   p2p_port=self.ports[rid])
        return settings if self.adjust is None else self.adjust(rid, settings)

    @defer.inlineCallbacks
    def start(self, *only: str) -> Any:
        """Start the routers; a port taken meanwhile by another test process (free_port() cannot reserve it)
        means: stop what started, and try again with fresh ports (or, for a restart, the same port a bit later)."""
        from twisted.internet.task import deferLater

        names = only or tuple(self.spec)
        failures: list[Any] = []
        for _ in range(5):
            results = yield defer.DeferredList([start(self.settings(rid)) for rid in names], consumeErrors=True)
            started = {rid: value for rid, (ok, value) in zip(names, results, strict=True) if ok}
            failures = [value for ok, value in results if not ok]
            if not failures:
                self.nodes.update(started)
                return
            yield defer.gatherResults([stop(node) for node in started.values()])
            if not any("already in use" in f.getErrorMessage() for f in failures):
                break
            if only:
                yield deferLater(reactor, 0.2, lambda: None)
            else:
                self.ports = {rid: free_port() for rid in self.spec}
        failures[0].raiseException()

    def stop(self, *only: str) -> Deferred[Any]:
        names = only or tuple(self.nodes)
        return defer.gatherResults([stop(self.nodes.pop(rid)) for rid in names if rid in self.nodes])

    def linked(self) -> bool:
        """Every link of the topology between running routers is up on both ends."""
        return all(v in self.nodes[u].peers.links and u in self.nodes[v].peers.links
                   for u, v in self.links if u in self.nodes and v in self.nodes)


def signed_request(node: RouterNode, **fields: Any) -> Any:
    """A wire Request as ``node``'s router would originate it: a signed expiry ``request_deadline`` ahead (unless
    given) and its signature over the end-to-end fields (wecross.attest.request_body), in the authenticator form
    (scheme byte 1: a signature, never a MAC: a test may name any origin)."""
    from wecross import attest
    from wecross.wire.messages import Request

    key = node.router.signing_key
    assert key is not None
    fields.setdefault("expires_ms", int((reactor.seconds() + node.settings.limits.request_deadline) * 1000))
    body = attest.request_body(fields["request_id"], fields["origin"], fields["destination"], fields["expires_ms"],
                               fields["op"], fields["ipath"], fields["method"], fields["args"], fields["sender"])
    fields.setdefault("signature", bytes((attest.SCHEME_SIGNATURE,)) + attest.sign(key, body))
    return Request(**fields)


@defer.inlineCallbacks
def started_network(case: Any, routers: dict[str, dict[str, Any]], links: list[tuple[str, str]], chain: str, *,
                    routed: tuple[str, ...] = ("router-a", "router-b"),
                    adjust: Callable[[str, Settings], Settings] | None = None) -> Any:
    """A Network of real routers for ``case`` (a trial TestCase: its temp dir, stopped at cleanup), started and
    linked, with a route to ``chain`` at every router of ``routed``."""
    work = Path(case.mktemp())
    work.mkdir()
    net = Network(work, routers, links, adjust=adjust)
    case.addCleanup(net.stop)
    yield net.start()
    yield until(lambda: net.linked() and all(net.nodes[r].router.table.route(chain) is not None for r in routed),
                timeout=30)
    return net
