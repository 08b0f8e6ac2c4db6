"""Where a router applies its permissions: one object the REST layer (entry router, early refusal) and the router
core (owner router, the decision that counts) both ask.

A router without an ACL file (``[governance] acl_file`` unset) runs in **open mode**: every identity may use every
interface, as before governance existed, except managing the router (``admin.*``: certificates with the
``wecross:admin`` role) and reading the audit trail (``audit.read``: ``wecross:auditor`` or ``wecross:admin``).
With one, every decision goes through the file's :class:`~wecross.governance.acl.Policy` (reloaded without a
restart by
:class:`~wecross.governance.reload.PolicyFile`), and a refusal is ``403 forbidden`` naming the rule that denied or
the grant that is missing (``details.rule``).

Identities at the owner are built from what the signed request proves (wecross.attest): the user's own
certificate when the user signed the operation (``proven = "client"``, roles from the certificate's
``wecross:ROLE`` units and this router's grants), else the entry router's word (``proven = "entry"``, roles from
this router's grants only, so another organisation's router cannot make anyone an admin here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from cryptography import x509

from wecross.errors import RouterError
from wecross.governance.acl import Decision, Policy
from wecross.governance.identity import Identity, RoleGrants
from wecross.governance.reload import PolicyFile
from wecross.ipath import IPath

#: Resource operations and transaction operations as the owner sees them -> interface names of the ACL.
OWNER_INTERFACES = {
    "call": "call", "sendTransaction": "sendTransaction", "getData": "getData", "setData": "setData",
    "events": "events",
    "txPrepare": "tx.exec", "txCommit": "tx.commit", "txRollback": "tx.rollback",
    "htlcLock": "htlc.start", "htlcUnlock": "htlc.act", "htlcTimeout": "htlc.act",
}


#: In open mode (no ACL file), the interfaces that still need a role: managing the router, reading the audit.
_OPEN_MODE_ROLES = {"admin": frozenset({"admin"}), "audit.read": frozenset({"auditor", "admin"})}


class Governance:
    """The permissions of one router: open (no policy) or a policy file, with counters of decisions."""

    def __init__(self, policy: PolicyFile | Policy | None = None) -> None:
        self.policy = policy
        self.counters: Counter[str] = Counter()

    @property
    def open(self) -> bool:
        return self.policy is None

    @property
    def grants(self) -> RoleGrants:
        if self.policy is None:
            return RoleGrants.none()
        policy = self.policy.policy if isinstance(self.policy, PolicyFile) else self.policy
        return policy.grants

    def decide(self, identity: Identity, ipath: IPath | None, interface: str) -> Decision | None:
        """The decision, or None when open mode lets it through. Open mode still keeps managing the router and
        reading the audit trail to the roles made for them (from the caller's certificate: there is no [roles]
        table without an ACL file), so a router started without rules cannot be reconfigured by anyone who
        reaches its port."""
        if self.policy is None:
            needed = _OPEN_MODE_ROLES.get(interface.split(".", 1)[0] if interface.startswith("admin.") else interface)
            if needed is None or identity.roles & needed:
                return None
            return Decision(False, None, f"{identity.name} may not use {interface}: without an ACL file only "
                                         f"{' or '.join(sorted(needed))} certificates may")
        return self.policy.decide(identity, ipath, interface)

    def authorize(self, identity: Identity, ipath: IPath | None, interface: str, where: str) -> None:
        """Raises RouterError('forbidden') unless ``identity`` may use ``interface`` on ``ipath``; ``where`` names
        this router in the message (the entry's early refusal and the owner's read differently)."""
        decision = self.decide(identity, ipath, interface)
        if decision is None:
            return
        if decision.allowed:
            self.counters["allowed"] += 1
            return
        self.counters["denied"] += 1
        details: dict[str, object] = {"interface": interface, "identity": identity.name}
        if decision.rule is not None:
            details["rule"] = decision.rule
        if ipath is not None:
            details["ipath"] = str(ipath)
        raise RouterError("forbidden", f"{where}: {decision.reason}", details)

    def identity_of(self, sender: str, org: str | None, certificate: x509.Certificate | None = None) -> Identity:
        """Who a signed request acts for: the user's own certificate when the user signed, else the entry router's
        word (roles from this router's grants only)."""
        if certificate is not None:
            try:
                return Identity.from_certificate(certificate, proven="client", grants=self.grants)
            except ValueError as exc:
                raise RouterError("forbidden", f"the user's certificate names no usable identity: {exc}") from None
        try:
            return Identity.vouched(sender, org or None, self.grants, proven="entry")
        except ValueError as exc:
            raise RouterError("forbidden", f"{sender[:64]!r} is not a usable identity: {exc}") from None

    def maybe_reload(self, now: float, report: Callable[[str], None]) -> None:
        """Called by the node's timer: a changed ACL file is taken, an invalid one reported and ignored."""
        if not isinstance(self.policy, PolicyFile):
            return
        result = self.policy.maybe_reload(now)
        if result.status == "reloaded":
            self.counters["reloads"] += 1
            report(f"ACL {self.policy.source} reloaded: {len(self.policy.policy.rules)} rules, default "
                   f"{self.policy.policy.default}")
        elif result.errors:
            self.counters["reload_errors"] += 1
            report(f"ACL {self.policy.source} changed but is invalid, the previous rules stay in force: "
                   + "; ".join(result.errors[:5]))
