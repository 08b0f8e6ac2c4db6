"""Chain accounts (wecross.governance.keystore): keys sealed at rest and bound to their rows, created on first use,
the ``wecross accounts`` CLI, the ``[keystore]`` config, and on a real anvil the EVM stub signing each user's writes
to a generic contract with the user's own key (two users, two ``msg.sender``), while writes without a keystore and
to built-in contracts keep the router's key.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import test_evm_stub
from wecross.config import ConfigError, settings_from_dict
from wecross.evm.options import parse_amount, parse_options
from wecross.governance import accounts_cli
from wecross.governance.keystore import (
    KEK_ENV,
    KEYSTORE_FILE,
    AccountKey,
    Kek,
    Keystore,
    KeystoreError,
    address_of,
    check_chain,
    check_user,
    load_kek,
    parse_kek,
)

CHAIN = "payment.eth"


def keystore(work: Path, kek: Kek | None, **kwargs: Any) -> Keystore:
    return Keystore.in_data_dir(work, kek, **kwargs)


class Core(TestCase):
    """The sans-IO part: KEK parsing, names, sealing."""

    def test_kek_forms(self) -> None:
        raw = bytes(range(32))
        for text in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
                     base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode(),
                     f"  {raw.hex()}\n"):
            kek = parse_kek(text, "test")
            self.assertEqual(kek.unseal(kek.seal(b"x", b"a"), b"a"), b"x", text)
            self.assertTrue(Kek(raw).opens(kek.check_value()), text)

    def test_bad_kek_is_refused_without_echo(self) -> None:
        for text in ("", "00" * 31, "zz" * 32, base64.b64encode(b"s3cret-s3cret-s3cret").decode(), "é" * 44):
            with self.assertRaises(KeystoreError) as caught:
                parse_kek(text, "environment variable X")
            self.assertEqual(caught.exception.code, "bad_args")
            self.assertIn("environment variable X", caught.exception.message)
            self.assertIn(KEK_ENV, caught.exception.message)  # says how to set one
            if text:
                self.assertNotIn(text, caught.exception.message)

    def test_repr_hides_secrets(self) -> None:
        raw = bytes(range(1, 33))
        kek = Kek(raw, "a test")
        key = AccountKey(address_of(raw), raw)
        for shown in (repr(kek), str(kek), repr(key), str(key)):
            self.assertNotIn(raw.hex(), shown.lower())
            self.assertNotIn(repr(raw), shown)
        self.assertIn(key.address, repr(key))

    def test_names(self) -> None:
        self.assertEqual(check_user("alice@bank-a.example"), "alice@bank-a.example")
        for user, code in (("anonymous", "forbidden"), ("router", "forbidden"), ("router:router-a", "forbidden"),
                           ("", "bad_args"), ("a b", "bad_args"), ("x" * 65, "bad_args"), (7, "bad_args"),
                           ("\x1b[2J", "bad_args")):
            with self.assertRaises(KeystoreError, msg=repr(user)) as caught:
                check_user(user)
            self.assertEqual(caught.exception.code, code)
        self.assertEqual(check_chain("payment.eth"), "payment.eth")
        for chain in ("payment", "a.b.c", "pay ment.eth", None):
            with self.assertRaises(KeystoreError):
                check_chain(chain)

    def test_load_kek(self) -> None:
        work = Path(self.mktemp())
        work.mkdir()
        raw = os.urandom(32)
        self.assertIsNone(load_kek(None, {}))
        self.assertIsNotNone(load_kek(None, {KEK_ENV: raw.hex()}))
        key_file = work / "kek"
        key_file.write_text(base64.b64encode(raw).decode() + "\n")
        key_file.chmod(0o600)
        from_file = load_kek(key_file, {KEK_ENV: os.urandom(32).hex()})  # the file wins over the environment
        assert from_file is not None
        self.assertTrue(Kek(raw).opens(from_file.check_value()))
        if os.name == "posix":
            key_file.chmod(0o640)
            with self.assertRaises(KeystoreError) as caught:
                load_kek(key_file, {})
            self.assertIn("chmod 600", caught.exception.message)
        with self.assertRaises(KeystoreError):
            load_kek(work / "missing", {})


class AtRest(TestCase):
    def setUp(self) -> None:
        self.work = Path(self.mktemp())
        self.kek = Kek.generate()

    def test_raw_file_does_not_hold_the_key(self) -> None:
        store = keystore(self.work, self.kek)
        secret = store.signer("alice", CHAIN).secret
        store.close()
        raw = b"".join(path.read_bytes() for path in self.work.iterdir())  # the database, its WAL and shm files
        self.assertIn(b"alice", raw)  # the file is what we think it is
        for form in (secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret)):
            self.assertNotIn(form, raw)
        if os.name == "posix":
            self.assertEqual((self.work / KEYSTORE_FILE).stat().st_mode & 0o077, 0)

    def test_other_kek_fails(self) -> None:
        keystore(self.work, self.kek).create("alice", CHAIN)
        with self.assertRaises(KeystoreError) as caught:
            keystore(self.work, Kek.generate(), chain_types=None)
        self.assertEqual(caught.exception.code, "storage_error")
        self.assertIn("does not open it", caught.exception.message)
        again = keystore(self.work, self.kek)  # the right one still does
        self.assertEqual(len(again.list()), 1)

    def test_swapped_rows_fail(self) -> None:
        store = keystore(self.work, self.kek)
        alice, bob = store.create("alice", CHAIN), store.create("bob", CHAIN)
        store.close()
        db = sqlite3.connect(str(self.work / KEYSTORE_FILE))
        sealed = dict(db.execute("SELECT user, sealed FROM accounts"))
        db.execute("UPDATE accounts SET sealed = ? WHERE user = 'alice'", (sealed["bob"],))
        db.execute("UPDATE accounts SET sealed = ? WHERE user = 'bob'", (sealed["alice"],))
        db.commit()
        db.close()
        store = keystore(self.work, self.kek)
        for user in ("alice", "bob"):
            with self.assertRaises(KeystoreError) as caught:
                store.signer(user, CHAIN)
            self.assertEqual(caught.exception.code, "storage_error")
            self.assertIn("does not authenticate", caught.exception.message)
        self.assertEqual({a.address for a in store.list()}, {alice.address, bob.address})

    def test_edited_address_or_moved_row_fails(self) -> None:
        store = keystore(self.work, self.kek)
        store.create("alice", CHAIN)
        store.create("bob", CHAIN)
        db = sqlite3.connect(str(self.work / KEYSTORE_FILE))
        db.execute("UPDATE accounts SET address = ? WHERE user = 'alice'", (address_of(os.urandom(32)),))
        db.execute("UPDATE accounts SET chain = 'payment.other' WHERE user = 'bob'")
        db.commit()
        db.close()
        for user, chain in (("alice", CHAIN), ("bob", "payment.other")):
            with self.assertRaises(KeystoreError):
                store.signer(user, chain)

    def test_without_kek_lists_but_creates_nothing(self) -> None:
        keystore(self.work, self.kek).create("alice", CHAIN)
        locked = keystore(self.work, None)
        self.assertFalse(locked.unlocked)
        self.assertEqual([a.user for a in locked.list()], ["alice"])
        for attempt in (lambda: locked.create("bob", CHAIN), lambda: locked.account("bob", CHAIN),
                        lambda: locked.signer("alice", CHAIN)):
            with self.assertRaises(KeystoreError) as caught:
                attempt()
            self.assertEqual(caught.exception.code, "unavailable")
            self.assertIn(KEK_ENV, caught.exception.message)
            self.assertIn("key_file", caught.exception.message)
        self.assertEqual(locked.account("alice", CHAIN), locked.list()[0].address)  # existing: no key needed

    def test_rotate_kek(self) -> None:
        store = keystore(self.work, self.kek)
        before = {user: store.signer(user, CHAIN) for user in ("alice", "bob")}
        new = Kek.generate()
        self.assertEqual(store.rotate_kek(new), 2)
        self.assertEqual(store.signer("alice", CHAIN), before["alice"])  # this instance uses the new KEK
        store.close()
        with self.assertRaises(KeystoreError):
            keystore(self.work, self.kek)
        rotated = keystore(self.work, new)
        self.assertEqual({user: rotated.signer(user, CHAIN) for user in before}, before)


class FirstUse(TestCase):
    def setUp(self) -> None:
        self.work = Path(self.mktemp())
        self.kek = Kek.generate()

    def test_created_on_first_use_then_kept(self) -> None:
        store = keystore(self.work, self.kek, chain_types={CHAIN: "evm", "payment.bank-a": "embedded"})
        self.assertEqual(store.list(), [])
        address = store.account("alice", CHAIN)
        self.assertEqual(store.account("alice", CHAIN), address)
        key = store.signer("alice", CHAIN)
        self.assertEqual((key.address, address_of(key.secret)), (address, address))
        self.assertNotEqual(store.account("bob", CHAIN), address)
        self.assertEqual(store.account("alice", "payment.bank-a"), "alice")  # embedded: the identity itself
        self.assertEqual([(a.user, a.chain) for a in store.list()], [("alice", CHAIN), ("bob", CHAIN)])
        self.assertEqual([a.user for a in store.list("bob")], ["bob"])
        with self.assertRaises(KeystoreError) as caught:
            store.account("alice", "payment.elsewhere")
        self.assertEqual(caught.exception.code, "unknown_chain")
        with self.assertRaises(KeystoreError) as caught:
            store.signer("alice", "payment.bank-a")
        self.assertEqual(caught.exception.code, "unsupported")
        with self.assertRaises(KeystoreError) as caught:
            store.account("anonymous", CHAIN)
        self.assertEqual(caught.exception.code, "forbidden")

    def test_admin_only_creation(self) -> None:
        store = keystore(self.work, self.kek, create_on_first_use=False)
        for attempt in (lambda: store.account("alice", CHAIN), lambda: store.signer("alice", CHAIN)):
            with self.assertRaises(KeystoreError) as caught:
                attempt()
            self.assertEqual(caught.exception.code, "forbidden")
            self.assertIn("wecross accounts create", caught.exception.message)
        created = store.create("alice", CHAIN)
        self.assertEqual(store.account("alice", CHAIN), created.address)
        self.assertEqual(store.remove("alice", CHAIN), created)
        self.assertIsNone(store.remove("alice", CHAIN))

    def test_two_creators_end_with_one_key(self) -> None:
        first, second = keystore(self.work, self.kek), keystore(self.work, self.kek)
        self.assertEqual(first.create("alice", CHAIN).address, second.create("alice", CHAIN).address)
        self.assertEqual(first.signer("alice", CHAIN), second.signer("alice", CHAIN))


class Cli(TestCase):
    def setUp(self) -> None:
        self.work = Path(self.mktemp())
        self.work.mkdir()
        self.kek_file = self.work / "kek"
        self.kek_file.write_text(os.urandom(32).hex())
        self.kek_file.chmod(0o600)
        self.data = self.work / "data"

    def cli(self, *argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="wecross")
        accounts_cli.add_subcommand(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["accounts", *argv])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = args.func(args)
        return status, out.getvalue(), err.getvalue()

    def test_create_list_remove(self) -> None:
        where = ["--data-dir", str(self.data)]
        status, _, err = self.cli("list", *where)
        self.assertEqual(status, 1)
        self.assertIn("holds no keystore", err)
        self.assertFalse(self.data.exists())  # listing creates nothing
        status, out, _ = self.cli("create", *where, "--key-file", str(self.kek_file), "--user", "alice",
                                  "--chain", CHAIN)
        self.assertEqual(status, 0)
        self.assertIn("created: alice on payment.eth: 0x", out)
        status, again, _ = self.cli("create", *where, "--key-file", str(self.kek_file), "--user", "alice",
                                    "--chain", CHAIN)
        self.assertIn("exists", again)
        status, listing, _ = self.cli("list", *where)
        self.assertEqual(status, 0)
        status, as_json, _ = self.cli("list", *where, "--user", "alice", "--json")
        row = json.loads(as_json)
        self.assertEqual((row["user"], row["chain"]), ("alice", CHAIN))
        self.assertIn(row["address"], listing)
        self.assertIn(row["address"], out)
        secret = keystore(self.data, load_kek(self.kek_file)).signer("alice", CHAIN).secret.hex()
        for shown in (out, again, listing, as_json):
            self.assertNotIn(secret, shown.lower())
        status, out, _ = self.cli("remove", *where, "--user", "alice", "--chain", CHAIN)
        self.assertEqual(status, 0)
        self.assertIn(row["address"], out)
        self.assertEqual(self.cli("list", *where)[1], "no accounts\n")
        status, _, err = self.cli("remove", *where, "--user", "alice", "--chain", CHAIN)
        self.assertEqual(status, 1)

    def test_create_without_kek_says_how(self) -> None:
        saved = os.environ.pop(KEK_ENV, None)
        self.addCleanup(lambda: saved is None or os.environ.__setitem__(KEK_ENV, saved))
        status, _, err = self.cli("create", "--data-dir", str(self.data), "--user", "alice", "--chain", CHAIN)
        self.assertEqual(status, 1)
        self.assertIn(KEK_ENV, err)
        status, _, err = self.cli("create", "--data-dir", str(self.data), "--key-file", str(self.kek_file),
                                  "--user", "anonymous", "--chain", CHAIN)
        self.assertEqual(status, 1)
        self.assertIn("no chain account", err)

    def test_rotate(self) -> None:
        where = ["--data-dir", str(self.data), "--key-file", str(self.kek_file)]
        self.cli("create", *where, "--user", "alice", "--chain", CHAIN)
        new = self.work / "new.kek"
        new.write_text(base64.b64encode(os.urandom(32)).decode())
        new.chmod(0o600)
        status, out, _ = self.cli("rotate-kek", *where, "--new-key-file", str(new))
        self.assertEqual(status, 0, out)
        self.assertIn("re-sealed 1 keys", out)
        self.assertEqual(self.cli("create", *where, "--user", "bob", "--chain", CHAIN)[0], 1)  # old KEK refused
        self.assertEqual(self.cli("create", "--data-dir", str(self.data), "--key-file", str(new),
                                  "--user", "bob", "--chain", CHAIN)[0], 0)


class Configuration(TestCase):
    def document(self, **keystore_table: Any) -> dict[str, Any]:
        return {"router": {"id": "router-a", "zones": ["payment"]},
                "p2p": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"},
                "keystore": keystore_table}

    def test_keystore_section(self) -> None:
        base = Path(self.mktemp()).resolve()
        settings = settings_from_dict(self.document(key_file="kek", create_on_first_use=False), base / "r.toml",
                                      check_files=False)
        self.assertEqual(settings.keystore.key_file, base / "kek")
        self.assertFalse(settings.keystore.create_on_first_use)
        default = settings_from_dict(self.document(), base / "r.toml", check_files=False).keystore
        self.assertEqual((default.key_file, default.create_on_first_use), (None, True))
        for table, fragment in (({"colour": 1}, "colour"), ({"create_on_first_use": "yes"}, "create_on_first_use")):
            with self.assertRaises(ConfigError) as caught:
                settings_from_dict(self.document(**table), base / "r.toml", check_files=False)
            self.assertIn(fragment, str(caught.exception))

    def test_stub_options(self) -> None:
        self.assertEqual(parse_amount("0.1 ether"), 10**17)
        self.assertEqual(parse_amount("50 gwei"), 50 * 10**9)
        for bad in ("0.5 wei", "-1 ether", "lots", "1e999999 ether", True, 1.5):
            self.assertIsNone(parse_amount(bad), bad)
        base = {"rpc": "http://127.0.0.1:1", "private_key_env": "X"}
        parsed = parse_options("stub p.e", {**base, "per_user_accounts": True, "fund_new_accounts": "0.1 ether"})
        self.assertEqual((parsed.per_user_accounts, parsed.fund_new_accounts), (True, 10**17))
        for options, fragment in (({**base, "per_user_accounts": "yes"}, "'per_user_accounts'"),
                                  ({**base, "fund_new_accounts": "1 ether"}, "which is off"),
                                  ({**base, "per_user_accounts": True, "fund_new_accounts": "much"},
                                   "'fund_new_accounts'"),
                                  ({"rpc": base["rpc"], "per_user_accounts": True, "fund_new_accounts": 5},
                                   "router's key")):
            with self.assertRaises(ValueError) as caught:
                parse_options("stub p.e", options)
            self.assertIn(fragment, str(caught.exception))


# -- on a real anvil --------------------------------------------------------------------------------------------

CLAIMS_SOURCE = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A key belongs to the account that claimed it first: only that account may claim it again.
contract Claims {
    mapping(string => address) private owners;
    event Claimed(string key, address owner);

    function claim(string calldata key) external {
        address owner = owners[key];
        require(owner == address(0) || owner == msg.sender, "taken by another account");
        owners[key] = msg.sender;
        emit Claimed(key, msg.sender);
    }

    function ownerOf(string calldata key) external view returns (address) {
        return owners[key];
    }
}
"""

