"""The governance endpoints of the REST API: ``GET /whoami``, ``GET /audit``, ``POST /admin/peers``,
``DELETE /admin/peers/{id}`` and ``/admin/accounts`` (docs/rest-api.md, "Governance").

Kept apart from :mod:`wecross.rest.api`, whose concern is the request path every operation takes: these endpoints
are few, rare, and mostly input checking. What a client sends is checked here by plain functions of the decoded
query or body (no request, no reactor), so each refusal is a ``bad_request`` naming the field before anything
touches the audit store or the peer service; ``tests.test_governance_rest.Inputs`` holds them to that.

Who may call them is the ACL's business (``audit.read``, ``admin.peers``, ``admin.accounts``), decided by the API
through :class:`wecross.governance.enforce.Governance` like every other interface. ``/whoami`` needs no permission: it
tells callers only what their own certificate and this router's ``[roles]`` say about them.

Admin actions on peers go to the audit trail, allowed or refused (they change what the router trusts), and so do
refused audit reads; allowed audit reads do not, or every read (a monitor polling the trail) would grow the trail
it reads. Every ``/admin/accounts`` request is recorded, listings included: who looked up whose accounts is an
admin's act on other users' keys, and admins do not poll it.

Chain accounts live in :class:`wecross.governance.keystore.Keystore`, whose every method blocks on SQLite: the
functions here run them through the ``blocking`` runner the API hands in (``deferToThread`` in a router), never on
the reactor thread, and check names first, so a malformed name costs no thread. Answers carry the user, the
chain, the address and the creation time (:meth:`AccountInfo.to_json`), never a key: the keystore's listing reads
no sealed column, and :func:`account_answer` builds each answer from those four fields only
(``tests.test_governance_rest.AccountsTests.test_no_key_material``).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wecross.errors import RouterError
from wecross.governance.audit import AuditRecord, Head
from wecross.governance.audit_store import MAX_QUERY_LIMIT, AuditQuery, AuditStore
from wecross.governance.identity import Identity
from wecross.governance.keystore import AccountInfo, Keystore, KeystoreError, check_chain, check_user
from wecross.logs import untrusted

_log = Logger(namespace="wecross.rest")

#: The query parameters of ``GET /audit``.
AUDIT_PARAMETERS = frozenset({"initiator", "ipath", "interface", "outcome", "since", "until", "after", "limit"})
DEFAULT_AUDIT_LIMIT = 100

#: A user name as a certificate's CN may spell it (wecross.pki.authority), or ``anonymous``/``router``.
_INITIATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: One iPath part, or ``*``.
_IPATH_PART = re.compile(r"[A-Za-z0-9_-]{1,64}|\*")
#: An interface or operation name as records carry them (``call``, ``tx.commit``, ``txPrepare``, ``admin.peers``).
_INTERFACE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
#: A non-negative integer in ASCII digits ("²".isdigit() is true, and int() refuses it).
_DIGITS = re.compile(r"[0-9]{1,18}")
#: ``ok`` or an error code (wecross.errors).
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: A DNS host name (labels of letters, digits and '-').
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
#: A router id (a lower-case DNS name: wecross.pki.authority.validate_router_id says why).
_ROUTER_ID = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


def _bad(field: str, message: str) -> RouterError:
    return RouterError("bad_request", message, {"field": field})


# --- GET /whoami ---------------------------------------------------------------------------------------------------


def whoami(identity: Identity) -> dict[str, Any]:
    """The caller as this router's permissions see it: name, organisation, roles (the certificate's and this
    router's grants) and how it was proven (``tls`` or ``none``: see wecross.governance.identity.PROVEN)."""
    return {"name": identity.name, "org": identity.org, "roles": sorted(identity.roles), "proven": identity.proven}


# --- GET /audit ----------------------------------------------------------------------------------------------------


