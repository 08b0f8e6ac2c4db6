"""Human-readable output of the console: a tiny aligned-table renderer and one view per kind of router answer.

Everything here is pure (data in, text out) so the views can be tested without a terminal, and so ``--json`` can
bypass them entirely: scripts get the router's JSON unchanged, people get tables. The views pick the fields a
person acts on; anything they leave out (proofs, counters that are zero) is one ``:json on`` away.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

#: Cells wider than this are cut (with "...") in every column but the last, so one long value cannot push the
#: other columns off the screen; 66 keeps a transaction id (``router-x:`` + 32 hex) or a 64-hex hash whole.
MAX_CELL = 66
#: Keys whose values are unix times: shown as local date and time, which people read faster than 1796102122.11.
TIME_KEYS = frozenset({"created_at", "updated_at", "decided_at", "finished_at", "deadline", "at", "since",
                       "timestamp"})


def compact_json(value: Any) -> str:
    """One-line JSON with the spaces people expect after ``,`` and ``:``."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def pretty_json(value: Any) -> str:
    """The ``--json`` output: indented, keys in the router's order, non-ASCII kept readable."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def when(value: Any) -> str:
    """A unix time as local ``YYYY-MM-DD HH:MM:SS``; anything that is not a plausible time is shown as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        try:
            return datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
        except (OverflowError, OSError, ValueError):
            pass
    return cell(value)


def cell(value: Any) -> str:
    """One value as table text: scalars plainly, lists of scalars comma-separated, anything nested as JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        if not value:
            return "-"
        if all(v is None or isinstance(v, str | int | float | bool) for v in value):
            return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping) and not value:
        return "-"
    return compact_json(value)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(none)") -> str:
    """An aligned table with a header and a rule under it; numeric columns are right-aligned.

    A column is numeric when every non-empty value in it is a number, so a count column lines up on its units
    even when some rows have no value ("-").
    """
    raw = [list(row) for row in rows]
    if not raw:
        return empty
    ncols = len(headers)
    numeric = [all(_numeric(row[i]) or row[i] is None for row in raw) and any(_numeric(row[i]) for row in raw)
               for i in range(ncols)]
    text = [[cell(v) if i == ncols - 1 else _cut(cell(v), MAX_CELL) for i, v in enumerate(row)] for row in raw]
    widths = [max(len(headers[i]), *(len(row[i]) for row in text)) for i in range(ncols)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if numeric[i] else (c if i == ncols - 1 else c.ljust(widths[i]))
                 for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in text)])


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column ``name  value`` list (no header): the view of one record. Times are shown as dates."""
    items = [(name, when(value) if name.rsplit(".", 1)[-1] in TIME_KEYS else cell(value)) for name, value in pairs]
    if not items:
        return "(empty)"
    width = max(len(name) for name, _ in items)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in items)


