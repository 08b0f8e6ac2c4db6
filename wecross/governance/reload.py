"""The ACL file, reloaded without a restart: :class:`PolicyFile` (sans-IO; a timer in the shell drives it).

Rules change while routers run (a new partner, a revoked grant), so the router re-reads its ACL file
(``acl_file`` in the router config) every few seconds through :meth:`PolicyFile.maybe_reload`. The file is read
through the ``read_bytes`` callable (and, when given, looked at through ``stat``), so the tests feed it bytes and
times and no reactor is involved.

Safety properties, each checked by tests/test_acl.py:

- an invalid new file never replaces a valid policy: the old policy stays, and the problems are reported once per
  distinct content (``ReloadResult.errors``, ``PolicyFile.errors``), not at every tick;
- a new policy starts with an empty decision memo, and the old policy's memo is cleared, so no decision of the
  old rules outlives them;
- a change is detected by content (SHA-256), not only by mtime and size: with ``stat``, an unchanged (mtime, size)
  skips the read, but the file is read again at least every ``recheck_after`` seconds, since a rewrite within the
  file system's timestamp granularity keeps both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from wecross.governance.acl import AclError, Decision, Policy, parse_acl_bytes
from wecross.governance.identity import Identity
from wecross.ipath import IPath

#: An ACL file is written by operators; anything bigger than this is a mistake (a log file named by accident).
MAX_ACL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReloadResult:
    #: "unchanged", "reloaded" (the new rules are in force) or "rejected" (the old rules stay; see errors).
    status: str
    errors: tuple[str, ...] = ()


UNCHANGED = ReloadResult("unchanged")


class PolicyFile:
    """The policy of one ACL file, kept current by :meth:`maybe_reload`.

    The constructor loads the file and raises AclError when it cannot be read or is invalid: a router must not
    start with rules it could not read.
    """

    def __init__(self, read_bytes: Callable[[], bytes], source: str, now: float, *,
                 stat: Callable[[], tuple[float, int]] | None = None, recheck_after: float = 30.0,
                 memo_size: int = 4096) -> None:
        self._read_bytes = read_bytes
        self._stat = stat
        self.source = source
        self.recheck_after = recheck_after
        self.memo_size = memo_size
        self._last_stat = stat() if stat is not None else None
        data = self._read()
        self.policy: Policy = parse_acl_bytes(data, source, memo_size)
        self._digest = hashlib.sha256(data).digest()
        #: The last content looked at (a digest) or the last read failure: what was already reported.
        self._seen: bytes | str = self._digest
        self._last_read = now
        self.loaded_at = now
        #: The problems of the newest version of the file, when it was rejected; () while the file is in force.
        self.errors: tuple[str, ...] = ()

    def _read(self) -> bytes:
        try:
            data = self._read_bytes()
        except OSError as exc:
            raise AclError(self.source, [("", f"cannot read: {exc.strerror or exc}")]) from None
        if len(data) > MAX_ACL_BYTES:
            raise AclError(self.source, [("", f"is {len(data)} bytes, more than the {MAX_ACL_BYTES} an ACL file "
                                              "may have")])
        return data

    def decide(self, identity: Identity, ipath: IPath | None, interface: str) -> Decision:
        return self.policy.decide(identity, ipath, interface)

    def maybe_reload(self, now: float) -> ReloadResult:
        """Re-read the file if it may have changed; swap the policy in if it did and is valid."""
        if self._stat is not None:
            try:
                current = self._stat()
            except OSError:
                current = None  # gone for a moment (an editor's rename): let the read below report it
            if current is not None and current == self._last_stat and now - self._last_read < self.recheck_after:
                return UNCHANGED
            self._last_stat = current
        self._last_read = now
        try:
            data = self._read()
        except AclError as exc:
            return self._reject(str(exc), exc.lines)
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            # Back to (or still) the content in force: nothing to load, and any earlier rejection is moot.
            self._seen = digest
            self.errors = ()
            return UNCHANGED
        try:
            policy = parse_acl_bytes(data, self.source, self.memo_size)
        except AclError as exc:
            return self._reject(digest, exc.lines)
        old, self.policy = self.policy, policy
        old.clear_memo()
        self._digest = self._seen = digest
        self.loaded_at = now
        self.errors = ()
        return ReloadResult("reloaded")

    def _reject(self, seen: bytes | str, errors: tuple[str, ...]) -> ReloadResult:
        if seen == self._seen:
            return UNCHANGED  # already reported; self.errors still says why the old rules are in force
        self._seen = seen
        self.errors = errors
        return ReloadResult("rejected", errors)
