"""Who is asking: a user's name, organisation and roles, and how this router came to know them.

Permissions (wecross.governance.acl) are decided on an :class:`Identity`, never on a bare string, so that the one
place that turns a certificate into a name, an organisation and roles is this module, and every decision can say
how well the identity was proven (``proven``): by the user's own signature, an entry router's word, the TLS client
certificate this router saw, or nothing at all (plain HTTP).

Roles come from two places only:

- the certificate: an organizationalUnitName (OU) of the subject of the form ``wecross:ROLE`` (``wecross:admin``,
  ``wecross:auditor``; ``wecross:user`` is accepted and changes nothing). The CA that issued the certificate vouches
  for it, like for the CN and O. Other OUs are ignored, so an organisation's own OUs do not clash;
- this router's configuration (:class:`RoleGrants`, the ``[roles]`` table of the ACL file).

Every identity that holds a certificate has the role ``user``; ``anonymous`` has no role and no organisation. An
identity vouched for by an entry router (:meth:`Identity.vouched`) gets its roles from this router's grants only:
an entry router's claim that someone is an admin is never believed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from wecross.pki.authority import InvalidNameError, validate_user_name

ANONYMOUS = "anonymous"

ROLES = frozenset({"user", "admin", "auditor"})

#: How the identity was established, strongest first. "client": the user signed the operation with the key of its
#: certificate; "entry": an entry router vouched for the user (its own signature covers the sender); "tls": this
#: router saw the TLS client certificate itself; "none": plain HTTP, nobody vouches for anything.
PROVEN = ("client", "entry", "tls", "none")

#: The OU prefix that carries a role in a certificate.
ROLE_OU_PREFIX = "wecross:"

#: Names a certificate may not claim, because the router uses them for callers that are not users
#: (wecross.router._is_user): a certificate with CN "anonymous" must not be confused with plain HTTP.
RESERVED_NAMES = frozenset({ANONYMOUS, "router"})

_MAX_ORG = 64


def _attribute_texts(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    texts = []
    for attribute in name.get_attributes_for_oid(oid):
        value = attribute.value
        texts.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return texts


def check_org(org: str) -> str:
    """An organisation name as ``wecross certs`` writes it: 1-64 characters, not blank, no control characters."""
    if not org.strip() or len(org) > _MAX_ORG or any(ord(c) < 32 or ord(c) == 127 for c in org):
        raise ValueError(f"organisation {org[:80]!r} must be 1-{_MAX_ORG} printable characters")
    return org


def check_user_name(name: str) -> str:
    """A user name that a client certificate may carry as its CN (and that is not reserved)."""
    if len(name) > 64:
        raise ValueError(f"user name {name[:40]!r}... is longer than 64 characters")
    try:
        validate_user_name(name)
    except InvalidNameError as exc:
        raise ValueError(str(exc)) from None
    if name in RESERVED_NAMES:
        raise ValueError(f"user name {name!r} is reserved for callers that are not users")
    return name


@dataclass(frozen=True, slots=True)
class RoleGrants:
    """Roles this router's configuration gives, by user name and by organisation (the ``[roles]`` table)."""

    by_user: Mapping[str, frozenset[str]]
    by_org: Mapping[str, frozenset[str]]

    @classmethod
    def none(cls) -> RoleGrants:
        return cls({}, {})

    def roles_for(self, name: str, org: str | None) -> frozenset[str]:
        roles = self.by_user.get(name, frozenset())
        if org is not None:
            roles = roles | self.by_org.get(org, frozenset())
        return roles


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller as permissions see it. Hashable: decisions are memoised per identity."""

    name: str
    org: str | None
    roles: frozenset[str]
    proven: str

    def __post_init__(self) -> None:
        if self.proven not in PROVEN:
            raise ValueError(f"proven {self.proven[:80]!r} is not one of {', '.join(PROVEN)}")
        unknown = self.roles - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}: roles are {', '.join(sorted(ROLES))}")
        if self.name == ANONYMOUS:
            # Nobody vouches for an anonymous caller's organisation or roles: such an identity would match
            # org: and role: rules (Policy.decide) on no evidence at all.
            if self.org is not None or self.roles:
                raise ValueError("an anonymous identity has no organisation and no roles")
            if self.proven not in ("none", "entry"):
                raise ValueError(f"an anonymous identity cannot be proven by {self.proven!r}")
        elif self.proven == "none":
            raise ValueError(f"identity {self.name!r} is not anonymous, so something must prove it")

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS

    @classmethod
    def nobody(cls, proven: str = "none") -> Identity:
        """The anonymous caller: plain HTTP ("none"), or an entry router forwarding such a caller ("entry")."""
        return cls(ANONYMOUS, None, frozenset(), proven)

    @classmethod
    def from_certificate(
        cls, cert: x509.Certificate, proven: str = "tls", grants: RoleGrants | None = None
    ) -> Identity:
        """The identity a client certificate names: CN, O, roles from ``wecross:ROLE`` OUs plus ``grants``.

        The certificate must already be verified against the network's CA (the TLS handshake or
        wecross.attest.ClientProof does that): this only reads names. Raises ValueError for a certificate that
        names no usable user (no CN, a reserved or malformed CN, several CNs or Os, an unknown ``wecross:`` role).
        """
        subject = cert.subject
        names = _attribute_texts(subject, NameOID.COMMON_NAME)
        if len(names) != 1:
            raise ValueError(f"a client certificate needs exactly one common name (CN), this one has {len(names)}")
        name = check_user_name(names[0])
        orgs = _attribute_texts(subject, NameOID.ORGANIZATION_NAME)
        if len(orgs) > 1:
            raise ValueError(f"a client certificate may name one organisation (O), this one names {len(orgs)}")
        org = check_org(orgs[0]) if orgs else None
        roles = {"user"}
        for unit in _attribute_texts(subject, NameOID.ORGANIZATIONAL_UNIT_NAME):
            if unit.startswith(ROLE_OU_PREFIX):
                role = unit[len(ROLE_OU_PREFIX):]
                if role not in ROLES:
                    raise ValueError(f"certificate OU {unit[:80]!r} names an unknown role: use one of "
                                     f"{', '.join(ROLE_OU_PREFIX + r for r in sorted(ROLES))}")
                roles.add(role)
        if grants is not None:
            roles |= grants.roles_for(name, org)
        return cls(name, org, frozenset(roles), proven)

    @classmethod
    def vouched(cls, name: str, org: str | None, grants: RoleGrants | None = None, proven: str = "entry") -> Identity:
        """A user named by someone else (an entry router's signed request): roles from ``grants`` only."""
        if name == ANONYMOUS:
            return cls.nobody(proven)
        check_user_name(name)
        if org is not None:
            check_org(org)
        roles = {"user"} | (grants.roles_for(name, org) if grants is not None else set())
        return cls(name, org, frozenset(roles), proven)

    def __str__(self) -> str:
        return self.name if self.org is None else f"{self.name} ({self.org})"


def grants_from(by_user: Mapping[str, Iterable[str]], by_org: Mapping[str, Iterable[str]]) -> RoleGrants:
    return RoleGrants({k: frozenset(v) for k, v in by_user.items()}, {k: frozenset(v) for k, v in by_org.items()})