def flatten(data: Mapping[str, Any], prefix: str = "", *, skip_zero: bool = False) -> list[tuple[str, Any]]:
    """Nested objects as dotted names (``gossip.published``), so a record of counters fits a two-column list."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, name + ".", skip_zero=skip_zero))
        elif skip_zero and (value == 0 or value == {}) and not isinstance(value, bool):
            continue
        else:
            out.append((name, value))
    return out


# --- views of the router's answers ----------------------------------------------------------------------------------


def status(data: Mapping[str, Any]) -> str:
    """``GET /status``: the headline fields first, then every non-zero counter."""
    return fields(flatten(data, skip_zero=True))


def peers(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(["id", "state", "direction", "address", "zones", "chains", "srtt ms", "loss", "heard s ago"],
                 [[p.get("id"), p.get("state"), p.get("direction"), p.get("address"), p.get("zones"),
                   p.get("chains"), p.get("srtt_ms"), p.get("loss"), p.get("last_heard_s")] for p in rows],
                 empty="(no peers)")


def routes(data: Mapping[str, Any]) -> str:
    head = (f"routes of {data.get('router_id', '?')} ({data.get('rebuilds', 0)} rebuilds, "
            f"{data.get('changes', 0)} route changes)")
    rows = []
    for r in data.get("routes", []):
        target = r.get("chain") or r.get("destination")
        if r.get("kind") == "chain" and not r.get("reachable", True):
            rows.append([r.get("kind"), target, None, None, None, f"unreachable (replicas: {cell(r.get('replicas'))})"])
            continue
        rows.append([r.get("kind"), target, r.get("next_hop"), r.get("hops"), r.get("cost"),
                     " -> ".join(r.get("path") or [])])
    return head + "\n" + table(["kind", "chain / router", "next hop", "hops", "cost", "path"], rows,
                               empty="(no routes)")


def resources(rows: Sequence[Mapping[str, Any]]) -> str:
    body = []
    for r in rows:
        where = "local" if r.get("local") else cell(r.get("routers"))
        body.append([r.get("ipath"), r.get("kind"), where, sorted(r.get("methods") or {})])
    return table(["ipath", "kind", "served by", "methods"], body, empty="(no resources)")


def detail(info: Mapping[str, Any]) -> str:
    """One resource: where it is and how to reach it, then its methods with their kind (read or write)."""
    route = info.get("route")
    head = fields([("ipath", info.get("ipath")), ("kind", info.get("kind")),
                   *([("description", info["description"])] if info.get("description") else []),
                   ("local", info.get("local")), ("served by", info.get("routers")),
                   ("route", " -> ".join(route) if isinstance(route, list) and route else route)])
    methods = info.get("methods") or {}
    return head + "\n\n" + table(["method", "kind", "use with"],
                                 [[name, kind, "call" if kind == "read" else "sendTransaction"]
                                  for name, kind in sorted(methods.items())], empty="(no methods)")


def _verified(verified: Any) -> str:
    if not isinstance(verified, Mapping):
        return cell(verified)
    if verified.get("proof"):
        checks = verified.get("checks") or []
        block = f" at block {verified['block']}" if "block" in verified else ""
        return f"yes{block} ({len(checks)} checks: {', '.join(checks)})" if checks else f"yes{block}"
    reason = verified.get("reason")
    return f"no ({reason})" if reason else "no"


def operation(data: Mapping[str, Any]) -> str:
    """The answer to call / sendTransaction / getData / setData. The proof is left to ``--json``: it is for
    machines, and the ``verified`` line already says whether this router checked it. The output is shown as JSON
    so that the string "10" and the number 10 look different."""
    pairs: list[tuple[str, Any]] = [("output", compact_json(data.get("output")))]
    for key in ("tx_hash", "block_number"):
        if key in data:
            pairs.append((key, data[key]))
    receipt = data.get("receipt")
    if isinstance(receipt, Mapping):
        pairs.append(("status", receipt.get("status")))
        for event in receipt.get("events") or []:
            pairs.append(("event", f"{event.get('name')} {compact_json(event.get('data', event.get('args')))}"))
    if "router" in data:
        pairs.append(("router", data["router"]))
    if isinstance(data.get("path"), list):
        pairs.append(("path", " -> ".join(data["path"])))
    if "verified" in data:
        pairs.append(("verified", _verified(data["verified"])))
    if data.get("proof") is not None:
        pairs.append(("proof", "included (see :json on)"))
    return fields(pairs)


def chains(data: Mapping[str, Any]) -> str:
    served = table(["chain", "type", "height", "head", "genesis"],
                   [[c.get("chain"), c.get("type"), c.get("height"), c.get("head"), c.get("genesis")]
                    for c in data.get("served") or []], empty="(none)")
    trusted = table(["chain", "trusted height", "checkpoint #", "pinned by", "quorum", "checkpoint"],
                    [[c.get("chain"), c.get("trusted_height"), c.get("checkpoint_number"), c.get("pinned_by"),
                      c.get("quorum"), c.get("checkpoint")] for c in data.get("trusted_headers") or []],
                    empty="(none)")
    counters = fields(flatten(data.get("verification") or {}))
    return (f"chains served here:\n{served}\n\nheader chains trusted for remote chains:\n{trusted}\n\n"
            f"verification:\n{counters}")


def header(data: Mapping[str, Any]) -> str:
    """One block header and why this router trusts it."""
    head = data.get("header") or {}
    pairs = [("chain", data.get("chain")), *(flatten(head) if isinstance(head, Mapping) else [("header", head)])]
    trust = data.get("trust")
    if isinstance(trust, Mapping):
        pairs.extend(flatten(trust, "trust."))
    return fields(pairs)


def headers(rows: Sequence[Mapping[str, Any]]) -> str:
    """Several consecutive headers of one chain, one per line."""
    body = []
    for data in rows:
        h = data.get("header") or {}
        extras = h.get("extras")
        if not isinstance(extras, Mapping):
            extras = {}
        body.append([h.get("number"), when(h.get("timestamp")), extras.get("tx_count"), h.get("hash"),
                     h.get("prev_hash")])
    return table(["number", "time", "txs", "hash", "prev hash"], body, empty="(no headers)")


def tx_record(data: Mapping[str, Any]) -> str:
    """A 2PC transaction: its state and deadline, each step, and each participant's outcome after the decision."""
    pairs = [(k, data.get(k)) for k in ("tx_id", "state", "coordinator", "sender", "resources", "created_at",
                                         "deadline", "decided_at", "finished_at", "reason") if k in data]
    if data.get("acked"):
        pairs.append(("acked", data["acked"]))
    out = [fields(pairs)]
    steps = data.get("steps") or []
    if steps:
        out.append(table(["step", "ipath", "method", "args", "state", "output / error"],
                         [[s.get("number"), s.get("ipath"), s.get("method"), compact_json(s.get("args", [])),
                           s.get("state"), s.get("error") if s.get("error") else compact_json(s.get("output"))]
                          for s in steps]))
    outcomes = data.get("outcomes") or {}
    if outcomes:
        out.append(table(["participant", "block", "tx_hash", "output"],
                         [[ipath, o.get("block_number"), o.get("tx_hash"), compact_json(o.get("output"))]
                          if isinstance(o, Mapping) else [ipath, None, None, compact_json(o)]
                          for ipath, o in outcomes.items()]))
    for note in data.get("heuristic") or []:
        out.append(f"heuristic: {cell(note)}")
    return "\n\n".join(out)


