"""The real daemon: `twistd -n wecross --config FILE` from the venv, as an operator runs it.

This proves the plugin drop-in is found (editable install + twistd's plugin cache), that the router serves, that
it stops cleanly on SIGTERM, and that start-up mistakes end the process with status 1 and one clear line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from tests import support

TWISTD = str(Path(sys.executable).parent / "twistd")


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if isinstance(reason.value, ProcessDone):
            self.ended.callback(0)
        elif isinstance(reason.value, ProcessTerminated):
            # twistd re-raises a terminating signal on itself after a clean shutdown: report it as -signal.
            value = reason.value
            self.ended.callback(value.exitCode if value.exitCode is not None else -(value.signal or 0))
        else:
            self.ended.callback(-1)


def write_config(work: Path, router_id: str, rest_port: int, extra: str = "") -> Path:
    certs = support.pki()
    config = work / f"{router_id}.toml"
    config.write_text(f"""
[router]
id = "{router_id}"
zones = ["payment"]
data_dir = "{work / router_id}"

[p2p]
listen = "127.0.0.1:0"
ca = "{certs / 'ca.crt'}"
cert = "{certs / router_id / 'chain.pem'}"
key = "{certs / router_id / 'key.pem'}"

[rest]
listen = "127.0.0.1:{rest_port}"

[[stubs]]
name = "bank"
type = "embedded"
resources = [{{ name = "hello", kind = "kv" }}]
{extra}
""")
    return config


class TwistdTests(TestCase):
    timeout = 60

    def spawn(self, config: Path) -> Collect:
        proto = Collect()
        env = dict(os.environ)
        reactor.spawnProcess(proto, TWISTD, [TWISTD, "-n", "--pidfile=", "--logfile=-", "wecross", "--config",
                                             str(config)], env=env, path=str(config.parent))
        return proto

    @defer.inlineCallbacks
    def test_daemon_serves_and_stops(self) -> Any:
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        port = support.free_port()
        proto = self.spawn(write_config(work, "router-a", port))
        agent = Agent(reactor)
        status = None
        for _ in range(200):
            try:
                response = yield agent.request(b"GET", f"http://127.0.0.1:{port}/status".encode())
                status = json.loads((yield readBody(response)))["data"]
                break
            except Exception:
                if proto.ended.called:
                    break
                yield _sleep(0.1)
        self.assertIsNotNone(status, proto.output.decode(errors="replace"))
        self.assertEqual(status["router_id"], "router-a")
        self.assertEqual([c["path"] for c in status["chains"]], ["payment.bank"])
        os.kill(proto.transport.pid, signal.SIGTERM)
        code = yield proto.ended
        self.assertIn(code, (0, -signal.SIGTERM), proto.output.decode(errors="replace"))
        self.assertIn(b"Server Shut Down", proto.output)
        self.assertNotIn(b"Traceback", proto.output)

    @defer.inlineCallbacks
    def test_structured_json_logs(self) -> Any:
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        port = support.free_port()
        config = write_config(work, "router-a", port)
        proto = Collect()
        reactor.spawnProcess(proto, TWISTD, [TWISTD, "-n", "--pidfile=", "--logger", "wecross.logs.json_stdout",
                                             "wecross", "--config", str(config)], env=dict(os.environ),
                             path=str(config.parent))
        for _ in range(200):
            if b"ready" in proto.output or proto.ended.called:
                break
            yield _sleep(0.05)
        os.kill(proto.transport.pid, signal.SIGTERM)
        yield proto.ended
        events = [json.loads(chunk) for chunk in proto.output.split(b"\x1e") if chunk.strip().startswith(b"{")]
        ready = [e for e in events if "ready" in e.get("log_format", "")]
        self.assertTrue(ready, proto.output[-2000:])
        self.assertEqual(ready[0]["id"], "router-a")
        self.assertEqual(ready[0]["log_namespace"], "wecross.node")

    @defer.inlineCallbacks
    def test_config_error_is_one_clear_line(self) -> Any:
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        config = write_config(work, "router-a", support.free_port(), extra="[timing]\nheartbeat = 1\n")
        proto = self.spawn(config)
        code = yield proto.ended
        self.assertEqual(code, 1)
        self.assertIn(b"timing.heartbeat: unknown key", proto.output)
        self.assertNotIn(b"Traceback", proto.output)

    @defer.inlineCallbacks
    def test_port_in_use_exits_with_status_1(self) -> Any:
        from twisted.internet.protocol import Factory

        blocker = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(blocker.stopListening)
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        proto = self.spawn(write_config(work, "router-a", blocker.getHost().port))
        code = yield proto.ended
        self.assertEqual(code, 1, proto.output.decode(errors="replace"))
        self.assertIn(b"failed to start", proto.output)


def _sleep(seconds: float) -> defer.Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
