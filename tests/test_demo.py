"""``wecross demo`` (what ``make demo`` runs), end to end: two real router daemons, HTTPS with client certificates,
and the demo's ACL file in force (deny by default).

The demo is a blocking program (the SDK, ``time.sleep`` while routers start), so it runs here as a child process,
as a newcomer runs it, and the test reads its output. The lines asserted are the ones the demo exists to show:
alice's transfer allowed, bob's write to the court's chain refused with 403 naming the missing grant at both
routers, and the auditor reading both in router-a's audit trail. A few seconds (up to about 10 on two loaded
cores): the routers' start-up and the TLS link are most of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

WECROSS = str(Path(sys.executable).parent / "wecross")
#: The demo waits at most 30 s for each of its steps; past this the child is killed so the suite never hangs.
DEMO_SECONDS = 240.0


class _Output(ProcessProtocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.timer: Any = None

    def outReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.ended.callback(getattr(reason.value, "exitCode", None))

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


class Demo(TestCase):
    timeout = DEMO_SECONDS + 30

    @defer.inlineCallbacks
    def test_the_demo_shows_governance(self) -> Any:
        work = Path(self.mktemp()).resolve()
        out = _Output()
        process = reactor.spawnProcess(out, WECROSS, [WECROSS, "demo", "--workdir", str(work)],  # type: ignore
                                       env=dict(os.environ), path=os.getcwd())
        out.timer = reactor.callLater(DEMO_SECONDS, process.signalProcess, "KILL")  # type: ignore
        code = yield out.ended
        text = out.text
        self.assertEqual(code, 0, text[-4000:])
        self.assertNotIn("Traceback", text)
        lines = text.splitlines()

        def line(start: str) -> str:
            found = [each for each in lines if each.startswith(start)]
            self.assertTrue(found, f"no line starting {start!r} in:\n{text}")
            return found[0]

        # The ACL in force is the demo's own file, deny by default, and the routers serve HTTPS only.
        acl = (work / "acl.toml").read_text()
        self.assertIn('default = "deny"', acl)
        self.assertIn("default deny", text)
        for rid in ("router-a", "router-b"):
            config = (work / f"{rid}.toml").read_text()
            self.assertIn("require_client_cert = true", config)
            self.assertIn('acl_file = "acl.toml"', config)
        self.assertIn("https://127.0.0.1:", line("== REST APIs"))
        # The demo's other steps still work under the ACL (each of them granted by a rule).
        committed = line("     committed:")
        self.assertRegex(committed, r"evidence\.court\.hello block \d+")
        self.assertRegex(committed, r"payment\.bank-a\.hello block \d+")
        self.assertIn("'hello from the payment zone'", line("== call get('greeting')"))
        # alice's transfer succeeds ...
        self.assertIn("alice now holds 975 on bank-a", text)
        self.assertIn("bob now holds 525 on bank-a", text)
        # ... bob reads the court's chain, and his write there is refused at either router, naming the grant.
        self.assertIn("greeting = 'hello from the payment zone'", line("== bob reads the court's chain"))
        for via in ("router-a", "router-b"):
            refused = line(f"== bob's write to the court's chain through {via}")
            self.assertIn("is refused: 403 forbidden", refused)
            self.assertIn(f"router {via}: no rule grants bob sendTransaction on evidence.court.hello; default deny",
                          refused)
        # The auditor reads router-a's trail: alice's transfer and bob's refusal are in it.
        self.assertIn("reads router-a's audit trail", line("== the auditor"))
        self.assertIn("alice via router-b: sendTransaction payment.bank-a.asset transfer -> ok", text)
        self.assertIn("bob via router-a: sendTransaction evidence.court.hello set -> forbidden", text)
