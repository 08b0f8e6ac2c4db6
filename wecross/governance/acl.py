"""Permissions: ``[[acl]]`` rules, and the decision whether an identity may use an interface on a resource.

The model (docs/governance.md): a :class:`Rule` names who (a user, an organisation, a role, every certified
identity, or the anonymous caller), which resources (iPath patterns, wecross.ipath.IPathPattern), which interfaces
(operation names and groups) and an effect, allow or deny. :meth:`Policy.decide` looks at every rule that matches
the request:

- **deny overrides allow**: one matching deny rule refuses the request, whatever allow rules also match and wherever
  they stand in the file. Rules therefore combine like sets ("everyone of bank-a may write on payment.bank-a" and
  "nobody writes on payment.bank-a.vault"), and appending or reordering rules can never silently open what a deny
  rule closes, which is what makes first-match lists error-prone when several operators edit one file;
- no matching rule: the policy's default (deny recommended), with a reason naming the missing grant.

The decision is a pure function of (rules, identity, iPath, interface), so it is memoised per policy in a bounded
LRU (functools.lru_cache); a reload builds a new Policy, with an empty memo (wecross.governance.reload).

This module is sans-IO: parsing takes an already-read document, and nothing here touches files or clocks.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wecross.config import ConfigError
from wecross.governance.identity import ROLES, Identity, RoleGrants, check_org, check_user_name
from wecross.ipath import IPath, IPathError, IPathPattern

# ------------------------------------------------------------------------------------------------------ interfaces

#: Every interface a rule can name. Resource operations carry an iPath; the others (admin, audit, and the tx and
#: htlc operations addressed by transaction id) are decided with ``ipath=None``.
INTERFACES: tuple[str, ...] = (
    "call", "sendTransaction", "getData", "setData", "events",
    "tx.start", "tx.exec", "tx.commit", "tx.rollback", "tx.adopt", "tx.read",
    "htlc.start", "htlc.act", "htlc.read",
    "admin.peers", "admin.accounts", "admin.acl", "admin.deploy",
    "audit.read",
)
_INTERFACE_SET = frozenset(INTERFACES)

#: Named groups of interfaces. ``tx.adopt`` is in neither read nor write: taking over another coordinator's
#: transaction is an admin's act (issue 13) and must be granted by name or by ``tx.*``.
GROUPS: dict[str, frozenset[str]] = {
    "*": _INTERFACE_SET,
    "read": frozenset({"call", "getData", "events", "tx.read", "htlc.read"}),
    "write": frozenset({"sendTransaction", "setData", "tx.start", "tx.exec", "tx.commit", "tx.rollback",
                        "htlc.start", "htlc.act"}),
}
for _prefix in sorted({name.split(".")[0] for name in INTERFACES if "." in name}):
    GROUPS[f"{_prefix}.*"] = frozenset(name for name in INTERFACES if name.startswith(_prefix + "."))


def _show(value: object) -> str:
    """A value from the ACL file, quoted and clipped for a message (a pasted blob must not flood the log)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def expand_interfaces(pattern: str) -> frozenset[str]:
    """The interfaces an interface pattern covers (an exact name or a group). Raises ValueError."""
    if pattern in _INTERFACE_SET:
        return frozenset({pattern})
    group = GROUPS.get(pattern)
    if group is None:
        raise ValueError(f"{_show(pattern)} is not an interface: use one of {', '.join(INTERFACES)}, "
                         f"or a group: {', '.join(sorted(GROUPS))}")
    return group


def check_interface(name: str) -> str:
    if name not in _INTERFACE_SET:
        raise ValueError(f"{_show(name)} is not an interface (one of {', '.join(INTERFACES)})")
    return name


# ----------------------------------------------------------------------------------------------------------- rules

EFFECTS = ("allow", "deny")
DEFAULTS = EFFECTS
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-\[\]]{0,63}$")
_EVERYTHING = IPathPattern(("*",))