def tx_step(data: Mapping[str, Any]) -> str:
    return fields([("step", data.get("number")), ("ipath", data.get("ipath")), ("method", data.get("method")),
                   ("args", compact_json(data.get("args", []))), ("state", data.get("state")),
                   ("output", compact_json(data.get("output"))), *([("error", data["error"])]
                                                                   if data.get("error") else []),
                   ("tx_state", data.get("tx_state"))])


def tx_list(data: Mapping[str, Any]) -> str:
    rows = data.get("transactions") or []
    body = table(["tx_id", "state", "steps", "participants", "created", "reason"],
                 [[t.get("tx_id"), t.get("state"), t.get("steps"), t.get("participants"), when(t.get("created_at")),
                   t.get("reason")] for t in rows], empty="(no transactions)")
    stats = data.get("stats") or {}
    by_state = stats.get("by_state") if isinstance(stats, Mapping) else None
    summary = ", ".join(f"{n} {s}" for s, n in by_state.items()) if isinstance(by_state, Mapping) else ""
    return body + (f"\n({len(rows)} shown; all: {summary})" if summary else f"\n({len(rows)} shown)")



def identity(data: Mapping[str, Any]) -> str:
    """``GET /whoami``."""
    return fields([("name", data.get("name")), ("org", data.get("org")), ("roles", data.get("roles")),
                   ("proven by", data.get("proven"))])


def audit(data: Mapping[str, Any]) -> str:
    """``GET /audit``: one line per record (the digest and hashes are one ``:json on`` away), then the head."""
    rows = [[r.get("seq"), when(r.get("time")), r.get("initiator"), r.get("org"), r.get("interface"), r.get("ipath"),
             r.get("method"), r.get("outcome"), r.get("path")] for r in data.get("records") or []]
    head = data.get("head") or {}
    return (table(["seq", "time", "initiator", "org", "interface", "ipath", "method", "outcome", "path"], rows,
                  empty="(no records)")
            + f"\nhead: seq {cell(head.get('seq'))}, hash {cell(head.get('hash'))}")


def peer_change(data: Mapping[str, Any]) -> str:
    """``POST /admin/peers`` and ``DELETE /admin/peers/{id}``: the router's own sentence."""
    return cell(data.get("message")) + ("" if data.get("changed") else " (nothing changed)")


def accounts(rows: Sequence[Mapping[str, Any]]) -> str:
    """``GET /admin/accounts``: one row per (user, chain) with its address (the router never sends a key)."""
    return table(["user", "chain", "address"], [[r.get("user"), r.get("chain"), r.get("address")] for r in rows],
                 empty="(no accounts)")


def account_change(verb: str) -> Callable[[Mapping[str, Any]], str]:
    """``POST`` and ``DELETE /admin/accounts``: what was created or removed, and its address."""
    return lambda data: f"{verb} {cell(data.get('user'))} on {cell(data.get('chain'))}: {cell(data.get('address'))}"


__all__ = [
    "MAX_CELL",
    "account_change",
    "accounts",
    "audit",
    "cell",
    "chains",
    "compact_json",
    "detail",
    "fields",
    "flatten",
    "header",
    "headers",
    "identity",
    "operation",
    "peer_change",
    "peers",
    "pretty_json",
    "resources",
    "routes",
    "status",
    "table",
    "tx_list",
    "tx_record",
    "tx_step",
    "when",
]