def _seconds(field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or len(text) > 32:
        raise _bad(field, f"{field} must be a time in seconds since the epoch (a non-negative number), "
                          f"got {text[:40]!r}")
    return value


def _ipath_filter(text: str) -> str:
    parts = text.split(".")
    if len(parts) > 3 or not all(_IPATH_PART.fullmatch(part) for part in parts):
        raise _bad("ipath", f"ipath must be an iPath or a prefix of one (zone, zone.chain, zone.chain.resource), "
                            f"each part a name or '*', got {text[:80]!r}")
    return text


def audit_query(query: Mapping[str, str]) -> AuditQuery:
    """The :class:`AuditQuery` for ``GET /audit``'s (already known, single-valued) query parameters; RouterError
    ``bad_request`` naming the parameter for any value out of its form, so nothing odd reaches SQLite."""
    initiator = query.get("initiator")
    if initiator is not None and _INITIATOR.fullmatch(initiator) is None:
        raise _bad("initiator", f"initiator must be a user name (1-64 letters, digits, '.', '_', '@' or '-'), "
                                f"got {initiator[:80]!r}")
    interface = query.get("interface")
    if interface is not None and _INTERFACE.fullmatch(interface) is None:
        raise _bad("interface", f"interface must be an interface name such as call or tx.commit, "
                                f"got {interface[:80]!r}")
    outcome = query.get("outcome")
    if outcome is not None and _OUTCOME.fullmatch(outcome) is None:
        raise _bad("outcome", f"outcome must be ok or an error code such as forbidden, got {outcome[:80]!r}")
    ipath = query.get("ipath")
    since = _seconds("since", query["since"]) if "since" in query else None
    until = _seconds("until", query["until"]) if "until" in query else None
    after = query.get("after", "0")
    if _DIGITS.fullmatch(after) is None:
        raise _bad("after", f"after must be a record's seq (a non-negative integer), got {after[:40]!r}")
    limit = query.get("limit", str(DEFAULT_AUDIT_LIMIT))
    if _DIGITS.fullmatch(limit) is None or not 1 <= int(limit) <= MAX_QUERY_LIMIT:
        raise _bad("limit", f"limit must be an integer from 1 to {MAX_QUERY_LIMIT}, got {limit[:40]!r}")
    return AuditQuery(initiator=initiator, ipath=_ipath_filter(ipath) if ipath is not None else None,
                      interface=interface, outcome=outcome, since=since, until=until, after_seq=int(after),
                      limit=int(limit))


def audit_page(records: Sequence[AuditRecord], head: Head) -> dict[str, Any]:
    """``GET /audit``'s answer: the records, and the head of the durable trail (to page on with ``after`` and to
    compare with a head published elsewhere)."""
    return {"records": [record.to_json() for record in records], "head": {"seq": head[0], "hash": head[1]}}


def read_audit(store: AuditStore | None, query: AuditQuery) -> Deferred[dict[str, Any]]:
    """The records matching ``query`` from ``store``; ``not_found`` for a router that keeps no trail."""
    if store is None:
        raise RouterError("not_found", "this router keeps no audit trail")
    return store.query(query).addCallback(lambda records: audit_page(records, store.head()))


# --- /admin/peers --------------------------------------------------------------------------------------------------


def _router_id(field: str, value: object) -> str:
    if not isinstance(value, str) or _ROUTER_ID.fullmatch(value) is None:
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise _bad(field, f"{field} must be a router id (a lower-case DNS name such as router-b), got {shown!r}")
    return value


def _address(value: object) -> str:
    if not isinstance(value, str) or len(value) > 300:
        raise _bad("address", "address must be a string host:port (at most 300 characters)")
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        try:
            ok_host = isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address)
        except ValueError:
            ok_host = False
    else:
        ok_host = _HOSTNAME.fullmatch(host) is not None
    if not sep or not ok_host or _DIGITS.fullmatch(port) is None or not 1 <= int(port) <= 65535:
        raise _bad("address", f"address must be host:port (a DNS name or IPv4 address, or [IPv6], and a port "
                              f"1-65535), got {value[:80]!r}")
    return value


