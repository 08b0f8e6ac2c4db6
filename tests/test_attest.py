"""wecross.attest on its own: signatures and pairwise MACs, what each accepts and refuses."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.trial.unittest import TestCase

from wecross import attest


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class Bodies(TestCase):
    def test_each_kind_has_its_own_context(self) -> None:
        request = attest.request_body(b"\x01" * 16, "a", "b", 1, "call", "z.c.r", "m", [1], "alice")
        result = attest.result_body(b"\x01" * 16, "a", "b", {"output": 1})
        header = attest.header_body("z.c", {"number": 1})
        self.assertTrue(request.startswith(attest.REQUEST_CONTEXT))
        self.assertTrue(result.startswith(attest.RESULT_CONTEXT))
        self.assertTrue(header.startswith(attest.HEADER_CONTEXT))

    def test_fields_relays_add_are_not_covered_and_the_others_are(self) -> None:
        base = {"output": 1, "tx_hash": "ab"}
        body = attest.result_body(b"\x01" * 16, "a", "b", base)
        relayed = dict(base, path=["a", "x", "b"], router="x", verified={}, header_sig=b"s", attestation=b"t")
        self.assertEqual(attest.result_body(b"\x01" * 16, "a", "b", relayed), body)
        self.assertNotEqual(attest.result_body(b"\x01" * 16, "a", "b", dict(base, output=2)), body)
        self.assertNotEqual(attest.result_body(b"\x02" * 16, "a", "b", base), body)

    def test_values_no_signature_can_cover(self) -> None:
        for args in ([2**64], ["\ud800"], [object()]):
            with self.assertRaises(attest.AttestError) as caught:
                attest.request_body(b"\x01" * 16, "a", "b", 1, "call", "z.c.r", "m", args, "alice")
            self.assertEqual(caught.exception.check, "unencodable")


class Authenticators(TestCase):
    def setUp(self) -> None:
        self.a_key, self.b_key, self.x_key = ec_key(), ec_key(), ec_key()
        self.a = attest.Authenticator("router-a", self.a_key)
        self.b = attest.Authenticator("router-b", self.b_key)
        self.x = attest.Authenticator("router-x", self.x_key)
        self.body = attest.request_body(b"\x01" * 16, "router-a", "router-b", 1, "call", "z.c.r", "m", [1], "alice")

    def check(self, tag: bytes, *, body: bytes | None = None, signed: bool = False) -> str | None:
        try:
            self.b.check("router-a", self.a_key.public_key(), tag, self.body if body is None else body,
                         signed=signed)
        except attest.AttestError as exc:
            return exc.check
        return None

    def test_a_mac_between_two_routers(self) -> None:
        tag = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        self.assertEqual(tag[0], attest.SCHEME_MAC)
        self.assertEqual(len(tag), 33)
        self.assertIsNone(self.check(tag))
        # The other way round, the same key: b's answer checks at a.
        answer = self.b.tag("router-a", self.a_key.public_key(), b"answer", signed=False)
        self.a.check("router-b", self.b_key.public_key(), answer, b"answer")

    def test_a_signature_is_checked_and_may_be_required(self) -> None:
        tag = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=True)
        self.assertEqual(tag[0], attest.SCHEME_SIGNATURE)
        self.assertIsNone(self.check(tag, signed=True))
        mac = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        self.assertEqual(self.check(mac, signed=True), "bad_signature")

    def test_refusals(self) -> None:
        mac = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        signature = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=True)
        altered = self.body[:-1] + b"X"
        self.assertEqual(self.check(mac, body=altered), "bad_signature")
        self.assertEqual(self.check(signature, body=altered), "bad_signature")
        self.assertEqual(self.check(b""), "bad_signature")
        self.assertEqual(self.check(b"\x07" + mac[1:]), "bad_signature")
        flipped = mac[:-1] + bytes((mac[-1] ^ 1,))
        self.assertEqual(self.check(flipped), "bad_signature")
        # A third router's MAC for b, claiming to be a's: its pairwise key is another one.
        forged = self.x.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        self.assertEqual(self.check(forged), "bad_signature")
        forged = self.x.tag("router-b", self.b_key.public_key(), self.body, signed=True)
        self.assertEqual(self.check(forged), "bad_signature")
        with self.assertRaises(attest.AttestError) as caught:
            self.b.check("router-q", None, mac, self.body)
        self.assertEqual(caught.exception.check, "unknown_signer")

    def test_a_new_certificate_key_gives_a_new_pairwise_key(self) -> None:
        old = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        renewed = ec_key()
        b2 = attest.Authenticator("router-b", renewed)
        new = self.a.tag("router-b", renewed.public_key(), self.body, signed=False)
        self.assertNotEqual(old, new)
        b2.check("router-a", self.a_key.public_key(), new, self.body)
        with self.assertRaises(attest.AttestError):
            b2.check("router-a", self.a_key.public_key(), old, self.body)

    def test_a_peer_key_object_is_fingerprinted_once(self) -> None:
        """The read path's MACs skip the DER fingerprint of a peer key object seen before (it cost more than the
        MAC); an equal key in another object is fingerprinted and gives the same pairwise key, a renewed key for
        the same router id another one."""
        calls: list[object] = []
        real = attest._key_id

        def counting(key: attest.PublicKey) -> bytes:
            calls.append(key)
            return real(key)

        self.patch(attest, "_key_id", counting)
        peer = self.b_key.public_key()
        tags = [self.a.tag("router-b", peer, self.body, signed=False) for _ in range(3)]
        self.assertEqual(len(calls), 1)
        self.assertEqual(len(set(tags)), 1)
        same_key_again = self.b_key.public_key()  # a new object holding the same key
        self.assertEqual(self.a.tag("router-b", same_key_again, self.body, signed=False), tags[0])
        self.assertEqual(len(calls), 2)
        renewed = ec_key()
        self.assertNotEqual(self.a.tag("router-b", renewed.public_key(), self.body, signed=False), tags[0])
        self.assertNotEqual(self.a.tag("router-b", peer, self.body, signed=False),
                            self.a.tag("router-b", renewed.public_key(), self.body, signed=False))
        self.assertEqual(self.a.tag("router-b", peer, self.body, signed=False), tags[0])

    def test_the_pairwise_key_is_bound_to_the_router_ids(self) -> None:
        """Same keys, another name for the origin: another key (a MAC cannot be moved to another identity)."""
        tag = self.a.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        with self.assertRaises(attest.AttestError):
            self.b.check("router-a2", self.a_key.public_key(), tag, self.body)

    def test_rsa_keys_fall_back_to_signatures(self) -> None:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        r = attest.Authenticator("router-r", rsa_key)
        tag = r.tag("router-b", self.b_key.public_key(), self.body, signed=False)
        self.assertEqual(tag[0], attest.SCHEME_SIGNATURE)
        self.b.check("router-r", rsa_key.public_key(), tag, self.body)
        to_rsa = self.a.tag("router-r", rsa_key.public_key(), self.body, signed=False)
        self.assertEqual(to_rsa[0], attest.SCHEME_SIGNATURE)
        r.check("router-a", self.a_key.public_key(), to_rsa, self.body)


class Headers(TestCase):
    def test_signed_once_per_header(self) -> None:
        key = ec_key()
        signer = attest.HeaderSigner(key, capacity=2)
        wire = {"number": 1, "hash": "ab"}
        first = signer.sign("z.c", wire)
        self.assertEqual(signer.sign("z.c", dict(wire)), first)
        attest.verify(key.public_key(), first, attest.header_body("z.c", wire), "router-a")
        with self.assertRaises(attest.AttestError):
            attest.verify(key.public_key(), first, attest.header_body("z.other", wire), "router-a")
        for n in range(3):
            signer.sign("z.c", {"number": n})
        self.assertEqual(len(signer._memo), 2)
