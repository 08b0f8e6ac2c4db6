"""Governance: who may do what on which resource (issue 13).

- wecross.governance.identity: :class:`Identity` (name, organisation, roles, how it was proven) and the
  ``wecross:ROLE`` certificate convention;
- wecross.governance.acl: interfaces, ``[[acl]]`` rules, :class:`Policy` and its decision (deny overrides allow,
  configurable default), and the parsers;
- wecross.governance.reload: :class:`PolicyFile`, the ACL file reloaded without a restart.

All three are sans-IO cores; docs/governance.md describes the model and the configuration.
"""

from wecross.governance.acl import (
    GROUPS,
    INTERFACES,
    AclError,
    Decision,
    Policy,
    Rule,
    expand_interfaces,
    parse_acl,
    parse_acl_bytes,
    parse_acl_document,
)
from wecross.governance.identity import ANONYMOUS, ROLES, Identity, RoleGrants
from wecross.governance.reload import PolicyFile, ReloadResult

__all__ = [
    "ANONYMOUS",
    "GROUPS",
    "INTERFACES",
    "ROLES",
    "AclError",
    "Decision",
    "Identity",
    "Policy",
    "PolicyFile",
    "ReloadResult",
    "RoleGrants",
    "Rule",
    "expand_interfaces",
    "parse_acl",
    "parse_acl_bytes",
    "parse_acl_document",
]
