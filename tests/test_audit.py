"""The audit trail: the hash chain catches every edit it can (and, with an anchored head, the ones it cannot alone),
records stay bounded, sealing to a regulator (EC and RSA), the SQLite store (filters, paging, durability, group
commit, failed writes leave no gap) and the ``wecross audit`` commands."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wecross.errors import RouterError
from wecross.governance import audit_cli
from wecross.governance.audit import (
    LIMITS,
    MAX_PATH,
    MAX_SEALED_ARGS,
    UNENCODABLE_DIGEST,
    AuditChain,
    AuditRecord,
    ClippedArgs,
    PendingMaker,
    Sealer,
    SealError,
    check_regulator_key,
    clip_path,
    digest_args,
    encode_record,
    genesis_hash,
    link_pending,
    open_sealed,
    pack_args,
    pending_entry,
    record_hash,
    verify_records,
)
from wecross.governance.audit_store import (
    AuditQuery,
    AuditStore,
    AuditStoreError,
    query_file,
    regulator_sealer,
    verify_file,
)
from wecross.pki.authority import create_root_ca, issue_client_cert, write_certificates, write_private_key

ROUTER = "router-a"
_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def fields(n: int, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "time": 1000.0 + n, "initiator": ("alice", "bob", "carol")[n % 3], "org": "bank-a", "entry_router": ROUTER,
        "ipath": ("payment.bank-a.asset", "payment.bank-b.asset", "court.ledger.cases")[n % 3],
        "interface": ("sendTransaction", "call")[n % 2], "method": "transfer", "args": ["bob", n],
        "outcome": "ok" if n % 4 else "forbidden", "tx_hash": f"0x{n:064x}", "block": n, "path": (ROUTER, "router-b"),
    }
    values.update(over)
    return values


def chain_of(n: int) -> list[AuditRecord]:
    chain = AuditChain(ROUTER)
    return [chain.append(**fields(i)) for i in range(1, n + 1)]


class ChainTest(SynchronousTestCase):
    def check(self, records: list[AuditRecord], broken: int | None, reason: str = "",
              head: tuple[int, str] | None = None) -> None:
        report = verify_records(records, ROUTER, head)
        self.assertEqual(report.first_broken, broken, report.reason)
        self.assertEqual(report.ok, broken is None)
        self.assertIn(reason, report.reason)

    def test_intact_chain_verifies(self) -> None:
        records = chain_of(10)
        self.assertEqual([r.seq for r in records], list(range(1, 11)))
        self.assertEqual(records[0].prev_hash, genesis_hash(ROUTER))
        report = verify_records(records, ROUTER)
        self.assertEqual((report.ok, report.count, report.first_broken), (True, 10, None))
        self.assertTrue(AuditChain(ROUTER).verify(records, (10, records[-1].hash)).ok)

    def test_altered_record(self) -> None:
        records = chain_of(10)
        records[4] = dataclasses.replace(records[4], outcome="ok", initiator="mallory")
        self.check(records, 5, "altered")
        report = verify_records(records, ROUTER)
        self.assertEqual(report.count, 4)

    def test_altered_record_with_its_hash_recomputed(self) -> None:
        records = chain_of(10)
        forged = dataclasses.replace(records[4], initiator="mallory")
        records[4] = dataclasses.replace(forged, hash=record_hash(5, forged, forged.prev_hash))
        self.check(records, 6, "does not link")

    def test_removed_record(self) -> None:
        records = chain_of(10)
        del records[4]
        self.check(records, 5, "missing")

    def test_reordered_records(self) -> None:
        records = chain_of(10)
        records[3], records[4] = records[4], records[3]
        self.check(records, 4, "out of order")

    def test_inserted_record(self) -> None:
        records = chain_of(10)
        # A copy of an earlier record slipped in after record 4.
        naive = [*records[:4], records[1], *records[4:]]
        self.check(naive, 5, "inserted")
        # A well-forged record: seq 5, linked to record 4 and correctly hashed; the genuine 5 then has no place.
        forged = dataclasses.replace(records[4], initiator="mallory", prev_hash=records[3].hash)
        forged = dataclasses.replace(forged, hash=record_hash(5, forged, forged.prev_hash))
        self.check([*records[:4], forged, *records[4:]], 6, "inserted")

    def test_cut_tail_needs_the_anchored_head(self) -> None:
        records = chain_of(10)
        head = (10, records[-1].hash)
        self.check(records[:8], None)  # what a hash chain alone cannot see
        self.check(records[:8], 9, "cut off", head)
        self.check(records, None, head=(8, records[7].hash))  # records appended after publication are fine

    def test_rewritten_history_needs_the_anchored_head(self) -> None:
        records = chain_of(10)
        head = (10, records[-1].hash)
        rewritten = AuditChain(ROUTER, head=(4, records[3].hash))
        forged = records[:4] + [rewritten.append(**fields(i, initiator="mallory")) for i in range(5, 11)]
        self.check(forged, None)
        self.check(forged, 10, "not the one anchored", head)

    def test_chain_is_bound_to_its_router(self) -> None:
        self.check(chain_of(3), None)
        report = verify_records(chain_of(3), "router-b")
        self.assertEqual(report.first_broken, 1)

    def test_chain_continues_from_a_head(self) -> None:
        records = chain_of(5)
        chain = AuditChain(ROUTER, head=(5, records[-1].hash))
        more = [chain.append(**fields(i)) for i in range(6, 9)]
        self.assertEqual(chain.head(), (8, more[-1].hash))
        self.check(records + more, None)

    def test_every_field_is_covered_by_the_hash(self) -> None:
        record = chain_of(1)[0]
        changes: dict[str, Any] = {"seq": 2, "time": 1.5, "initiator": "x", "org": None, "entry_router": "x",
                                   "ipath": "x", "interface": "x", "method": "x", "args_digest": "00" * 32,
                                   "outcome": "x", "tx_hash": None, "block": None, "path": (), "sealed": b"x",
                                   "prev_hash": "00" * 32}
        self.assertEqual(set(changes), {f.name for f in dataclasses.fields(AuditRecord)} - {"hash"})
        for name, value in changes.items():
            changed = dataclasses.replace(record, **{name: value})
            self.assertNotEqual(record_hash(changed.seq, changed, changed.prev_hash), record.hash, name)


def hostile(n: int) -> dict[str, Any]:
    """Fields that exercise every normalisation: clipping, surrogates, unencodable arguments, odd blocks and times."""
    big = "x" * 5000
    variants: list[dict[str, Any]] = [
        {}, {"initiator": big, "method": "é" * 300, "ipath": "\ud800" + big}, {"args": [1 << 70], "block": True},
        {"time": float("nan"), "block": 1 << 70, "org": None, "tx_hash": None}, {"path": [big] * 40},
        {"path": ["a", 7], "outcome": 5, "interface": ["not", "a", "string"]}, {"time": float("inf"), "block": -1},
    ]
    return fields(n, **variants[n % len(variants)])


def pending_of(values: dict[str, Any], seal: bool = False) -> Any:
    return pending_entry(values["time"], values["initiator"], values["org"], values["entry_router"],
                         values["ipath"], values["interface"], values["method"], values["args"], values["outcome"],
                         values["tx_hash"], values["block"], clip_path(values["path"]), seal)


class BatchTest(SynchronousTestCase):
    """The store chains a batch in one pass (``link_pending`` over ``pending_entry`` tuples) instead of through
    ``AuditChain``: the two must make the very same records, or the store would write records ``verify`` rejects."""

    def test_batch_makes_the_records_the_chain_makes(self) -> None:
        chain = AuditChain(ROUTER)
        expected = [chain.append(**hostile(i)) for i in range(1, 30)]
        rows = link_pending((0, genesis_hash(ROUTER)), [pending_of(hostile(i)) for i in range(1, 30)], None, tuple)
        self.assertEqual([AuditRecord(*row) for row in rows], expected)
        # continuing from a head, as after a restart or a failed batch
        more = [chain.append(**fields(i)) for i in range(30, 35)]
        rows = link_pending((29, expected[-1].hash), [pending_of(fields(i)) for i in range(30, 35)], None, tuple)
        self.assertEqual([AuditRecord(*row) for row in rows], more)

    def test_memoised_maker_makes_what_pending_entry_makes(self) -> None:
        maker = PendingMaker(seal=False, size=3)  # small, so that the memos fill and start over
        for _ in range(2):  # the second pass is answered from the memos
            for i in range(1, 30):
                values = hostile(i)
                made = maker.make(values["time"], values["initiator"], values["org"], values["entry_router"],
                                  values["ipath"], values["interface"], values["method"], values["args"],
                                  values["outcome"], values["tx_hash"], values["block"], clip_path(values["path"]))
                self.assertEqual(made, pending_of(values), i)
        self.assertLessEqual(max(len(maker._texts), len(maker._digests)), 3)

    def test_sealed_batch_verifies_and_opens(self) -> None:
        sealer = Sealer(_EC_KEY.public_key())
        entries = [pending_of(fields(i, args=["secret", i]), seal=True) for i in range(1, 6)]
        records = [AuditRecord(*row) for row in link_pending((0, genesis_hash(ROUTER)), entries, sealer, tuple)]
        self.assertTrue(verify_records(records, ROUTER).ok)
        self.assertEqual([open_sealed(_EC_KEY, r.sealed) for r in records], [["secret", i] for i in range(1, 6)])


class BoundsTest(SynchronousTestCase):
    def test_hostile_fields_are_clipped(self) -> None:
        big = "x" * 100_000
        record = AuditChain(ROUTER).append(
            time=float("nan"), initiator=big, org=big, entry_router=big, ipath=big, interface=big, method=big,
            args=[big] * 20, outcome=big, tx_hash=big, block=1 << 80, path=[big] * 1000)
        for name, limit in LIMITS.items():
            self.assertLessEqual(len(getattr(record, name)), limit, name)
        self.assertTrue(record.initiator.endswith("…"))
        self.assertEqual(len(record.path), MAX_PATH)
        self.assertIsNone(record.block)
        self.assertEqual(record.time, 0.0)
        self.assertLess(len(encode_record(record.seq, record, record.prev_hash)), 3 * 1024 + sum(LIMITS.values()) * 4)

    def test_unencodable_values_still_hash(self) -> None:
        record = AuditChain(ROUTER).append(**fields(1, initiator="\ud800alice", args=[1 << 70]))
        self.assertEqual(record.initiator, "\ufffdalice")
        self.assertEqual(record.args_digest, UNENCODABLE_DIGEST)
        self.assertTrue(verify_records([record], ROUTER).ok)

    def test_sealed_arguments_are_bounded(self) -> None:
        huge = ["y" * (2 * MAX_SEALED_ARGS)]
        sealer = Sealer(_EC_KEY.public_key())
        record = AuditChain(ROUTER, sealer=sealer).append(**fields(1, args=huge))
        assert record.sealed is not None
        self.assertLess(len(record.sealed), MAX_SEALED_ARGS + 200)
        opened = open_sealed(_EC_KEY, record.sealed)
        self.assertIsInstance(opened, ClippedArgs)
        self.assertEqual(opened.size, len(pack_args(huge) or b""))
        self.assertEqual(opened.head, (pack_args(huge) or b"")[:MAX_SEALED_ARGS])


class SealTest(SynchronousTestCase):
    def round_trip(self, private: Any) -> None:
        args = ["secret-counterparty-7731", 12345, {"memo": "top secret"}]
        record = AuditChain(ROUTER, sealer=Sealer(private.public_key())).append(**fields(1, args=args))
        assert record.sealed is not None
        self.assertEqual(open_sealed(private, record.sealed), args)
        self.assertEqual(digest_args(pack_args(open_sealed(private, record.sealed))), record.args_digest)
        # Nothing of the arguments shows in the blob or anywhere else in the record.
        self.assertNotIn(b"secret-counterparty", record.sealed)
        self.assertNotIn("secret-counterparty", json.dumps(record.to_json()))

    def test_ec_regulator(self) -> None:
        self.round_trip(_EC_KEY)

    def test_rsa_regulator(self) -> None:
        self.round_trip(_RSA_KEY)

    def test_another_key_cannot_open(self) -> None:
        for private, other in ((_EC_KEY, ec.generate_private_key(ec.SECP256R1())),
                               (_RSA_KEY, rsa.generate_private_key(public_exponent=65537, key_size=2048))):
            sealed = Sealer(private.public_key()).seal_args(pack_args(["x"]))
            with self.assertRaises(SealError):
                open_sealed(other, sealed)
        with self.assertRaises(SealError):  # a key of the other kind
            open_sealed(_RSA_KEY, Sealer(_EC_KEY.public_key()).seal_args(pack_args(["x"])))

    def test_altered_blob_does_not_open(self) -> None:
        sealed = bytearray(Sealer(_EC_KEY.public_key()).seal_args(pack_args(["x", 1])))
        for where in (1, 10, len(sealed) - 20, len(sealed) - 1):
            altered = bytearray(sealed)
            altered[where] ^= 1
            with self.assertRaises(SealError):
                open_sealed(_EC_KEY, bytes(altered))
        for short in (b"", b"\x01\x01\x00\x41", bytes(sealed[:40])):
            with self.assertRaises(SealError):
                open_sealed(_EC_KEY, short)

    def test_keys_rotate_and_old_seals_still_open(self) -> None:
        sealer = Sealer(_EC_KEY.public_key(), rotate_after=2)
        blobs = [sealer.seal_args(pack_args([i])) for i in range(5)]
        self.assertEqual(len({blob[4:69] for blob in blobs}), 3)  # ephemeral points: seals 1-2, 3-4, 5
        self.assertEqual([open_sealed(_EC_KEY, blob) for blob in blobs], [[i] for i in range(5)])

    def test_regulator_key_from_certificate_or_public_key_file(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        ca = create_root_ca("audit-test-ca")
        user = issue_client_cert(ca, "regulator", org="Regulator")
        cert_file = write_certificates(directory / "regulator.crt", [user.cert])
        sealed = regulator_sealer(cert_file).seal_args(pack_args(["x"]))
        self.assertEqual(open_sealed(user.key, sealed), ["x"])
        public = directory / "regulator.pub"
        public.write_bytes(_RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        self.assertEqual(open_sealed(_RSA_KEY, regulator_sealer(public).seal_args(pack_args([1]))), [1])
        key_file = write_private_key(directory / "regulator.key", _EC_KEY)
        for bad, message in ((key_file, "private key"), (directory / "missing.crt", "cannot read")):
            error = self.assertRaises(AuditStoreError, regulator_sealer, bad)
            self.assertIn(message, str(error))

    def test_weak_or_odd_regulator_keys_are_refused(self) -> None:
        for key in (ec.generate_private_key(ec.SECP384R1()).public_key(),
                    rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(), "a string"):
            self.assertRaises(SealError, check_regulator_key, key)


class StoreTest(TestCase):
    def store(self, path: Path | None = None, **kwargs: Any) -> AuditStore:
        store = AuditStore(path or Path(self.mktemp()) / "audit.sqlite", reactor, ROUTER, **kwargs)
        store.open()
        self.addCleanup(lambda: store.close() if store._db is not None else None)
        return store

    @defer.inlineCallbacks
    def test_round_trip_filters_and_paging(self) -> Any:
        store = self.store()
        written = yield defer.gatherResults([store.append(**fields(i)) for i in range(1, 31)])
        self.assertEqual([r.seq for r in written], list(range(1, 31)))
        everything = yield store.query(AuditQuery(limit=1000))
        self.assertEqual(everything, written)
        alice = yield store.query(AuditQuery(initiator="bob"))
        self.assertEqual([r.seq for r in alice], list(range(1, 31, 3)))
        page1 = yield store.query(AuditQuery(initiator="bob", limit=4))
        page2 = yield store.query(AuditQuery(initiator="bob", limit=4, after_seq=page1[-1].seq))
        self.assertEqual([r.seq for r in page1 + page2], list(range(1, 31, 3))[:8])
        refused = yield store.query(AuditQuery(outcome="forbidden", interface="sendTransaction"))
        self.assertEqual([r.seq for r in refused], [4, 8, 12, 16, 20, 24, 28])
        window = yield store.query(AuditQuery(since=1005.0, until=1008.0))
        self.assertEqual([r.seq for r in window], [5, 6, 7])
        prefix = yield store.query(AuditQuery(ipath="payment.bank-a"))
        self.assertEqual([r.seq for r in prefix], list(range(3, 31, 3)))
        pattern = yield store.query(AuditQuery(ipath="payment.*"))
        self.assertEqual(len(pattern), 20)
        pattern = yield store.query(AuditQuery(ipath="*.*.cases"))
        self.assertEqual([r.seq for r in pattern], list(range(2, 31, 3)))
        nothing = yield store.query(AuditQuery(ipath="payment.bank"))  # a prefix counts at part boundaries only
        self.assertEqual(nothing, [])

    @defer.inlineCallbacks
    def test_durable_across_close_and_reopen(self) -> Any:
        path = Path(self.mktemp()) / "audit.sqlite"
        first = AuditStore(path, reactor, ROUTER)
        first.open()
        records = yield defer.gatherResults([first.append(**fields(i)) for i in range(1, 6)])
        yield first.close()
        second = self.store(path)
        self.assertEqual(second.head(), (5, records[-1].hash))
        more = yield second.append(**fields(6))
        self.assertEqual((more.seq, more.prev_hash), (6, records[-1].hash))
        report = verify_file(path, second.head())
        self.assertEqual((report.ok, report.count), (True, 6))

    @defer.inlineCallbacks
    def test_burst_is_group_committed(self) -> Any:
        store = self.store()
        waiting = [store.append(**fields(i)) for i in range(1000)]
        records = yield defer.gatherResults(waiting)
        self.assertEqual(len(records), 1000)
        self.assertEqual(store.records_written, 1000)
        self.assertLessEqual(store.flushes, 2)  # all were queued within one reactor turn: one transaction
        self.assertEqual(store.head(), (1000, records[-1].hash))
        self.assertEqual(verify_file(store.path).count, 1000)

    @defer.inlineCallbacks
    def test_failed_batch_leaves_no_gap(self) -> Any:
        store = self.store()
        real_insert = store._insert
        calls = []

        def failing_once(db: sqlite3.Connection, records: list[Any]) -> None:
            calls.append(len(records))
            if len(calls) == 1:
                raise sqlite3.OperationalError("disk I/O error (test)")
            real_insert(db, records)

        store._insert = failing_once  # type: ignore[method-assign]
        lost = [store.append(**fields(i)) for i in range(1, 4)]
        store._flush()  # the failing batch is now on the store's thread...
        behind = [store.append(**fields(i)) for i in range(4, 6)]  # ...and these chain onto it meanwhile
        for d in lost:
            failure = yield self.assertFailure(d, RouterError)
            self.assertEqual(failure.code, "storage_error")
        kept = yield defer.gatherResults(behind)
        self.assertEqual([r.seq for r in kept], [1, 2])  # chained again onto what is on disk
        self.assertEqual(kept[0].prev_hash, genesis_hash(ROUTER))
        self.assertEqual(calls, [3, 2])
        self.assertEqual(store.failed_batches, 1)
        report = verify_file(store.path)
        self.assertEqual((report.ok, report.count), (True, 2))

    @defer.inlineCallbacks
    def test_commit_that_reports_failure_but_landed_counts_as_written(self) -> Any:
        store = self.store()
        real_insert = store._insert

        def lands_then_fails(db: sqlite3.Connection, records: list[Any]) -> None:
            real_insert(db, records)
            raise sqlite3.OperationalError("disk I/O error after the commit (test)")

        store._insert = lands_then_fails  # type: ignore[method-assign]
        records = yield defer.gatherResults([store.append(**fields(i)) for i in range(1, 4)])
        self.assertEqual(store.head(), (3, records[-1].hash))
        self.assertEqual(store.failed_batches, 0)

    @defer.inlineCallbacks
    def test_appends_beyond_the_bound_are_refused(self) -> Any:
        store = self.store(max_pending=2)
        ok = [store.append(**fields(i)) for i in range(2)]
        failure = yield self.assertFailure(store.append(**fields(3)), RouterError)
        self.assertEqual(failure.code, "overloaded")
        yield defer.gatherResults(ok)
        yield store.close()
        failure = yield self.assertFailure(store.append(**fields(4)), RouterError)
        self.assertEqual(failure.code, "storage_error")

    @defer.inlineCallbacks
    def test_table_refuses_update_and_delete(self) -> Any:
        store = self.store()
        yield store.append(**fields(1))
        db = sqlite3.connect(store.path)
        self.addCleanup(db.close)
        self.assertRaises(sqlite3.IntegrityError, db.execute, "UPDATE audit SET initiator = 'mallory'")
        self.assertRaises(sqlite3.IntegrityError, db.execute, "DELETE FROM audit")

    @defer.inlineCallbacks
    def test_open_refuses_another_routers_file_and_a_damaged_tail(self) -> Any:
        store = self.store()
        yield store.append(**fields(1))
        yield store.close()
        other = AuditStore(store.path, reactor, "router-b")
        error = self.assertRaises(AuditStoreError, other.open)
        self.assertIn("router-a", str(error))
        tamper(store.path, "UPDATE audit SET initiator = 'mallory' WHERE seq = 1")
        error = self.assertRaises(AuditStoreError, AuditStore(store.path, reactor, ROUTER).open)
        self.assertIn("damaged", str(error))

    @defer.inlineCallbacks
    def test_sealed_records_in_the_store(self) -> Any:
        store = self.store(sealer=Sealer(_RSA_KEY.public_key()))
        yield store.append(**fields(1, args=["for the regulator"]))
        (record,) = yield store.query(AuditQuery())
        self.assertEqual(open_sealed(_RSA_KEY, record.sealed), ["for the regulator"])
        self.assertTrue(verify_file(store.path).ok)

    @defer.inlineCallbacks
    def test_records_without_waiting_are_chained_and_durable(self) -> Any:
        store = self.store()
        for i in range(1, 30):
            values = hostile(i)
            del values["time"]
            self.assertTrue(store.record(**values, time=1000.0 + i))
        yield store.sync()
        chain = AuditChain(ROUTER)
        expected = [chain.append(**hostile(i)) for i in range(1, 30)]
        written = yield store.query(AuditQuery(limit=1000))
        self.assertEqual([(r.seq, r.initiator, r.path, r.args_digest) for r in written],
                         [(r.seq, r.initiator, r.path, r.args_digest) for r in expected])
        self.assertEqual(store.head(), (29, written[-1].hash))
        self.assertEqual(verify_file(store.path, store.head()).count, 29)

    @defer.inlineCallbacks
    def test_records_beyond_the_bound_are_refused_and_counted(self) -> Any:
        store = self.store(max_pending=2)
        self.assertEqual([store.record(**fields(i)) for i in range(3)], [True, True, False])
        self.assertEqual(store.refused, 1)
        yield store.sync()
        yield store.close()
        self.assertFalse(store.record(**fields(4)))
        self.assertEqual(store.refused, 2)
        self.assertEqual(verify_file(store.path).count, 2)

    @defer.inlineCallbacks
    def test_busy_trail_commits_once_per_interval(self) -> Any:
        clock = _FrozenSeconds(reactor)
        store = AuditStore(Path(self.mktemp()) / "audit.sqlite", clock, ROUTER, commit_interval=0.5)
        store.open()
        self.addCleanup(lambda: store.close() if store._db is not None else None)
        first = store.append(**fields(1))
        self.assertEqual(clock.delays, [0])  # an idle trail commits at the end of the turn
        store._flush()  # that commit has started...
        second = store.append(**fields(2))  # ...and this record queues up behind it
        yield first
        yield second
        self.assertEqual(clock.delays, [0, 0.5])  # so it waited for the interval since that commit started
        third = store.append(**fields(3))  # a caller that waited for each record finds the trail idle
        self.assertEqual(clock.delays, [0, 0.5, 0])
        yield third
        self.assertEqual(store.flushes, 3)



class _FrozenSeconds:
    """A reactor whose clock stands still and whose timers run at the next turn, recording the delays asked for."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.delays: list[float] = []

    def seconds(self) -> float:
        return 100.0

    def callLater(self, delay: float, f: Any, *args: Any) -> Any:
        self.delays.append(delay)
        return self.real.callLater(0, f, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def tamper(path: Path, *statements: str) -> None:
    """Edit an audit file the way someone with write access to it would: triggers dropped first."""
    db = sqlite3.connect(path)
    try:
        db.execute("DROP TRIGGER IF EXISTS audit_no_update")
        db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for statement in statements:
            db.execute(statement)
        db.commit()
    finally:
        db.close()


class FileTamperTest(TestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.path = Path(self.mktemp()) / "audit.sqlite"
        store = AuditStore(self.path, reactor, ROUTER)
        store.open()
        records = yield defer.gatherResults([store.append(**fields(i)) for i in range(1, 11)])
        self.head = (10, records[-1].hash)
        yield store.close()

    def broken_at(self, seq: int | None, *statements: str) -> str:
        tamper(self.path, *statements)
        report = verify_file(self.path, self.head)
        self.assertEqual(report.first_broken, seq, report.reason)
        return report.reason

    def test_untouched_file_verifies(self) -> None:
        self.assertEqual(verify_file(self.path, self.head).count, 10)

    def test_edited_field(self) -> None:
        self.assertIn("altered", self.broken_at(3, "UPDATE audit SET outcome = 'forbidden' WHERE seq = 3"))

    def test_deleted_row(self) -> None:
        self.assertIn("missing", self.broken_at(4, "DELETE FROM audit WHERE seq = 4"))

    def test_swapped_rows(self) -> None:
        self.broken_at(6, "UPDATE audit SET seq = -1 WHERE seq = 6", "UPDATE audit SET seq = 6 WHERE seq = 7",
                       "UPDATE audit SET seq = 7 WHERE seq = -1")

    def test_cut_tail(self) -> None:
        self.assertIn("cut off", self.broken_at(9, "DELETE FROM audit WHERE seq >= 9"))

    def test_malformed_row(self) -> None:
        self.assertIn("malformed", self.broken_at(5, "UPDATE audit SET path = 'not json' WHERE seq = 5"))

    def test_router_id_changed(self) -> None:
        self.broken_at(1, "UPDATE audit_meta SET value = 'router-b' WHERE key = 'router_id'")


class CliTest(TestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.dir = Path(self.mktemp())
        self.path = self.dir / "audit.sqlite"
        store = AuditStore(self.path, reactor, ROUTER, sealer=Sealer(_EC_KEY.public_key()))
        store.open()
        records = yield defer.gatherResults([store.append(**fields(i)) for i in range(1, 8)])
        yield store.append(**fields(8, initiator="eve\x1b[2J\u202e", args=["x"]))
        self.head = (7, records[-1].hash)
        yield store.close()
        self.key = write_private_key(self.dir / "regulator.key", _EC_KEY)

    def cli(self, *argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="wecross")
        audit_cli.add_subcommand(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(list(argv))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = audit_cli.run(args)
        return status, out.getvalue(), err.getvalue()

    def test_verify(self) -> None:
        status, out, _ = self.cli("audit", "verify", str(self.path))
        self.assertEqual((status, out.strip()), (0, "ok: 8 records, hash chain intact"))
        status, _, _ = self.cli("audit", "verify", str(self.path), "--head", f"{self.head[0]}:{self.head[1]}")
        self.assertEqual(status, 0)
        tamper(self.path, "UPDATE audit SET method = 'withdraw' WHERE seq = 3")
        status, out, _ = self.cli("audit", "verify", str(self.path))
        self.assertEqual(status, 1)
        self.assertIn("BROKEN at record 3", out)

    def test_verify_cut_tail_with_head(self) -> None:
        tamper(self.path, "DELETE FROM audit WHERE seq >= 6")
        self.assertEqual(self.cli("audit", "verify", str(self.path))[0], 0)
        status, out, _ = self.cli("audit", "verify", str(self.path), "--head", f"{self.head[0]}:{self.head[1]}")
        self.assertEqual(status, 1)
        self.assertIn("BROKEN at record 6", out)

    def test_show(self) -> None:
        status, out, _ = self.cli("audit", "show", str(self.path), "--initiator", "bob", "--limit", "2")
        lines = out.strip().splitlines()
        self.assertEqual(status, 0)
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].split()[0] == "1" and "bob@bank-a via router-a" in lines[0], lines[0])
        self.assertIn("next page: --after 4", lines[-1])
        status, out, _ = self.cli("audit", "show", str(self.path), "--json", "--outcome", "forbidden")
        self.assertEqual([json.loads(line)["seq"] for line in out.splitlines()], [4, 8])

    def test_show_escapes_control_characters(self) -> None:
        _, out, _ = self.cli("audit", "show", str(self.path), "--after", "7")
        self.assertNotIn("\x1b", out)
        self.assertNotIn("\u202e", out)
        self.assertIn("eve\\x1b[2J\\u202e", out)

    def test_open(self) -> None:
        status, out, _ = self.cli("audit", "open", "--key", str(self.key), str(self.path), "2")
        self.assertEqual((status, json.loads(out)), (0, ["bob", 2]))
        other = write_private_key(self.dir / "other.key", ec.generate_private_key(ec.SECP256R1()))
        status, _, err = self.cli("audit", "open", "--key", str(other), str(self.path), "2")
        self.assertEqual(status, 1)
        self.assertIn("does not open", err)
        status, _, err = self.cli("audit", "open", "--key", str(self.key), str(self.path), "99")
        self.assertEqual(status, 2)

    def test_unreadable_file(self) -> None:
        status, _, err = self.cli("audit", "verify", str(self.dir / "nothing.sqlite"))
        self.assertEqual(status, 2)
        self.assertIn("no such file", err)
        query_error = self.assertRaises(AuditStoreError, query_file, self.key, AuditQuery())
        self.assertIn("not a readable audit log", str(query_error))
