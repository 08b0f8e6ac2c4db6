"""The console (wecross/console): its parser, tables and completion on their own, then every command against real
routers on 127.0.0.1, and the interactive prompt in a pseudo-terminal.

```
router-b (z.one, REST over HTTPS, client certificates required) -- router-a (entry, plain HTTP) -- router-c (z.two)
```

The console is blocking (the SDK's blocking client), so the command layer and the spawned console run in threads
(deferToThread) while the routers, on this test's reactor, keep serving them.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.trial.unittest import TestCase

from tests import support, test_sdk
from wecross.console import app, parse, render
from wecross.console.commands import COMMANDS, Session
from wecross.console.completion import candidates
from wecross.sdk import WeCrossClient

ONE, TWO, HELLO = test_sdk.ONE, test_sdk.TWO, test_sdk.HELLO
RESOURCES: list[Any] = [
    {"ipath": ONE, "kind": "asset", "methods": {"balanceOf": "read", "mint": "write", "transfer": "write"}},
    {"ipath": HELLO, "kind": "kv", "methods": {"get": "read", "set": "write"}},
    {"ipath": TWO, "kind": "asset", "methods": {"balanceOf": "read", "mint": "write", "transfer": "write"}},
]


def offline_session(**kwargs: Any) -> Session:
    """A session whose client never gets used (nothing listens on port 9 of 127.0.0.1)."""
    return Session(WeCrossClient("http://127.0.0.1:9", timeout=1), out=io.StringIO(), err=io.StringIO(), **kwargs)


def texts(session: Session, line: str) -> list[str]:
    return [c.text for c in candidates(session, line)]


class Parsing(TestCase):
    def test_words_like_a_shell_and_commands_split_on_semicolons(self) -> None:
        split = parse.split_commands
        self.assertEqual(split("call z.one.asset balanceOf alice"), [["call", "z.one.asset", "balanceOf", "alice"]])
        self.assertEqual(split("status;peers ; ;routes"), [["status"], ["peers"], ["routes"]])
        self.assertEqual(split("setData p k '{\"a\": [1, 2]}'"), [["setData", "p", "k", '{"a": [1, 2]}']])
        self.assertEqual(split('x "a;b" \';\' a\\;b "q\\"q" \'\''), [["x", "a;b", ";", "a;b", 'q"q', ""]])
        self.assertEqual(split("  "), [])
        self.assertRaises(parse.ParseError, split, "call 'open")
        self.assertRaises(parse.ParseError, split, "call x\\")

    def test_arguments_are_json_when_they_parse(self) -> None:
        cases = {"10": 10, "-2.5": -2.5, "alice": "alice", '"10"': "10", "[1,2]": [1, 2], "true": True, "null": None,
                 '{"a": 1}': {"a": 1}, "0x00ff": "0x00ff", "007": "007", "NaN": "NaN", "1e400": "1e400",
                 "[1e400]": "[1e400]", "": "", str(10 ** 30): 10 ** 30}
        for word, expected in cases.items():
            self.assertEqual(parse.value(word), expected, word)

    def test_lexing_tolerates_what_completion_sees(self) -> None:
        lexed = parse.lex("call 'z.one.as")
        self.assertEqual((lexed.open_quote, lexed.words[-1].text, lexed.words[-1].start), ("'", "z.one.as", 5))
        self.assertTrue(parse.lex("call ").trailing_space)
        self.assertFalse(parse.lex("call").trailing_space)


class Rendering(TestCase):
    def test_tables_align_and_cut(self) -> None:
        text = render.table(["name", "n", "note"], [["a", 5, "x"], ["long name", 1234, None], ["b", None, [1, "y"]]])
        self.assertEqual(text.splitlines(), [
            "name          n  note",
            "---------  ----  ----",
            "a             5  x",
            "long name  1234  -",
            "b             -  1, y",
        ])
        wide = render.table(["a", "b"], [["x" * 100, "y" * 100]])
        first, last = wide.splitlines()[2].split("  ", 1)
        self.assertEqual((len(first), first[-3:], last), (render.MAX_CELL, "...", "y" * 100))
        self.assertEqual(render.table(["a"], [], empty="(nothing)"), "(nothing)")

    def test_fields_and_values(self) -> None:
        self.assertEqual(render.fields([("ok", True), ("nested", {"a": [1]}), ("list", [])]).splitlines(),
                         ["ok      yes", 'nested  {"a": [1]}', "list    -"])
        self.assertRegex(render.fields([("created_at", 1.7e9)]), r"created_at  20\d\d-\d\d-\d\d \d\d:\d\d:\d\d")
        self.assertEqual(render.flatten({"a": {"b": 0, "c": 2}, "d": 0, "e": False}, skip_zero=True),
                         [("a.c", 2), ("e", False)])
        view = render.operation({"output": "10", "verified": {"proof": False, "reason": "served here"}})
        self.assertIn('output    "10"', view)
        self.assertIn("verified  no (served here)", view)


class Completion(TestCase):
    def test_commands_ipaths_methods_and_more(self) -> None:
        session = offline_session(resources=list(RESOURCES), tx_ids=["router-a:ab12", "router-a:cd34"])
        self.assertEqual(len(texts(session, "")), len(COMMANDS) + 1)  # every command, and the alias exit
        self.assertEqual(texts(session, "listR"), ["listResources"])
        self.assertEqual(texts(session, "LISTr"), ["listResources"])
        self.assertEqual(texts(session, "status; sendT"), ["sendTransaction"])
        self.assertEqual(texts(session, "call z.one."), [ONE, HELLO])
        self.assertEqual(texts(session, "call hello"), [HELLO])  # no prefix match: by substring
        self.assertEqual(texts(session, f"call {ONE} "), ["balanceOf"])  # call: the read methods
        self.assertEqual(texts(session, f"sendTransaction {ONE} "), ["mint", "transfer"])
        self.assertEqual(texts(session, f"call {ONE} tr"), ["transfer"])  # no read method: any that fits
        self.assertEqual(texts(session, f"execTransaction router-a:ab12 {TWO} t"), ["transfer"])
        self.assertEqual(texts(session, "commitTransaction "), ["router-a:ab12", "router-a:cd34"])
        self.assertEqual(texts(session, "getTransaction cd"), ["router-a:cd34"])
        self.assertEqual(texts(session, "startTransaction z.one.asset z.t"), [TWO])
        self.assertEqual(texts(session, "listResources "), ["z"])
        self.assertEqual(texts(session, "listResources z "), ["one", "two"])
        self.assertEqual(texts(session, "headers z."), ["z.one", "z.two"])
        self.assertEqual(texts(session, "listTransactions roll"), ["rolling_back", "rolled_back"])
        self.assertEqual(texts(session, ":json o"), ["on", "off"])
        self.assertEqual(texts(session, "help det"), ["detail"])
        self.assertEqual(texts(session, "status "), [])
        self.assertEqual(texts(session, f"call {ONE} balanceOf "), [])
        self.assertEqual(texts(session, "nosuch "), [])
        # The half-typed word is replaced whole, an opening quote included.
        (found,) = candidates(session, "call 'z.one.as")
        self.assertEqual((found.text, found.start, found.meta), (ONE, -len("'z.one.as"), "asset"))

    def test_no_router_no_candidates_and_no_error(self) -> None:
        session = offline_session()
        self.assertEqual(texts(session, "call z"), [])
        self.assertIsNone(session.resources)


class Offline(TestCase):
    def test_usage_and_unknown_commands_are_caught_before_any_request(self) -> None:
        session = offline_session()
        self.assertFalse(session.run_line("call z.one.asset; lstResources; help nope; headers z.one; :json maybe"))
        self.assertEqual(session.err.getvalue().splitlines(), [  # type: ignore[attr-defined]
            "error: usage: call <ipath> <method> [args...]",
            "error: unknown_command: no command 'lstResources'; did you mean listResources?",
            "error: unknown_command: no command 'nope'; type help for the list",
            "error: usage: headers <zone.chain> <n | from..to>",
            "error: usage: :json [on|off]",
        ])
        self.assertEqual(session.run_lines(["help; help call", "# a comment", ":json off"]), 0)
        out = session.out.getvalue()  # type: ignore[attr-defined]
        for command in COMMANDS.values():
            self.assertIn(command.synopsis(), out)
        self.assertIn("call z.one.asset balanceOf alice", out)

    def test_audit_filters_are_checked_before_any_request(self) -> None:
        session = offline_session()
        self.assertFalse(session.run_line("audit who=alice; audit limit=x; audit limit=1 limit=2; audit since=soon; "
                                          "audit alice; addPeer; removePeer"))
        self.assertEqual(session.err.getvalue().splitlines(), [  # type: ignore[attr-defined]
            "error: bad_args: audit takes name=value filters (initiator, ipath, interface, outcome, since, until, "
            "after, limit), got 'who=alice'",
            "error: bad_args: limit must be a whole number, got 'x'",
            "error: bad_args: audit filter limit given twice",
            "error: bad_args: since must be seconds since the epoch, got 'soon'",
            "error: bad_args: audit takes name=value filters (initiator, ipath, interface, outcome, since, until, "
            "after, limit), got 'alice'",
            "error: usage: addPeer <host:port> [router_id]",
            "error: usage: removePeer <router_id | host:port>",
        ])

    def test_governance_views(self) -> None:
        self.assertIn("roles      auditor, user",
                      render.identity({"name": "audrey", "org": None, "roles": ["auditor", "user"], "proven": "tls"}))
        text = render.audit({"records": [{"seq": 3, "time": 1.0, "initiator": "alice", "interface": "setData",
                                          "outcome": "forbidden", "path": []}], "head": {"seq": 9, "hash": "ab"}})
        self.assertIn("forbidden", text)
        self.assertTrue(text.endswith("head: seq 9, hash ab"))
        self.assertEqual(render.audit({"records": [], "head": {"seq": 0, "hash": "x"}}).splitlines()[0],
                         "(no records)")
        self.assertEqual(render.peer_change({"changed": False, "message": "no peer 'x' to remove"}),
                         "no peer 'x' to remove (nothing changed)")

    def test_bad_client_configuration_is_one_line(self) -> None:
        for argv in (["--router", "ftp://x", "-c", "status"],
                     ["--router", "https://127.0.0.1:9", "--ca", "/nonexistent/ca.crt", "-c", "status"]):
            err = io.StringIO()
            self.assertEqual(app.run(parser().parse_args(argv), stdout=io.StringIO(), stderr=err), 2)
            self.assertRegex(err.getvalue(), r"^error: bad_config: .+\n$")

    def test_history_path(self) -> None:
        previous = os.environ.pop(app.HISTORY_ENV, None)
        try:
            self.assertEqual(app.history_path(), Path.home() / ".wecross_history")
            os.environ[app.HISTORY_ENV] = "/tmp/elsewhere"
            self.assertEqual(app.history_path(), Path("/tmp/elsewhere"))
        finally:
            os.environ.pop(app.HISTORY_ENV, None)
            if previous is not None:
                os.environ[app.HISTORY_ENV] = previous


def parser() -> Any:
    import argparse

    p = argparse.ArgumentParser()
    app.add_arguments(p)
    return p


class ConsoleNetwork(test_sdk.SdkNetwork):
    """The routers of test_sdk (router-b's REST API wants client certificates)."""

    def session(self, rid: str = "router-a", **options: Any) -> Session:
        return Session(self.client(rid, **options), out=io.StringIO(), err=io.StringIO())

    def do(self, session: Session, line: str) -> Any:
        """Run one line in a thread; fire with (all succeeded, what went to out, what went to err)."""
        def run() -> tuple[bool, str, str]:
            session.out, session.err, session.printed = io.StringIO(), io.StringIO(), False
            ok = session.run_line(line)
            return ok, session.out.getvalue(), session.err.getvalue()

        return threads.deferToThread(run)

    def table_rows(self, text: str) -> list[list[str]]:
        return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


class Commands(ConsoleNetwork):
    @defer.inlineCallbacks
    def test_reads_writes_and_views(self) -> Any:
        s = self.session()
        ok, out, err = yield self.do(s, "status; peers; routes; chains")
        self.assertEqual((ok, err), (True, ""))
        self.assertIn(["router_id", "router-a"], self.table_rows(out))
        self.assertRegex(out, r"router-b\s+up\s+outbound\s+127\.0\.0\.1:\d+\s+z\s+z\.one")
        self.assertRegex(out, r"chain\s+z\.two\s+router-c\s+1\s+[\d.]+\s+router-a -> router-c")
        self.assertIn("header chains trusted for remote chains:", out)
        self.assertEqual(s.router_id, "router-a")

        ok, out, _ = yield self.do(s, "listResources")
        self.assertTrue(ok)
        rows = self.table_rows(out)
        self.assertEqual(rows[0], ["ipath", "kind", "served by", "methods"])
        self.assertIn([ONE, "asset", "router-b", "balanceOf, htlcStatus, mint, totalSupply, transfer"], rows)
        self.assertTrue({ONE, TWO, HELLO} <= {r["ipath"] for r in s.known_resources()})  # kept for completion
        for line in ("listResources z one", "listResources z.one"):
            ok, out, _ = yield self.do(s, line)
            self.assertEqual({r[0] for r in self.table_rows(out)[2:]}, {ONE, HELLO}, line)
        ok, out, _ = yield self.do(s, f"detail {ONE}")
        self.assertIn(["route", "router-a -> router-b"], self.table_rows(out))
        self.assertIn(["transfer", "write", "sendTransaction"], self.table_rows(out))

        ok, out, err = yield self.do(s, f"call {ONE} balanceOf anonymous")
        self.assertEqual((ok, err), (True, ""))
        rows = self.table_rows(out)
        self.assertEqual(rows[0], ["output", "1000"])
        self.assertIn(["path", "router-a -> router-b"], rows)
        self.assertTrue(any(r[0] == "verified" and r[1].startswith("yes") for r in rows), out)
        ok, out, _ = yield self.do(s, f"sendTransaction {ONE} transfer bob 10")
        rows = self.table_rows(out)
        self.assertEqual(rows[0], ["output", "990"])
        self.assertIn(["event", 'Transfer {"from": "anonymous", "to": "bob", "amount": 10}'], rows)
        self.assertIn("tx_hash", {r[0] for r in rows})
        block = int(dict((r[0], r[1]) for r in rows if len(r) == 2)["block_number"])
        # Arguments are JSON when they parse: a nested value goes in and comes back as it was.
        ok, out, _ = yield self.do(s, f"setData {HELLO} k '{{\"any\": [\"json\", 1]}}'; getData {HELLO} k; "
                                      f"sendTransaction {HELLO} set greeting '\"10\"'; call {HELLO} get greeting")
        self.assertTrue(ok)
        outputs = [r[1] for r in self.table_rows(out) if r[0] == "output"]
        self.assertEqual(outputs, ["null", '{"any": ["json", 1]}', "null", '"10"'])
        ok, out, _ = yield self.do(s, f"headers z.one {block}")
        self.assertIn(["number", str(block)], self.table_rows(out))
        self.assertIn(["trust.sources", "router-b"], self.table_rows(out))
        ok, out, _ = yield self.do(s, f"headers z.one 0..{block}")
        self.assertEqual([r[0] for r in self.table_rows(out)[2:]], [str(n) for n in range(block + 1)])

        # JSON mode: the router's answer unchanged, one document per command.
        ok, out, _ = yield self.do(s, f":json on; call {ONE} balanceOf bob")
        decoder, docs, at = json.JSONDecoder(), [], 0
        while at < len(out.strip()):
            doc, at = decoder.raw_decode(out, at)
            docs.append(doc)
            while at < len(out) and out[at].isspace():
                at += 1
        self.assertEqual(docs[0], {"json": True})
        self.assertEqual((docs[1]["output"], docs[1]["router"]), (1010, "router-b"))
        self.assertNotIn("proof", docs[1])  # checked by the router (``verified``), left out of REST answers
        ok, out, _ = yield self.do(s, ":json off; refresh")
        self.assertEqual(out.splitlines()[-1], f"{len(s.known_resources())} resources known")

    @defer.inlineCallbacks
    def test_errors_print_one_line_and_the_console_goes_on(self) -> Any:
        s = self.session()
        ok, out, err = yield self.do(s, f"call z.one.nothing get; call z.one get; call {ONE} nope; "
                                        f"sendTransaction {ONE} transfer bob 1000000; detail z.one.nothing; "
                                        f"headers z.one x; headers zone 1; headers z.one 5..1; getTransaction x:1; "
                                        f"listTransactions bogus; call {HELLO} get a b c; status")
        self.assertFalse(ok)
        lines = err.splitlines()
        self.assertEqual([line.split(":")[1].strip() for line in lines], [
            "unknown_resource", "bad_ipath", "unknown_method", "insufficient_funds", "unknown_resource", "bad_args",
            "bad_args", "bad_args", "unknown_tx", "bad_args", "bad_args"])
        self.assertTrue(all(line.startswith("error: ") for line in lines))
        self.assertEqual(lines[3], "error: insufficient_funds: asset: anonymous holds 1000, cannot transfer 1000000")
        self.assertNotIn("Traceback", out + err)
        self.assertIn(["router_id", "router-a"], self.table_rows(out))  # the last command still ran
        # A failure nobody foresaw is still one line.
        s.client.status = lambda: 1 / 0  # type: ignore[method-assign]
        ok, _, err = yield self.do(s, "status")
        self.assertEqual((ok, err), (False, "error: internal: ZeroDivisionError: division by zero\n"))
        ok, _, err = yield self.do(s, "call 'unclosed")
        self.assertEqual((ok, err), (False, "error: parse: no closing quotation (')\n"))
        # No router there: the SDK's message, once per command.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dead = Session(WeCrossClient(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=2))
            ok, _, err = yield self.do(dead, "status; listResources")
        self.assertFalse(ok)
        self.assertEqual(len(err.splitlines()), 2)
        self.assertTrue(err.startswith("error: unreachable_router: cannot connect to 127.0.0.1:"), err)

    @defer.inlineCallbacks
    def test_transactions(self) -> Any:
        s = self.session()
        ok, out, _ = yield self.do(s, f"startTransaction {ONE} {TWO}")
        self.assertTrue(ok)
        tx_id = dict(r for r in self.table_rows(out) if len(r) == 2)["tx_id"]
        self.assertEqual(s.tx_ids, [tx_id])  # offered by completion from now on
        ok, out, _ = yield self.do(s, f"execTransaction {tx_id} {ONE} transfer bob 10; "
                                      f"execTransaction {tx_id} {TWO} transfer bob 5")
        self.assertTrue(ok)
        self.assertIn(["output", "990"], self.table_rows(out))
        self.assertIn(["state", "prepared"], self.table_rows(out))
        ok, _, err = yield self.do(s, f"call {ONE} balanceOf anonymous")
        self.assertEqual(err.split(":")[1].strip(), "locked")
        self.assertIn(tx_id, err)
        ok, out, _ = yield self.do(s, f"getTransaction {tx_id}")
        self.assertIn(["state", "started"], self.table_rows(out))
        self.assertIn(["1", ONE, "transfer", '["bob", 10]', "prepared", "990"], self.table_rows(out))
        ok, out, _ = yield self.do(s, f"commitTransaction {tx_id}")
        rows = self.table_rows(out)
        self.assertIn(["state", "committed"], rows)
        self.assertEqual({r[0] for r in rows if r[0] in (ONE, TWO)}, {ONE, TWO})  # an outcome per participant
        ok, _, err = yield self.do(s, f"rollbackTransaction {tx_id}")
        self.assertEqual(err.split(":")[1].strip(), "tx_state")
        ok, out, _ = yield self.do(s, "startTransaction")
        second = s.tx_ids[0]
        self.assertEqual(s.tx_ids, [second, tx_id])
        ok, out, _ = yield self.do(s, f"execTransaction {second} {ONE} transfer bob 1; "
                                      f"rollbackTransaction {second} changed my mind")
        self.assertTrue(ok)
        self.assertIn(["state", "rolled_back"], self.table_rows(out))
        self.assertIn(["reason", "changed my mind"], self.table_rows(out))
        ok, out, _ = yield self.do(s, "listTransactions; listTransactions committed 5")
        self.assertTrue(ok)
        first, committed = out.split("\n\n")
        self.assertEqual({r[0] for r in self.table_rows(first)[2:-1]}, {tx_id, second})
        self.assertEqual([r[0] for r in self.table_rows(committed)[2:-1]], [tx_id])
        self.assertEqual(self.table_rows(committed)[-1], ["(1 shown; all: 1 committed, 1 rolled_back)"])
        ok, out, _ = yield self.do(s, f"call {ONE} balanceOf anonymous")
        self.assertEqual(self.table_rows(out)[0], ["output", "990"])

    @defer.inlineCallbacks
    def test_https_with_a_client_certificate(self) -> Any:
        pki = support.pki()
        argv = ["--router", self.url("router-b"), "--ca", str(pki / "ca.crt"), "--cert",
                str(pki / "alice" / "chain.pem"), "--key", str(pki / "alice" / "key.pem"),
                "-c", f"sendTransaction {ONE} transfer bob 7; call {ONE} balanceOf alice"]
        router = self.net.nodes["router-b"].router
        invoke, seen = router.invoke, []

        def recording(invocation: Any) -> Any:
            seen.append(invocation)
            return invoke(invocation)

        self.patch(router, "invoke", recording)
        out, err = io.StringIO(), io.StringIO()
        status = yield threads.deferToThread(app.run, parser().parse_args(argv), stdout=out, stderr=err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        self.assertEqual([r[1] for r in self.table_rows(out.getvalue()) if r[0] == "output"], ["993", "993"])
        # Both operations went out signed with alice's key (docs/console.md): the REST edge checked them and hands
        # the owner her proof.
        self.assertEqual([(i.sender, i.client_proof is not None) for i in seen], [("alice", True)] * 2)
        # Without a certificate the router refuses the handshake: one line, exit status 1.
        out, err = io.StringIO(), io.StringIO()
        status = yield threads.deferToThread(app.run, parser().parse_args([*argv[:4], "-c", "status"]),
                                             stdout=out, stderr=err)
        self.assertEqual(status, 1)
        self.assertRegex(err.getvalue(), r"^error: unreachable_router: TLS with .* client certificate")


class NonInteractive(ConsoleNetwork):
    @defer.inlineCallbacks
    def test_dash_c_and_piped_stdin(self) -> Any:
        url = self.url("router-a")

        def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            status = app.run(parser().parse_args(["--router", url, *argv]), stdin=io.StringIO(stdin), stdout=out,
                             stderr=err)
            return status, out.getvalue(), err.getvalue()

        status, out, err = yield threads.deferToThread(run, ["-c", "status; listResources"])
        self.assertEqual((status, err), (0, ""))
        self.assertIn(["router_id", "router-a"], self.table_rows(out))
        status, out, err = yield threads.deferToThread(run, ["-c", "status; bogus; listResources z"])
        self.assertEqual(status, 1)
        self.assertIn(ONE, out)  # the command after the failure ran
        self.assertEqual(err, "error: unknown_command: no command 'bogus'; type help for the list\n")
        status, out, err = yield threads.deferToThread(
            run, ["--json"], f"# balances\ncall {ONE} balanceOf bob\n\nquit\ncall {ONE} nope\n")
        self.assertEqual((status, err), (0, ""))  # quit: what follows is not run
        self.assertEqual(json.loads(out)["output"], 1000)
        # A real pipe into a real process: `echo ... | python -m wecross.console`.
        done = yield threads.deferToThread(
            subprocess.run, [sys.executable, "-m", "wecross.console", "--router", url],
            input=f"call {ONE} balanceOf bob; status\ncall {ONE}\n", capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 1)
        self.assertIn(["output", "1000"], self.table_rows(done.stdout))
        self.assertIn(["router_id", "router-a"], self.table_rows(done.stdout))
        self.assertEqual(done.stderr, "error: usage: call <ipath> <method> [args...]\n")


PROMPT = r"\[router-a\]>"


class Interactive(ConsoleNetwork):
    @defer.inlineCallbacks
    def test_prompt_completion_table_history(self) -> Any:
        import pexpect

        history = Path(self.mktemp())
        env = {**os.environ, "WECROSS_HISTORY": str(history), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
        url = self.url("router-a")

        def session() -> dict[str, Any]:
            child = pexpect.spawn(sys.executable, ["-m", "wecross.console", "--router", url], env=env,
                                  encoding="utf-8", timeout=15, dimensions=(50, 220))
            transcript = io.StringIO()
            child.logfile_read = transcript
            seen: dict[str, Any] = {}
            try:
                child.expect(r"connected to router-a at .*: (\d+) resources reachable")
                seen["resources"] = int(child.match.group(1))
                child.expect(PROMPT)
                child.send("listR\t")  # one candidate: completed in place
                child.expect("esources")
                child.send("\r")
                child.expect(r"z\.two\.hello")
                child.expect(PROMPT)
                child.send("call z.one.as\t")  # the iPath, from GET /resources
                child.expect("set")
                child.send(" bal\t")  # a method of that resource
                child.expect("anceOf")
                child.send(" alice\r")
                child.expect(r"output\s+(\d+)")
                seen["balance"] = int(child.match.group(1))
                child.expect(r"path\s+router-a -> router-b")
                child.expect(PROMPT)
                child.send("stat\x03")  # Ctrl-C drops the line, the console stays
                child.expect(PROMPT)
                child.send("call z.one.nothing get\r")
                child.expect(r"error: unknown_resource: [^\r\n]*")
                seen["error"] = child.after.strip()
                child.expect(PROMPT)
                child.send("quit\r")
                child.expect(pexpect.EOF)
            finally:
                child.close(force=True)
            seen["exit"] = child.exitstatus
            seen["transcript"] = transcript.getvalue()
            return seen

        seen = yield threads.deferToThread(session)
        self.assertNotIn("Traceback", seen["transcript"])
        self.assertEqual(seen["resources"], 4)
        self.assertEqual(seen["balance"], 1000)
        self.assertEqual(seen["error"], "error: unknown_resource: chain z.one has no resource 'nothing'")
        self.assertEqual(seen["exit"], 0)
        entries = [line[1:] for line in history.read_text().splitlines() if line.startswith("+")]
        self.assertEqual(entries, ["listResources", "call z.one.asset balanceOf alice", "call z.one.nothing get",
                                   "quit"])
