"""Permissions (wecross.governance): identities, rules of every kind, deny over allow, defaults, parsing errors with
their keys, reloading, the memo, and a property test of Policy.decide against a plain reference."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wecross.governance import (
    GROUPS,
    INTERFACES,
    AclError,
    Decision,
    Identity,
    Policy,
    PolicyFile,
    RoleGrants,
    Rule,
    expand_interfaces,
    parse_acl,
    parse_acl_bytes,
)
from wecross.ipath import IPath, IPathPattern

ASSET = IPath.parse("payment.bank-a.asset")
VAULT = IPath.parse("payment.bank-a.vault")
OTHER_BANK = IPath.parse("payment.bank-b.asset")
EVIDENCE = IPath.parse("evidence.court.hello")

ALICE = Identity("alice", "bank-a", frozenset({"user"}), "client")
BOB = Identity("bob", "Court", frozenset({"user"}), "tls")
ADMIN = Identity("root", None, frozenset({"user", "admin"}), "tls")
AUDITOR = Identity("carol", "Regulator", frozenset({"user", "auditor"}), "entry")
NOBODY = Identity.nobody()


def rule(who: str, resources: str = "*", interfaces: str = "*", effect: str = "allow", name: str = "r") -> Rule:
    return Rule(who, tuple(IPathPattern.parse(p) for p in resources.split()), tuple(interfaces.split()), effect,
                name)


def cert(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))


class IdentityTests(SynchronousTestCase):
    def test_from_certificate_reads_cn_org_and_role_units(self) -> None:
        c = cert((NameOID.ORGANIZATION_NAME, "bank-a"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "wecross:admin"),
                 (NameOID.ORGANIZATIONAL_UNIT_NAME, "Treasury"), (NameOID.COMMON_NAME, "alice"))
        identity = Identity.from_certificate(c)
        self.assertEqual(identity, Identity("alice", "bank-a", frozenset({"user", "admin"}), "tls"))

    def test_plain_client_certificate_is_a_user_and_grants_add_roles(self) -> None:
        c = cert((NameOID.ORGANIZATION_NAME, "Regulator"), (NameOID.COMMON_NAME, "carol"))
        self.assertEqual(Identity.from_certificate(c, "client").roles, {"user"})
        grants = RoleGrants({}, {"Regulator": frozenset({"auditor"})})
        self.assertEqual(Identity.from_certificate(c, "client", grants).roles, {"user", "auditor"})

    def test_certificates_naming_no_usable_user_are_refused(self) -> None:
        for attributes, words in [
            ([(NameOID.ORGANIZATION_NAME, "x")], "exactly one common name"),
            ([(NameOID.COMMON_NAME, "anonymous")], "reserved"),
            ([(NameOID.COMMON_NAME, "router")], "reserved"),
            ([(NameOID.COMMON_NAME, "a b")], "not valid"),
            ([(NameOID.COMMON_NAME, "x"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "wecross:root")], "unknown role"),
            ([(NameOID.COMMON_NAME, "x"), (NameOID.ORGANIZATION_NAME, "a"), (NameOID.ORGANIZATION_NAME, "b")],
             "one organisation"),
        ]:
            with self.assertRaises(ValueError) as caught:
                Identity.from_certificate(cert(*attributes))
            self.assertIn(words, str(caught.exception))

    def test_vouched_identity_gets_roles_only_from_this_routers_grants(self) -> None:
        self.assertEqual(Identity.vouched("alice", "bank-a").roles, {"user"})
        grants = RoleGrants({"alice": frozenset({"admin"})}, {})
        self.assertEqual(Identity.vouched("alice", "bank-a", grants), Identity("alice", "bank-a",
                                                                               frozenset({"user", "admin"}), "entry"))
        self.assertEqual(Identity.vouched("anonymous", None), Identity.nobody("entry"))

    def test_anonymous_has_no_org_no_roles_and_a_name_needs_a_proof(self) -> None:
        with self.assertRaises(ValueError):
            Identity("anonymous", "bank-a", frozenset(), "none")
        with self.assertRaises(ValueError):
            Identity("anonymous", None, frozenset({"admin"}), "none")
        with self.assertRaises(ValueError):
            Identity("alice", None, frozenset({"user"}), "none")
        with self.assertRaises(ValueError):
            Identity("alice", None, frozenset({"superuser"}), "tls")
        with self.assertRaises(ValueError):
            Identity("alice", None, frozenset(), "hearsay")


class InterfaceTests(SynchronousTestCase):
    def test_groups(self) -> None:
        self.assertEqual(expand_interfaces("read"), {"call", "getData", "events", "tx.read", "htlc.read"})
        self.assertEqual(expand_interfaces("write"), {"sendTransaction", "setData", "tx.start", "tx.exec",
                                                      "tx.commit", "tx.rollback", "htlc.start", "htlc.act"})
        self.assertEqual(expand_interfaces("tx.*"), {"tx.start", "tx.exec", "tx.commit", "tx.rollback",
                                                     "tx.adopt", "tx.read"})
        self.assertEqual(expand_interfaces("admin.*"), {"admin.peers", "admin.accounts", "admin.acl",
                                                        "admin.deploy"})
        self.assertEqual(expand_interfaces("*"), set(INTERFACES))
        self.assertEqual(expand_interfaces("call"), {"call"})

    def test_adopt_and_admin_are_neither_read_nor_write(self) -> None:
        for name in ("tx.adopt", "admin.acl", "audit.read"):
            self.assertNotIn(name, GROUPS["read"] | GROUPS["write"])

    def test_unknown_names_are_refused(self) -> None:
        for bad in ("Call", "tx", "tx.*.*", "foo.*", "", "reads"):
            self.assertRaises(ValueError, expand_interfaces, bad)
        self.assertRaises(ValueError, Policy([]).decide, ALICE, ASSET, "transfer")


class RuleKindTests(SynchronousTestCase):
    """Each kind of subject grants to whom it names and to nobody else, and denies likewise."""

    cases = [
        ("user:alice", ALICE, BOB),
        ("org:bank-a", ALICE, BOB),
        ("role:admin", ADMIN, ALICE),
        ("role:auditor", AUDITOR, ADMIN),
        ("*", BOB, NOBODY),
        ("anonymous", NOBODY, ALICE),
    ]

    def test_allow_rule_grants_its_subject_only(self) -> None:
        for who, matching, other in self.cases:
            policy = Policy([rule(who, name="grant")], "deny")
            self.assertEqual(policy.decide(matching, ASSET, "call").rule, "grant", who)
            self.assertTrue(policy.decide(matching, ASSET, "call").allowed, who)
            self.assertFalse(policy.decide(other, ASSET, "call").allowed, who)
            self.assertIsNone(policy.decide(other, ASSET, "call").rule, who)

    def test_deny_rule_refuses_its_subject_only(self) -> None:
        for who, matching, other in self.cases:
            policy = Policy([rule(who, effect="deny", name="block")], "allow")
            self.assertEqual(policy.decide(matching, ASSET, "call"),
                             Decision(False, "block", f"rule 'block' denies {matching.name} call on {ASSET}"))
            self.assertTrue(policy.decide(other, ASSET, "call").allowed, who)

    def test_star_does_not_cover_anonymous_callers(self) -> None:
        policy = Policy([rule("*", effect="allow")], "deny")
        self.assertFalse(policy.decide(NOBODY, ASSET, "call").allowed)
        self.assertFalse(policy.decide(Identity.nobody("entry"), ASSET, "call").allowed)


class DecisionTests(SynchronousTestCase):
    def test_deny_overrides_allow_wherever_it_stands(self) -> None:
        allow = rule("org:bank-a", "payment.bank-a.*", "write", "allow", "bank-a-writes")
        deny = rule("*", "payment.bank-a.vault", "*", "deny", "vault-closed")
        for rules in ([allow, deny], [deny, allow]):
            policy = Policy(rules, "deny")
            self.assertEqual(policy.decide(ALICE, VAULT, "sendTransaction"),
                             Decision(False, "vault-closed", "rule 'vault-closed' denies alice sendTransaction on "
                                                             "payment.bank-a.vault"))
            self.assertEqual(policy.decide(ALICE, ASSET, "sendTransaction"),
                             Decision(True, "bank-a-writes", "rule 'bank-a-writes' allows alice sendTransaction "
                                                             "on payment.bank-a.asset"))

    def test_the_first_matching_deny_is_named(self) -> None:
        policy = Policy([rule("*", name="all"), rule("user:alice", effect="deny", name="d1"),
                         rule("org:bank-a", effect="deny", name="d2")])
        self.assertEqual(policy.decide(ALICE, ASSET, "call").rule, "d1")

    def test_defaults_and_the_reason_naming_the_missing_grant(self) -> None:
        deny = Policy([rule("user:bob", "evidence.court.*", "read")], "deny")
        self.assertEqual(deny.decide(ALICE, ASSET, "sendTransaction"),
                         Decision(False, None, "no rule grants alice sendTransaction on payment.bank-a.asset; "
                                               "default deny"))
        self.assertEqual(deny.decide(ALICE, None, "admin.peers"),
                         Decision(False, None, "no rule grants alice admin.peers; default deny"))
        allow = Policy([rule("user:bob", "evidence.court.*", "read")], "allow")
        self.assertEqual(allow.decide(ALICE, ASSET, "setData"),
                         Decision(True, None, "no rule matches alice setData on payment.bank-a.asset; "
                                              "default allow"))
        self.assertEqual(Policy([]).default, "deny")

    def test_ipath_patterns(self) -> None:
        cases = [
            ("payment.*", [ASSET, VAULT, OTHER_BANK], [EVIDENCE]),
            ("payment.bank-a.*", [ASSET, VAULT], [OTHER_BANK, EVIDENCE]),
            ("*.*.asset", [ASSET, OTHER_BANK], [VAULT, EVIDENCE]),
            ("payment.*.asset", [ASSET, OTHER_BANK], [VAULT, EVIDENCE]),
            ("payment.bank-a.asset evidence.*", [ASSET, EVIDENCE], [VAULT, OTHER_BANK]),
            ("*", [ASSET, VAULT, OTHER_BANK, EVIDENCE], []),
        ]
        for resources, inside, outside in cases:
            policy = Policy([rule("*", resources, "call")])
            for path in inside:
                self.assertTrue(policy.decide(ALICE, path, "call").allowed, (resources, str(path)))
            for path in outside:
                self.assertFalse(policy.decide(ALICE, path, "call").allowed, (resources, str(path)))

    def test_operations_without_a_resource_need_a_star_rule(self) -> None:
        narrow = Policy([rule("role:admin", "*.*.*", "admin.*")])
        self.assertFalse(narrow.decide(ADMIN, None, "admin.peers").allowed)
        wide = Policy([rule("role:admin", "*", "admin.*", name="admins")])
        self.assertEqual(wide.decide(ADMIN, None, "admin.peers").rule, "admins")
        self.assertFalse(wide.decide(ALICE, None, "admin.peers").allowed)

    def test_interface_groups(self) -> None:
        policy = Policy([rule("user:bob", "evidence.court.*", "read", name="bob-reads")])
        for name in ("call", "getData", "events", "tx.read", "htlc.read"):
            self.assertTrue(policy.decide(BOB, EVIDENCE, name).allowed, name)
        for name in ("sendTransaction", "setData", "tx.exec", "htlc.act", "tx.adopt"):
            self.assertFalse(policy.decide(BOB, EVIDENCE, name).allowed, name)

    def test_rule_and_policy_validate_their_input(self) -> None:
        self.assertRaises(ValueError, rule, "user:alice", effect="maybe")
        self.assertRaises(ValueError, rule, "group:x")
        self.assertRaises(ValueError, rule, "role:root")
        self.assertRaises(ValueError, rule, "*", "* payment.*")
        self.assertRaises(ValueError, Rule, "*", (), ("call",), "allow", "r")
        self.assertRaises(ValueError, Policy, [rule("*")], "perhaps")
        self.assertRaises(ValueError, Policy, [rule("*", name="x"), rule("*", name="x")])


class MemoTests(SynchronousTestCase):
    def test_memo_is_bounded(self) -> None:
        policy = Policy([rule("*")], memo_size=3)
        for i in range(10):
            policy.decide(ALICE, IPath("z", "c", f"r{i}"), "call")
        self.assertEqual(policy.memo_entries(), 3)
        policy.clear_memo()
        self.assertEqual(policy.memo_entries(), 0)

    def test_memo_gives_the_same_answers(self) -> None:
        policy = Policy([rule("org:bank-a", "payment.*", "write", name="w")])
        first = [policy.decide(who, ASSET, "setData") for who in (ALICE, BOB, NOBODY)]
        self.assertEqual(policy.memo_entries(), 3)
        self.assertEqual([policy.decide(who, ASSET, "setData") for who in (ALICE, BOB, NOBODY)], first)


EXAMPLE = b"""
[acl_settings]
default = "deny"

