"""Revocation: the signed list of certificates a network no longer admits, and the file routers reload it from.

Why a real X.509 CRL and not a list of names: the file travels from the CA operator to every router by whatever
means (copying, configuration management), and any of those hands could alter it. A CRL carries the issuing CA's
signature, so a router believes an entry only if a CA of its own network put it there (:meth:`RevocationList.parse`
checks every CRL's signature against the network's CAs; a foreign or altered CRL is refused as a whole).

The file (``[p2p] crl``, written by ``wecross certs revoke``) is PEM text holding:

- one ``X509 CRL`` block per issuing CA (a router certificate is revoked by its issuer, an intermediate CA by the
  CA above it);
- the ``CERTIFICATE`` blocks of the intermediate CAs that signed those CRLs, so a router can check a CRL whose
  issuer is not among its trust roots (each must chain to a trust root; the roots themselves are never needed);
- optionally ``deny-sha256 <hex>`` lines: certificates refused by the SHA-256 of their DER, for a certificate whose
  issuer's key is not at hand. These lines carry no signature, which is acceptable for one reason: they can only
  *refuse* more certificates, never admit one, and whoever can write a router's files can already replace its
  trust roots. ``#`` starts a comment; any other text is an error (a truncated or mixed-up file must not pass).

A revoked certificate anywhere in a chain revokes the chain (a revoked intermediate takes every leaf under it).
``nextUpdate`` is not treated as an expiry: an outdated list still denies what it lists, whereas an expiring deny
list would quietly re-admit a stolen key.

:class:`RevocationList` is sans-IO and answers :meth:`RevocationList.is_revoked` from a set of (issuer, serial)
pairs; :class:`RevocationFile` keeps one current from a file, as wecross.governance.reload does for ACLs (an
invalid new file never replaces a valid list, and its problems are reported once per distinct content). Both are
checked by tests/test_revocation.py.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import crypto

from wecross.pki.authority import PKIError, common_name, is_self_signed
from wecross.reloading import ReloadingFile, ReloadResult

__all__ = [
    "EMPTY",
    "MAX_REVOCATION_BYTES",
    "ReloadResult",
    "RevocationError",
    "RevocationFile",
    "RevocationFileContent",
    "RevocationList",
    "fingerprint_sha256",
    "split_revocation_file",
]

#: A revocation file is written by an operator's tool; anything larger is a mistake (a log file named by accident).
MAX_REVOCATION_BYTES = 16 * 1024 * 1024
#: DER memo of :meth:`RevocationList.is_revoked`: the same peers' certificates are asked about again and again.
_MEMO_MAX = 4096
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_DENY = re.compile(r"^deny-sha256\s+(?:sha256:)?([0-9A-Fa-f:]+)\s*(?:#.*)?$")


class RevocationError(PKIError):
    """A revocation file that cannot be used; ``problems`` lists every reason (the message joins them)."""

    code = "bad_crl"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER (as wecross.peer.tls.PeerIdentity.fingerprint_sha256)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _label(cert: x509.Certificate) -> str:
    return common_name(cert) or cert.subject.rfc4514_string() or "(no subject)"


def _name_label(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if values:
        value = values[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string() or "(empty name)"


def _can_sign_crls(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not sign CRLs, or None: it must be a CA and, when it states key usages, have cRLSign."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "is not a CA certificate"
    except x509.ExtensionNotFound:
        return "is not a CA certificate (no basicConstraints)"
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign:
            return "lacks the cRLSign key usage"
    except x509.ExtensionNotFound:
        pass
    return None


@dataclass(frozen=True, slots=True)
class RevocationFileContent:
    """What a revocation file holds, parsed but not yet checked (:func:`split_revocation_file`)."""

    crls: tuple[x509.CertificateRevocationList, ...]
    certs: tuple[x509.Certificate, ...]
    deny: frozenset[str]


def split_revocation_file(data: bytes, source: str, *, allow_empty: bool = False) -> RevocationFileContent:
    """The PEM blocks and deny lines of a revocation file; RevocationError for anything else in it."""
    problems: list[str] = []
    crls: list[x509.CertificateRevocationList] = []
    certs: list[x509.Certificate] = []
    deny: set[str] = set()
    rest = bytearray()
    position = 0
    for match in _PEM_BLOCK.finditer(data):
        rest += data[position:match.start()] + b"\n"
        position = match.end()
        kind = match.group(1).decode("ascii")
        if kind == "X509 CRL":
            try:
                crls.append(x509.load_pem_x509_crl(match.group(0)))
            except ValueError as exc:
                problems.append(f"CRL {len(crls) + 1} is malformed ({exc})")
        elif kind == "CERTIFICATE":
            try:
                certs.append(x509.load_pem_x509_certificate(match.group(0)))
            except ValueError as exc:
                problems.append(f"certificate {len(certs) + 1} is malformed ({exc})")
        else:
            problems.append(f"unexpected PEM block {kind!r} (a revocation file holds CRLs and CA certificates)")
    rest += data[position:]
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        problems.append("is not PEM text (a DER CRL? convert it with `openssl crl -inform DER -outform PEM`)")
        text = ""
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        match_deny = _DENY.match(line)
        digest = match_deny.group(1).replace(":", "").lower() if match_deny else ""
        if len(digest) == 64:
            deny.add(digest)
        elif len(problems) < 20:
            shown = line if len(line) <= 60 else line[:57] + "..."
            problems.append(f"text line {number} {shown!r} is neither a PEM block, a comment nor "
                            "'deny-sha256 <64 hex digits>'")
    if problems:
        raise RevocationError(source, problems)
    if not crls and not deny and not allow_empty:
        raise RevocationError(source, ["holds no CRL and no deny-sha256 line (an empty list revokes nothing: "
                                       "an empty or truncated file is refused rather than trusted)"])
    return RevocationFileContent(tuple(crls), tuple(certs), frozenset(deny))


def _verified_cas(
    roots: Sequence[x509.Certificate], candidates: Iterable[x509.Certificate], source: str, now: datetime.datetime
) -> tuple[list[x509.Certificate], list[str]]:
    """The candidates that chain to a root (each a CA), and a problem per one that does not."""
    pool = list(candidates)
    store = crypto.X509Store()
    for root in roots:
        store.add_cert(crypto.X509.from_cryptography(root))
    store.set_time(now)
    good: list[x509.Certificate] = []
    problems: list[str] = []
    for cert in pool:
        if any(cert == root for root in roots):
            good.append(cert)
            continue
        others = [crypto.X509.from_cryptography(c) for c in pool if c is not cert]
        try:
            crypto.X509StoreContext(store, crypto.X509.from_cryptography(cert), others).verify_certificate()
        except crypto.X509StoreContextError as exc:
            problems.append(f"CA certificate {_label(cert)!r} does not chain to this network's CA ({exc})")
            continue
        why = _can_sign_crls(cert)
        if why is not None:
            problems.append(f"certificate {_label(cert)!r} {why}")
            continue
        good.append(cert)
    return good, problems


class RevocationList:
    """The revoked certificates of one network: (issuer, serial) pairs from verified CRLs, plus SHA-256 fingerprints.

    Build it with :meth:`parse` (which checks every CRL's signature); the constructor trusts what it is given.
    Answers in a set look-up, with a bounded memo per DER so a certificate seen before costs one dict look-up.
    """

    def __init__(self, serials: Iterable[tuple[x509.Name, int]] = (), fingerprints: Iterable[str] = (),
                 issuers: Iterable[str] = ()) -> None:
        self._serials = frozenset(serials)
        self._fingerprints = frozenset(f.lower() for f in fingerprints)
        #: CN (or DN) of each CA whose CRL is in force, for /status and log lines.
        self.issuers = tuple(issuers)
        self._memo: dict[bytes, bool] = {}

    def __len__(self) -> int:
        return len(self._serials) + len(self._fingerprints)

    def __bool__(self) -> bool:
        return bool(self._serials or self._fingerprints)

    def describe(self) -> str:
        issued = f" from {', '.join(self.issuers)}" if self.issuers else ""
        return f"{len(self._serials)} revoked serial numbers{issued}, {len(self._fingerprints)} denied fingerprints"

    @property
    def fingerprints(self) -> frozenset[str]:
        return self._fingerprints

    def serial_revoked(self, issuer: x509.Name, serial: int) -> bool:
        return (issuer, serial) in self._serials

    def is_revoked(self, cert: x509.Certificate | crypto.X509 | bytes) -> bool:
        """Whether this one certificate (cryptography, pyOpenSSL or DER) is revoked; a DER that does not parse is
        not revoked here (whatever checks the chain refuses it)."""
        if not self:
            return False
        if isinstance(cert, bytes):
            known = self._memo.get(cert)
            if known is not None:
                return known
            try:
                parsed = x509.load_der_x509_certificate(cert)
                answer = self._check(parsed, hashlib.sha256(cert).hexdigest() if self._fingerprints else "")
            except (ValueError, TypeError, UnsupportedAlgorithm):
                answer = False
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[cert] = answer
            return answer
        if isinstance(cert, crypto.X509):
            cert = cert.to_cryptography()
        return self._check(cert, fingerprint_sha256(cert) if self._fingerprints else "")

    def _check(self, cert: x509.Certificate, fingerprint: str) -> bool:
        return (cert.issuer, cert.serial_number) in self._serials or fingerprint in self._fingerprints

    def first_revoked(self, chain: Iterable[x509.Certificate | crypto.X509 | bytes]) -> int | None:
        """The position of the first revoked certificate of a chain (leaf = 0), or None when none is."""
        if not self:
            return None
        for index, cert in enumerate(chain):
            if self.is_revoked(cert):
                return index
        return None

    @classmethod
    def parse(
        cls,
        data: bytes,
        trust_roots: Sequence[x509.Certificate],
        *,
        known_cas: Sequence[x509.Certificate] = (),
        source: str = "revocation list",
        now: datetime.datetime | None = None,
    ) -> RevocationList:
        """A list from the bytes of a revocation file, every CRL checked against the network's CAs.

        A CRL counts only if its signature verifies with the key of a CA certificate that is a trust root or chains
        to one (``known_cas``, such as the router's own intermediates, and the CA certificates in the file), and
        that CA may sign CRLs. Otherwise the whole file is refused (RevocationError naming each problem): taking
        the good part of a tampered file would let whoever altered it choose which revocations survive.
        """
        if not trust_roots:
            raise RevocationError(source, ["no trust root to check CRL signatures against"])
        if len(data) > MAX_REVOCATION_BYTES:
            raise RevocationError(source, [f"is {len(data)} bytes, more than the {MAX_REVOCATION_BYTES} allowed"])
        parsed = split_revocation_file(data, source)
        moment = now or datetime.datetime.now(datetime.UTC)
        candidates = [c for c in (*known_cas, *parsed.certs) if not is_self_signed(c) or c in trust_roots]
        strays = [c for c in parsed.certs if is_self_signed(c) and c not in trust_roots]
        cas, problems = _verified_cas(trust_roots, candidates, source, moment)
        problems.extend(f"root certificate {_label(c)!r} in the file is not a trust root of this router"
                        for c in strays)
        cas = [*trust_roots, *cas]
        serials: set[tuple[x509.Name, int]] = set()
        issuers: list[str] = []
        for number, crl in enumerate(parsed.crls, start=1):
            issuer = _name_label(crl.issuer)
            signer = None
            for ca in cas:
                if ca.subject != crl.issuer:
                    continue
                key = ca.public_key()
                if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
                    continue  # our CAs are EC or RSA (wecross.pki.authority); nothing else signs for the network
                try:
                    if crl.is_signature_valid(key):
                        signer = ca
                        break
                except (InvalidSignature, TypeError, ValueError, UnsupportedAlgorithm):
                    continue
            if signer is None:
                same_name = any(ca.subject == crl.issuer for ca in cas)
                why = ("its signature does not verify with that CA's key (altered, or signed by another CA of "
                       "the same name)") if same_name else "no CA of this network has that name"
                problems.append(f"CRL {number} (issuer {issuer!r}) is not signed by this network's CA: {why}")
                continue
            why_not = _can_sign_crls(signer)
            if why_not is not None:
                problems.append(f"CRL {number}: its signer {_label(signer)!r} {why_not}")
                continue
            issuers.append(issuer)
            serials.update((crl.issuer, entry.serial_number) for entry in crl)
        if problems:
            raise RevocationError(source, problems)
        return cls(serials, parsed.deny, issuers)


#: The list in force when no file is configured.
EMPTY = RevocationList()


class RevocationFile(ReloadingFile[RevocationList]):
    """The revocation list of one file, kept current by :meth:`maybe_reload` (a LoopingCall in the node drives it).

    The constructor reads and checks the file and raises RevocationError when it cannot: a router must not start
    believing nothing is revoked because its list was unreadable. Afterwards an unreadable or invalid file keeps the
    list in force (``errors`` says why), reported once per distinct content, not at every tick.
    """

    problem_types = (RevocationError,)

    def __init__(
        self,
        read_bytes: Callable[[], bytes],
        source: str,
        trust_roots: Sequence[x509.Certificate],
        now: float,
        *,
        known_cas: Sequence[x509.Certificate] = (),
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        super().__init__(read_bytes, source, now)
        self.trust_roots = tuple(trust_roots)
        self.known_cas = tuple(known_cas)
        self._wall_clock = wall_clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._start(now)

    @property
    def current(self) -> RevocationList:
        return self.value

    def _read(self) -> bytes:
        try:
            data = self._read_bytes()
        except OSError as exc:
            raise RevocationError(self.source, [f"cannot read: {exc.strerror or exc}"]) from None
        if len(data) > MAX_REVOCATION_BYTES:
            raise RevocationError(self.source, [f"is {len(data)} bytes, more than the {MAX_REVOCATION_BYTES} "
                                                "allowed"])
        return data

    def _parse(self, data: bytes) -> RevocationList:
        return RevocationList.parse(data, self.trust_roots, known_cas=self.known_cas, source=self.source,
                                    now=self._wall_clock())

    def _lines(self, problem: Exception) -> tuple[str, ...]:
        assert isinstance(problem, RevocationError)
        return tuple(problem.problems)

    def is_revoked(self, cert: x509.Certificate | crypto.X509 | bytes) -> bool:
        return self.current.is_revoked(cert)
