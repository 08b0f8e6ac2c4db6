"""Chain authority with real routers: a CA-admitted router whose certificate does not name a chain cannot pull
that chain's traffic to itself by announcing it.

```
router-x (certificate: nowhere.* only; runs a copy of payment.bank-a)
   |
router-a (entry) -- router-c -- router-b (certificate: *; the chain's owner)
```

router-x is one hop from the entry and the owner two, so a believed claim would win every route (same chain name,
same genesis: a perfect impostor). Its record still counts for links, so it stays a neighbour; only its chain claim
is ignored, and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import support
from wecross.facade import Invocation
from wecross.ipath import IPath

CHAIN = "payment.bank-a"
ROUTERS = {
    "router-a": {"zones": ["payment"]},
    "router-b": {"zones": ["payment"], "chain": "bank-a"},
    "router-c": {"zones": ["payment"]},
    "router-x": {"zones": ["payment"], "chain": "bank-a"},
}
LINKS = [("router-a", "router-x"), ("router-a", "router-c"), ("router-c", "router-b")]


class UnauthorisedClaim(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_routes_never_move_to_the_unauthorised_router(self) -> Any:
        self.assertEqual(support.RESTRICTED_ROUTERS["router-x"], ("nowhere.*",))
        work = Path(self.mktemp())
        work.mkdir()
        net = support.Network(work, ROUTERS, LINKS)
        self.addCleanup(net.stop)
        yield net.start()
        a = net.nodes["router-a"].router

        def settled() -> bool:
            """Every record held, with router-x's link, and the route to the chain built; fails the moment the
            route points at router-x (checked at every poll, from the start)."""
            route = a.table.route(CHAIN)
            self.assertNotEqual(route.destination if route else None, "router-x")
            x = a.directory.records().get("router-x")
            return (net.linked() and len(a.directory) == 4 and x is not None and len(x.links) == 1
                    and route is not None and route.path == ("router-a", "router-c", "router-b"))

        yield support.until(settled, timeout=30, interval=0.01)
        self.assertEqual(a.directory.routers_for_chain(CHAIN), {"router-b"})
        self.assertEqual(a.directory.unauthorized(), {"router-x": [CHAIN]})
        self.assertGreaterEqual(a.directory.stats()["unauthorized_claims"], 1)
        self.assertFalse(a.directory.clashing(CHAIN))
        route = a.table.route(CHAIN)
        self.assertEqual((route.destination, route.path), ("router-b", ("router-a", "router-c", "router-b")))
        # The impostor's own record is believed for what it may say: it is a linked neighbour of router-a.
        self.assertIn("router-a", {link.peer for link in a.directory.records()["router-x"].links})
        got = yield a.invoke(Invocation(IPath.parse(f"{CHAIN}.asset"), "call", "balanceOf", ["alice"]))
        self.assertEqual((got["router"], got["path"]), ("router-b", ["router-a", "router-c", "router-b"]))
        # Every other router ignores the claim as well (router-x itself serves its copy locally, as it may).
        for rid in ("router-b", "router-c"):
            self.assertEqual(net.nodes[rid].router.directory.routers_for_chain(CHAIN), {"router-b"}, rid)
