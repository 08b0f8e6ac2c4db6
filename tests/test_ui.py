"""The web page every router serves at /ui/ (wecross/ui): its files, how the router serves them, and what a real
browser (Debian's chromium, headless) shows when it opens the page of a live router.

```
router-b (z: z.one) -- router-a (z and w: z.home; the page) -- router-c (w: w.two) -- router-d (w)
```

The browser test drives the page only through its URL (``#call=...`` runs one call on load) and reads what the page
shows from the DOM chromium dumps, plus a screenshot at 1280x800 checked by content (not pixel by pixel).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests import support
from wecross.ui import assets
from wecross.ui.assets import asset

UI_DIR = Path(assets.__file__).parent
ROUTERS = {
    "router-a": {"zones": ["z", "w"], "chain": "home"},
    "router-b": {"zones": ["z"], "chain": "one"},
    "router-c": {"zones": ["w"], "chain": "two"},
    "router-d": {"zones": ["w"]},
}
LINKS = [("router-a", "router-b"), ("router-a", "router-c"), ("router-c", "router-d")]
XSS = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
BROWSER_SECONDS = 60.0
_profiles = itertools.count()


# ---- helpers --------------------------------------------------------------------------------------------------------


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Browser(protocol.ProcessProtocol):
    """Collects a browser's output; killed if it outlives its time (a hung browser must not hang the suite)."""

    def __init__(self, done: Deferred[tuple[bytes, bytes, int | None]]) -> None:
        self.done = done
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.timer: Any = None

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.done.callback((b"".join(self.out), b"".join(self.err), getattr(reason.value, "exitCode", None)))


def browse(workdir: Path, url: str, screenshot: Path | None = None) -> Deferred[tuple[str, str]]:
    """(DOM after 8 s of virtual time, browser log) of ``url``; the reactor keeps serving the routers meanwhile."""
    exe = chromium()
    assert exe is not None
    profile = workdir / f"profile-{next(_profiles)}"  # one each: browsers running at once cannot share one
    args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", f"--user-data-dir={profile}", "--virtual-time-budget=8000",
            "--enable-logging=stderr", "--log-level=0", "--window-size=1280,800"]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    args += ["--dump-dom", url]
    done: Deferred[tuple[bytes, bytes, int | None]] = Deferred()
    browser = _Browser(done)
    process = reactor.spawnProcess(browser, exe, args, env=dict(os.environ), path=str(workdir))  # type: ignore
    browser.timer = reactor.callLater(BROWSER_SECONDS, process.signalProcess, "KILL")  # type: ignore

    def finished(result: tuple[bytes, bytes, int | None]) -> tuple[str, str]:
        out, err, code = result
        if code != 0:
            raise AssertionError(f"chromium exited with {code}: {err.decode(errors='replace')[-2000:]}")
        return out.decode("utf-8"), err.decode("utf-8", "replace")

    return done.addCallback(finished)


class Dom(HTMLParser):
    """A dumped page, read the way the tests ask about it: the text under an element found by its id or by one of
    its ``data-*`` attributes (``dom.text("[data-tx=<id>]")``), and every element with its attributes."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                      "wbr"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self._stack: list[tuple[str, tuple[str, ...]]] = []
        self._text: dict[str, list[str]] = {}
        self.feed(html)
        self.close()

    def _keys(self, attrs: dict[str, str]) -> tuple[str, ...]:
        keys = [f"#{attrs['id']}"] if attrs.get("id") else []
        keys += [f"[{k}={v}]" for k, v in attrs.items() if k.startswith("data-")]
        return tuple(keys)

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attr_list}
        keys = self._keys(attrs)
        self.elements.append((tag, attrs, tuple(k for _, ks in self._stack for k in ks)))
        for key in keys:
            self._text.setdefault(key, [])
        self.handle_data(" ")  # table cells and the like read as separate words
        if tag not in self.VOID:
            self._stack.append((tag, keys))

    def handle_startendtag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attr_list}
        self.elements.append((tag, attrs, tuple(k for _, ks in self._stack for k in ks)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        for _, keys in self._stack:
            for key in keys:
                self._text[key].append(data)

    def text(self, key: str) -> str:
        return " ".join("".join(self._text.get(key, [])).split())

    def has(self, key: str) -> bool:
        return key in self._text

    def within(self, key: str, tag: str | None = None) -> list[dict[str, str]]:
        """Attributes of the elements inside ``key`` (of ``tag`` only, if given)."""
        return [attrs for t, attrs, outer in self.elements if key in outer and (tag is None or t == tag)]


class Rest:
    """JSON calls to one router's REST API."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.agent = Agent(reactor)

    @defer.inlineCallbacks
    def raw(self, method: str, path: str, body: Any = None) -> Any:
        producer = FileBodyProducer(BytesIO(json.dumps(body).encode())) if body is not None else None
        headers = Headers({b"Content-Type": [b"application/json"]}) if body is not None else Headers()
        response = yield self.agent.request(method.encode(), (self.base + path).encode(), headers, producer)
        content = yield readBody(response)
        return response, content

    @defer.inlineCallbacks
    def call(self, method: str, path: str, body: Any = None) -> Any:
        response, content = yield self.raw(method, path, body)
        envelope = json.loads(content)
        if not envelope["ok"]:
            raise AssertionError(f"{method} {path} -> {response.code}: {envelope['error']}")
        return envelope["data"]


