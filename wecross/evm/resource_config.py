"""The ``resources`` entries of an EVM stub's config, checked into :class:`ResourceSpec` (kind, address, ABI).

A ``contract`` resource's ABI file is read here, at config time, so a wrong path or a malformed ABI stops the
router before it starts instead of failing the first call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wecross.evm.abi import ContractAbi, builtin_abi, check_address, load_artifact
from wecross.evm.options import EvmOptions
from wecross.ipath import IPath, IPathError

KINDS = ("kv", "asset", "contract")


@dataclass(slots=True)
class ResourceSpec:
    """One entry of the stub's ``resources`` list, checked."""

    name: str
    kind: str
    abi: ContractAbi
    address: str | None
    description: str
    issuer: str | None = None
    initial: dict[str, Any] = field(default_factory=dict)


_RESOURCE_KEYS = {
    "kv": {"name", "kind", "address", "description", "initial"},
    "asset": {"name", "kind", "address", "description", "initial", "issuer"},
    "contract": {"name", "kind", "address", "description", "abi"},
}


_DESCRIPTIONS = {
    "kv": "key/value store (HelloWeCross): get(key), set(key, value); takes part in transactions (2PC: set)",
    "asset": "asset ledger (AssetLedger): balanceOf(account), totalSupply(), transfer(from, to, amount) from the "
             "caller's own account, mint(account, amount) by the issuer; takes part in transactions (2PC: transfer) "
             "and HTLCs (htlcStatus(id))",
}


def parse_resource(where: str, zone: str, chain: str, spec: Any, options: EvmOptions) -> ResourceSpec:
    """Build a ResourceSpec from its config entry (reading a ``contract``'s ABI file); ValueError saying what."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: each resource must be a table with name and kind")
    name = spec.get("name")
    if not isinstance(name, str):
        raise ValueError(f"{where}: a resource has no 'name'")
    try:
        IPath.parse(f"{zone}.{chain}.{name}")
    except IPathError as exc:
        raise ValueError(f"{where}: resource name {name!r}: {exc}") from None
    here = f"{where}: resource {name!r}"
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{here}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    unknown = sorted(set(spec) - _RESOURCE_KEYS[kind])
    if unknown:
        raise ValueError(f"{here} ({kind}): unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(_RESOURCE_KEYS[kind]))}")
    address = spec.get("address")
    if address is not None:
        try:
            address = check_address(address)
        except ValueError as exc:
            raise ValueError(f"{here}: option 'address' {exc}") from None
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{here}: option 'description' must be a string")
    if kind == "contract":
        abi_path = spec.get("abi")
        if not isinstance(abi_path, str) or not abi_path:
            raise ValueError(f"{here}: option 'abi' must be the path of the contract's ABI JSON file")
        try:
            abi = load_artifact(Path(abi_path).expanduser())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{here}: option 'abi' ({abi_path}): {exc}") from None
    else:
        abi = builtin_abi(kind)
    if address is None and not (options.deploy and abi.bytecode):
        needs = "or set the stub option 'deploy' to true" if kind != "contract" else \
            "or point 'abi' at an artifact with a 'bytecode' and set the stub option 'deploy' to true"
        raise ValueError(f"{here}: option 'address' is required ({needs})")
    if abi.constructor_inputs and address is None:
        raise ValueError(f"{here}: the contract's constructor takes arguments; deploy it yourself and give 'address'")
    issuer = spec.get("issuer")
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise ValueError(f"{here}: option 'issuer' must be an account name")
    initial = spec.get("initial", {})
    if not isinstance(initial, Mapping):
        raise ValueError(f"{here}: option 'initial' must be a table")
    for key, value in initial.items():
        fits = isinstance(value, str) if kind == "kv" else \
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not key or not fits:
            what = "keys to string values" if kind == "kv" else "account names to non-negative integers"
            raise ValueError(f"{here}: option 'initial' must map {what}; entry {key!r} does not")
    return ResourceSpec(name, kind, abi, address, description or _DESCRIPTIONS.get(kind, ""), issuer, dict(initial))