_compiled: dict[str, Any] = {}


def claims_artifact() -> dict[str, Any]:
    """Claims compiled once per test run with the repository's solcjs (about 1.5 s)."""
    if not _compiled:
        from wecross.evm.contracts.build import EVM_VERSION, OPTIMIZER_RUNS, find_solcjs

        request = {"language": "Solidity", "sources": {"Claims.sol": {"content": CLAIMS_SOURCE}},
                   "settings": {"optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS}, "evmVersion": EVM_VERSION,
                                "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}}}
        done = subprocess.run([str(find_solcjs()), "--standard-json"], input=json.dumps(request),
                              capture_output=True, text=True, check=False, timeout=120)
        answer = json.loads(done.stdout[done.stdout.index("{"):])
        output = answer["contracts"]["Claims.sol"]["Claims"]
        _compiled.update(abi=output["abi"], bytecode="0x" + output["evm"]["bytecode"]["object"])
    return dict(_compiled)


class PerUserWrites(test_evm_stub.EvmStubBase):
    """The EVM stub with ``per_user_accounts``: the built-in kv and a generic ``contract`` resource (Claims).

    test_evm_stub is imported as a module, not its classes, so that trial does not run its tests here again."""

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        artifact = self.work / "Claims.json"
        artifact.write_text(json.dumps(claims_artifact()))
        self.claims = {"name": "claims", "kind": "contract", "abi": str(artifact)}
        self.store = Keystore.in_data_dir(self.work / "router", Kek.generate(),
                                          chain_types={"payment.eth": "evm"})
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def with_keystore(self, **options: Any) -> Any:
        stub = self.build(options=self.options(per_user_accounts=True, **options),
                          resources=[*self.resources(), self.claims])
        stub.use_keystore(self.store)
        yield stub.start()
        self.addCleanup(stub.stop)
        return stub

    @defer.inlineCallbacks
    def test_two_users_two_senders(self) -> Any:
        stub = yield self.with_keystore(fund_new_accounts="0.1 ether")
        claims = stub.resource("claims")
        alice = yield claims.send_transaction("claim", ["k1"], "alice")
        bob = yield claims.send_transaction("claim", ["k2"], "bob")
        addresses = {user: self.store.account(user, CHAIN) for user in ("alice", "bob")}
        self.assertEqual(alice.receipt["from"], addresses["alice"])
        self.assertEqual(bob.receipt["from"], addresses["bob"])
        self.assertNotEqual(addresses["alice"], addresses["bob"])
        self.assertNotIn(self.account.address, addresses.values())
        owner = yield claims.call("ownerOf", ["k1"], "carol")
        self.assertEqual(owner.output, addresses["alice"])  # msg.sender was alice's own account
        # the contract enforces its own rule per user: bob cannot take alice's key, alice can claim it again
        yield self.assert_stub_error(claims.send_transaction("claim", ["k1"], "bob"), "reverted",
                                     "taken by another account")
        yield claims.send_transaction("claim", ["k1"], "alice")
        for user in ("alice", "bob"):  # funded once each (0.1 ether), less the gas of their writes
            balance = int(self.anvil.rpc("eth_getBalance", [addresses[user], "latest"]), 16)
            self.assertTrue(0 < balance < 10**17, balance)
        # the built-in contracts keep the router's key, whoever the sender
        written = yield stub.resource("hello").set_data("k", "v", "alice")
        self.assertEqual(written.receipt["from"], self.account.address)

    @defer.inlineCallbacks
    def test_concurrent_writes_of_several_accounts(self) -> Any:
        """Nonces are tracked per account: writes of two users and the router, all at once, every one mined."""
        stub = yield self.with_keystore(fund_new_accounts="0.1 ether", threads=6)
        claims, hello = stub.resource("claims"), stub.resource("hello")
        writes = [claims.send_transaction("claim", [f"{user}-{n}"], user) for n in range(4) for user in ("a", "b")]
        writes += [hello.set_data(f"k{n}", "v", "a") for n in range(4)]
        results = yield defer.gatherResults(writes, consumeErrors=True)
        senders = [result.receipt["from"] for result in results]
        self.assertEqual(senders.count(self.store.account("a", CHAIN)), 4)
        self.assertEqual(senders.count(self.store.account("b", CHAIN)), 4)
        self.assertEqual(senders.count(self.account.address), 4)

    @defer.inlineCallbacks
    def test_nobody_in_particular_has_no_account(self) -> Any:
        stub = yield self.with_keystore(fund_new_accounts=10**16)
        claims = stub.resource("claims")
        for sender in ("anonymous", "router:router-a"):
            yield self.assert_stub_error(claims.send_transaction("claim", ["k"], sender), "forbidden",
                                         "no chain account")
        self.assertEqual(self.store.list(), [])

    @defer.inlineCallbacks
    def test_unfunded_account_says_so(self) -> Any:
        stub = yield self.with_keystore()
        error = yield self.assert_stub_error(stub.resource("claims").send_transaction("claim", ["k"], "alice"),
                                             "insufficient_funds", "fund_new_accounts")
        self.assertIn(self.store.account("alice", CHAIN), error.message)

    @defer.inlineCallbacks
    def test_without_keystore_the_router_signs(self) -> Any:
        stub = yield self.started(resources=[*self.resources(), self.claims])
        claims = stub.resource("claims")
        alice = yield claims.send_transaction("claim", ["k"], "alice")
        bob = yield claims.send_transaction("claim", ["k"], "bob")  # same msg.sender: the contract cannot tell
        self.assertEqual({alice.receipt["from"], bob.receipt["from"]}, {self.account.address})
        owner = yield claims.call("ownerOf", ["k"], "alice")
        self.assertEqual(owner.output, self.account.address)

    @defer.inlineCallbacks
    def test_per_user_needs_an_unlocked_keystore(self) -> Any:
        options = self.options(per_user_accounts=True)
        stub = self.build(options=options, resources=[self.claims])
        error = yield self.assertFailure(stub.start(), ValueError)
        self.assertIn("needs the router's keystore", str(error))
        locked = Keystore.in_data_dir(self.work / "locked", None)
        self.addCleanup(locked.close)
        stub = self.build(options=options, resources=[self.claims])
        stub.use_keystore(locked)
        error = yield self.assertFailure(stub.start(), ValueError)
        self.assertIn("no key-encryption key", str(error))