# ---- the files ------------------------------------------------------------------------------------------------------


class Assets(TestCase):
    def test_the_page_and_its_files(self) -> None:
        self.assertEqual(asset(""), asset("index.html"))
        self.assertEqual(asset("index.html")[1], b"text/html; charset=utf-8")  # type: ignore[index]
        self.assertEqual(asset("app.js")[1], b"text/javascript; charset=utf-8")  # type: ignore[index]
        self.assertEqual(asset("style.css")[1], b"text/css; charset=utf-8")  # type: ignore[index]
        for name in ("index.html", "app.js", "style.css"):
            content, _ = asset(name)  # type: ignore[misc]
            self.assertEqual(content, (UI_DIR / name).read_bytes())
            self.assertIs(asset(name), asset(name))  # read once, then from memory

    def test_nothing_else_can_be_read(self) -> None:
        for name in ("assets.py", "__init__.py", "../ui/app.js", "./app.js", "/etc/passwd", "..", ".", "ui/app.js",
                     "app.js/", "APP.JS", "app.js\x00", "..%2Fassets.py", "%2e%2e/assets.py", "\\app.js",
                     "index.htm", "app.js?x=1"):
            self.assertIsNone(asset(name), name)

    def test_no_inline_code_no_external_resources(self) -> None:
        """What a Content-Security-Policy of default-src 'self' needs, and what keeps the page self-contained."""
        html = (UI_DIR / "index.html").read_text()
        self.assertEqual(re.findall(r"<script\b[^>]*>", html), ['<script src="app.js" defer>'])
        self.assertNotRegex(html, r"<script[^>]*>\s*[^<\s]")  # no inline script body
        self.assertNotIn("<style", html)
        self.assertNotRegex(html, r"\sstyle\s*=")
        self.assertNotRegex(html, r"\son[a-z]+\s*=")
        refs = set(re.findall(r"""(?:src|href)\s*=\s*"([^"]*)\"""", html))
        self.assertEqual(refs, {"app.js", "style.css", "data:,", "#call-h"})
        script = (UI_DIR / "app.js").read_text()
        code = re.sub(r"/\*.*?\*/|^\s*//.*$", "", script, flags=re.S | re.M)  # what runs, not what comments say
        for forbidden in (r"\.innerHTML\b", r"\.outerHTML\b", r"insertAdjacentHTML", r"document\.write",
                          r"\beval\(", r"new Function", r"\.style\.", r"setAttribute\(\"style\"",
                          r"\.src\s*=", r"\.href\s*="):
            self.assertIsNone(re.search(forbidden, code), forbidden)
        self.assertEqual(set(re.findall(r"https?://[^\s\"')]+", script)), {"http://www.w3.org/2000/svg"})
        css = (UI_DIR / "style.css").read_text()
        self.assertNotIn("@import", css)
        self.assertNotIn("url(", css)


# ---- served by a router ---------------------------------------------------------------------------------------------


