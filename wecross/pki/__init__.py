"""Certificates for the router network: a private CA (``authority``) and the ``wecross certs`` command (``cli``).

Kept separate from ``wecross.peer.tls`` because minting certificates is an operator's job done once, offline,
while loading and checking them is what every router does at start-up.
"""

from wecross.pki.authority import (
    CertifiedKey,
    InvalidNameError,
    PKIError,
    create_ca_chain,
    create_intermediate_ca,
    create_root_ca,
    issue_client_cert,
    issue_router_cert,
    load_issuer,
    validate_router_id,
    validate_user_name,
    write_certificates,
    write_private_key,
)
from wecross.pki.serves import (
    ChainAuthority,
    ServesPatternError,
    authorizes,
    serves_patterns,
    validate_serves_pattern,
)

__all__ = [
    "CertifiedKey",
    "ChainAuthority",
    "InvalidNameError",
    "PKIError",
    "ServesPatternError",
    "authorizes",
    "create_ca_chain",
    "create_intermediate_ca",
    "create_root_ca",
    "issue_client_cert",
    "issue_router_cert",
    "load_issuer",
    "serves_patterns",
    "validate_router_id",
    "validate_serves_pattern",
    "validate_user_name",
    "write_certificates",
    "write_private_key",
]
