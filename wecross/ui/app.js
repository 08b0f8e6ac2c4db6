/*
 * The router's web page: reads this router's REST API (same origin) every 2 s and draws what it says.
 *
 * Rules this file keeps, and why:
 * - Every value shown comes from the network, so nothing is ever parsed as HTML: elements are built with
 *   createElement and filled with text nodes (no innerHTML, no inline handlers, no URLs built from data).
 * - The router sends a Content-Security-Policy of default-src 'self': no inline script or style, no eval; colours
 *   that depend on data are SVG presentation attributes, everything else is a class from style.css.
 * - Each endpoint renders on its own: one failing (a router without a coordinator answers /tx with an error) leaves
 *   the rest of the page live.
 * - A link into the page never runs a write: a fragment naming sendTransaction or setData only fills the form, and
 *   the write is sent by the Run button alone (runCall has one caller for writes, the form's submit event). A page
 *   anyone can link to acts with the visitor's identity (the client certificate the browser presents), so a write
 *   must be the visitor's decision, not the link author's. Reads may still run from a link: they change nothing.
 * - The router decides what the caller may do (its ACL); the page does not guess. It shows who the router says the
 *   caller is (/whoami) and, once the router refused a write with 403, disables Run for that resource and operation
 *   with the router's reason (for the anonymous caller: every write, since no user is behind it).
 */
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const WIDTH = 640;
  const HEIGHT = 400;
  const HEADERS_PER_CHAIN = 3;
  const MAX_DRAWN = 120;
  const HEADER_CACHE_MAX = 300;
  const ZONE_COLOURS = ["#4e79a7", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7", "#8cd17d", "#f1ce63", "#86bcb6",
    "#d37295", "#a0cbe8"];
  const UNKNOWN_ZONE_COLOUR = "#c8c8c8";
  const IPATH_PART = "[A-Za-z0-9][A-Za-z0-9_-]{0,63}";
  const IPATH_RE = new RegExp("^" + IPATH_PART + "\\." + IPATH_PART + "\\." + IPATH_PART + "$");
  const KEY_OPS = { getData: "[key]", setData: "[key, value]" };
  const WRITE_OPS = new Set(["sendTransaction", "setData"]);

  const state = {
    results: {}, // endpoint name -> {data} | {error}
    selected: null, // the iPath whose route is highlighted
    headers: new Map(), // "chain#n" -> {data} | {error}
    headersPending: new Set(),
    refreshing: false,
    lastOk: null,
    self: null,
    identity: null, // what GET /whoami says: {name, org, roles, proven}
    refused: new Map(), // "ipath op" -> the router's reason, for writes it refused this caller with 403
    anonymousRefused: null, // the reason a write by the anonymous caller was refused: every write is then off
  };

  // ---- small DOM helpers ------------------------------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes (never markup). */
  function el(tag, attrs, ...children) {
    return fill(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return fill(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function fill(node, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.setAttribute("class", String(value));
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Replace a node's children; null, undefined and false are skipped (replaceChildren would write "null"). */
  function put(node, ...children) {
    node.replaceChildren();
    return fill(node, {}, children);
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function tbody(tableId) {
    return byId(tableId).tBodies[0];
  }

  function short(hash, keep) {
    const text = String(hash == null ? "" : hash);
    const n = keep || 10;
    return text.length > n + 4 ? text.slice(0, n) + "…" : text;
  }

  /** A unix time as the reader's local time; the date only when it is not today (tables stay narrow). */
  function when(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds <= 0) return "—";
    const date = new Date(seconds * 1000);
    return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function ms(value) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(1) + " ms" : "—";
  }

  function list(value) {
    return Array.isArray(value) ? value : [];
  }

  // ---- JSON: big integers survive, and a compact pretty printer that knows them -----------------------------------

  /** JSON.parse, keeping integers beyond 2^53 exact (as BigInt) where the browser gives the reviver their source. */
  function parseJson(text) {
    return JSON.parse(text, function (key, value, context) {
      if (typeof value === "number" && !Number.isSafeInteger(value) && context && typeof context.source === "string"
          && /^-?\d+$/.test(context.source)) {
        return BigInt(context.source);
      }
      return value;
    });
  }

  function pretty(value, indent) {
    const pad = indent || "";
    if (typeof value === "bigint") return value.toString();
    if (value === null || typeof value !== "object") return JSON.stringify(value === undefined ? null : value);
    const inner = pad + "  ";
    if (Array.isArray(value)) {
      if (value.length === 0) return "[]";
      return "[\n" + value.map((v) => inner + pretty(v, inner)).join(",\n") + "\n" + pad + "]";
    }
    const keys = Object.keys(value);
    if (keys.length === 0) return "{}";
    return "{\n" + keys.map((k) => inner + JSON.stringify(k) + ": " + pretty(value[k], inner)).join(",\n") + "\n"
      + pad + "}";
  }

  // ---- the REST API -----------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(code, message, details, status) {
      super(message);
      this.code = code;
      this.details = details;
      this.status = status;
    }
  }

  /** One API call; resolves to the envelope's data, rejects with an ApiError carrying the envelope's code. */
  async function api(path, options) {
    // Relative to the page (/ui/), so the page also works behind a proxy that mounts the router under a prefix.
    const url = new URL("../" + path, document.baseURI);
    let response;
    try {
      response = await fetch(url, Object.assign({ cache: "no-store", headers: { Accept: "application/json" } },
        options || {}));
    } catch (exc) {
      throw new ApiError("network", "cannot reach the router (" + (exc && exc.message ? exc.message : exc) + ")");
    }
    const text = await response.text();
    let body;
    try {
      body = parseJson(text);
    } catch (exc) {
      throw new ApiError("bad_response", "HTTP " + response.status + ": the answer is not JSON", null,
        response.status);
    }
    if (!body || typeof body !== "object" || typeof body.ok !== "boolean") {
      throw new ApiError("bad_response", "HTTP " + response.status + ": not a WeCross envelope", null,
        response.status);
    }
    if (!body.ok) {
      const error = body.error && typeof body.error === "object" ? body.error : {};
      throw new ApiError(String(error.code || "error"), String(error.message || ""), error.details,
        response.status);
    }
    return body.data;
  }

  const ENDPOINTS = {
    status: "status",
    peers: "peers",
    routes: "routes",
    resources: "resources",
    chains: "chains",
    tx: "tx?limit=20",
    htlc: "htlc?limit=20",
  };

  function data(name) {
    const result = state.results[name];
    return result && "data" in result ? result.data : null;
  }

  function errorLine(name) {
    const result = state.results[name];
    if (!result || !result.error) return null;
    return el("p", { class: "error" }, "Could not load /" + ENDPOINTS[name] + ": ",
      el("code", {}, result.error.code), " ", result.error.message);
  }

  async function refresh() {
    if (state.refreshing) return;
    state.refreshing = true;
    try {
      const names = Object.keys(ENDPOINTS);
      const settled = await Promise.allSettled(names.map((name) => api(ENDPOINTS[name])));
      let failures = 0;
      names.forEach((name, i) => {
        const outcome = settled[i];
        if (outcome.status === "fulfilled") state.results[name] = { data: outcome.value };
        else {
          failures += 1;
          const reason = outcome.reason;
          state.results[name] = { error: reason instanceof ApiError ? reason
            : new ApiError("error", String(reason && reason.message ? reason.message : reason)) };
        }
      });
      render();
      const shown = byId("refresh-state");
      if (failures === names.length) {
        shown.className = "refresh down";
        const first = state.results.status.error;
        shown.textContent = "Router unreachable (" + first.message + "); trying again every "
          + REFRESH_MS / 1000 + " s" + (state.lastOk ? "; last update " + state.lastOk.toLocaleTimeString() : "");
      } else {
        state.lastOk = new Date();
        shown.className = "refresh live";
        shown.textContent = "Live: updated " + state.lastOk.toLocaleTimeString() + ", every " + REFRESH_MS / 1000
          + " s";
      }
      fetchHeaders();
    } finally {
      state.refreshing = false;
    }
  }

  function schedule() {
    window.setTimeout(function tick() {
      const run = document.visibilityState === "hidden" ? Promise.resolve() : refresh();
      run.catch(reportError).finally(schedule);
    }, REFRESH_MS);
  }

  // ---- who the caller is -------------------------------------------------------------------------------------------

  const PROVEN = {
    tls: "known by your TLS client certificate",
    client: "known by your signature",
    entry: "vouched for by an entry router",
    none: "no client certificate (plain HTTP, or none sent)",
  };

  /** GET /whoami, once: the identity is that of the connection's client certificate, which a page cannot change. A
   * router without the endpoint (older versions answer 404) is shown as serving the anonymous caller. */
  async function fetchIdentity() {
    try {
      const me = await api("whoami");
      state.identity = me && typeof me === "object" ? me : { name: "anonymous", roles: [], proven: "none" };
    } catch (exc) {
      if (!(exc instanceof ApiError)) throw exc;
      state.identity = exc.status === 404 ? { name: "anonymous", roles: [], proven: "none", unsupported: true }
        : { error: exc };
    }
    renderIdentity();
    updateWriteState();
  }

  function isAnonymous() {
    const me = state.identity;
    return !!me && !me.error && String(me.name) === "anonymous";
  }

  function renderIdentity() {
    const me = state.identity;
    const line = byId("whoami");
    if (!me) return;
    if (me.error) {
      line.className = "whoami";
      put(line, "Could not ask who you are (/whoami): ", el("code", {}, me.error.code), " ", me.error.message);
      return;
    }
    const roles = list(me.roles).map(String);
    line.className = isAnonymous() ? "whoami anonymous" : "whoami";
    put(line, "You are ", el("strong", { id: "whoami-name" }, String(me.name)),
      me.org ? " of " + String(me.org) : "",
      roles.length ? " · roles " + roles.join(", ") : "",
      " · " + (PROVEN[String(me.proven)] || "proven by " + String(me.proven)),
      me.unsupported ? " (this router does not say: no /whoami)" : "",
      isAnonymous() ? " · a router with an ACL grants the anonymous caller only what a rule names anonymous" : "");
  }

  // ---- rendering --------------------------------------------------------------------------------------------------

  function render() {
    const parts = [renderStatus, renderOverlay, renderResources, renderChains, renderHeaders, renderTransactions,
      renderHtlcs];
    for (const part of parts) {
      try {
        part();
      } catch (exc) {
        reportError(exc);
      }
    }
  }

  function renderStatus() {
    const status = data("status");
    const facts = byId("router-facts");
    if (!status) {
      const line = errorLine("status");
      put(facts);
      if (line) facts.appendChild(el("div", {}, el("dt", {}, "Status"), el("dd", {}, line.textContent)));
      return;
    }
    state.self = String(status.router_id || "");
    byId("router-id").textContent = state.self;
    document.title = "WeCross router " + state.self;
    const fact = (label, value) => el("div", {}, el("dt", {}, label), el("dd", {}, value));
    put(facts, 
      fact("Zones", list(status.zones).join(", ") || "—"),
      fact("Version", status.version || "—"),
      fact("Up for", formatDuration(status.uptime_s)),
      fact("Peers up", String(status.peers_up) + " of " + String(status.peers_configured) + " configured"),
      fact("Routers known", String(status.routers_known)),
      fact("Route changes", String(status.route_changes)),
    );
  }

  function formatDuration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "—";
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + (s % 60) + " s";
    return s + " s";
  }

  // ---- the overlay graph ------------------------------------------------------------------------------------------

  function rttClass(value) {
    if (typeof value !== "number" || !isFinite(value)) return "rtt-unknown";
    if (value < 5) return "rtt-good";
    if (value < 50) return "rtt-warn";
    return "rtt-bad";
  }

  function pairKey(a, b) {
    return a < b ? a + "\u0000" + b : b + "\u0000" + a;
  }

  /** Routers and links, from what this router knows: its status, its links (/peers), its routing table (/routes)
   * and who serves what (/resources). Zones of routers that are not peers come from the chains they serve. */
  function buildOverlay() {
    const status = data("status");
    const peers = list(data("peers"));
    const routes = data("routes");
    const resources = list(data("resources"));
    const self = state.self || (routes && routes.router_id) || null;
    const nodes = new Map();
    const links = new Map();

    function node(id) {
      const key = String(id);
      let found = nodes.get(key);
      if (!found) {
        found = { id: key, zones: new Set(), inferred: new Set(), self: key === self, peer: null, route: null };
        nodes.set(key, found);
      }
      return found;
    }

    if (self) {
      const me = node(self);
      for (const zone of list(status && status.zones)) me.zones.add(String(zone));
    }
    const graph = routes && routes.graph && typeof routes.graph === "object" ? routes.graph : null;
    if (graph && graph.routers && typeof graph.routers === "object") {
      for (const [id, zones] of Object.entries(graph.routers)) {
        for (const zone of list(zones)) node(id).zones.add(String(zone));
      }
    }
    for (const peer of peers) {
      if (!peer || typeof peer.id !== "string") continue;
      const n = node(peer.id);
      n.peer = peer;
      for (const zone of list(peer.zones)) n.zones.add(String(zone));
      if (self) {
        links.set(pairKey(self, peer.id), {
          a: self, b: peer.id, rtt: peer.state === "up" ? peer.srtt_ms : null, state: String(peer.state || "?"),
          source: "measured by this router", loss: peer.loss,
        });
      }
    }

    const rows = list(routes && routes.routes);
    const costTo = new Map();
    for (const row of rows) {
      if (row.kind === "router" && typeof row.destination === "string") {
        node(row.destination).route = row;
        if (typeof row.cost === "number") costTo.set(row.destination, row.cost);
      }
    }
    for (const row of rows) {
      const path = list(row.path).map(String);
      path.forEach((id) => node(id));
      if (row.kind === "chain") {
        const zone = String(row.chain || "").split(".")[0];
        for (const replica of list(row.replicas)) {
          const n = node(replica);
          if (zone) n.inferred.add(zone);
        }
      }
      for (let i = 0; i + 1 < path.length; i++) {
        const key = pairKey(path[i], path[i + 1]);
        if (links.has(key)) continue;
        const from = costTo.get(path[i]);
        const to = costTo.get(path[i + 1]);
        const estimate = typeof from === "number" && typeof to === "number" && to >= from ? to - from : null;
        links.set(key, { a: path[i], b: path[i + 1], rtt: estimate, state: "up", source: "route cost" });
      }
    }
    if (graph) {
      for (const link of list(graph.links)) {
        if (!link || typeof link.a !== "string" || typeof link.b !== "string") continue;
        const key = pairKey(link.a, link.b);
        const known = links.get(key);
        if (known && known.source === "measured by this router") continue;
        node(link.a);
        node(link.b);
        links.set(key, { a: link.a, b: link.b, rtt: link.srtt_ms, state: "up", source: "gossip", loss: link.loss });
      }
    }
    for (const resource of resources) {
      const zone = String(resource.ipath || "").split(".")[0];
      for (const router of list(resource.routers)) {
        if (zone) node(router).inferred.add(zone);
      }
    }
    for (const n of nodes.values()) {
      if (n.zones.size === 0) n.inferred.forEach((zone) => n.zones.add(zone));
      else n.inferred.clear();
    }
    // A big network would make the drawing unreadable (and slow, every 2 s): keep this router, its peers, the
    // selected route and then the nearest routers by hops; the table below the graph still lists every router.
    let hidden = 0;
    if (nodes.size > MAX_DRAWN) {
      const route = selectedRoute();
      const pinned = new Set(route && route.path ? route.path : []);
      const rank = (n) => (n.self ? -3 : pinned.has(n.id) ? -2 : n.peer ? -1 : n.route ? n.route.hops : 1e9);
      const ordered = Array.from(nodes.values()).sort((p, q) => rank(p) - rank(q) || (p.id < q.id ? -1 : 1));
      const drawn = new Map(ordered.slice(0, MAX_DRAWN).map((n) => [n.id, n]));
      hidden = nodes.size - drawn.size;
      return { self, nodes: drawn, links, hidden, all: nodes };
    }
    return { self, nodes, links, hidden, all: nodes };
  }

  /** A deterministic layout: routers grouped by zone (routers of several zones between their zones' centres), zone
   * centres on an ellipse, members sorted by name; a small group is a circle, a big one a sunflower disc (Vogel's
   * spiral), so the same network always looks the same and a zone of a hundred routers still fits. */
  function layout(overlay) {
    const zones = new Set();
    for (const n of overlay.nodes.values()) n.zones.forEach((zone) => zones.add(zone));
    const zoneList = Array.from(zones).sort();
    const colours = new Map(zoneList.map((zone, i) => [zone, ZONE_COLOURS[i % ZONE_COLOURS.length]]));
    const anchors = zoneList.slice();
    const hasUnknown = Array.from(overlay.nodes.values()).some((n) => n.zones.size === 0);
    if (hasUnknown) anchors.push("?");
    const k = anchors.length;
    const cx = WIDTH / 2;
    const cy = HEIGHT / 2 + 8;
    const ring = k <= 1 ? 0 : k === 2 ? 150 : 135;
    const centres = new Map();
    anchors.forEach((zone, i) => {
      const angle = Math.PI + (2 * Math.PI * i) / k;
      centres.set(zone, { x: cx + ring * Math.cos(angle) * 1.3, y: cy + ring * Math.sin(angle) * 0.85 });
    });
    // How far a group may spread before it runs into its neighbours (half the distance between two centres).
    const room = k <= 1 ? 150 : Math.max(28, ring * 0.85 * Math.sin(Math.PI / k) - 14);
    const groups = new Map();
    for (const n of Array.from(overlay.nodes.values()).sort((p, q) => (p.id < q.id ? -1 : p.id > q.id ? 1 : 0))) {
      const zs = Array.from(n.zones).sort();
      const key = zs.length ? zs.join("+") : "?";
      if (!groups.has(key)) groups.set(key, { zones: zs.length ? zs : ["?"], members: [] });
      groups.get(key).members.push(n);
    }
    const total = overlay.nodes.size;
    const radius = total > 60 ? 4 : total > 24 ? 7 : 13;
    const positions = new Map();
    const halos = [];
    for (const [key, group] of groups) {
      let x = 0;
      let y = 0;
      for (const zone of group.zones) {
        x += centres.get(zone).x;
        y += centres.get(zone).y;
      }
      x /= group.zones.length;
      y /= group.zones.length;
      const count = group.members.length;
      let extent = 0;
      if (count <= 10) {
        extent = count === 1 ? 0 : Math.min(room, (radius * 3.2 * count) / (2 * Math.PI) + radius);
        group.members.forEach((n, i) => {
          const angle = -Math.PI / 2 + (2 * Math.PI * i) / count;
          positions.set(n.id, { x: x + extent * Math.cos(angle), y: y + extent * Math.sin(angle) });
        });
      } else {
        const step = Math.min(radius * 2.6, room / Math.sqrt(count));
        extent = step * Math.sqrt(count);
        group.members.forEach((n, i) => {
          const r = step * Math.sqrt(i + 0.5);
          const angle = i * 2.399963;  // the golden angle: neighbours never line up
          positions.set(n.id, { x: x + r * Math.cos(angle), y: y + r * Math.sin(angle) });
        });
      }
      if (group.zones.length === 1) {
        halos.push({ zone: key, x, y, r: extent + radius + 16, colour: colours.get(key) || UNKNOWN_ZONE_COLOUR });
      }
    }
    return { positions, halos, colours, radius, zones: zoneList, hasUnknown, labels: total <= 30 };
  }

  /** The route a request for the selected resource takes, as router ids; [self] when served here. */
  function selectedRoute() {
    if (!state.selected) return null;
    const chain = state.selected.split(".").slice(0, 2).join(".");
    const resource = list(data("resources")).find((r) => r.ipath === state.selected);
    const local = list(data("status") && data("status").chains).some((c) => c.path === chain)
      || (resource && resource.local);
    if (local && state.self) return { chain, path: [state.self], local: true };
    const routes = data("routes");
    const row = list(routes && routes.routes).find((r) => r.kind === "chain" && r.chain === chain);
    if (row && row.reachable !== false && list(row.path).length) {
      return { chain, path: list(row.path).map(String), row };
    }
    if (resource && Array.isArray(resource.route) && resource.route.length) {
      return { chain, path: resource.route.map(String) };
    }
    return { chain, path: null, row };
  }

  function renderOverlay() {
    const overlay = buildOverlay();
    const view = layout(overlay);
    const route = selectedRoute();
    const onRoute = new Set();
    const routeNodes = new Set(route && route.path ? route.path : []);
    if (route && route.path) {
      for (let i = 0; i + 1 < route.path.length; i++) onRoute.add(pairKey(route.path[i], route.path[i + 1]));
    }

    const zonesLayer = byId("graph-zones");
    put(zonesLayer, ...view.halos.map((halo) => svg("g", { class: "zone" },
      svg("circle", { cx: halo.x.toFixed(1), cy: halo.y.toFixed(1), r: halo.r.toFixed(1), fill: halo.colour,
        "fill-opacity": "0.12", stroke: halo.colour, "stroke-opacity": "0.5" }),
      svg("text", { x: halo.x.toFixed(1), y: Math.max(14, halo.y - halo.r - 6).toFixed(1), class: "zone-label",
        "text-anchor": "middle" }, halo.zone === "?" ? "zone unknown" : "zone " + halo.zone))));

    const linkItems = [];
    const sortedLinks = Array.from(overlay.links.entries()).sort((p, q) => (p[0] < q[0] ? -1 : 1));
    for (const [key, link] of sortedLinks) {
      const p = view.positions.get(link.a);
      const q = view.positions.get(link.b);
      if (!p || !q) continue;
      const down = link.state !== "up";
      const cls = ["link", down ? "rtt-unknown down" : rttClass(link.rtt), onRoute.has(key) ? "on-route" : ""]
        .join(" ").trim();
      const label = link.a + " — " + link.b + ": " + (down ? "link " + link.state
        : link.source === "route cost" ? "route cost " + ms(link.rtt) + " (an upper bound of the RTT)"
          : "RTT " + ms(link.rtt) + " (" + link.source + ")");
      const coords = { x1: p.x.toFixed(1), y1: p.y.toFixed(1), x2: q.x.toFixed(1), y2: q.y.toFixed(1) };
      linkItems.push(svg("g", { class: cls, "data-a": link.a, "data-b": link.b },
        onRoute.has(key) ? svg("line", Object.assign({ class: "route-underlay" }, coords)) : null,
        svg("line", Object.assign({ class: "link-line" }, coords)),
        svg("title", {}, label)));
    }
    put(byId("graph-links"), ...linkItems);
    byId("graph-links").setAttribute("class", linkItems.length > 60 ? "dense" : "");

    const nodeItems = [];
    const ids = Array.from(overlay.nodes.keys()).sort();
    for (const id of ids) {
      const n = overlay.nodes.get(id);
      const pos = view.positions.get(id);
      const zones = Array.from(n.zones).sort();
      const fillColour = zones.length ? view.colours.get(zones[0]) : UNKNOWN_ZONE_COLOUR;
      const ring = zones.length > 1 ? view.colours.get(zones[1]) : null;
      const cls = ["router", n.self ? "self" : "", routeNodes.has(id) ? "on-route" : "",
        n.peer && n.peer.state !== "up" ? "down" : ""].join(" ").replace(/\s+/g, " ").trim();
      const detail = [id + (n.self ? " (this router)" : ""),
        "zones: " + (zones.join(", ") || "unknown") + (n.inferred.size ? " (from the chains it serves)" : "")];
      if (n.route) detail.push("route: " + list(n.route.path).join(" → ") + ", cost " + n.route.cost);
      if (n.peer) detail.push("link " + n.peer.state + ", RTT " + ms(n.peer.srtt_ms));
      nodeItems.push(svg("g", { class: cls, "data-router": id, "data-zones": zones.join(" ") },
        ring ? svg("circle", { cx: pos.x.toFixed(1), cy: pos.y.toFixed(1), r: (view.radius + 4).toFixed(1),
          fill: "none", stroke: ring, "stroke-width": "4", class: "zone-ring" }) : null,
        svg("circle", { cx: pos.x.toFixed(1), cy: pos.y.toFixed(1), r: String(view.radius), fill: fillColour,
          class: "router-dot" }),
        view.labels || n.self || n.peer || routeNodes.has(id) ? svg("text", { x: pos.x.toFixed(1),
          y: (pos.y + view.radius + 12).toFixed(1), "text-anchor": "middle", class: "router-label" }, id) : null,
        svg("title", {}, detail.join("\n"))));
    }
    put(byId("graph-nodes"), ...nodeItems);

    byId("graph-desc").textContent = ids.length
      ? ids.length + " routers in " + (view.zones.length || "no") + " zones; " + linkItems.length + " links shown."
        + (overlay.hidden ? " " + overlay.hidden + " farther routers are not drawn (see the table)." : "")
        + (state.self ? " This router is " + state.self + "." : "")
      : "No routers known yet.";

    const swatch = (colour) => svg("svg", { class: "swatch", viewBox: "0 0 12 12", "aria-hidden": "true" },
      svg("circle", { cx: "6", cy: "6", r: "5", fill: colour }));
    put(byId("legend-zones"),
      ...view.zones.map((zone) => el("li", {}, swatch(view.colours.get(zone)), "zone " + zone)),
      view.hasUnknown ? el("li", {}, swatch(UNKNOWN_ZONE_COLOUR), "zone unknown") : null,
      overlay.hidden ? el("li", { id: "graph-hidden" }, overlay.hidden + " farther routers not drawn") : null);

    const shown = byId("route-shown");
    if (!state.selected) {
      shown.textContent = "Select a resource to see the route a request to it takes.";
    } else if (route && route.local) {
      put(shown, "Route to ", el("strong", {}, state.selected), ": served by this router (",
        state.self, "), no hop.");
    } else if (route && route.path) {
      const hops = route.path.length - 1;
      const cost = route.row && typeof route.row.cost === "number" ? ", cost " + route.row.cost.toFixed(1) : "";
      put(shown, "Route to ", el("strong", {}, state.selected), ": ", route.path.join(" → "), " (",
        String(hops), hops === 1 ? " hop" : " hops", cost, ")");
    } else {
      put(shown, "No route to ", el("strong", {}, state.selected), " from this router",
        route && route.row && route.row.reachable === false ? " (its chain is known but unreachable)" : "", ".");
    }

    const allIds = Array.from(overlay.all.keys()).sort();
    const rows = allIds.map((id) => {
      const n = overlay.all.get(id);
      const link = n.peer ? (n.peer.state === "up" ? "RTT " + ms(n.peer.srtt_ms) : String(n.peer.state))
        : n.self ? "this router" : "via " + (n.route ? n.route.next_hop : "?");
      return el("tr", {}, el("th", { scope: "row" }, id), el("td", {}, Array.from(n.zones).sort().join(", ") || "—"),
        el("td", {}, link), el("td", {}, n.route ? String(n.route.next_hop) : "—"),
        el("td", {}, n.route ? String(n.route.hops) : "—"),
        el("td", {}, n.route && typeof n.route.cost === "number" ? n.route.cost.toFixed(1) : "—"));
    });
    put(tbody("routers-table"), ...rows);
  }

  // ---- resources and the call form --------------------------------------------------------------------------------

  function select(ipath) {
    state.selected = ipath;
    try {
      renderOverlay();
      renderResources();
    } catch (exc) {
      reportError(exc);
    }
  }

  function renderResources() {
    const resources = data("resources");
    const note = byId("resources-note");
    const body = tbody("resources-table");
    const failed = errorLine("resources");
    if (!resources) {
      put(note, ...(failed ? [failed] : ["Loading…"]));
      put(body);
      return;
    }
    // The table is rebuilt on every refresh; a keyboard user's focus on a Select button must survive that.
    const active = document.activeElement;
    const focused = active && body.contains(active) ? active.getAttribute("data-ipath") : null;
    note.textContent = resources.length
      ? resources.length + " resources reachable from this router. Select one to see its route."
      : "No resources reachable from this router yet.";
    put(body, ...resources.map((r) => {
      const ipath = String(r.ipath || "");
      const selected = ipath === state.selected;
      const where = r.local ? "this router" : list(r.routers).join(", ") || "—";
      const route = r.local ? "—" : Array.isArray(r.route) ? r.route.join(" → ") : "no route";
      return el("tr", { class: selected ? "selected" : null },
        el("th", { scope: "row" }, el("code", {}, ipath)),
        el("td", {}, String(r.kind || "")),
        el("td", {}, Object.keys(r.methods && typeof r.methods === "object" ? r.methods : {}).join(", ")),
        el("td", {}, where),
        el("td", {}, route),
        el("td", {}, el("button", { type: "button", class: "small", "aria-pressed": selected ? "true" : "false",
          "aria-label": "Select " + ipath, "data-ipath": ipath, onclick: () => {
            select(ipath);
            byId("call-resource").value = ipath;
            updateMethods();
            updateWriteState();
          } }, selected ? "Selected" : "Select")));
    }));
    if (focused !== null) {
      const again = Array.from(body.querySelectorAll("button[data-ipath]"))
        .find((b) => b.getAttribute("data-ipath") === focused);
      if (again) again.focus();
    }
    put(byId("call-resources"), ...resources.map((r) => el("option", { value: String(r.ipath || "") })));
    updateMethods();
  }

  function updateMethods() {
    const ipath = byId("call-resource").value.trim();
    const resource = list(data("resources")).find((r) => r.ipath === ipath);
    const methods = resource && resource.methods && typeof resource.methods === "object" ? resource.methods : {};
    const options = Object.keys(methods).sort().map((name) => el("option", { value: name },
      String(methods[name])));
    put(byId("call-methods"), ...options);
  }

  function updateOpFields() {
    const op = byId("call-op").value;
    const keyOp = op in KEY_OPS;
    const method = byId("call-method");
    method.disabled = keyOp;
    byId("call-args-hint").textContent = keyOp
      ? "For " + op + ": " + KEY_OPS[op] + " (the key a string)."
      : "For call and sendTransaction: the method's arguments.";
  }

  /** The Run button for what the form names now: disabled, with the router's reason, for a write the router
   * refused this caller (a 403 earlier on this page), and for every write of the anonymous caller once one was
   * refused. The router still decides each request; this only spares the caller a request known to fail. */
  function updateWriteState() {
    const op = byId("call-op").value;
    const ipath = byId("call-resource").value.trim();
    for (const option of byId("call-op").options) {
      option.disabled = WRITE_OPS.has(option.value) && state.anonymousRefused !== null && isAnonymous();
    }
    let reason = null;
    if (WRITE_OPS.has(op)) {
      if (state.anonymousRefused !== null && isAnonymous()) {
        reason = "Writes are off for the anonymous caller: the router refused one (" + state.anonymousRefused
          + "). Use the page over HTTPS with a client certificate.";
      } else if (state.refused.has(ipath + " " + op)) {
        reason = "The router refused you " + op + " on " + ipath + ": " + state.refused.get(ipath + " " + op);
      }
    }
    const button = byId("call-run");
    if (!button.classList.contains("busy")) button.disabled = reason !== null;
    const denied = byId("call-denied");
    denied.hidden = reason === null;
    denied.textContent = reason || "";
  }

  /** The request body of an operation, or throws a message for the person at the form. */
  function operationBody(op, method, args) {
    if (op === "call" || op === "sendTransaction") {
      if (!method) throw new Error("give a method for " + op);
      return { method, args };
    }
    if (typeof args[0] !== "string") throw new Error(op + " takes " + KEY_OPS[op] + " with the key a string");
    if (op === "getData") {
      if (args.length !== 1) throw new Error("getData takes [key]");
      return { key: args[0] };
    }
    if (args.length !== 2) throw new Error("setData takes [key, value]");
    return { key: args[0], value: args[1] };
  }

  async function runCall() {
    const ipath = byId("call-resource").value.trim();
    const op = byId("call-op").value;
    const method = byId("call-method").value.trim();
    const argsText = byId("call-args").value.trim() || "[]";
    const out = byId("call-result");
    let body;
    try {
      if (!IPATH_RE.test(ipath)) {
        throw new Error("the resource must be an iPath zone.chain.resource (letters, digits, '_' or '-')");
      }
      let args;
      try {
        args = parseJson(argsText);
      } catch (exc) {
        throw new Error("the arguments are not JSON: " + exc.message);
      }
      if (!Array.isArray(args)) throw new Error("the arguments must be a JSON array");
      body = operationBody(op, method, args);
    } catch (exc) {
      put(out, el("p", { class: "error", id: "call-error" }, "Not sent: " + exc.message));
      return;
    }
    select(ipath);
    const parts = ipath.split(".").map(encodeURIComponent);
    const label = op + (body.method ? " " + body.method : "") + " on " + ipath;
    put(out, el("p", { class: "pending" }, "Running " + label + "…"));
    const button = byId("call-run");
    button.disabled = true;
    button.classList.add("busy");
    try {
      const answer = await api(parts.join("/") + "/" + op, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      put(out, ...answerView(label, answer));
    } catch (exc) {
      const error = exc instanceof ApiError ? exc : new ApiError("error", String(exc && exc.message));
      if (error.status === 403 && error.code === "forbidden" && WRITE_OPS.has(op)) {
        const reason = error.message + (error.details && error.details.rule ? " (rule " + error.details.rule + ")"
          : "");
        state.refused.set(ipath + " " + op, reason);
        if (isAnonymous()) state.anonymousRefused = reason;
      }
      put(out, el("h4", {}, "Error: " + label),
        el("p", { class: "error", id: "call-error" }, el("code", { id: "call-error-code" }, error.code), " ",
          error.message, error.status ? " (HTTP " + error.status + ")" : ""),
        error.details ? el("pre", { class: "json" }, pretty(error.details)) : null);
    } finally {
      button.classList.remove("busy");
      button.disabled = false;
      updateWriteState();
    }
  }

  function answerView(label, answer) {
    const a = answer && typeof answer === "object" ? answer : { output: answer };
    const row = (name, value, id) => el("div", {}, el("dt", {}, name), el("dd", id ? { id } : {}, value));
    const items = [row("Output", el("pre", { class: "json" }, pretty(a.output)), "call-output")];
    if (a.router !== undefined) items.push(row("Ran on", String(a.router)));
    if (Array.isArray(a.path)) items.push(row("Path", a.path.join(" → ")));
    if (a.block_number !== undefined) items.push(row("Block", String(a.block_number)));
    if (a.tx_hash) items.push(row("Transaction", el("code", { title: String(a.tx_hash) }, short(a.tx_hash, 16))));
    return [el("h4", {}, "Answer: " + label), el("dl", { class: "answer" }, items),
      el("p", { id: "call-verified", class: verifiedClass(a) }, verifiedText(a)),
      el("details", {}, el("summary", {}, "Whole answer (with the proof)"), el("pre", { class: "json" },
        pretty(a)))];
  }

  function verifiedClass(a) {
    const v = a.verified;
    if (v && typeof v === "object") return v.proof ? "verified ok" : "verified weak";
    return "verified local";
  }

  /** What the entry router checked before answering (trusted-results.md), in one line a person can read. */
  function verifiedText(a) {
    const v = a.verified;
    // The answer's path starts at the router the request entered (this one): the one that checks what came back.
    const entry = Array.isArray(a.path) && a.path.length ? String(a.path[0]) : state.self || "this router";
    if (v && typeof v === "object") {
      if (v.proof) {
        const bits = ["Verified: proof checked by " + entry + " against a trusted header"];
        if (v.block !== undefined) bits.push("block " + v.block);
        if (v.header_hash) bits.push("header " + short(v.header_hash, 12));
        if (Array.isArray(v.checks) && v.checks.length) bits.push("checks: " + v.checks.join(", "));
        const trust = v.trust && typeof v.trust === "object" ? v.trust : null;
        if (trust) {
          const how = [];
          if (trust.pinned_by) how.push("genesis pinned by " + trust.pinned_by);
          if (trust.quorum !== undefined) how.push("quorum " + trust.quorum);
          if (how.length) bits.push(how.join(", "));
        }
        return bits.join("; ") + ".";
      }
      return "Verified: no proof" + (v.reason ? " (" + v.reason + ")" : "") + ".";
    }
    if (Array.isArray(a.path) && a.path.length === 1 && a.router === a.path[0]) {
      return "Verified: not needed, served by this router (" + a.router + ") without crossing another router.";
    }
    return "Verified: the answer says nothing about verification.";
  }

  /** ``#call=zone.chain.resource&op=getData&method=...&args=[...]``: fill the form; run it once if it is a read.
   * A write is only filled in, with a note saying so: it is sent when the visitor presses Run (see the top). */
  function callFromHash() {
    const hash = window.location.hash.replace(/^#/, "");
    if (!hash) return;
    const params = new Map();
    for (const part of hash.split("&")) {
      const at = part.indexOf("=");
      if (at <= 0) continue;
      try {
        params.set(part.slice(0, at), decodeURIComponent(part.slice(at + 1)));
      } catch (exc) {
        params.set(part.slice(0, at), part.slice(at + 1));
      }
    }
    if (!params.has("call")) {
      if (params.has("select")) {
        byId("call-resource").value = params.get("select");
        select(params.get("select"));
      }
      return;
    }
    byId("call-resource").value = params.get("call");
    const op = params.get("op") || "call";
    if (!Array.from(byId("call-op").options).some((o) => o.value === op)) {
      put(byId("call-result"), el("p", { class: "error", id: "call-error" }, "Not sent: unknown operation "
        + op));
      return;
    }
    byId("call-op").value = op;
    byId("call-method").value = params.get("method") || "";
    byId("call-args").value = params.get("args") || "[]";
    updateOpFields();
    updateMethods();
    updateWriteState();
    if (WRITE_OPS.has(op)) {
      const method = op === "setData" ? "" : " " + byId("call-method").value;
      put(byId("call-result"), el("p", { class: "prefilled", id: "call-prefilled" },
        "Filled in from the link: " + op + method + " on " + byId("call-resource").value + " with "
        + byId("call-args").value + ". Nothing has been sent. This is a write: check it, and press Run to send it "
        + "as " + (state.identity && !state.identity.error ? String(state.identity.name) : "you") + "."));
      return;
    }
    runCall().catch(reportError);
  }

  // ---- chains and headers -----------------------------------------------------------------------------------------

  /** Every chain this router can say something about: served here, trusted headers, or only known by its route. */
  function chainRows() {
    const chains = data("chains") || {};
    const rows = new Map();
    for (const c of list(chains.served)) {
      rows.set(String(c.chain), { chain: String(c.chain), where: "served here", height: c.height, head: c.head,
        trust: "its own stub (" + (c.type || "?") + ")", served: true });
    }
    for (const t of list(chains.trusted_headers)) {
      const chain = String(t.chain);
      if (rows.has(chain)) continue;
      const how = [];
      if (t.pinned_by) how.push("genesis pinned by " + t.pinned_by);
      if (t.quorum !== undefined) how.push("quorum " + t.quorum);
      rows.set(chain, { chain, where: "remote, headers verified here", height: t.trusted_height, head: t.checkpoint,
        headLabel: "checkpoint #" + (t.checkpoint_number === undefined ? "?" : t.checkpoint_number),
        trust: how.join(", ") || "trusted", served: false });
    }
    const routes = data("routes");
    for (const r of list(routes && routes.routes)) {
      if (r.kind !== "chain" || rows.has(String(r.chain))) continue;
      rows.set(String(r.chain), { chain: String(r.chain), where: r.reachable === false ? "remote, unreachable"
        : "remote via " + list(r.replicas).join(", "), height: null, head: null,
      trust: "no header trusted yet", served: false, unknown: true });
    }
    return Array.from(rows.values()).sort((p, q) => (p.chain < q.chain ? -1 : 1));
  }

  function renderChains() {
    const body = tbody("chains-table");
    const chains = data("chains");
    const failed = errorLine("chains");
    const rows = chainRows();
    put(body, ...rows.map((c) => el("tr", { "data-chain": c.chain },
      el("th", { scope: "row" }, el("code", {}, c.chain)),
      el("td", {}, c.where),
      el("td", { class: "num chain-height" }, typeof c.height === "number" || typeof c.height === "bigint"
        ? String(c.height) : "—"),
      el("td", {}, c.head ? el("code", { title: String(c.head) }, (c.headLabel ? c.headLabel + " " : "")
        + short(c.head)) : "—"),
      el("td", {}, c.trust))));
    if (!rows.length) {
      put(body, el("tr", {}, el("td", { colspan: "5" }, failed ? failed.textContent : "No chains known.")));
    }
    const counters = chains && chains.verification && typeof chains.verification === "object"
      ? chains.verification : {};
    const names = Object.keys(counters).sort();
    put(byId("verification"), ...names.map((name) => el("div", {},
      el("dt", {}, name.replace(/_/g, " ")), el("dd", {}, String(counters[name])))));
  }

  /** The last few headers of each chain with a height, fetched once each (a header never changes). */
  function fetchHeaders() {
    const wanted = [];
    for (const c of chainRows()) {
      if (c.unknown || typeof c.height !== "number") continue;
      for (let n = c.height; n >= 0 && n > c.height - HEADERS_PER_CHAIN; n--) wanted.push([c.chain, n]);
    }
    let started = 0;
    for (const [chain, n] of wanted) {
      const key = chain + "#" + n;
      if (state.headers.has(key) || state.headersPending.has(key) || started >= 12) continue;
      const dot = chain.indexOf(".");
      if (dot <= 0) continue;
      started += 1;
      state.headersPending.add(key);
      const path = "chains/" + encodeURIComponent(chain.slice(0, dot)) + "/"
        + encodeURIComponent(chain.slice(dot + 1)) + "/headers/" + n;
      api(path).then((answer) => ({ data: answer }), (error) => ({ error })).then((result) => {
        state.headersPending.delete(key);
        state.headers.set(key, result);
        while (state.headers.size > HEADER_CACHE_MAX) state.headers.delete(state.headers.keys().next().value);
        renderHeaders();
      }).catch(reportError);
    }
  }

  function renderHeaders() {
    const rows = [];
    for (const c of chainRows()) {
      if (c.unknown || typeof c.height !== "number") continue;
      for (let n = c.height; n >= 0 && n > c.height - HEADERS_PER_CHAIN; n--) {
        const found = state.headers.get(c.chain + "#" + n);
        if (!found) continue;
        if (found.error) {
          rows.push(el("tr", {}, el("th", { scope: "row" }, el("code", {}, c.chain)), el("td", { class: "num" },
            String(n)), el("td", { colspan: "4", class: "error" }, found.error.code + ": " + found.error.message)));
          continue;
        }
        const header = found.data && found.data.header && typeof found.data.header === "object"
          ? found.data.header : {};
        const trust = found.data && found.data.trust && typeof found.data.trust === "object" ? found.data.trust : {};
        const extras = header.extras && typeof header.extras === "object" ? header.extras : {};
        const how = trust.source ? trust.source
          : "verified" + (Array.isArray(trust.sources) && trust.sources.length ? ", from " + trust.sources.join(", ")
            : "");
        rows.push(el("tr", {}, el("th", { scope: "row" }, el("code", {}, c.chain)),
          el("td", { class: "num" }, String(header.number !== undefined ? header.number : n)),
          el("td", {}, el("code", { title: String(header.hash || "") }, short(header.hash, 16))),
          el("td", { class: "num" }, extras.tx_count !== undefined ? String(extras.tx_count) : "—"),
          el("td", {}, when(header.timestamp)),
          el("td", {}, how)));
      }
    }
    put(tbody("headers-table"), ...rows);
    if (!rows.length) {
      put(tbody("headers-table"), el("tr", {}, el("td", { colspan: "6" },
        "No headers yet: a chain shows here once it is served here or a result from it was verified.")));
    }
  }

  // ---- transactions and HTLC exchanges -----------------------------------------------------------------------------

  function stateBadge(value) {
    const text = String(value || "?");
    return el("span", { class: "state state-" + text.replace(/[^a-z_]/g, "") }, text.replace(/_/g, " "));
  }

  function statsLine(stats) {
    if (!stats || typeof stats !== "object") return "";
    return Object.keys(stats).filter((k) => typeof stats[k] === "number").sort()
      .map((k) => k.replace(/_/g, " ") + " " + stats[k]).join(" · ");
  }

  function renderTransactions() {
    const tx = data("tx");
    const failed = errorLine("tx");
    put(byId("tx-stats"), ...(failed ? [failed] : [statsLine(tx && tx.stats)]));
    const rows = list(tx && tx.transactions).map((t) => el("tr", { "data-tx": String(t.tx_id) },
      el("th", { scope: "row" }, el("code", { title: String(t.tx_id) }, short(t.tx_id, 24))),
      el("td", { class: "tx-state" }, stateBadge(t.state)),
      el("td", { class: "num" }, String(t.steps === undefined ? "—" : t.steps)),
      el("td", {}, list(t.participants).join(", ") || "—"),
      el("td", {}, when(t.updated_at || t.created_at)),
      el("td", {}, t.reason ? String(t.reason) : "")));
    put(tbody("tx-table"), ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6" },
      tx ? "No transactions coordinated by this router yet." : "—"))]));
  }

  function leg(l) {
    if (!l || typeof l !== "object") return "—";
    return [el("code", {}, String(l.path || "?")), " ", String(l.sender || "?"), " → ", String(l.receiver || "?"), " ",
      String(l.amount === undefined ? "?" : l.amount), " (", String(l.chain_state || "?"), ")"];
  }

  function renderHtlcs() {
    const htlc = data("htlc");
    const failed = errorLine("htlc");
    put(byId("htlc-stats"), ...(failed ? [failed] : [statsLine(htlc && htlc.stats)]));
    const rows = list(htlc && htlc.htlcs).map((h) => el("tr", { "data-htlc": String(h.htlc_id) },
      el("th", { scope: "row" }, el("code", { title: String(h.htlc_id) }, short(h.htlc_id, 24))),
      el("td", {}, String(h.role || "")),
      el("td", { class: "htlc-state" }, stateBadge(h.state)),
      el("td", {}, leg(h.own)),
      el("td", {}, leg(h.other)),
      el("td", {}, when(h.created_at))));
    put(tbody("htlc-table"), ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6" },
      htlc ? "No exchanges at this router yet." : "—"))]));
  }

  // ---- errors of the page itself -----------------------------------------------------------------------------------

  /** A bug in this page shows on the page (and in the console), instead of silently freezing a section. */
  function reportError(exc) {
    const box = byId("page-errors-box");
    const items = byId("page-errors");
    if (box && items && items.children.length < 20) {
      items.appendChild(el("li", {}, String(exc && exc.stack ? exc.stack : exc)));
      box.hidden = false;
    }
    if (window.console) window.console.error(exc);
  }

  window.addEventListener("error", (event) => reportError(event.error || event.message));
  window.addEventListener("unhandledrejection", (event) => reportError(event.reason));

  // ---- start ------------------------------------------------------------------------------------------------------

  function start() {
    byId("call-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runCall().catch(reportError);
    });
    byId("call-op").addEventListener("change", () => {
      updateOpFields();
      updateWriteState();
    });
    byId("call-resource").addEventListener("input", updateWriteState);
    byId("call-resource").addEventListener("change", () => {
      updateMethods();
      const value = byId("call-resource").value.trim();
      if (IPATH_RE.test(value)) select(value);
    });
    window.addEventListener("hashchange", callFromHash);
    updateOpFields();
    // Who the caller is comes first: a write filled in from a link says whom it would be sent as.
    fetchIdentity().catch(reportError).finally(callFromHash);
    refresh().catch(reportError).finally(schedule);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