class Served(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        work = Path(self.mktemp())
        work.mkdir()
        self.net = support.Network(work, {"router-a": {"zones": ["z"], "chain": "home"}}, [])
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.rest = Rest(self.net.nodes["router-a"].rest_port)  # type: ignore[arg-type]

    @defer.inlineCallbacks
    def test_files_and_headers(self) -> Any:
        for path, name in (("/ui/", "index.html"), ("/ui/index.html", "index.html"), ("/ui/app.js", "app.js"),
                           ("/ui/style.css", "style.css")):
            response, content = yield self.rest.raw("GET", path)
            self.assertEqual(response.code, 200, path)
            content_type = asset(name)[1]  # type: ignore[index]
            self.assertEqual(content, asset(name)[0])  # type: ignore[index]
            headers = response.headers
            self.assertEqual(headers.getRawHeaders(b"Content-Type"), [content_type])
            self.assertEqual(headers.getRawHeaders(b"Cache-Control"), [b"no-cache"])
            self.assertEqual(headers.getRawHeaders(b"X-Content-Type-Options"), [b"nosniff"])
            (policy,) = headers.getRawHeaders(b"Content-Security-Policy")
            self.assertIn(b"default-src 'self'", policy)
            self.assertNotIn(b"unsafe-inline", policy)
            self.assertNotIn(b"unsafe-eval", policy)

    @defer.inlineCallbacks
    def test_redirect_and_refusals(self) -> Any:
        response, _ = yield self.rest.raw("GET", "/ui")
        self.assertEqual(response.code, 301)
        self.assertEqual(response.headers.getRawHeaders(b"Location"), [b"/ui/"])
        for path in ("/ui/assets.py", "/ui/..%2Fassets.py", "/ui/%2e%2e%2fstatus", "/ui/nope.js", "/ui/a/app.js"):
            response, content = yield self.rest.raw("GET", path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(json.loads(content)["error"]["code"], "not_found", path)
        response, content = yield self.rest.raw("POST", "/ui/", {})
        self.assertEqual(response.code, 405)


# ---- in a browser ---------------------------------------------------------------------------------------------------


class Browser(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        if chromium() is None:
            raise SkipTest("no chromium on this machine: apt-get install -y chromium (the browser test needs it)")
        self.work = Path(self.mktemp()).resolve()
        self.work.mkdir()
        self.net = support.Network(self.work, ROUTERS, LINKS)
        self.addCleanup(self.net.stop)
        yield self.net.start()
        a = self.net.nodes["router-a"].router
        yield support.until(lambda: self.net.linked() and all(
            a.table.route(chain) is not None for chain in ("z.one", "w.two")) and a.table.next_hop("router-d"),
            timeout=30)
        self.rest = Rest(self.net.nodes["router-a"].rest_port)  # type: ignore[arg-type]

    def url(self, fragment: str) -> str:
        return f"{self.rest.base}/ui/#{fragment}"

    @defer.inlineCallbacks
    def test_the_page_of_a_live_router(self) -> Any:
        rest = self.rest
        # Something on every chain, through the page's router: z.home here, w.two and z.one across the overlay.
        yield rest.call("POST", "/z/home/hello/setData", {"key": "xss", "value": XSS})
        yield rest.call("POST", "/w/two/hello/setData", {"key": "k", "value": "v"})
        tx = yield rest.call("POST", "/tx/start", {"resources": ["z.one.hello"]})
        yield rest.call("POST", f"/tx/{tx['tx_id']}/exec", {"path": "z.one.hello", "method": "set", "args": ["k", "t"]})
        committed = yield rest.call("POST", f"/tx/{tx['tx_id']}/commit", {})
        self.assertEqual(committed["state"], "committed")
        undone = yield rest.call("POST", "/tx/start", {"resources": ["z.one.hello"]})
        yield rest.call("POST", f"/tx/{undone['tx_id']}/rollback", {"reason": XSS})
        htlc = yield rest.call("POST", "/htlc/start", {
            "role": "initiator", "own": {"path": "z.one.asset", "receiver": "bob", "amount": 10},
            "other": {"path": "w.two.asset", "sender": "bob", "amount": 5}, "timelock": 600, "margin": 1.0})
        # A router reads its chains' heights once a second: wait until /status and /chains say block 1 of z.home.
        yield support.until(lambda: self.net.nodes["router-a"].router.chain_states["z.home"].height >= 1)
        home = yield rest.call("GET", "/chains/z/home/headers/1")
        two = yield rest.call("GET", "/chains/w/two/headers/1")

        shot = self.work / "page.png"
        # Three pages at once; every browser is waited for, even when one fails (none may outlive the test).
        outcomes = yield defer.DeferredList([
            browse(self.work, self.url('call=w.two.hello&op=getData&args=["k"]'), shot),
            browse(self.work, self.url('call=z.home.hello&op=getData&args=["xss"]')),
            browse(self.work, self.url("call=w.two.hello&op=call&method=nope&args=[]")),
        ], consumeErrors=True)
        for ok, value in outcomes:
            if not ok:
                value.raiseException()
        (html, log), (xss_html, xss_log), (error_html, error_log) = (value for _, value in outcomes)
        for where, text in (("main", log), ("xss", xss_log), ("error", error_log)):
            console = [line for line in text.splitlines() if ":CONSOLE" in line]
            self.assertEqual(console, [], f"console messages ({where} page)")
        dom = Dom(html)
        self.assertIn("hidden", dict(next(a for t, a, _ in dom.elements if a.get("id") == "page-errors-box")))
        self.assertIn("Live", dom.text("#refresh-state"))
        self.assertEqual(dom.text("#router-id"), "router-a")

        # (a) the overlay: every router, coloured by zone; links coloured by RTT; the chosen route highlighted.
        routers = {a["data-router"]: a for a in dom.within("#graph", "g") if "data-router" in a}
        self.assertEqual(set(routers), set(ROUTERS))
        for rid in ROUTERS:
            self.assertIn(rid, dom.text("#graph"))
        self.assertEqual(routers["router-a"]["data-zones"], "w z")
        self.assertEqual(routers["router-b"]["data-zones"], "z")
        self.assertEqual(routers["router-c"]["data-zones"], "w")
        self.assertIn("self", routers["router-a"]["class"].split())
        fills = {rid: {c["fill"] for c in dom.within(f"[data-router={rid}]", "circle")
                       if c.get("class") == "router-dot"} for rid in ROUTERS}
        self.assertEqual(fills["router-c"], fills["router-a"])  # zone w (router-a's first zone by name)
        self.assertNotEqual(fills["router-b"], fills["router-c"])  # z and w differ
        self.assertIn("zone w", dom.text("#legend-zones"))
        self.assertIn("zone z", dom.text("#legend-zones"))
        links = {frozenset((a["data-a"], a["data-b"])): a["class"].split() for a in dom.within("#graph", "g")
                 if "data-a" in a}
        self.assertEqual(set(links), {frozenset(p) for p in LINKS})
        for pair, classes in links.items():
            self.assertEqual(len({"rtt-good", "rtt-warn", "rtt-bad", "rtt-unknown"} & set(classes)), 1, pair)
        self.assertIn("on-route", links[frozenset(("router-a", "router-c"))])
        self.assertNotIn("on-route", links[frozenset(("router-a", "router-b"))])
        self.assertIn("on-route", routers["router-c"]["class"].split())
        self.assertIn("router-a → router-c", dom.text("#route-shown"))

        # (b) resources, and the call the URL asked for: a forwarded read, with what router-a verified.
        listed = dom.text("#resources-table")
        for ipath in ("z.home.hello", "z.home.asset", "z.one.hello", "z.one.asset", "w.two.hello", "w.two.asset"):
            self.assertIn(ipath, listed)
        self.assertEqual(dom.text("#call-output"), '"v"')
        verified = dom.text("#call-verified")
        self.assertIn("Verified: proof checked", verified)
        self.assertIn("state_inclusion", verified)
        self.assertIn("router-a → router-c", dom.text("#call-result"))

        # (c) chains: heights (served here, and trusted from verified results) and their recent headers.
        self.assertRegex(dom.text("[data-chain=z.home]"), r"served here 1\b")
        self.assertRegex(dom.text("[data-chain=w.two]"), r"verified here [1-9]")
        headers = dom.text("#headers-table")
        self.assertIn(home["header"]["hash"][:16], headers)
        self.assertIn(two["header"]["hash"][:16], headers)
        self.assertIn("from router-c", headers)

        # (d) transactions and exchanges with their states.
        self.assertIn("committed", dom.text(f"[data-tx={tx['tx_id']}]"))
        self.assertIn("rolled back", dom.text(f"[data-tx={undone['tx_id']}]"))
        self.assertIn("locked", dom.text(f"[data-htlc={htlc['htlc_id']}]"))

        # What the chains hold is shown as text, never run: markup in a value and in a reason stays text.
        xss = Dom(xss_html)
        self.assertEqual(xss.text("#call-output"), json.dumps(XSS))
        self.assertIn("served by this router", xss.text("#call-verified"))
        self.assertIn("<script>", xss.text(f"[data-tx={undone['tx_id']}]"))
        self.assertEqual([t for t, _, _ in xss.elements if t == "img"], [])
        self.assertEqual([a for t, a, _ in xss.elements if t == "script"], [{"src": "app.js", "defer": ""}])
        self.assertNotIn("pwned", xss.text("#router-id") + xss_html[:2000])

        error = Dom(error_html)
        self.assertEqual(error.text("#call-error-code"), "unknown_method")
        self.assertIn("HTTP 400", error.text("#call-error"))

        # The screenshot: a page at 1280x800 with content (graph colours, text), compared by content, not pixels.
        from PIL import Image

        with Image.open(shot) as image:
            self.assertEqual(image.size, (1280, 800))
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        self.assertIsNotNone(colours)
        self.assertGreater(len(colours), 200)
        self.assertLess(max(count for count, _ in colours), 0.8 * 1280 * 800)
        for colour in ((0x2E, 0x9E, 0x44), (0xD8, 0x9A, 0x00), (0xD6, 0x27, 0x28)):  # at least one RTT colour drawn
            if any(rgb == colour for _, rgb in colours):
                break
        else:
            self.fail("no link drawn in an RTT colour")


# ---- a big network and missing services, from a stand-in API ---------------------------------------------------------


def _big_network(size: int = 150, zones: int = 5) -> dict[str, Any]:
    """What a router of a large network would answer (made up, deterministic): ``size`` routers in ``zones`` zones,
    each zone a chain behind its first router, and no transaction services (they answer 'unsupported')."""
    me = "r000"
    ids = [f"r{i:03d}" for i in range(size)]
    zone_of = {rid: f"zone{i % zones}" for i, rid in enumerate(ids)}
    peers = ids[1:4]
    rows: list[dict[str, Any]] = []
    paths = {me: [me]}
    for i, rid in enumerate(ids[1:], start=1):
        via = peers[i % len(peers)]
        paths[rid] = [me, rid] if rid in peers else [me, via, rid]
    for z in range(zones):
        owner = ids[z] if z else ids[zones]
        rows.append({"kind": "chain", "chain": f"zone{z}.c{z}", "replicas": [owner], "reachable": True,
                     "destination": owner, "next_hop": paths[owner][1] if len(paths[owner]) > 1 else owner,
                     "path": paths[owner], "hops": len(paths[owner]) - 1, "cost": 3.0 * len(paths[owner])})
    for rid in ids:
        rows.append({"kind": "router", "destination": rid, "next_hop": paths[rid][1] if len(paths[rid]) > 1 else rid,
                     "path": paths[rid], "hops": len(paths[rid]) - 1, "cost": 3.0 * (len(paths[rid]) - 1)})
    unsupported = {"code": "unsupported", "message": f"router {me} runs no transaction coordinator"}
    return {
        "status": {"router_id": me, "zones": [zone_of[me]], "version": "0.1.0", "uptime_s": 4000.0, "chains": [],
                   "peers_up": 3, "peers_configured": 4, "routers_known": size, "route_changes": 9},
        "peers": [{"id": p, "zones": [zone_of[p]], "state": "up", "srtt_ms": [1.2, 20.0, 80.0][i], "loss": 0.0}
                  for i, p in enumerate(peers)] + [{"id": "r999", "zones": [], "state": "connecting"}],
        "routes": {"router_id": me, "rebuilds": 3, "changes": 9, "routes": rows},
        "resources": [{"ipath": f"zone{z}.c{z}.asset", "kind": "asset", "methods": {"balanceOf": "read"},
                       "local": False, "routers": [rows[z]["destination"]], "route": rows[z]["path"]}
                      for z in range(zones)],
        "chains": {"served": [], "trusted_headers": [], "verification": {"verified": 0}},
        "tx": unsupported,
        "htlc": unsupported,
    }


class _StandIn(Resource):
    """The page's files from assets(), and made-up API answers: the page must cope with what any router says."""

    isLeaf = True

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__()
        self.answers = answers

    def _send(self, request: Any, status: int, body: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return json.dumps(body).encode()

    def render_GET(self, request: Any) -> bytes:
        segments = [s.decode() for s in request.postpath]
        if segments[0] == "ui" and len(segments) == 2:
            found = asset(segments[1])
            if found is not None:
                request.setHeader(b"Content-Type", found[1])
                request.setHeader(b"Content-Security-Policy", b"default-src 'self'; img-src 'self' data:")
                return found[0]
        answer = self.answers.get(segments[0])
        if answer is None:
            return self._send(request, 404, {"ok": False, "error": {"code": "not_found", "message": "no"}})
        if isinstance(answer, dict) and "code" in answer:
            return self._send(request, 422, {"ok": False, "error": answer})
        return self._send(request, 200, {"ok": True, "data": answer})

    def render_POST(self, request: Any) -> bytes:
        body = json.loads(request.content.read())
        # An EVM balance in wei: beyond 2^53, the page must show it exactly (JSON.parse alone would round it).
        return self._send(request, 200, {"ok": True, "data": {
            "output": 2 ** 70 + 1, "args_seen": body.get("args"), "router": "r005", "path": ["r000", "r002", "r005"],
            "verified": {"proof": False, "reason": "no verifier for chain type 'fabric' yet"}}})


class BigNetwork(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if chromium() is None:
            raise SkipTest("no chromium on this machine: apt-get install -y chromium (the browser test needs it)")
        self.work = Path(self.mktemp()).resolve()
        self.work.mkdir()
        self.port = reactor.listenTCP(0, Site(_StandIn(_big_network())), interface="127.0.0.1")  # type: ignore
        self.addCleanup(self.port.stopListening)

    @defer.inlineCallbacks
    def test_many_routers_and_no_transaction_services(self) -> Any:
        base = f"http://127.0.0.1:{self.port.getHost().port}"
        html, log = yield browse(self.work, base + '/ui/#call=zone2.c2.asset&op=call&method=balanceOf&args=["alice"]')
        self.assertEqual([line for line in log.splitlines() if ":CONSOLE" in line], [])
        dom = Dom(html)
        self.assertIn("hidden", next(a for _, a, _ in dom.elements if a.get("id") == "page-errors-box"))
        drawn = [a["data-router"] for a in dom.within("#graph", "g") if "data-router" in a]
        self.assertLessEqual(len(drawn), 120)
        self.assertIn("r000", drawn)
        self.assertIn("31 farther routers not drawn", dom.text("#graph-hidden"))
        self.assertEqual(len([1 for t, a, outer in dom.elements if t == "tr" and "#routers-table" in outer]),
                         1 + 151)  # the header row, then every router (r999 included)
        for zone in range(5):
            self.assertIn(f"zone zone{zone}", dom.text("#legend-zones"))
        links = {frozenset((a["data-a"], a["data-b"])): a["class"].split() for a in dom.within("#graph", "g")
                 if "data-a" in a}
        self.assertIn("rtt-good", links[frozenset(("r000", "r001"))])
        self.assertIn("rtt-warn", links[frozenset(("r000", "r002"))])
        self.assertIn("rtt-bad", links[frozenset(("r000", "r003"))])
        self.assertIn("down", links[frozenset(("r000", "r999"))])
        self.assertIn("unsupported", dom.text("#tx-stats"))
        self.assertIn("unsupported", dom.text("#htlc-stats"))
        self.assertEqual(dom.text("#call-output"), str(2 ** 70 + 1))
        self.assertIn("no proof (no verifier for chain type 'fabric' yet)", dom.text("#call-verified"))
        self.assertIn("r000 → r002 → r005", dom.text("#call-result"))
        self.assertIn("on-route", links[frozenset(("r000", "r002"))])  # zone2's chain is served by the peer r002
        self.assertIn("r000 → r002 (1 hop", dom.text("#route-shown"))


# ---- a person at the page: links fill the form, writes need a click -------------------------------------------------


class Cdp(protocol.ProcessProtocol):
    """Headless chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: the browser reads
    commands on its fd 3 and answers on its fd 4, each JSON message ended by a NUL byte), so a test can read the live
    page and press a button with a real (trusted) mouse event. Nothing beyond Twisted: no websocket, no driver."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.pending: dict[int, Deferred[Any]] = {}
        self.buffer = b""
        self.session: str | None = None
        self.problems: list[str] = []  # page exceptions and console messages
        self.ended: Deferred[None] = Deferred()
        self.timer: Any = None

    @classmethod
    def start(cls, workdir: Path) -> Cdp:
        exe = chromium()
        assert exe is not None
        browser = cls()
        profile = workdir / f"profile-{next(_profiles)}"
        args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", f"--user-data-dir={profile}", "--window-size=1280,800",
                "--remote-debugging-pipe", "about:blank"]
        process = reactor.spawnProcess(browser, exe, args, env=dict(os.environ), path=str(workdir),  # type: ignore
                                       childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"})
        browser.timer = reactor.callLater(BROWSER_SECONDS, process.signalProcess, "KILL")  # type: ignore
        return browser

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != 4:
            return  # the browser's own log
        self.buffer += data
        while b"\0" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\0", 1)
            message = json.loads(raw)
            waiting = self.pending.pop(message.get("id", -1), None)
            if waiting is not None:
                if "error" in message:
                    waiting.errback(AssertionError(f"DevTools: {message['error']}"))
                else:
                    waiting.callback(message.get("result", {}))
            elif message.get("method") == "Runtime.exceptionThrown":
                self.problems.append(json.dumps(message["params"]["exceptionDetails"])[:2000])
            elif message.get("method") == "Runtime.consoleAPICalled":
                self.problems.append(json.dumps(message["params"]["args"])[:2000])

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        waiting, self.pending = list(self.pending.values()), {}
        self.ended.callback(None)
        for each in waiting:
            each.errback(AssertionError("the browser ended"))

    def send(self, method: str, params: dict[str, Any] | None = None, page: bool = True) -> Deferred[Any]:
        if self.ended.called:
            return defer.fail(AssertionError(f"the browser ended before {method}"))
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        self.pending[ident] = done = Deferred()
        self.transport.writeToChild(3, json.dumps(message).encode() + b"\0")  # type: ignore[union-attr]
        return done

    @defer.inlineCallbacks
    def open(self, url: str) -> Any:
        target = yield self.send("Target.createTarget", {"url": "about:blank"}, page=False)
        attached = yield self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                   page=False)
        self.session = attached["sessionId"]
        yield self.send("Runtime.enable")
        yield self.send("Page.enable")
        yield self.send("Page.navigate", {"url": url})

    @defer.inlineCallbacks
    def evaluate(self, expression: str) -> Any:
        answer = yield self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                       "returnByValue": True})
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression[:200]}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def until(self, condition: str) -> Deferred[Any]:
        """The value of a page expression once it is truthy, polled in the page (the browser's kill timer bounds
        it)."""
        return self.evaluate(f"new Promise((done) => {{ const look = () => {{ const v = ({condition}); "
                             f"if (v) done(v); else setTimeout(look, 50); }}; look(); }})")

    @defer.inlineCallbacks
    def click(self, element_id: str) -> Any:
        """A real left click in the middle of the element, as the mouse would give it (event.isTrusted)."""
        box = yield self.evaluate(f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); "
                                  f"e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); "
                                  f"return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            yield self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                         "clickCount": 1})

    @defer.inlineCallbacks
    def close(self) -> Any:
        if not self.ended.called:
            with contextlib.suppress(AssertionError):  # it ended while closing
                yield self.send("Browser.close", page=False)
            yield self.ended


WRITE_LINK = 'call=z.home.asset&op=sendTransaction&method=transfer&args=["bob",7]'
#: The page is loaded and has rendered the resources: a write the link had run would have been sent well before
#: this (the page before this fix sent it first thing on load, before its first refresh).
SETTLED = "document.querySelector('#refresh-state.live') && document.querySelectorAll('#resources-table tbody tr')" \
    ".length > 1"
#: ... and it knows who the caller is.
KNOWN = "document.getElementById('whoami-name')"


class Links(TestCase):
    """A link into the page (``#call=...&op=sendTransaction...``) fills the form and sends nothing; the write runs when
    the Run button is clicked. The chain's state is read back through the REST API, not from the page."""

    timeout = 90

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        if chromium() is None:
            raise SkipTest("no chromium on this machine: apt-get install -y chromium (the browser test needs it)")
        self.work = Path(self.mktemp()).resolve()
        self.work.mkdir()
        self.net = support.Network(self.work, {"router-a": {"zones": ["z"], "chain": "home"}}, [])
        self.addCleanup(self.net.stop)
        yield self.net.start()
        self.rest = Rest(self.net.nodes["router-a"].rest_port)  # type: ignore[arg-type]
        self.browser = Cdp.start(self.work)
        self.addCleanup(self.browser.close)

    @defer.inlineCallbacks
    def balance(self) -> Any:
        answer = yield self.rest.call("POST", "/z/home/asset/call", {"method": "balanceOf", "args": ["anonymous"]})
        return answer["output"]

    @defer.inlineCallbacks
    def test_a_link_fills_a_write_and_only_a_click_sends_it(self) -> Any:
        before = yield self.balance()
        page = self.browser
        yield page.open(f"{self.rest.base}/ui/#{WRITE_LINK}")
        yield page.until(SETTLED)
        self.assertEqual((yield self.balance()), before)  # the link ran nothing
        yield page.until(KNOWN)
        prefilled = yield page.until("document.getElementById('call-prefilled')?.textContent")
        self.assertIn("Nothing has been sent", prefilled)
        self.assertIn("sendTransaction transfer on z.home.asset", prefilled)
        form = yield page.evaluate("[document.getElementById('call-op').value, "
                                   "document.getElementById('call-method').value, "
                                   "document.getElementById('call-args').value, "
                                   "document.getElementById('call-run').disabled, "
                                   "!!document.getElementById('call-output')]")
        self.assertEqual(form, ["sendTransaction", "transfer", '["bob",7]', False, False])

        # A link followed while the page is open (the fragment changes) fills the form the same way.
        yield page.evaluate("location.hash = '#call=z.home.hello&op=setData&args=' + "
                            "encodeURIComponent('[\"k\",\"from a link\"]'); true")
        yield page.until("document.getElementById('call-prefilled')?.textContent.includes('setData')")
        self.assertEqual((yield self.balance()), before)
        got = yield self.rest.call("POST", "/z/home/hello/getData", {"key": "k"})
        self.assertIsNone(got["output"])

        # The visitor's click sends the form as it stands: the setData the second link filled in.
        yield page.click("call-run")
        output = yield page.until("document.getElementById('call-output')?.textContent")
        self.assertIsNotNone(output)
        got = yield self.rest.call("POST", "/z/home/hello/getData", {"key": "k"})
        self.assertEqual(got["output"], "from a link")
        self.assertEqual((yield self.balance()), before)
        self.assertEqual(page.problems, [])

    @defer.inlineCallbacks
    def test_the_caller_and_a_refused_write(self) -> Any:
        """With an ACL that lets the anonymous caller read only: the page says who the caller is, shows the router's
        403 inline with its reason, then disables writes with that reason."""
        import tomllib

        from wecross.governance.acl import parse_acl_document

        self.net.nodes["router-a"].router.governance.policy = parse_acl_document(tomllib.loads("""
[acl_settings]
default = "deny"

[[acl]]
name = "anonymous-reads"
who = "anonymous"
resources = ["*.*.*"]
interfaces = ["call", "getData"]
effect = "allow"
"""))
        before = yield self.balance()
        page = self.browser
        yield page.open(f"{self.rest.base}/ui/#{WRITE_LINK}")
        yield page.until(SETTLED)
        yield page.until(KNOWN)
        who = yield page.evaluate("document.getElementById('whoami').textContent")
        self.assertIn("You are anonymous", who)
        yield page.click("call-run")
        code = yield page.until("document.getElementById('call-error-code')?.textContent")
        self.assertEqual(code, "forbidden")
        error = yield page.evaluate("document.getElementById('call-error').textContent")
        self.assertIn("no rule grants anonymous sendTransaction on z.home.asset; default deny", error)
        self.assertIn("HTTP 403", error)
        shown = yield page.evaluate("[document.getElementById('call-run').disabled, "
                                    "document.getElementById('call-denied').hidden, "
                                    "document.getElementById('call-denied').textContent, "
                                    "Array.from(document.getElementById('call-op').options)"
                                    ".filter((o) => o.disabled).map((o) => o.value)]")
        disabled, hidden, reason, off = shown
        self.assertTrue(disabled)
        self.assertFalse(hidden)
        self.assertIn("Writes are off for the anonymous caller", reason)
        self.assertIn("no rule grants anonymous sendTransaction", reason)
        self.assertEqual(off, ["sendTransaction", "setData"])
        # A read is still allowed, and Run comes back for it.
        yield page.evaluate("const op = document.getElementById('call-op'); op.value = 'call'; "
                            "op.dispatchEvent(new Event('change')); "
                            "document.getElementById('call-method').value = 'balanceOf'; "
                            "document.getElementById('call-args').value = '[\"anonymous\"]'; true")
        self.assertFalse((yield page.evaluate("document.getElementById('call-run').disabled")))
        yield page.click("call-run")
        output = yield page.until("document.getElementById('call-output')?.textContent")
        self.assertEqual(output, str(before))
        self.assertEqual((yield self.balance()), before)
        self.assertEqual(page.problems, [])
