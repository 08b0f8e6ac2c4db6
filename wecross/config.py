"""Router configuration: one TOML file per router, turned into typed, validated settings.

Every problem is reported with the file, the dotted key and what is wrong, because an operator fixing a config at
3 a.m. should not have to read this module. Relative paths are resolved against the config file's directory, so a
config works whatever the current directory of ``twistd`` is.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROUTER_ID = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


class ConfigError(ValueError):
    """A config problem: ``file: key: message``."""

    def __init__(self, file: str, key: str, message: str) -> None:
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")
        self.file = file
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PeerSettings:
    address: Address
    #: Expected router id of the peer; when given it is checked against the certificate during the TLS handshake.
    id: str | None = None


@dataclass(frozen=True, slots=True)
class TLSPaths:
    ca: Path
    cert: Path
    key: Path
    ciphers: str | None = None
    #: The revocation list ([p2p] crl, wecross.pki.revocation): peers and records it names are refused.
    crl: Path | None = None
    #: Seconds between looks at the revocation list for changes (it is reloaded without a restart).
    crl_reload: float = 5.0


@dataclass(frozen=True, slots=True)
class RestSettings:
    listen: Address | None
    tls: TLSPaths | None
    require_client_cert: bool
    max_body: int
    #: Seconds a request head may take from its first byte (wecross/rest/http.py); slow-header clients are cut.
    header_timeout: float = 10.0
    #: Open connections one client address may hold at once.
    max_connections_per_client: int = 64
    #: Seconds a request body may take once its head arrived; a client trickling its body is cut as well.
    body_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Timing:
    heartbeat_interval: float = 2.0
    dead_after: int = 3
    handshake_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame: int = 16 * 1024 * 1024
    request_deadline: float = 30.0
    max_in_flight: int = 10_000
    hop_limit: int = 16
    #: How far apart two routers' wall clocks may be: a signed request is accepted until its signed expiry plus
    #: this, and not when it claims to expire more than request_deadline plus this ahead (wecross.attest).
    clock_skew: float = 30.0


@dataclass(frozen=True, slots=True)
class GossipSettings:
    interval: float = 1.0
    fanout: int = 3
    record_ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    hysteresis: float = 0.2
    rebuild_delay: float = 0.05


@dataclass(frozen=True, slots=True)
class TrustSettings:
    """How an entry router decides which block headers of remote chains to believe (see wecross.chain.headers)."""

    #: Distinct routers serving a chain that must give the same header before it is trusted.
    quorum: int = 1
    #: chain path -> genesis hash (hex) pinned by configuration; a chain not listed is pinned to the genesis its
    #: owner states in its signed gossip record (wecross.chain.trust.TrustedResults._pin).
    checkpoints: dict[str, str] = field(default_factory=dict)
    #: Headers asked for in one request.
    batch: int = 256
    #: A proven read may name a block at most this many blocks older than the newest trusted header of its chain:
    #: an older one is refused as ``stale_read`` (a relay replaying a genuine but outdated answer).
    max_read_lag: int = 16
    #: Requests this router serves on behalf of users (not "anonymous", not another router): "optional" runs them
    #: on the entry router's word when the user did not sign, "required" only with the user's own signature
    #: (wecross.attest.ClientProof), so that no router can act as a user.
    client_signatures: str = "optional"


@dataclass(frozen=True, slots=True)
class StubConfig:
    name: str
    zone: str
    type: str
    options: dict[str, Any]
    resources: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class TxSettings:
    """The transaction layer (wecross.tx): the 2PC coordinator on this router and its participants' safety net."""

    #: Seconds a transaction may stay started (steps running, no decision) before it is rolled back; per-tx override.
    default_timeout: float = 60.0
    max_timeout: float = 3600.0
    #: A participant holding a prepared transaction this long asks the coordinator, and carries out its decision
    #: (rolls back when the coordinator has no record); while the coordinator cannot be asked it stays prepared.
    participant_timeout: float = 300.0
    #: "wait" (2PC: a prepared participant never decides alone) or "rollback": opt in to a heuristic rollback once
    #: the coordinator could not be asked for participant_heuristic_after seconds past participant_timeout. Always
    #: reported as a heuristic outcome (wecross.tx.participant).
    participant_heuristic: str = "wait"
    participant_heuristic_after: float = 3600.0
    #: Longest pause between two attempts to carry a decision to a participant.
    retry_max: float = 30.0
    #: How often participants look for such transactions.
    check_interval: float = 5.0
    #: SQLite synchronous mode of the coordinator's log: FULL (fsync every group commit) unless you accept losing
    #: the last decisions on power loss.
    log_sync: str = "FULL"
    #: How often the HTLC watcher reads both locks of each open exchange, and the default safety margin (seconds
    #: between the two time locks, and the least time left to unlock).
    htlc_interval: float = 1.0
    htlc_margin: float = 60.0
    #: Fault testing only (0 in production): seconds between logging a commit decision and sending it, and between
    #: sending it to one participant and the next.
    test_hold_after_decision: float = 0.0
    test_hold_between_participants: float = 0.0
    #: Fault testing only ("" in production): while this file exists, the coordinator's log writes fail
    #: (wecross.tx.log, fault injection).
    test_log_fault_file: str = ""


