"""Terminal output of a simulation: a progress bar while it runs and a plain-text summary of the result dict after.

The summary reads the result dict defensively (``.get`` everywhere, None shown as "-"): a run that had no traffic,
no failures or was cut short still gets a summary rather than a traceback, and an older or newer result file with
a missing section still prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

#: Redraw at most this often: a bar redrawn on every simulated event would cost more than the simulation.
_REDRAW_S = 0.1
_BAR = 30


class Progress:
    """A one-line progress bar in virtual time; silent unless the stream is a terminal (or ``enabled`` says so)."""

    def __init__(self, total_virtual_s: float, stream: TextIO | None = None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total_virtual_s
        self.stream: TextIO = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty()) if callable(isatty) else False
        self.enabled = enabled
        self._clock = clock  # wall time; replaceable so tests need not sleep
        self._started = clock()
        self._last_draw: float | None = None
        self._width = 0
        self._virtual = 0.0
        self._note = ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, virtual_s: float, note: str = "") -> None:
        self._virtual = virtual_s
        self._note = note
        if not self.enabled:
            return
        now = self._clock()
        if self._last_draw is not None and now - self._last_draw < _REDRAW_S:
            return
        self._draw(now)

    def close(self) -> None:
        """Draw the final state (a throttled update may have been skipped) and end the line."""
        if not self.enabled or self._last_draw is None:
            return
        self._draw(self._clock())
        self.stream.write("\n")
        self.stream.flush()
        self._last_draw = None

    def _draw(self, now: float) -> None:
        self._last_draw = now
        share = min(1.0, max(0.0, self._virtual / self.total)) if self.total > 0 else 1.0
        filled = int(share * _BAR)
        line = (f"[{'#' * filled}{'.' * (_BAR - filled)}] {share * 100:3.0f}% "
                f"t={self._virtual:.1f}/{self.total:g}s wall {now - self._started:.1f}s")
        if self._note:
            line += f" {self._note}"
        # Pad over what the previous, longer line left on the terminal.
        padded = line.ljust(self._width)
        self._width = len(line)
        self.stream.write("\r" + padded)
        self.stream.flush()


# --- summary ---------------------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, int):
        return f"{value}{unit}"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.{digits}f}{unit}"
    return str(value)


def _share(value: Any) -> str:
    """Agreement and similar shares are fractions in [0, 1]; people read percentages."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value * 100:.1f}%"
    return "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], labels: bool = True) -> list[str]:
    """Aligned columns: numbers right-aligned, the first column left-aligned when it holds ``labels``."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [cell.ljust(widths[i]) if i == 0 and labels else cell.rjust(widths[i]) for i, cell in enumerate(cells)]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _section(result: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = result.get(name)
    return value if isinstance(value, Mapping) else {}


def _rows(result: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = result.get(name)
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def summary_table(result: Mapping[str, Any]) -> str:
    """The result of one run as sections of aligned plain text, for the terminal and for pasting into issues."""
    out: list[str] = []

    topology = _section(result, "topology")
    zones, chains = _section(topology, "zones"), _section(topology, "chains")
    source = f" ({topology['source']})" if topology.get("source") else ""
    zone_text = ", ".join(f"{z}={n}" for z, n in zones.items()) if zones else "none"
    out.append(f"Topology   {topology.get('name', '-')}{source}: {_num(topology.get('routers'))} routers, "
               f"{_num(topology.get('links'))} links, {len(chains)} chains; zones {zone_text}")

    scenario = _section(result, "scenario")
    events = _rows(scenario, "events")
    out.append(f"Scenario   {scenario.get('name', '-')}: {_num(scenario.get('duration_s'), 1, ' s')}, "
               f"{len(events)} event(s), seed {_num(result.get('seed'))}")
    for event in events:
        out.append(f"             {event.get('label') or _num(event.get('at_s'), 1, ' s')}")
    settings = _section(result, "settings")
    if settings:
        out.append(f"Settings   gossip every {_num(settings.get('gossip_interval_s'), 2, ' s')}, heartbeat "
                   f"{_num(settings.get('heartbeat_s'), 2, ' s')}, dead after {_num(settings.get('dead_after'))} "
                   "missed heartbeats")

    out += ["", "Convergence"]
    convergence = _rows(result, "convergence")
    if convergence:
        out += _table(("label", "at s", "converged at s", "time s", "rounds"), [
            (str(c.get("label", "-")), _num(c.get("at_s"), 1), _num(c.get("converged_at_s"), 2),
             _num(c.get("time_s"), 2), _num(c.get("rounds"), 2))
            for c in convergence])
    else:
        out.append("  (none measured)")

    out += ["", "Routes"]
    routes = _section(result, "routes")
    if routes.get("pairs"):
        out += _table(("pairs", "sampled routers", "agreement", "stretch mean", "stretch max", "unreachable"), [
            (_num(routes.get("pairs")), _num(routes.get("sampled_routers")), _share(routes.get("agreement")),
             _num(routes.get("stretch_mean"), 3), _num(routes.get("stretch_max"), 3),
             _num(routes.get("unreachable")))], labels=False)
    else:
        out.append("  (none checked)")

    out += ["", "Failover"]
    failover = _rows(result, "failover")
    if failover:
        out += _table(("label", "at s", "first success s", "time s"), [
            (str(f.get("label", "-")), _num(f.get("at_s"), 1), _num(f.get("first_success_s"), 2),
             _num(f.get("time_s"), 2))
            for f in failover])
    else:
        out.append("  (no failures injected)")

    out += ["", "Requests"]
    requests = _section(result, "requests")
    if requests.get("sent"):
        latency = _section(requests, "latency_ms")
        out += _table(("sent", "served", "failed", "duplicated", "p50 ms", "p90 ms", "p99 ms", "max ms"), [
            (_num(requests.get("sent")), _num(requests.get("served")), _num(requests.get("failed")),
             _num(requests.get("duplicated")), _num(latency.get("p50"), 1), _num(latency.get("p90"), 1),
             _num(latency.get("p99"), 1), _num(latency.get("max"), 1))], labels=False)
        by_code = _section(requests, "failed_by_code")
        if by_code:
            ordered = sorted(by_code.items(), key=lambda item: (-_int(item[1]), str(item[0])))
            out.append("  failed by code: " + ", ".join(f"{code}={count}" for code, count in ordered))
    else:
        out.append("  (no traffic)")

    out += ["", "Load (per router per virtual second)"]
    load = _section(result, "load")
    messages, volume = _section(load, "messages_per_router_per_s"), _section(load, "bytes_per_router_per_s")
    if messages or volume:
        out += _table(("", "mean", "p50", "max"), [
            ("messages", _num(messages.get("mean"), 1), _num(messages.get("p50"), 1), _num(messages.get("max"), 1)),
            ("bytes", _num(volume.get("mean"), 0), _num(volume.get("p50"), 0), _num(volume.get("max"), 0)),
        ])
    else:
        out.append("  (not measured)")
    if load.get("messages_per_router_per_round") is not None:
        out.append(f"  messages per router per gossip round: {_num(load.get('messages_per_router_per_round'), 2)}")

    out += ["", "Run"]
    run = _section(result, "run")
    out.append(f"  virtual {_num(run.get('virtual_s'), 1, ' s')}, wall {_num(run.get('wall_s'), 1, ' s')}, "
               f"peak memory {_num(run.get('peak_memory_mb'), 1, ' MB')}, calls run {_num(run.get('calls_run'))}")
    return "\n".join(out) + "\n"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
