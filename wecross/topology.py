"""Topology files: a whole router network in one TOML file, expanded into one config per router.

Operators design a network once (which routers, their zones, which chains they serve, who links to whom) and let
``wecross configs`` write the per-router configs with ports and certificate paths filled in. The same files feed
the simulator, so a network tried there is the network deployed.

```toml
[defaults]            # optional: host, base ports, certificates directory
host = "127.0.0.1"
p2p_base_port = 25500
rest_base_port = 8250
certs = "../../certs"

[routers.router-a]
zones = ["payment"]
chains = ["bank-a"]   # embedded chains with a key-value store "hello" and an asset ledger "asset"
transit = true        # default

[[links]]
between = ["router-a", "router-b"]   # the first dials the second
```

Each router's certificate must name the chains of its ``[[stubs]]`` (``wecross certs --serves``), or every other
router ignores its chain claims: :func:`serves` gives the patterns per router, :func:`certs_command` the command
that issues matching certificates, and :func:`certificate_problems` checks the certificates already in the
topology's ``certs`` directory (``wecross configs`` prints what it finds).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wecross.config import ConfigError
from wecross.pki.authority import PKIError, read_certificates
from wecross.pki.serves import ChainAuthority, serves_patterns

_ID = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class RouterSpec:
    router_id: str
    zones: tuple[str, ...]
    chains: tuple[str, ...]
    transit: bool


@dataclass(frozen=True, slots=True)
class Topology:
    source: Path
    routers: dict[str, RouterSpec]
    links: tuple[tuple[str, str], ...]
    host: str
    p2p_base_port: int
    rest_base_port: int
    certs: Path

    def neighbours(self, router_id: str) -> list[str]:
        return sorted({v for u, v in self.links if u == router_id} | {u for u, v in self.links if v == router_id})


def load_topology(path: str | Path) -> Topology:
    source = Path(path)
    file = str(source)
    try:
        document = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(file, "", f"is not valid TOML: {exc}") from None
    unknown = set(document) - {"defaults", "routers", "links"}
    if unknown:
        raise ConfigError(file, sorted(unknown)[0], "unknown key (known: defaults, routers, links)")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(file, "defaults", "expected a table")
    routers: dict[str, RouterSpec] = {}
    table = document.get("routers", {})
    if not isinstance(table, dict) or not table:
        raise ConfigError(file, "routers", "expected a table with at least one [routers.<id>]")
    for rid, spec in table.items():
        key = f"routers.{rid}"
        if not _ID.match(rid):
            raise ConfigError(file, key, "router ids are lowercase DNS labels (letters, digits, '-')")
        if not isinstance(spec, dict):
            raise ConfigError(file, key, "expected a table")
        extra = set(spec) - {"zones", "chains", "transit"}
        if extra:
            raise ConfigError(file, f"{key}.{sorted(extra)[0]}", "unknown key (known: zones, chains, transit)")
        zones = spec.get("zones")
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and _NAME.match(z) for z in zones):
            raise ConfigError(file, f"{key}.zones", "expected a non-empty list of zone names")
        chains = spec.get("chains", [])
        if not isinstance(chains, list) or not all(isinstance(c, str) and _NAME.match(c) for c in chains):
            raise ConfigError(file, f"{key}.chains", "expected a list of chain names")
        transit = spec.get("transit", True)
        if not isinstance(transit, bool):
            raise ConfigError(file, f"{key}.transit", "expected true or false")
        routers[rid] = RouterSpec(rid, tuple(zones), tuple(chains), transit)
    links: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    raw_links = document.get("links", [])
    if not isinstance(raw_links, list):
        raise ConfigError(file, "links", "expected [[links]] tables")
    for i, link in enumerate(raw_links):
        key = f"links[{i}].between"
        pair = link.get("between") if isinstance(link, dict) else None
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]:
            raise ConfigError(file, key, "expected two different router ids")
        for rid in pair:
            if rid not in routers:
                raise ConfigError(file, key, f"unknown router {rid!r}")
        if frozenset(pair) in seen:
            raise ConfigError(file, key, f"link {pair[0]} - {pair[1]} is listed twice")
        seen.add(frozenset(pair))
        links.append((pair[0], pair[1]))
    return Topology(
        source=source, routers=routers, links=tuple(links),
        host=str(defaults.get("host", "127.0.0.1")),
        p2p_base_port=int(defaults.get("p2p_base_port", 25500)),
        rest_base_port=int(defaults.get("rest_base_port", 8250)),
        certs=(source.parent / str(defaults.get("certs", "../../certs"))).resolve(),
    )


def render_config(topology: Topology, router_id: str, data_root: Path) -> str:
    """One router's config (TOML text) from the topology; ports are base + the router's index."""
    order = sorted(topology.routers)
    index = {rid: i for i, rid in enumerate(order)}
    spec = topology.routers[router_id]
    host = topology.host
    peers = ", ".join(
        f'{{ address = "{host}:{topology.p2p_base_port + index[v]}", id = "{v}" }}'
        for u, v in topology.links if u == router_id
    )
    certs = topology.certs
    authority = ", ".join(serves(topology)[router_id]) or "no chain"
    lines: list[str] = [
        f"# {router_id}: made by `wecross configs` from {topology.source.name}",
        f"# its certificate must authorise: {authority} (wecross certs --serves {router_id}=...)",
        "[router]",
        f'id = "{router_id}"',
        "zones = [" + ", ".join(f'"{z}"' for z in spec.zones) + "]",
        f'data_dir = "{data_root / router_id}"',
        f"transit = {'true' if spec.transit else 'false'}",
        "",
        "[p2p]",
        f'listen = "{host}:{topology.p2p_base_port + index[router_id]}"',
        f'ca = "{certs / "ca.crt"}"',
        f'cert = "{certs / "routers" / router_id / "chain.pem"}"',
        f'key = "{certs / "routers" / router_id / "key.pem"}"',
        f"peers = [{peers}]",
        "",
        "[rest]",
        f'listen = "{host}:{topology.rest_base_port + index[router_id]}"',
        "",
    ]
    for chain in spec.chains:
        lines += [
            "[[stubs]]",
            f'name = "{chain}"',
            f'zone = "{spec.zones[0]}"',
            'type = "embedded"',
            'resources = [{ name = "hello", kind = "kv" }, '
            '{ name = "asset", kind = "asset", initial = { alice = 1000, bob = 500 } }]',
            "",
        ]
    return "\n".join(lines)


def serves(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Router id -> the chain paths (``zone.chain``) its certificate must authorise: those of its stubs, which
    render_config places in the router's first zone."""
    return {rid: tuple(f"{spec.zones[0]}.{chain}" for chain in spec.chains)
            for rid, spec in sorted(topology.routers.items())}