@dataclass(frozen=True, slots=True)
class GovernanceSettings:
    """Permissions (docs/governance.md). No ACL file: open mode, every caller may do everything (development)."""

    acl_file: Path | None = None
    #: Seconds between looks at the ACL file for changes (it is reloaded without a restart).
    acl_reload: float = 2.0


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The hash-chained audit trail of every request this router originates or serves (docs/governance.md)."""

    enabled: bool = True
    #: Where the log lives; default ``<data_dir>/audit.sqlite``.
    file: Path | None = None
    #: A regulator's certificate or public key: arguments are then sealed to it, readable by the regulator only.
    regulator_cert: Path | None = None


@dataclass(frozen=True, slots=True)
class KeystoreSettings:
    """Users' chain accounts (wecross.governance.keystore, ``<data_dir>/keystore.sqlite``; docs/governance.md)."""

    #: A file holding the key-encryption key (base64 or hex of 32 bytes, mode 600); None: the environment variable
    #: WECROSS_KEYSTORE_KEY. Without either the keystore creates and hands out no keys.
    key_file: Path | None = None
    #: Whether a user's account is created at its first write (else only by an admin: ``wecross accounts create``).
    create_on_first_use: bool = True


@dataclass(frozen=True, slots=True)
class Settings:
    source: Path
    router_id: str
    zones: tuple[str, ...]
    data_dir: Path
    p2p_listen: Address | None
    p2p_tls: TLSPaths
    peers: tuple[PeerSettings, ...]
    rest: RestSettings
    timing: Timing
    limits: Limits
    stubs: tuple[StubConfig, ...]
    plugin_dirs: tuple[Path, ...] = field(default=())
    transit: bool = True
    gossip: GossipSettings = field(default_factory=GossipSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    tx: TxSettings = field(default_factory=TxSettings)
    governance: GovernanceSettings = field(default_factory=lambda: GovernanceSettings())
    audit: AuditSettings = field(default_factory=lambda: AuditSettings())
    keystore: KeystoreSettings = field(default_factory=lambda: KeystoreSettings())


# --------------------------------------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one TOML table that remembers where it is, for error messages."""

    def __init__(self, file: str, prefix: str, table: dict[str, Any]) -> None:
        self.file = file
        self.prefix = prefix
        self.table = table
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), message)

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        self.used.add(name)
        if name not in self.table:
            if default is ...:
                raise self.fail(name, "is required" + (f" ({what})" if what else ""))
            return default
        value = self.table[name]
        kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
        # bool is an int in Python; never let `true` pass for a number.
        if isinstance(value, bool) and bool not in kinds_t:
            raise self.fail(name, f"expected {_kind_names(kinds_t)}, got a boolean")
        if float in kinds_t and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds_t):
            raise self.fail(name, f"expected {_kind_names(kinds_t)}, got {type(value).__name__} {value!r}")
        return value

    def sub(self, name: str, required: bool = False) -> _Reader:
        table = self.get(name, dict, default=... if required else {})
        return _Reader(self.file, self.key(name), table)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = float(self.get(name, float, default))
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, got {value}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = int(self.get(name, int, default))
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, got {value}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise ConfigError(
                self.file, self.key(unknown[0]), f"unknown key (known keys here: {known}); check the spelling"
            )


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_address(text: str) -> Address:
    """``host:port`` or ``[v6]:port``; port 0 means "any free port" (tests)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected 'host:port', got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Address(host, port)


def _address(reader: _Reader, name: str, required: bool) -> Address | None:
    text = reader.get(name, str, default=... if required else "")
    if not text:
        return None
    try:
        return parse_address(text)
    except ValueError as exc:
        raise reader.fail(name, str(exc)) from None


def _path(reader: _Reader, name: str, base: Path, default: str | None = None) -> Path:
    text = reader.get(name, str, default=... if default is None else default)
    if not text:
        raise reader.fail(name, "must not be empty")
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def _tls(reader: _Reader, base: Path, check_files: bool) -> TLSPaths:
    paths = TLSPaths(
        ca=_path(reader, "ca", base),
        cert=_path(reader, "cert", base),
        key=_path(reader, "key", base),
        ciphers=reader.get("ciphers", str, "") or None,
    )
    if check_files:
        for name in ("ca", "cert", "key"):
            p: Path = getattr(paths, name)
            if not p.is_file():
                raise reader.fail(name, f"file {str(p)!r} does not exist (make certificates with `wecross certs`)")
    return paths


def _router_id(reader: _Reader) -> str:
    value: str = reader.get("id", str, what="the router's id, also the DNS name in its certificate")
    if not _ROUTER_ID.match(value):
        raise reader.fail("id", f"{value!r} is not a valid router id: use lowercase letters, digits, '-' and '.' "
                                "(it must be a DNS name, as it appears in the certificate)")
    return value


def _name(reader: _Reader, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise reader.fail(key, f"{value!r} is not a valid name: 1-64 letters, digits, '_' or '-'")
    return value


def load_settings(path: str | Path, *, check_files: bool = True) -> Settings:
    """Read and validate one router config. Raises ConfigError."""
    source = Path(path)
    file = str(source)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"is not valid TOML: {exc}") from None
    return settings_from_dict(document, source, check_files=check_files)


def settings_from_dict(document: dict[str, Any], source: Path, *, check_files: bool = True) -> Settings:
    file = str(source)
    base = source.resolve().parent
    top = _Reader(file, "", document)

    router = top.sub("router", required=True)
    router_id = _router_id(router)
    zones_raw = router.get("zones", list, default=[])
    zones = tuple(_name(router, f"zones[{i}]", z) for i, z in enumerate(zones_raw))
    data_dir = _path(router, "data_dir", base, default=f"data/{router_id}")
    transit = router.get("transit", bool, True)
    router.finish()

    p2p = top.sub("p2p", required=True)
    p2p_listen = _address(p2p, "listen", required=False)
    p2p_tls = _tls(p2p, base, check_files)
    crl = _path(p2p, "crl", base) if "crl" in p2p.table else None
    if crl is not None and check_files and not crl.is_file():
        raise p2p.fail("crl", f"file {str(crl)!r} does not exist (write it with `wecross certs revoke`)")
    p2p_tls = TLSPaths(p2p_tls.ca, p2p_tls.cert, p2p_tls.key, p2p_tls.ciphers, crl,
                       p2p.number("crl_reload", 5.0, 0.05, 3600.0))
    peers: list[PeerSettings] = []
    for i, entry in enumerate(p2p.get("peers", list, default=[])):
        key = f"peers[{i}]"
        if isinstance(entry, str):
            entry = {"address": entry}
        if not isinstance(entry, dict):
            raise p2p.fail(key, "expected 'host:port' or a table with address and id")
        peer = _Reader(file, p2p.key(key), entry)
        address = _address(peer, "address", required=True)
        assert address is not None
        peer_id = peer.get("id", str, default="") or None
        if peer_id is not None and not _ROUTER_ID.match(peer_id):
            raise peer.fail("id", f"{peer_id!r} is not a valid router id")
        if peer_id == router_id:
            raise peer.fail("id", "a router cannot peer with itself")
        peer.finish()
        peers.append(PeerSettings(address, peer_id))
    if len({p.address for p in peers}) != len(peers):
        raise p2p.fail("peers", "the same address is listed twice")
    p2p.finish()

    rest_r = top.sub("rest")
    rest_listen = _address(rest_r, "listen", required=False)
    rest_tls_on = rest_r.get("tls", bool, False)
    rest_tls: TLSPaths | None = None
    if rest_tls_on:
        rest_tls = TLSPaths(
            ca=_path(rest_r, "ca", base, default=str(p2p_tls.ca)),
            cert=_path(rest_r, "cert", base, default=str(p2p_tls.cert)),
            key=_path(rest_r, "key", base, default=str(p2p_tls.key)),
        )
    else:
        for name in ("ca", "cert", "key"):
            if name in rest_r.table:
                raise rest_r.fail(name, "is set but rest.tls is false")
    require_client_cert = rest_r.get("require_client_cert", bool, False)
    if require_client_cert and not rest_tls_on:
        raise rest_r.fail("require_client_cert", "needs rest.tls = true")
    rest = RestSettings(
        listen=rest_listen,
        tls=rest_tls,
        require_client_cert=require_client_cert,
        max_body=rest_r.integer("max_body", 1024 * 1024, 1024, 256 * 1024 * 1024),
        header_timeout=rest_r.number("header_timeout", 10.0, 0.1, 3600),
        max_connections_per_client=rest_r.integer("max_connections_per_client", 64, 1, 1_000_000),
        body_timeout=rest_r.number("body_timeout", 30.0, 0.1, 3600),
    )
    rest_r.finish()

    t = top.sub("timing")
    timing = Timing(
        heartbeat_interval=t.number("heartbeat_interval", 2.0, 0.01, 3600),
        dead_after=t.integer("dead_after", 3, 1, 1000),
        handshake_timeout=t.number("handshake_timeout", 10.0, 0.1, 600),
        backoff_initial=t.number("backoff_initial", 0.5, 0.001, 3600),
        backoff_max=t.number("backoff_max", 30.0, 0.001, 86400),
        backoff_factor=t.number("backoff_factor", 2.0, 1.0, 100),
        backoff_jitter=t.number("backoff_jitter", 0.5, 0.0, 1.0),
    )
    if timing.backoff_max < timing.backoff_initial:
        raise t.fail("backoff_max", "must not be smaller than backoff_initial")
    t.finish()

    lim = top.sub("limits")
    limits = Limits(
        max_frame=lim.integer("max_frame", 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
        request_deadline=lim.number("request_deadline", 30.0, 0.01, 86400),
        max_in_flight=lim.integer("max_in_flight", 10_000, 1, 10_000_000),
        hop_limit=lim.integer("hop_limit", 16, 1, 64),
        clock_skew=lim.number("clock_skew", 30.0, 0.0, 3600),
    )
    lim.finish()

    g = top.sub("gossip")
    gossip = GossipSettings(
        interval=g.number("interval", 1.0, 0.01, 3600),
        fanout=g.integer("fanout", 3, 1, 64),
        record_ttl=g.number("record_ttl", 60.0, 1.0, 86400),
    )
    if gossip.record_ttl < 3 * gossip.interval:
        raise g.fail("record_ttl", "must be at least 3 gossip intervals (records are refreshed every ttl/3)")
    g.finish()

    r = top.sub("routing")
    routing = RoutingSettings(
        hysteresis=r.number("hysteresis", 0.2, 0.0, 10.0),
        rebuild_delay=r.number("rebuild_delay", 0.05, 0.0, 60.0),
    )
    r.finish()

    t = top.sub("trust")
    checkpoints: dict[str, str] = {}
    for chain, digest in t.get("checkpoints", dict, default={}).items():
        key = t.key(f"checkpoints.{chain}")
        parts = chain.split(".")
        if len(parts) != 2 or not all(_NAME.match(part) for part in parts):
            raise ConfigError(file, key, "expected a chain path zone.chain")
        number: Any = 0
        if isinstance(digest, dict):  # { number = N, hash = "..." }: a checkpoint above the genesis
            number, digest = digest.get("number"), digest.get("hash")
            if type(number) is not int or number < 0:
                raise ConfigError(file, key, "expected { number = block number >= 0, hash = \"hex\" }")
        text = digest.lower().removeprefix("0x") if isinstance(digest, str) else ""
        if not text or len(text) > 128 or any(c not in "0123456789abcdef" for c in text):
            raise ConfigError(file, key, "expected the genesis block's hash in hex, or { number = N, hash = \"hex\" }")
        checkpoints[chain] = f"{number}:{text}" if number else text
    client_signatures = t.get("client_signatures", str, default="optional")
    if client_signatures not in ("optional", "required"):
        raise t.fail("client_signatures", "expected optional or required")
    trust = TrustSettings(quorum=t.integer("quorum", 1, 1, 64), checkpoints=checkpoints,
                          batch=t.integer("batch", 256, 1, 4096),
                          max_read_lag=t.integer("max_read_lag", 16, 0, 1_000_000),
                          client_signatures=client_signatures)
    t.finish()

    x = top.sub("tx")
    log_sync = x.get("log_sync", str, default="FULL")
    if log_sync not in ("FULL", "NORMAL", "OFF"):
        raise x.fail("log_sync", "expected FULL, NORMAL or OFF")
    max_timeout = x.number("max_timeout", 3600.0, 1.0, 30 * 86400.0)
    participant_heuristic = x.get("participant_heuristic", str, default="wait")
    if participant_heuristic not in ("wait", "rollback"):
        raise x.fail("participant_heuristic", "expected wait or rollback")
    tx = TxSettings(default_timeout=x.number("default_timeout", 60.0, 0.1, max_timeout), max_timeout=max_timeout,
                    participant_timeout=x.number("participant_timeout", 300.0, 1.0, 30 * 86400.0),
                    check_interval=x.number("check_interval", 5.0, 0.1, 3600.0), log_sync=log_sync,
                    htlc_interval=x.number("htlc_interval", 1.0, 0.05, 3600.0),
                    htlc_margin=x.number("htlc_margin", 60.0, 0.1, 86400.0),
                    test_hold_after_decision=x.number("test_hold_after_decision", 0.0, 0.0, 60.0),
                    test_hold_between_participants=x.number("test_hold_between_participants", 0.0, 0.0, 60.0),
                    participant_heuristic=participant_heuristic,
                    participant_heuristic_after=x.number("participant_heuristic_after", 3600.0, 0.0, 30 * 86400.0),
                    retry_max=x.number("retry_max", 30.0, 0.1, 3600.0),
                    test_log_fault_file=x.get("test_log_fault_file", str, default=""))
    x.finish()

    gov = top.sub("governance")
    governance = GovernanceSettings(
        acl_file=_path(gov, "acl_file", base) if "acl_file" in gov.table else None,
        acl_reload=gov.number("acl_reload", 2.0, 0.05, 3600.0),
    )
    gov.finish()
    aud = top.sub("audit")
    audit = AuditSettings(
        enabled=aud.get("enabled", bool, default=True),
        file=_path(aud, "file", base) if "file" in aud.table else None,
        regulator_cert=_path(aud, "regulator_cert", base) if "regulator_cert" in aud.table else None,
    )
    aud.finish()
    ks = top.sub("keystore")
    keystore = KeystoreSettings(
        key_file=_path(ks, "key_file", base) if "key_file" in ks.table else None,
        create_on_first_use=ks.get("create_on_first_use", bool, default=True),
    )
    if keystore.key_file is not None and check_files and not keystore.key_file.is_file():
        raise ks.fail("key_file", f"file {str(keystore.key_file)!r} does not exist")
    ks.finish()

    plug = top.sub("stub_plugins")
    plugin_dirs = tuple(
        _path(_Reader(file, plug.key(f"dirs[{i}]"), {"dir": d}), "dir", base)
        for i, d in enumerate(plug.get("dirs", list, default=[]))
    )
    plug.finish()

    stubs: list[StubConfig] = []
    seen_chains: set[str] = set()
    for i, entry in enumerate(top.get("stubs", list, default=[])):
        if not isinstance(entry, dict):
            raise ConfigError(file, f"stubs[{i}]", "expected a table ([[stubs]])")
        s = _Reader(file, f"stubs[{i}]", entry)
        name = _name(s, "name", s.get("name", str, what="the chain's name, the middle part of its iPaths"))
        zone = _name(s, "zone", s.get("zone", str, default=zones[0] if zones else ...,
                                      what="the zone of this chain"))
        if zones and zone not in zones:
            raise s.fail("zone", f"zone {zone!r} is not one of this router's zones {list(zones)}")
        stub_type = s.get("type", str, default="embedded")
        options = s.get("options", dict, default={})
        resources = s.get("resources", list, default=[])
        names: set[str] = set()
        for j, res in enumerate(resources):
            if not isinstance(res, dict):
                raise s.fail(f"resources[{j}]", "expected a table ([[stubs.resources]])")
            rname = _name(s, f"resources[{j}].name", res.get("name"))
            if rname in names:
                raise s.fail(f"resources[{j}].name", f"resource {rname!r} is defined twice")
            names.add(rname)
        chain_path = f"{zone}.{name}"
        if chain_path in seen_chains:
            raise s.fail("name", f"chain {chain_path!r} is defined twice")
        seen_chains.add(chain_path)
        s.finish()
        stubs.append(StubConfig(name, zone, stub_type, dict(options), [dict(r) for r in resources]))

    top.finish()
    return Settings(
        source=source,
        router_id=router_id,
        zones=zones,
        data_dir=data_dir,
        p2p_listen=p2p_listen,
        p2p_tls=p2p_tls,
        peers=tuple(peers),
        rest=rest,
        timing=timing,
        limits=limits,
        stubs=tuple(stubs),
        plugin_dirs=plugin_dirs,
        transit=transit,
        gossip=gossip,
        tx=tx,
        routing=routing,
        trust=trust,
        governance=governance,
        audit=audit,
        keystore=keystore,
    )