def parse_who(text: str) -> tuple[str, str]:
    """``user:NAME``, ``org:ORG``, ``role:ROLE``, ``*`` or ``anonymous`` as (kind, value). Raises ValueError."""
    if text == "*":
        return ("*", "")
    if text == "anonymous":
        return ("anonymous", "")
    kind, sep, value = text.partition(":")
    if not sep or kind not in ("user", "org", "role"):
        raise ValueError(f"{_show(text)} is not a subject: use user:NAME, org:ORGANISATION, role:ROLE, * or anonymous")
    if kind == "user":
        if value == "anonymous":
            raise ValueError("use who = \"anonymous\" for callers without a certificate")
        check_user_name(value)
    elif kind == "org":
        check_org(value)
    elif value not in ROLES:
        raise ValueError(f"role {_show(value)} is not one of {', '.join(sorted(ROLES))}")
    return (kind, value)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[acl]]`` entry. Validated on construction, so a Rule built in code is as checked as a parsed one."""

    who: str
    resources: tuple[IPathPattern, ...]
    interfaces: tuple[str, ...]
    effect: str
    name: str
    #: Derived: the subject as (kind, value), and every interface the patterns cover.
    subject: tuple[str, str] = field(init=False, repr=False, compare=False)
    covered: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", parse_who(self.who))
        if self.effect not in EFFECTS:
            raise ValueError(f"effect {_show(self.effect)} must be allow or deny")
        if not self.resources:
            raise ValueError("a rule needs at least one resource pattern (\"*\" for all)")
        if not self.interfaces:
            raise ValueError("a rule needs at least one interface (\"*\" for all)")
        if _EVERYTHING in self.resources and len(self.resources) > 1:
            raise ValueError("\"*\" covers every resource: list it alone")
        covered: frozenset[str] = frozenset()
        for pattern in self.interfaces:
            covered |= expand_interfaces(pattern)
        object.__setattr__(self, "covered", covered)

    @property
    def everything(self) -> bool:
        """Covers every resource, and the operations that have none (``ipath=None``)."""
        return self.resources == (_EVERYTHING,)

    def applies_to(self, identity: Identity) -> bool:
        kind, value = self.subject
        if kind == "*":
            # Every certified identity; anonymous callers match only rules that name them (docs/governance.md).
            return not identity.anonymous
        if kind == "anonymous":
            return identity.anonymous
        if kind == "user":
            return identity.name == value
        if kind == "org":
            return identity.org == value
        return value in identity.roles

    def covers(self, ipath: IPath | None) -> bool:
        if ipath is None:
            return self.everything
        return any(pattern.matches(ipath) for pattern in self.resources)

    def matches(self, identity: Identity, ipath: IPath | None, interface: str) -> bool:
        return interface in self.covered and self.applies_to(identity) and self.covers(ipath)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: The rule that decided, or None when the default did.
    rule: str | None
    reason: str


def _target(interface: str, ipath: IPath | None) -> str:
    return interface if ipath is None else f"{interface} on {ipath}"


def default_decision(identity: Identity, ipath: IPath | None, interface: str, default: str) -> Decision:
    if default == "allow":
        return Decision(True, None, f"no rule matches {identity.name} {_target(interface, ipath)}; default allow")
    return Decision(False, None, f"no rule grants {identity.name} {_target(interface, ipath)}; default deny")


def rule_decision(rule: Rule, identity: Identity, ipath: IPath | None, interface: str) -> Decision:
    verb = "allows" if rule.effect == "allow" else "denies"
    return Decision(rule.effect == "allow", rule.name,
                    f"rule {rule.name!r} {verb} {identity.name} {_target(interface, ipath)}")


class Policy:
    """Rules + default, indexed for decisions in microseconds, with a memo of recent decisions.

    Index: for each interface, the rules that cover it, split by the first part (zone) of their iPath patterns;
    rules whose patterns start with ``*`` are merged into every zone's list, and kept alone for zones no rule
    names. Each list keeps file order, so the rule reported is the first matching deny (or allow) of the file.
    """

    def __init__(self, rules: Sequence[Rule], default: str = "deny", grants: RoleGrants | None = None,
                 memo_size: int = 4096) -> None:
        if default not in DEFAULTS:
            raise ValueError(f"default {_show(default)} must be allow or deny")
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.default = default
        self.grants = grants if grants is not None else RoleGrants.none()
        self._none: dict[str, tuple[Rule, ...]] = {}
        self._wild: dict[str, tuple[Rule, ...]] = {}
        self._zoned: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._build_index()
        self._memo: Callable[[Identity, IPath | None, str], Decision] = functools.lru_cache(maxsize=memo_size)(
            self._decide)

    def _build_index(self) -> None:
        none: dict[str, list[int]] = {}
        wild: dict[str, list[int]] = {}
        zoned: dict[tuple[str, str], set[int]] = {}
        for i, rule in enumerate(self.rules):
            zones = {pattern.parts[0] for pattern in rule.resources}
            for interface in rule.covered:
                if rule.everything:
                    none.setdefault(interface, []).append(i)
                if "*" in zones:
                    wild.setdefault(interface, []).append(i)
                for zone in zones - {"*"}:
                    zoned.setdefault((interface, zone), set()).add(i)
        self._none = {k: tuple(self.rules[i] for i in v) for k, v in none.items()}
        self._wild = {k: tuple(self.rules[i] for i in v) for k, v in wild.items()}
        self._zoned = {(interface, zone): tuple(self.rules[i] for i in sorted(v | set(wild.get(interface, ()))))
                       for (interface, zone), v in zoned.items()}

    def decide(self, identity: Identity, ipath: IPath | None, interface: str) -> Decision:
        """May ``identity`` use ``interface`` on ``ipath`` (None: an operation on no resource)?

        Raises ValueError for an unknown interface (a caller's bug, never a user's input: the REST layer maps
        its routes to interface names).
        """
        return self._memo(identity, ipath, interface)

    def _decide(self, identity: Identity, ipath: IPath | None, interface: str) -> Decision:
        if interface not in _INTERFACE_SET:
            raise ValueError(f"{_show(interface)} is not an interface (one of {', '.join(INTERFACES)})")
        if ipath is None:
            candidates = self._none.get(interface, ())
        else:
            candidates = self._zoned.get((interface, ipath.zone)) or self._wild.get(interface, ())
        allow: Rule | None = None
        for rule in candidates:
            if rule.applies_to(identity) and rule.covers(ipath):
                if rule.effect == "deny":
                    return rule_decision(rule, identity, ipath, interface)
                if allow is None:
                    allow = rule
        if allow is not None:
            return rule_decision(allow, identity, ipath, interface)
        return default_decision(identity, ipath, interface, self.default)

    def clear_memo(self) -> None:
        self._memo.cache_clear()  # type: ignore[attr-defined]

    def memo_entries(self) -> int:
        """Decisions held in the memo now (for tests and /status)."""
        size: int = self._memo.cache_info().currsize  # type: ignore[attr-defined]
        return size


# --------------------------------------------------------------------------------------------------------- parsing


#: Longest message of one problem, and most problems spelled out in an AclError (the rest are counted).
_MAX_MESSAGE = 400
_MAX_SHOWN = 50


class AclError(ConfigError):
    """Every problem found in an ACL document, each as ``file: key: message`` (``acl[3].who: ...``).

    ``lines`` spells out the first 50 and counts the others, so one broken file cannot flood the log.
    """

    def __init__(self, file: str, problems: Sequence[tuple[str, str]]) -> None:
        first_key, first_message = problems[0]
        super().__init__(file, first_key, first_message)
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        lines = [f"{file}: {key}: {message}" if key else f"{file}: {message}"
                 for key, message in self.problems[:_MAX_SHOWN]]
        if len(self.problems) > _MAX_SHOWN:
            lines.append(f"{file}: {len(self.problems) - _MAX_SHOWN} more problems not shown")
        self.lines: tuple[str, ...] = tuple(lines)
        self.args = ("\n".join(self.lines),)


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        # Messages quote the file (some through wecross.ipath's errors): clipped, as what an editor pasted may be
        # anything.
        self.found.append((key, message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE - 3] + "..."))


def _kind(value: Any) -> str:
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _strings(problems: _Problems, key: str, value: Any) -> list[tuple[str, str]]:
    """A non-empty list of strings as (key of the element, element); problems for anything else."""
    if value is None:
        problems.add(key, "is required (a list of strings)")
        return []
    if not isinstance(value, list):
        problems.add(key, f"expected a list of strings, got {_kind(value)}")
        return []
    if not value:
        problems.add(key, "must not be empty")
    out = []
    for j, item in enumerate(value):
        if isinstance(item, str):
            out.append((f"{key}[{j}]", item))
        else:
            problems.add(f"{key}[{j}]", f"expected a string, got {_kind(item)}")
    return out


_RULE_KEYS = ("who", "resources", "interfaces", "effect", "name")


def _parse_rule(problems: _Problems, key: str, index: int, entry: Any) -> Rule | None:
    if not isinstance(entry, dict):
        problems.add(key, f"expected a table ([[acl]]), got {_kind(entry)}")
        return None
    before = len(problems.found)
    for unknown in sorted(set(entry) - set(_RULE_KEYS)):
        problems.add(f"{key}.{unknown[:80]}", f"unknown key (known keys: {', '.join(_RULE_KEYS)}); check the spelling")

    who = entry.get("who")
    if not isinstance(who, str):
        problems.add(f"{key}.who", "is required: user:NAME, org:ORGANISATION, role:ROLE, * or anonymous"
                     if who is None else f"expected a string, got {_kind(who)}")
    else:
        try:
            parse_who(who)
        except ValueError as exc:
            problems.add(f"{key}.who", str(exc))

    patterns: list[IPathPattern] = []
    resources = _strings(problems, f"{key}.resources", entry.get("resources"))
    for item_key, text in resources:
        try:
            patterns.append(IPathPattern.parse(text))
        except IPathError as exc:
            problems.add(item_key, str(exc))
    if _EVERYTHING in patterns and len(resources) > 1:
        problems.add(f"{key}.resources", "\"*\" covers every resource: list it alone")

    interfaces = _strings(problems, f"{key}.interfaces", entry.get("interfaces"))
    for item_key, text in interfaces:
        try:
            expand_interfaces(text)
        except ValueError as exc:
            problems.add(item_key, str(exc))

    effect = entry.get("effect")
    if effect not in EFFECTS:
        problems.add(f"{key}.effect", "is required: allow or deny" if effect is None
                     else f"expected allow or deny, got {_show(effect)}")

    name = entry.get("name", f"acl[{index}]")
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        problems.add(f"{key}.name", "expected 1-64 letters, digits, '_', '-' or '.', starting with a letter or "
                                    "digit")

    if len(problems.found) != before:
        return None
    return Rule(str(who), tuple(patterns), tuple(text for _, text in interfaces), str(effect), name)


def _parse_grants(problems: _Problems, key: str, table: Any) -> RoleGrants:
    if table is None:
        return RoleGrants.none()
    if not isinstance(table, dict):
        problems.add(key, f"expected a table ([roles]), got {_kind(table)}")
        return RoleGrants.none()
    by_user: dict[str, set[str]] = {}
    by_org: dict[str, set[str]] = {}
    grantable = sorted(ROLES - {"user"})
    for role, members in table.items():
        role_key = f"{key}.{role[:80]}"
        if role not in grantable:
            problems.add(role_key, f"unknown role: grant one of {', '.join(grantable)} (every certified identity "
                                   "is a user already)")
            continue
        for item_key, text in _strings(problems, role_key, members):
            kind, _, value = text.partition(":")
            try:
                if kind == "user":
                    by_user.setdefault(check_user_name(value), set()).add(role)
                elif kind == "org":
                    by_org.setdefault(check_org(value), set()).add(role)
                else:
                    problems.add(item_key, f"{_show(text)}: expected user:NAME or org:ORGANISATION")
            except ValueError as exc:
                problems.add(item_key, str(exc))
    return RoleGrants({k: frozenset(v) for k, v in by_user.items()}, {k: frozenset(v) for k, v in by_org.items()})


def _check_default(problems: _Problems, key: str, default: Any) -> str:
    if default not in DEFAULTS:
        problems.add(key, f"expected allow or deny (deny recommended), got {_show(default)}")
        return "deny"
    return str(default)


def _rules(problems: _Problems, document: Any, key: str = "acl") -> list[Rule]:
    if not isinstance(document, list):
        problems.add(key, f"expected a list of tables ([[acl]]), got {_kind(document)}")
        return []
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(document):
        rule = _parse_rule(problems, f"{key}[{i}]", i, entry)
        if rule is None:
            continue
        if rule.name in seen:
            problems.add(f"{key}[{i}].name", f"{rule.name!r} is already the name of {key}[{seen[rule.name]}]")
            continue
        seen[rule.name] = i
        rules.append(rule)
    return rules


def parse_acl(document: list[dict[str, Any]], default: str, *, roles: Mapping[str, Any] | None = None,
              source: str = "acl", memo_size: int = 4096) -> Policy:
    """The policy of ``[[acl]]`` tables (as tomllib reads them), a default and optional ``[roles]`` grants.

    Raises AclError listing every problem with its key (``acl[3].who: ...``); nothing is half-applied.
    """
    problems = _Problems()
    rules = _rules(problems, document)
    checked_default = _check_default(problems, "acl_settings.default", default)
    grants = _parse_grants(problems, "roles", roles)
    if problems.found:
        raise AclError(source, problems.found)
    return Policy(rules, checked_default, grants, memo_size=memo_size)


_TOP_KEYS = ("acl", "acl_settings", "roles")


def parse_acl_document(document: Mapping[str, Any], source: str = "acl", memo_size: int = 4096) -> Policy:
    """A whole ACL file: ``[[acl]]`` rules, ``[acl_settings] default`` (deny when absent) and ``[roles]``."""
    problems = _Problems()
    for unknown in sorted(set(document) - set(_TOP_KEYS)):
        problems.add(unknown[:80], f"unknown key (known keys: {', '.join(_TOP_KEYS)}); check the spelling")
    settings = document.get("acl_settings", {})
    default: Any = "deny"
    if not isinstance(settings, dict):
        problems.add("acl_settings", f"expected a table, got {_kind(settings)}")
    else:
        for unknown in sorted(set(settings) - {"default"}):
            problems.add(f"acl_settings.{unknown[:80]}", "unknown key (known keys: default); check the spelling")
        default = settings.get("default", "deny")
    rules = _rules(problems, document.get("acl", []))
    checked_default = _check_default(problems, "acl_settings.default", default)
    grants = _parse_grants(problems, "roles", document.get("roles"))
    if problems.found:
        raise AclError(source, problems.found)
    return Policy(rules, checked_default, grants, memo_size=memo_size)


def parse_acl_bytes(data: bytes, source: str = "acl", memo_size: int = 4096) -> Policy:
    """An ACL file's bytes (UTF-8 TOML). Raises AclError."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AclError(source, [("", "is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise AclError(source, [("", f"is not valid TOML: {exc}")]) from None
    return parse_acl_document(document, source, memo_size)