def peer_to_add(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """``POST /admin/peers``'s body ``{"address": "host:port", "id": "router-x"}`` (id optional: the peer is then
    known by the certificate it presents) as (address, id)."""
    unknown = sorted(set(body) - {"address", "id"})
    if unknown:
        raise RouterError("bad_request", f"unknown field {unknown[0][:40]!r}; the body is "
                                         '{"address": "host:port", "id": "router-x"}', {"field": unknown[0][:40]})
    if "address" not in body:
        raise _bad("address", 'address is missing; the body is {"address": "host:port", "id": "router-x"}')
    peer_id = body.get("id")
    return _address(body["address"]), None if peer_id is None else _router_id("id", peer_id)


def peer_to_remove(segment: str) -> str:
    """``DELETE /admin/peers/{id}``: a router id, or the host:port it was added with."""
    if ":" in segment:
        return _address(segment)
    return _router_id("id", segment)


# --- /admin/accounts -----------------------------------------------------------------------------------------------

#: The query parameters of ``GET /admin/accounts``.
ACCOUNTS_PARAMETERS = frozenset({"user", "chain"})

#: Runs a blocking function off the reactor thread (``deferToThread`` in a router; inline in tests that want it).
Blocking = Callable[[Callable[[], Any]], "Deferred[Any]"]


def _keystore_refusal(field: str, exc: KeystoreError) -> RouterError:
    """A name the keystore refuses, as the client's error: ``bad_request`` naming the field (a reserved name such
    as ``anonymous`` included: the keystore calls that ``forbidden``, but here it is the admin's input at fault)."""
    return _bad(field, exc.message)


def _user(value: object) -> str:
    try:
        return check_user(value)
    except KeystoreError as exc:
        raise _keystore_refusal("user", exc) from None


def _chain(value: object) -> str:
    try:
        return check_chain(value)
    except KeystoreError as exc:
        raise _keystore_refusal("chain", exc) from None


def accounts_filter(query: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``GET /admin/accounts``'s (already known, single-valued) ``user`` and ``chain`` filters, each checked."""
    user, chain = query.get("user"), query.get("chain")
    return (None if user is None else _user(user)), (None if chain is None else _chain(chain))


def account_to_create(body: Mapping[str, Any]) -> tuple[str, str]:
    """``POST /admin/accounts``'s body ``{"user": "alice", "chain": "zone.chain"}`` as (user, chain)."""
    unknown = sorted(set(body) - {"user", "chain"})
    if unknown:
        raise RouterError("bad_request", f"unknown field {unknown[0][:40]!r}; the body is "
                                         '{"user": "alice", "chain": "zone.chain"}', {"field": unknown[0][:40]})
    for name in ("user", "chain"):
        if name not in body:
            raise _bad(name, f'{name} is missing; the body is {{"user": "alice", "chain": "zone.chain"}}')
    return _user(body["user"]), _chain(body["chain"])


def account_to_remove(user: str, chain: str) -> tuple[str, str]:
    """``DELETE /admin/accounts/{user}/{zone}.{chain}``'s two segments as (user, chain)."""
    return _user(user), _chain(chain)


def account_answer(info: AccountInfo) -> dict[str, Any]:
    """One account as answers show it: these four fields and nothing else."""
    return {"user": info.user, "chain": info.chain, "address": info.address, "created": info.created}


def _keystore_of(keystore: Keystore | None) -> Keystore:
    if keystore is None:
        raise RouterError("not_found", "this router keeps no keystore")
    return keystore


def _as_router_error(failure: Failure) -> Failure:
    """A KeystoreError from the worker thread as the router error of its code (its message names no secret)."""
    error = failure.value
    if isinstance(error, KeystoreError):
        if error.code == "storage_error":  # names the file and the KEK's source: the router's log, not the client
            _log.warn("keystore failure: {why}", why=untrusted(error.message))
            raise RouterError("storage_error", "the keystore could not be read or written (see the router's log)")
        raise RouterError(error.code, error.message[:300])
    return failure


def list_accounts(keystore: Keystore | None, blocking: Blocking, user: str | None,
                  chain: str | None) -> Deferred[dict[str, Any]]:
    """``GET /admin/accounts``: the stored accounts (of ``user``, on ``chain``), by user then chain."""
    store = _keystore_of(keystore)

    def work() -> dict[str, Any]:
        found = store.list(user)
        return {"accounts": [account_answer(info) for info in found if chain is None or info.chain == chain]}

    return blocking(work).addErrback(_as_router_error)


def create_account(keystore: Keystore | None, blocking: Blocking, user: str, chain: str) -> Deferred[dict[str, Any]]:
    """``POST /admin/accounts``: ``user``'s account on ``chain``, created unless it exists (idempotent)."""
    store = _keystore_of(keystore)
    return blocking(lambda: account_answer(store.create(user, chain))).addErrback(_as_router_error)


def remove_account(keystore: Keystore | None, blocking: Blocking, user: str, chain: str) -> Deferred[dict[str, Any]]:
    """``DELETE /admin/accounts/{user}/{chain}``: the removed account; ``not_found`` when there was none."""
    store = _keystore_of(keystore)

    def work() -> dict[str, Any]:
        removed = store.remove(user, chain)
        if removed is None:
            raise RouterError("not_found", f"{user} has no account on {chain} in this router's keystore")
        return account_answer(removed)

    return blocking(work).addErrback(_as_router_error)


# --- the audit trail of these endpoints ----------------------------------------------------------------------------


def record(store: AuditStore | None, identity: Identity, interface: str, method: str, args: list[Any],
           outcome: str) -> None:
    """Append one governance action to ``store`` (nothing without one). A record that cannot be written is
    logged, never the caller's failure: the answer does not wait for the disk."""
    if store is None:
        return
    try:
        store.append(initiator=identity.name, org=identity.org, entry_router=store.router_id, ipath="",
                     interface=interface, method=method, args=args, outcome=outcome).addErrback(_not_written)
    except Exception:
        _log.failure("the audit trail refused a record")


def _not_written(failure: Failure) -> None:
    _log.warn("audit record not written: {why}", why=untrusted(failure.getErrorMessage()))


def outcome_of(result: object) -> str:
    """``ok``, or the error code of a failure (``internal`` for anything that is not a RouterError)."""
    if isinstance(result, Failure):
        error = result.value
        return error.code if isinstance(error, RouterError) else "internal"
    if isinstance(result, RouterError):
        return result.code
    return "ok"


__all__ = ["ACCOUNTS_PARAMETERS", "AUDIT_PARAMETERS", "DEFAULT_AUDIT_LIMIT", "Blocking", "account_answer",
           "account_to_create", "account_to_remove", "accounts_filter", "audit_page", "audit_query", "create_account",
           "list_accounts", "outcome_of", "peer_to_add", "peer_to_remove", "read_audit", "record", "remove_account",
           "whoami"]
