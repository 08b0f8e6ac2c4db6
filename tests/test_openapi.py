"""The OpenAPI document at /openapi.json is kept true: schemathesis (a separate process, from PyPI) sends generated
requests, valid and invalid, to every documented operation of live routers, and every answer must be allowed by the
document (status, content type, body schema) and never a server error."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests import support
from tests.test_twistd import Collect
from wecross.rest.api import _INDEX
from wecross.rest.openapi import document

ST = str(Path(sys.executable).parent / "st")
ROUTERS = {"router-a": {"zones": ["z"], "chain": "one"}, "router-b": {"zones": ["z"], "chain": "two"}}


class DocumentTests(TestCase):
    def test_every_endpoint_is_documented_and_nothing_else(self) -> None:
        documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
        listed = set()
        for entry in _INDEX["endpoints"]:
            if entry["path"] == "/{zone}/{chain}/{resource}/{op}":
                listed |= {("POST", f"/{{zone}}/{{chain}}/{{resource}}/{op}") for op in entry["ops"]}
            else:
                listed.add((entry["method"], entry["path"]))
        self.assertEqual(documented, listed)

    def test_examples_name_a_served_resource(self) -> None:
        doc = document("z.one.hello")
        params = doc["paths"]["/{zone}/{chain}/{resource}/call"]["post"]["parameters"]
        self.assertEqual({p["name"]: p["example"] for p in params if p["in"] == "path"},
                         {"zone": "z", "chain": "one", "resource": "hello"})


class LiveRouterTests(TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_schemathesis_finds_no_failure(self) -> Any:
        if not os.path.exists(ST):
            self.fail("schemathesis is not installed: `make test` installs it (setup.py's test extra)")
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        net = support.Network(work, ROUTERS, [("router-a", "router-b")])
        self.addCleanup(net.stop)
        yield net.start()
        yield support.until(lambda: net.linked() and net.nodes["router-a"].router.table.route("z.two") is not None)
        port = net.nodes["router-a"].rest_port
        proto = Collect()
        # The events long poll is left out: a generated `wait` of up to 60 s per request would make the run
        # minutes long; tests/test_trusted_results.py covers it.
        argv = [ST, "run", f"http://127.0.0.1:{port}/openapi.json", "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "-n", "25", "--workers", "1", "--request-timeout", "20", "--exclude-path-regex", ".*/events$",
                "--no-color"]
        reactor.spawnProcess(proto, ST, argv, env=dict(os.environ), path=str(work))
        code = yield proto.ended
        output = proto.output.decode(errors="replace")
        self.assertEqual(code, 0, output[-6000:])
        self.assertIn("passed", output)