def certs_command(topology: Topology, out: str | Path | None = None) -> str:
    """A ``wecross certs`` command line issuing every router of the topology a certificate for its chains, into
    ``out`` (default: the topology's certs directory). When that directory holds a CA key already (the last
    ``intermediate-<k>.key``, else ``ca.key``), the command issues from it with ``--force``, so routers outside the
    topology and the clients keep their certificates; otherwise it makes a new hierarchy."""
    target = Path(out) if out is not None else topology.certs
    parts = ["wecross certs", f"--out {target}"]
    intermediates = sorted(topology.certs.glob("intermediate-*.key"), key=lambda p: (len(p.name), p.name))
    issuer = intermediates[-1] if intermediates else topology.certs / "ca.key"
    if issuer.exists():
        parts += [f"--ca-cert {issuer.with_suffix('.crt')}", f"--ca-key {issuer}", "--force"]
    else:
        parts.append("--intermediates 1")
    parts.append("--routers " + ",".join(sorted(topology.routers)))
    parts += [f"--serves {rid}={','.join(chains)}" for rid, chains in serves(topology).items() if chains]
    return " ".join(parts)


def certificate_problems(topology: Topology) -> list[str]:
    """What is wrong with the router certificates under the topology's ``certs`` directory for this topology: a
    certificate missing or unreadable, or one that does not authorise a chain its router serves (whose claims the
    other routers would then ignore). Empty when every router's certificate fits."""
    problems = []
    for rid, chains in serves(topology).items():
        path = topology.certs / "routers" / rid / "chain.pem"
        try:
            leaf = read_certificates(path)[0]
        except PKIError as exc:
            problems.append(f"{rid}: {exc.message}")
            continue
        authority = ChainAuthority.of(serves_patterns(leaf))
        missing = [chain for chain in chains if not authority.authorizes(chain)]
        if missing:
            shown = ", ".join(authority.patterns) or "no chain"
            problems.append(f"{rid}: {path} authorises {shown}, not {', '.join(missing)}: other routers will ignore "
                            "those chains")
    return problems


def write_configs(topology: Topology, out: Path, data_root: Path | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rid in sorted(topology.routers):
        path = out / f"{rid}.toml"
        path.write_text(render_config(topology, rid, (data_root or out / "data").resolve()))
        written.append(path)
    return written


def describe(topology: Topology) -> dict[str, Any]:
    return {
        "routers": {rid: {"zones": list(s.zones), "chains": list(s.chains), "transit": s.transit}
                    for rid, s in sorted(topology.routers.items())},
        "links": [list(link) for link in topology.links],
    }
