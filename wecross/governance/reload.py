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

from collections.abc import Callable

from wecross.governance.acl import AclError, Decision, Policy, parse_acl_bytes
from wecross.governance.identity import Identity
from wecross.ipath import IPath
from wecross.reloading import UNCHANGED, ReloadingFile, ReloadResult

__all__ = ["MAX_ACL_BYTES", "UNCHANGED", "PolicyFile", "ReloadResult"]

#: An ACL file is written by operators; anything bigger than this is a mistake (a log file named by accident).
MAX_ACL_BYTES = 4 * 1024 * 1024


class PolicyFile(ReloadingFile[Policy]):
    """The policy of one ACL file, kept current by :meth:`maybe_reload` (the rules of wecross.reloading).

    The constructor loads the file and raises AclError when it cannot be read or is invalid: a router must not
    start with rules it could not read.
    """

    problem_types = (AclError,)

    def __init__(self, read_bytes: Callable[[], bytes], source: str, now: float, *,
                 stat: Callable[[], tuple[float, int]] | None = None, recheck_after: float = 30.0,
                 memo_size: int = 4096) -> None:
        super().__init__(read_bytes, source, now, stat=stat, recheck_after=recheck_after)
        self.memo_size = memo_size
        self._start(now)

    @property
    def policy(self) -> Policy:
        return self.value

    def _read(self) -> bytes:
        try:
            data = self._read_bytes()
        except OSError as exc:
            raise AclError(self.source, [("", f"cannot read: {exc.strerror or exc}")]) from None
        if len(data) > MAX_ACL_BYTES:
            raise AclError(self.source, [("", f"is {len(data)} bytes, more than the {MAX_ACL_BYTES} an ACL file "
                                              "may have")])
        return data

    def _parse(self, data: bytes) -> Policy:
        return parse_acl_bytes(data, self.source, self.memo_size)

    def _lines(self, problem: Exception) -> tuple[str, ...]:
        assert isinstance(problem, AclError)
        return problem.lines

    def _replaced(self, old: Policy) -> None:
        old.clear_memo()

    def decide(self, identity: Identity, ipath: IPath | None, interface: str) -> Decision:
        return self.policy.decide(identity, ipath, interface)
