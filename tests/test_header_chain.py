"""The abstract chain's sans-IO core: headers trusted only by linkage to a checkpoint (genesis or a later block),
optionally with a quorum of routers, and what each refusal is called."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from wecross.chain.headers import HeaderChain, HeaderError
from wecross.config import ConfigError


def chain_of(n: int, fork: str = "") -> list[dict[str, Any]]:
    """n linked headers whose hash is sha256(number, prev, fork): enough for linkage tests (rehash is off)."""
    out: list[dict[str, Any]] = []
    prev = "00" * 32
    for number in range(n):
        digest = hashlib.sha256(f"{number}/{prev}/{fork}".encode()).hexdigest()
        out.append({"number": number, "hash": digest, "prev_hash": prev})
        prev = digest
    return out


class HeaderChainTests(SynchronousTestCase):
    def test_first_sight_pins_the_genesis_and_links_the_rest(self) -> None:
        headers = chain_of(5)
        chain = HeaderChain("z.c")
        self.assertEqual(chain.height, -1)
        self.assertEqual(chain.offer(list(reversed(headers)), "r1"), 5)  # any order
        self.assertEqual(chain.height, 4)
        self.assertEqual(chain.checkpoint, headers[0]["hash"])
        self.assertEqual(chain.pinned_by, "first sight")
        with self.assertRaises(HeaderError) as caught:
            chain.offer(chain_of(5, fork="x")[:1], "r2")
        self.assertEqual(caught.exception.check, "header_mismatch")

    def test_configured_genesis_refuses_another_chain(self) -> None:
        chain = HeaderChain("z.c", checkpoint=chain_of(1)[0]["hash"])
        with self.assertRaises(HeaderError) as caught:
            chain.offer(chain_of(3, fork="other"), "r1")
        self.assertEqual(caught.exception.check, "checkpoint")

    def test_a_header_that_does_not_link_is_refused(self) -> None:
        chain = HeaderChain("z.c")
        chain.offer(chain_of(2), "r1")
        bad = dict(chain_of(3)[2], prev_hash="11" * 32)
        with self.assertRaises(HeaderError) as caught:
            chain.offer([bad], "r1")
        self.assertEqual(caught.exception.check, "link")

    def test_quorum_needs_distinct_routers(self) -> None:
        chain = HeaderChain("z.c", quorum=2)
        self.assertEqual(chain.offer(chain_of(2), "r1"), 0)
        self.assertEqual(chain.offer(chain_of(2), "r1"), 0)
        self.assertEqual(chain.offer(chain_of(2), "r2"), 2)
        self.assertEqual(chain.headers[1].sources, frozenset({"r1", "r2"}))

    def test_checkpoint_above_the_genesis(self) -> None:
        headers = chain_of(1000)
        pinned = headers[990]
        chain = HeaderChain("z.eth", checkpoint=pinned["hash"], checkpoint_number=990)
        self.assertEqual(chain.height, 989)
        self.assertEqual(chain.offer(headers[:5], "r1"), 0)  # below the checkpoint: ignored, never trusted
        self.assertEqual(chain.offer(headers[990:995], "r1"), 5)
        self.assertEqual((chain.height, chain.hash_of(994)), (994, headers[994]["hash"]))
        self.assertIsNone(chain.hash_of(3))
        other = chain_of(1000, fork="f")
        wrong = HeaderChain("z.eth", checkpoint=pinned["hash"], checkpoint_number=990)
        with self.assertRaises(HeaderError) as caught:
            wrong.offer(other[990:992], "r1")
        self.assertEqual(caught.exception.check, "checkpoint")
        self.assertEqual(chain.describe()["checkpoint_number"], 990)
        self.assertRaises(ValueError, HeaderChain, "z.eth", checkpoint_number=5)

    def test_load_resumes_from_the_checkpoint(self) -> None:
        headers = chain_of(20)
        first = HeaderChain("z.eth", checkpoint=headers[10]["hash"], checkpoint_number=10)
        first.offer(headers[10:15], "r1")
        again = HeaderChain("z.eth", checkpoint=headers[10]["hash"], checkpoint_number=10)
        again.load(list(first.headers.values()))
        self.assertEqual(again.height, 14)


class ConfigCheckpointTests(SynchronousTestCase):
    def load(self, trust: str) -> Any:
        from tests import support
        from wecross.config import load_settings

        certs = support.pki()
        path = self.mktemp() + ".toml"
        with open(path, "w") as f:
            f.write(f"""
[router]
id = "router-a"
zones = ["z"]
data_dir = "/tmp/x"
[p2p]
ca = "{certs / 'ca.crt'}"
cert = "{certs / 'router-a' / 'chain.pem'}"
key = "{certs / 'router-a' / 'key.pem'}"
[trust]
{trust}
""")
        return load_settings(path)

    def test_genesis_and_later_checkpoints(self) -> None:
        settings = self.load('checkpoints = { "z.a" = "AB12", "z.eth" = { number = 17000000, hash = "0xcd34" } }')
        self.assertEqual(settings.trust.checkpoints, {"z.a": "ab12", "z.eth": "17000000:cd34"})
        with self.assertRaises(ConfigError):
            self.load('checkpoints = { "z.eth" = { number = -1, hash = "cd34" } }')
        with self.assertRaises(ConfigError):
            self.load('checkpoints = { "z.eth" = { number = 5 } }')
