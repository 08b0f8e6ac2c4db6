"""Prometheus metrics of one router, served at ``GET /metrics`` (text exposition format, prometheus-client).

Counters the router keeps anyway (requests by outcome, errors by code, gossip, routing, verification, the
transaction layer, links) are read when Prometheus scrapes, by a collector: nothing is added to the request path
for them. Two histograms are observed as requests finish in the REST layer: latency by operation and outcome, and
the number of router hops a forwarded result crossed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RouterCollector(Collector):
    def __init__(self, router: Any, participant: Any = None) -> None:
        self.router = router
        #: The participant watcher (wecross.tx.participant), when the router runs the transaction layer.
        self.participant = participant

    def collect(self) -> Iterator[Any]:
        router = self.router
        rid = router.local_id
        requests = CounterMetricFamily("wecross_requests", "Requests handled, by kind (rest entry: local / "
                                       "forwarded; served for peers) and outcome", labels=["router", "kind",
                                                                                          "outcome"])
        for key, value in sorted(router.outcomes.items()):
            kind, _, outcome = key.rpartition("_")
            if outcome in ("ok", "failed"):
                requests.add_metric([rid, kind, outcome], value)
        yield requests
        failovers = CounterMetricFamily("wecross_failovers", "Requests moved to another path after a failure",
                                        labels=["router"])
        failovers.add_metric([rid], router.outcomes.get("failovers", 0))
        yield failovers
        errors = CounterMetricFamily("wecross_errors", "Failed requests by error code", labels=["router", "code"])
        for code, value in sorted(router.errors.items()):
            errors.add_metric([rid, code], value)
        yield errors

        routes = CounterMetricFamily("wecross_route_changes", "Chain routes added, moved or lost",
                                     labels=["router"])
        routes.add_metric([rid], router.route_changes)
        yield routes
        rebuilds = CounterMetricFamily("wecross_route_rebuilds", "Routing table rebuilds", labels=["router"])
        rebuilds.add_metric([rid], router.table.rebuilds)
        yield rebuilds
        reachable = GaugeMetricFamily("wecross_reachable_routers", "Routers with a route (this one included)",
                                      labels=["router"])
        reachable.add_metric([rid], router.table.reachable())
        yield reachable
        directory = GaugeMetricFamily("wecross_directory_records", "Router records held", labels=["router"])
        directory.add_metric([rid], len(router.directory))
        yield directory

        gossip = router.gossip.counters if router.gossip is not None else {}
        gossip_family = CounterMetricFamily("wecross_gossip", "Gossip events by kind (rounds, records accepted and "
                                            "sent, summaries and digests received, flow-control waits)",
                                            labels=["router", "event"])
        for event, value in sorted(gossip.items()):
            gossip_family.add_metric([rid, event], value)
        yield gossip_family

        peer_service = router.peer_service
        rtt = GaugeMetricFamily("wecross_link_rtt_seconds", "Smoothed round-trip time per link",
                                labels=["router", "peer"])
        loss = GaugeMetricFamily("wecross_link_loss", "Heartbeat loss per link (0..1)", labels=["router", "peer"])
        traffic = CounterMetricFamily("wecross_link_bytes", "Bytes per link and direction",
                                      labels=["router", "peer", "direction"])
        if peer_service is not None:
            for peer, link in sorted(peer_service.links.items()):
                snap = link.health.snapshot()
                if snap.srtt is not None:
                    rtt.add_metric([rid, peer], snap.srtt)
                loss.add_metric([rid, peer], snap.loss)
                traffic.add_metric([rid, peer, "in"], link.bytes_in)
                traffic.add_metric([rid, peer, "out"], link.bytes_out)
        yield rtt
        yield loss
        yield traffic

        if router.trust is not None:
            verification = CounterMetricFamily("wecross_verifications", "Results checked at this entry router, by "
                                               "outcome", labels=["router", "outcome"])
            for outcome, value in sorted(router.trust.counters.items()):
                verification.add_metric([rid, outcome], value)
            yield verification

        refused = CounterMetricFamily("wecross_auth_refused", "Requests, answers and headers refused by their "
                                      "end-to-end signature or authority check (wecross.attest), by check",
                                      labels=["router", "check"])
        for check, value in sorted(router.auth_refused.items()):
            refused.add_metric([rid, check], value)
        yield refused

        coordinator = router.coordinator
        if coordinator is not None:
            stats = coordinator.stats()
            txs = GaugeMetricFamily("wecross_transactions", "2PC transactions coordinated here, by state",
                                    labels=["router", "state"])
            for state in ("started", "committing", "committed", "rolling_back", "rolled_back"):
                txs.add_metric([rid, state], stats["by_state"].get(state, 0))
            yield txs
            tx_events = CounterMetricFamily("wecross_transaction_events", "Coordinator events (recovered, timed "
                                            "out, decision retries, heuristic outcomes)", labels=["router", "event"])
            for event in ("recovered", "timed_out", "retries", "heuristic", "log_failures"):
                tx_events.add_metric([rid, event], stats.get(event, 0))
            yield tx_events
            unlogged = GaugeMetricFamily("wecross_transactions_unlogged", "Transaction records whose log write "
                                         "failed and waits to be written again", labels=["router"])
            unlogged.add_metric([rid], stats.get("unlogged", 0))
            yield unlogged
        watcher = self.participant
        if watcher is not None:
            decided = CounterMetricFamily("wecross_participant_events", "Prepared participants here: coordinators "
                                          "asked, decisions carried out, and decisions taken alone (heuristic)",
                                          labels=["router", "event"])
            for event, value in sorted(watcher.counters.items()):
                decided.add_metric([rid, event], value)
            yield decided
        htlc = router.htlc_service
        if htlc is not None:
            open_htlc = GaugeMetricFamily("wecross_htlc_open", "Hash time-locked exchanges not finished",
                                          labels=["router"])
            open_htlc.add_metric([rid], htlc.stats()["open"])
            yield open_htlc


class RouterMetrics:
    """The registry of one router (not the process-wide default: tests and the simulator run many routers in one
    process)."""

    def __init__(self, router: Any, participant: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RouterCollector(router, participant))
        self.latency = Histogram("wecross_request_seconds", "REST request latency by operation and outcome",
                                 ["op", "outcome"], registry=self.registry, buckets=_LATENCY_BUCKETS)
        self.hops = Histogram("wecross_request_hops", "Routers a forwarded result crossed (1: one link)",
                              registry=self.registry, buckets=(1, 2, 3, 4, 6, 8, 12, 16))

    def observe(self, op: str, outcome: str, seconds: float, result: Any) -> None:
        self.latency.labels(op, outcome).observe(seconds)
        if isinstance(result, dict):
            path = result.get("path")
            if isinstance(path, list) and len(path) > 1:
                self.hops.observe(len(path) - 1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