[roles]
auditor = ["org:Regulator"]
admin = ["user:root"]

[[acl]]
name = "bank-a-transfers"
who = "org:bank-a"
resources = ["payment.bank-a.*"]
interfaces = ["read", "write"]
effect = "allow"

[[acl]]
name = "bob-reads-evidence"
who = "user:bob"
resources = ["evidence.court.*"]
interfaces = ["read"]
effect = "allow"

[[acl]]
name = "court-never-writes-payment"
who = "org:Court"
resources = ["payment.*"]
interfaces = ["write"]
effect = "deny"

[[acl]]
name = "auditors-read-the-log"
who = "role:auditor"
resources = ["*"]
interfaces = ["audit.read"]
effect = "allow"

[[acl]]
name = "admins"
who = "role:admin"
resources = ["*"]
interfaces = ["admin.*", "tx.adopt"]
effect = "allow"
"""


class ParseTests(SynchronousTestCase):
    def test_the_documented_example(self) -> None:
        """The two-organisation example of docs/governance.md, decision by decision."""
        policy = parse_acl_bytes(EXAMPLE, "acl.toml")
        self.assertEqual([r.name for r in policy.rules], ["bank-a-transfers", "bob-reads-evidence",
                                                           "court-never-writes-payment", "auditors-read-the-log",
                                                           "admins"])
        self.assertTrue(policy.decide(ALICE, ASSET, "sendTransaction").allowed)
        self.assertFalse(policy.decide(ALICE, EVIDENCE, "call").allowed)
        self.assertTrue(policy.decide(BOB, EVIDENCE, "call").allowed)
        self.assertEqual(policy.decide(BOB, EVIDENCE, "sendTransaction").reason,
                         "no rule grants bob sendTransaction on evidence.court.hello; default deny")
        self.assertEqual(policy.decide(BOB, ASSET, "setData").rule, "court-never-writes-payment")
        self.assertTrue(policy.decide(AUDITOR, None, "audit.read").allowed)
        self.assertFalse(policy.decide(ALICE, None, "audit.read").allowed)
        carol = Identity.vouched("carol", "Regulator", policy.grants)
        self.assertEqual(carol.roles, {"user", "auditor"})
        self.assertTrue(policy.decide(Identity.vouched("root", None, policy.grants), None, "tx.adopt").allowed)

    def test_every_mistake_is_reported_with_its_key(self) -> None:
        document: list[Any] = [
            {"who": "user:alice", "resources": ["payment.*"], "interfaces": ["call"], "effect": "allow"},
            {"who": "grp:x", "resources": ["payment"], "interfaces": ["cal"], "effect": "permit", "nme": "x"},
            "not a table",
            {"resources": "payment.*", "interfaces": [], "name": "acl[0]"},
            {"who": "*", "resources": ["*", "payment.*"], "interfaces": ["read", 3], "effect": "deny"},
            {"who": "*", "resources": ["*"], "interfaces": ["read"], "effect": "deny", "name": "acl[0]"},
        ]
        with self.assertRaises(AclError) as caught:
            parse_acl(document, "sometimes", roles={"root": ["user:x"], "admin": ["alice", "org:"]},
                      source="acl.toml")
        keys = [key for key, _ in caught.exception.problems]
        self.assertEqual(keys, [
            "acl[1].nme", "acl[1].who", "acl[1].resources[0]", "acl[1].interfaces[0]", "acl[1].effect",
            "acl[2]",
            "acl[3].who", "acl[3].resources", "acl[3].interfaces", "acl[3].effect",
            "acl[4].resources", "acl[4].interfaces[1]",
            "acl[5].name",
            "acl_settings.default",
            "roles.root", "roles.admin[0]", "roles.admin[1]",
        ])
        text = str(caught.exception)
        self.assertIn("acl.toml: acl[1].who: 'grp:x' is not a subject", text)
        self.assertIn("acl.toml: acl[5].name: 'acl[0]' is already the name of acl[0]", text)
        self.assertIn("acl.toml: acl[1].nme: unknown key", text)
        self.assertEqual(caught.exception.key, "acl[1].nme")

    def test_file_level_mistakes(self) -> None:
        for data, key in [
            (b"[[acl]\n", ""),
            (b"\xff", ""),
            (b"[acl_settings]\ndefault = 'open'\n", "acl_settings.default"),
            (b"[acl_settings]\ndefualt = 'deny'\n", "acl_settings.defualt"),
            (b"[rules]\n", "rules"),
            (b"acl = 3\n", "acl"),
            (b"roles = 3\n", "roles"),
        ]:
            with self.assertRaises(AclError) as caught:
                parse_acl_bytes(data, "acl.toml")
            self.assertEqual(caught.exception.key, key, data)

    def test_errors_are_bounded(self) -> None:
        """A pasted blob or a thousand broken rules give a readable error, not a flood."""
        blob = "x" * 5000
        document: list[Any] = [{"who": f"user:{blob}", "resources": [f"{blob}.*"], "interfaces": [blob],
                                "effect": blob, blob: 1}] + [{}] * 1000
        with self.assertRaises(AclError) as caught:
            parse_acl(document, blob, roles={blob: [blob]})
        self.assertGreater(len(caught.exception.problems), 1000)
        self.assertEqual(len(caught.exception.lines), 51)
        self.assertIn("more problems not shown", caught.exception.lines[-1])
        self.assertLess(len(str(caught.exception)), 51 * 600)
        self.assertLess(max(len(line) for line in caught.exception.lines), 600)

    def test_an_empty_file_denies_everything(self) -> None:
        policy = parse_acl_bytes(b"", "acl.toml")
        self.assertEqual((policy.rules, policy.default), ((), "deny"))


RULES_V1 = b"""
[[acl]]
name = "alice-writes"
who = "user:alice"
resources = ["payment.*"]
interfaces = ["write"]
effect = "allow"
"""
RULES_V2 = RULES_V1.replace(b'"allow"', b'"deny"')


class FakeFile:
    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data
        self.mtime = 1.0
        self.reads = 0

    def read_bytes(self) -> bytes:
        self.reads += 1
        if self.data is None:
            raise FileNotFoundError(2, "No such file or directory")
        return self.data

    def stat(self) -> tuple[float, int]:
        if self.data is None:
            raise FileNotFoundError(2, "No such file or directory")
        return (self.mtime, len(self.data))


class PolicyFileTests(SynchronousTestCase):
    def test_a_changed_file_is_reloaded_and_the_memo_cleared(self) -> None:
        f = FakeFile(RULES_V1)
        pf = PolicyFile(f.read_bytes, "acl.toml", now=0.0)
        old = pf.policy
        self.assertTrue(pf.decide(ALICE, ASSET, "sendTransaction").allowed)
        self.assertEqual(old.memo_entries(), 1)
        self.assertEqual(pf.maybe_reload(1.0).status, "unchanged")
        self.assertIs(pf.policy, old)
        f.data = RULES_V2
        self.assertEqual(pf.maybe_reload(2.0).status, "reloaded")
        self.assertEqual(old.memo_entries(), 0)
        self.assertEqual(pf.decide(ALICE, ASSET, "sendTransaction").rule, "alice-writes")
        self.assertFalse(pf.decide(ALICE, ASSET, "sendTransaction").allowed)
        self.assertEqual(pf.loaded_at, 2.0)

    def test_a_bad_file_keeps_the_old_policy_and_is_reported_once(self) -> None:
        f = FakeFile(RULES_V1)
        pf = PolicyFile(f.read_bytes, "acl.toml", now=0.0)
        good = pf.policy
        f.data = RULES_V1.replace(b"user:alice", b"usr:alice")
        result = pf.maybe_reload(1.0)
        self.assertEqual(result.status, "rejected")
        self.assertEqual(len(result.errors), 1)
        self.assertIn("acl.toml: acl[0].who:", result.errors[0])
        self.assertIs(pf.policy, good)
        self.assertTrue(pf.decide(ALICE, ASSET, "sendTransaction").allowed)
        self.assertEqual(pf.maybe_reload(2.0).status, "unchanged")  # same bad content: not reported again
        self.assertEqual(pf.errors, result.errors)
        f.data = None
        result = pf.maybe_reload(3.0)
        self.assertEqual(result.status, "rejected")
        self.assertIn("cannot read", result.errors[0])
        self.assertIs(pf.policy, good)
        f.data = RULES_V1  # repaired to the content in force
        self.assertEqual(pf.maybe_reload(4.0).status, "unchanged")
        self.assertEqual(pf.errors, ())

    def test_stat_spares_reads_but_content_is_rechecked(self) -> None:
        f = FakeFile(RULES_V1)
        pf = PolicyFile(f.read_bytes, "acl.toml", now=0.0, stat=f.stat, recheck_after=30.0)
        self.assertEqual(f.reads, 1)
        for t in range(1, 30):
            pf.maybe_reload(float(t))
        self.assertEqual(f.reads, 1)
        f.data = RULES_V2 + b" "  # same size, same mtime: only the periodic re-read can see it
        self.assertEqual(len(f.data), len(RULES_V1))
        self.assertEqual(pf.maybe_reload(29.5).status, "unchanged")
        self.assertEqual(pf.maybe_reload(30.0).status, "reloaded")
        f.data, f.mtime = RULES_V1, 2.0
        self.assertEqual(pf.maybe_reload(31.0).status, "reloaded")
        f.data = None
        self.assertEqual(pf.maybe_reload(32.0).status, "rejected")

    def test_start_up_refuses_an_unreadable_or_invalid_file(self) -> None:
        f = FakeFile(b"[[acl]]\nwho = 'x'\n")
        with self.assertRaises(AclError) as caught:
            PolicyFile(f.read_bytes, "acl.toml", now=0.0)
        self.assertIn("acl.toml: acl[0].who", str(caught.exception))
        f.data = None
        self.assertRaises(AclError, PolicyFile, f.read_bytes, "acl.toml", 0.0)
        f.data = b" " * (4 * 1024 * 1024 + 1)
        self.assertRaises(AclError, PolicyFile, f.read_bytes, "acl.toml", 0.0)


# ------------------------------------------------------------------------------------------- property: reference

_READ = {"call", "getData", "events", "tx.read", "htlc.read"}
_WRITE = {"sendTransaction", "setData", "tx.start", "tx.exec", "tx.commit", "tx.rollback", "htlc.start", "htlc.act"}


def ref_interfaces(pattern: str) -> set[str]:
    if pattern == "*":
        return set(INTERFACES)
    if pattern in ("read", "write"):
        return _READ if pattern == "read" else _WRITE
    if pattern.endswith(".*"):
        return {name for name in INTERFACES if name.split(".")[0] == pattern[:-2]}
    return {pattern}


def ref_resource(pattern: str, path: IPath | None) -> bool:
    if pattern == "*":
        return True
    if path is None:
        return False
    parts = pattern.split(".")
    values = [path.zone, path.chain, path.resource]
    if len(parts) < 3:  # a trailing * takes the remaining parts
        parts = parts[:-1] + ["*"] * (4 - len(parts))
    return all(p in ("*", v) for p, v in zip(parts, values, strict=True))


def ref_who(who: str, identity: Identity) -> bool:
    if who == "*":
        return identity.name != "anonymous"
    if who == "anonymous":
        return identity.name == "anonymous"
    kind, value = who.split(":", 1)
    return {"user": identity.name == value, "org": identity.org == value, "role": value in identity.roles}[kind]


def reference(raw: list[tuple[str, list[str], list[str], str]], default: str, identity: Identity,
              path: IPath | None, interface: str) -> tuple[bool, str | None]:
    """Scan every rule in order; any matching deny wins (the first is named), else the first allow, else default."""
    matching = [(i, effect) for i, (who, resources, interfaces, effect) in enumerate(raw)
                if ref_who(who, identity) and any(ref_resource(p, path) for p in resources)
                and any(interface in ref_interfaces(p) for p in interfaces)]
    denies = [i for i, effect in matching if effect == "deny"]
    if denies:
        return False, f"acl[{denies[0]}]"
    if matching:
        return True, f"acl[{matching[0][0]}]"
    return default == "allow", None


_parts = st.sampled_from(["z1", "z2", "*"]), st.sampled_from(["c1", "c2", "*"]), st.sampled_from(["r1", "r2", "*"])
_patterns = st.one_of(
    st.just("*"),
    st.builds(lambda z: f"{z}.*", _parts[0]),
    st.builds(lambda z, c: f"{z}.{c}.*", *_parts[:2]),
    st.builds(lambda z, c, r: f"{z}.{c}.{r}", *_parts),
)
_who = st.sampled_from(["*", "anonymous", "user:alice", "user:bob", "org:A", "org:B", "role:user", "role:admin",
                        "role:auditor"])
_interfaces = st.sampled_from([*INTERFACES, *GROUPS])
_raw_rule = st.tuples(_who, st.lists(_patterns, min_size=1, max_size=3).filter(lambda p: "*" not in p or p == ["*"]),
                      st.lists(_interfaces, min_size=1, max_size=3), st.sampled_from(["allow", "deny"]))
_identities = st.sampled_from([
    Identity.nobody(), Identity.nobody("entry"),
    Identity("alice", "A", frozenset({"user"}), "client"),
    Identity("bob", "B", frozenset({"user", "admin"}), "tls"),
    Identity("carol", None, frozenset({"user", "auditor"}), "entry"),
    Identity("dave", "A", frozenset({"user", "admin", "auditor"}), "tls"),
])
_paths = st.one_of(st.none(), st.builds(IPath, st.sampled_from(["z1", "z2", "z3"]), st.sampled_from(["c1", "c2"]),
                                        st.sampled_from(["r1", "r2"])))


class ReferenceTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(_raw_rule, max_size=12), st.sampled_from(["allow", "deny"]),
           st.lists(st.tuples(_identities, _paths, st.sampled_from(INTERFACES)), min_size=1, max_size=20))
    def test_decide_agrees_with_a_plain_scan(self, raw: list[tuple[str, list[str], list[str], str]], default: str,
                                             queries: list[tuple[Identity, IPath | None, str]]) -> None:
        document = [{"who": w, "resources": r, "interfaces": i, "effect": e} for w, r, i, e in raw]
        policy = parse_acl(document, default, memo_size=4)  # small memo: hits, misses and evictions all happen
        for _ in range(2):
            for identity, path, interface in queries:
                decision = policy.decide(identity, path, interface)
                expected = reference(raw, default, identity, path, interface)
                self.assertEqual((decision.allowed, decision.rule), expected, (identity, str(path), interface))
