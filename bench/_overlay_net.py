"""Stage-setting for ``bench/overlay.py``: the topologies, router daemons for the line, a keep-alive HTTP client, and
the tools that make a border router fail (silently or cleanly) and time what its neighbours do about it.

Nothing here decides what a figure means; it only builds the networks and records when things happen, so that
``bench/overlay.py`` can stay about the measurement.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench._common import BenchError, ProcessGroup, free_port, get_json, wait_for
from tests import support

# --------------------------------------------------------------------------------------------------- topologies

#: The line: router-a .. router-f in one zone, each serving its own chain, so chain ``k`` is ``k`` hops from router-a.
LINE_ZONE = "line"
LINE_IDS: tuple[str, ...] = support.ROUTER_IDS[:6]
LINE: dict[str, dict[str, Any]] = {rid: {"zones": [LINE_ZONE], "chain": f"chain-{rid[-1]}"} for rid in LINE_IDS}
LINE_LINKS: list[tuple[str, str]] = list(pairwise(LINE_IDS))  # each router dials the next one
RESOURCE = "asset"
CALL_METHOD, CALL_ARGS = "balanceOf", ["alice"]
BALANCE = 1000  # what support.router_settings (and the daemon configs below) give alice on every chain


def line_chain(hops: int) -> str:
    """The chain path ``hops`` hops away from router-a on the line."""
    return f"{LINE_ZONE}.{LINE[LINE_IDS[hops]]['chain']}"


# --------------------------------------------------------------------------------------------------- daemons


def line_toml(rid: str, *, certs: Path, work: Path, p2p: dict[str, int], rest: dict[str, int]) -> str:
    """A daemon config with the same timing, gossip and routing settings as ``tests.support.router_settings``, so
    the in-process and the multi-process line differ only in how the routers share the machine."""
    spec = LINE[rid]
    peers = ", ".join(f'{{ address = "127.0.0.1:{p2p[v]}", id = "{v}" }}' for u, v in LINE_LINKS if u == rid)
    return f"""# Written by bench/overlay.py; thrown away after the run.
[router]
id = "{rid}"
zones = ["{LINE_ZONE}"]
data_dir = "{work / 'data' / rid}"

[p2p]
listen = "127.0.0.1:{p2p[rid]}"
ca = "{certs / 'ca.crt'}"
cert = "{certs / rid / 'chain.pem'}"
key = "{certs / rid / 'key.pem'}"
peers = [{peers}]

[rest]
listen = "127.0.0.1:{rest[rid]}"

[timing]
heartbeat_interval = 0.2
dead_after = 3
backoff_initial = 0.05
backoff_max = 0.5

[gossip]
interval = 0.2
record_ttl = 5.0

[routing]
rebuild_delay = 0.02

[[stubs]]
name = "{spec['chain']}"
zone = "{LINE_ZONE}"
type = "embedded"

[[stubs.resources]]
name = "hello"
kind = "kv"

[[stubs.resources]]
name = "{RESOURCE}"
kind = "asset"
initial = {{ alice = {BALANCE}, anonymous = 100 }}
"""


@dataclass
class DaemonLine:
    """The line as six ``twistd -n wecross`` processes, each with its own reactor."""

    work: Path
    procs: ProcessGroup
    rest: dict[str, int] = field(default_factory=dict)

    def start(self, certs: Path) -> None:
        p2p = {rid: free_port() for rid in LINE_IDS}
        self.rest = {rid: free_port() for rid in LINE_IDS}
        twistd = str(Path(sys.executable).parent / "twistd")
        for rid in LINE_IDS:
            config = self.work / f"{rid}.toml"
            config.write_text(line_toml(rid, certs=certs, work=self.work, p2p=p2p, rest=self.rest))
            self.procs.start(rid, [twistd, "-n", "--pidfile=", f"--logfile={self.work / (rid + '.log')}",
                                   "wecross", "--config", str(config)],
                             cwd=self.work, log=self.work / f"{rid}.out")
        for rid in LINE_IDS:
            wait_for(f"{rid}'s REST API", lambda r=rid: get_json(self.url(r) + "/status"), 60, self.procs)

        def every_chain_routed() -> bool:
            rows = {row["ipath"]: row for row in get_json(self.url("router-a") + "/resources")}
            for hops in range(1, len(LINE_IDS)):
                row = rows.get(f"{line_chain(hops)}.{RESOURCE}")
                if row is None or not row.get("route") or len(row["route"]) != hops + 1:
                    return False
            return True

        wait_for("router-a to route to every chain of the line", every_chain_routed, 60, self.procs)

    def url(self, rid: str) -> str:
        return f"http://127.0.0.1:{self.rest[rid]}"


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection with TCP_NODELAY, blocking: the bench process runs no reactor while it is
    used, so a request costs the client the same at every distance."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def call_path(hops: int) -> str:
    zone, chain = line_chain(hops).split(".")
    return f"/{zone}/{chain}/{RESOURCE}/call"


CALL_BODY = json.dumps({"method": CALL_METHOD, "args": CALL_ARGS}).encode()


def check_answer(status: int, body: bytes, hops: int) -> str | None:
    """None when the answer is alice's balance, served ``hops`` hops away; else what was wrong."""
    if status != 200:
        return f"status {status}"
    data = json.loads(body).get("data") or {}
    if data.get("output") != BALANCE:
        return f"output {data.get('output')!r}"
    if len(data.get("path") or ()) != hops + 1:
        return f"path {data.get('path')}"
    return None


# --------------------------------------------------------------------------------------------------- failure modes


@dataclass
class BorderFailure:
    """A border made to fail; ``finish`` takes whatever it left open down before the router is stopped."""

    mode: str
    finish: Callable[[], None]


def _stop_accepting(node: Any) -> Callable[[], None]:
    """A hung router does not complete TLS handshakes either: without this, a neighbour's redial would find a healthy
    new link to the 'dead' router a moment after the old one was declared dead."""
    port = node.peers.port
    if port is None:
        return lambda: None
    port.stopReading()
    return lambda: port.startReading()


def go_silent(node: Any) -> BorderFailure:
    """A crash without FIN: the router neither reads nor writes on its links, and never closes them itself.

    ``pauseProducing`` alone stops reading only: the router would go on sending heartbeats (so its neighbours keep
    hearing it), then declare *them* dead and close the links itself. Here its writes go nowhere too and its own
    heartbeat timers are cancelled, so the neighbours must find out from the missing heartbeats.
    """
    links = list(node.peers.links.values())
    for link in links:
        link.transport.pauseProducing()
        link.transport.write = lambda data: None
        timer = link._heartbeat_timer
        if timer is not None and timer.active():
            timer.cancel()
    resume = _stop_accepting(node)

    def finish() -> None:
        for link in links:
            if not link.lost:
                link.transport.abortConnection()
        resume()

    return BorderFailure("silent", finish)


def pause_reads(node: Any) -> BorderFailure:
    """``pauseProducing`` on every link transport and nothing more: the router stops reading but writes on."""
    links = list(node.peers.links.values())
    for link in links:
        link.transport.pauseProducing()
    resume = _stop_accepting(node)

    def finish() -> None:
        for link in links:
            if not link.lost:
                link.transport.abortConnection()
        resume()

    return BorderFailure("paused", finish)


# --------------------------------------------------------------------------------------------------- probes


@dataclass
class Event:
    at: float
    router: str
    what: str
    detail: str = ""


class Probes:
    """Timestamps of what routers do during a failover, taken by wrapping bound methods on live objects.

    Each wrapper is an instance attribute that calls the original and is removed by ``undo``; the router code is
    unchanged and looks its methods up on the instance, so it calls the wrapper.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.events: list[Event] = []
        self._undo: list[Callable[[], None]] = []

    def wrap(self, obj: Any, name: str, router: str, what: str,
             detail: Callable[..., str] | None = None) -> None:
        original = getattr(obj, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.events.append(Event(self.clock(), router, what, detail(*args, **kwargs) if detail else ""))
            return original(*args, **kwargs)

        setattr(obj, name, wrapper)

        def undo() -> None:
            if obj.__dict__.get(name) is wrapper:
                del obj.__dict__[name]

        self._undo.append(undo)

    def watch_link(self, link: Any, router: str) -> None:
        """When ``router`` closes this link, and why; and how long it had heard nothing on it."""

        def detail(reason: str, *args: Any, **kwargs: Any) -> str:
            silent = link.clock.seconds() - link.health.last_heard
            return f"{reason} (nothing heard for {silent * 1000:.0f} ms)"

        self.wrap(link, "close", router, f"closes link to {link.peer_id}", detail)

    def watch_router(self, node: Any, router: str) -> None:
        self.wrap(node.router, "peer_down", router, "link down", lambda link: str(link.peer_id))
        self.wrap(node.gossip, "publish", router, "publishes its record", lambda reason: reason)

    def watch_routes(self, node: Any, router: str, chain: str) -> None:
        """Each rebuild of ``router``'s table, with the route to ``chain`` it left."""
        original = node.router.rebuild_routes

        def rebuild() -> None:
            original()
            route = node.router.table.route(chain)
            self.events.append(Event(self.clock(), router, "rebuilt routes",
                                     " -> ".join(route.path) if route else "no route"))

        node.router.rebuild_routes = rebuild

        def undo() -> None:
            if node.router.__dict__.get("rebuild_routes") is rebuild:
                del node.router.__dict__["rebuild_routes"]

        self._undo.append(undo)

    def undo(self) -> None:
        for step in reversed(self._undo):
            step()
        self._undo.clear()

    def first(self, router: str, prefix: str, after: float) -> Event | None:
        return next((e for e in self.events if e.router == router and e.what.startswith(prefix) and e.at >= after),
                    None)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


def rotate(items: Sequence[Any], by: int) -> list[Any]:
    by %= len(items)
    return [*items[by:], *items[:by]]
