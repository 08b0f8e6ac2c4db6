"""A small certificate authority for a WeCross router network.

Routers authenticate each other with mutual TLS, and a router id is only worth something if a certificate binds it:
the id is the certificate's DNS subjectAltName, so the standard host-name matching rule (``service_identity``)
decides whether the id a peer claims in HELLO is really its own. REST users get client certificates whose common
name is the user name the permission layer sees.

Everything here is pure computation on ``cryptography`` objects except the explicit ``write_*`` / ``load_*``
helpers, so the simulator and the tests can mint whole PKIs in memory without touching the disk.

Why one long module: issuing and loading share the name rules, the CA checks and the error codes an operator sees,
and ``wecross certs`` uses all of it; the chain patterns a router certificate may carry live in ``serves``.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wecross.pki.serves import ServesPatternError, serves_extension

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

KEY_TYPES: tuple[KeyType, ...] = ("ec", "rsa")
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 365
#: Certificates start a few minutes in the past so a peer whose clock lags a little still accepts a fresh one.
CLOCK_SKEW = datetime.timedelta(minutes=5)
RSA_BITS = 2048

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ROUTER_ID_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class PKIError(ValueError):
    """A certificate or key problem a user must fix; ``code`` is stable, the message says what and where."""

    code = "pki_error"

    def __init__(self, message: str, *, code: str | None = None, path: Path | str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.path = None if path is None else Path(path)
        self.message = message


class InvalidNameError(PKIError):
    code = "bad_name"


class FileExistsRefusedError(PKIError):
    code = "exists"


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate, its private key and the intermediates between it and the root.

    ``chain`` holds the issuing CAs above ``cert`` nearest first and never the self-signed root, which is exactly
    what a TLS peer must send after its own certificate; the root is what the other side already trusts.
    """

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    @property
    def full_chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then its intermediates: the content of a ``chain.pem``."""
        return (self.cert, *self.chain)

    @property
    def common_name(self) -> str:
        return common_name(self.cert)


# --------------------------------------------------------------------------------------------------- validation


def validate_router_id(router_id: str) -> str:
    """Return ``router_id`` if it can be a certificate DNS name, else raise :class:`InvalidNameError`.

    Lower case only: DNS names compare case-insensitively, so ``Router-A`` and ``router-a`` would be one identity
    in a certificate but two different routers in the overlay.
    """
    if not isinstance(router_id, str) or not router_id:
        raise InvalidNameError("router id is empty; it must be a DNS name such as 'router-a' or 'r1.zone-a'")
    problem: str | None = None
    if len(router_id) > 253:
        problem = "is longer than 253 characters"
    elif router_id != router_id.lower():
        problem = "has upper-case letters (router ids are lower-case DNS names)"
    elif not _ROUTER_ID_RE.match(router_id):
        problem = (
            "is not a DNS name: use letters a-z, digits and '-', in dot-separated labels of 1-63 characters "
            "that neither start nor end with '-'"
        )
    else:
        try:
            ipaddress.ip_address(router_id)
        except ValueError:
            pass
        else:
            problem = "looks like an IP address, not a DNS name"
    if problem is not None:
        raise InvalidNameError(f"router id {router_id!r} {problem}")
    return router_id


def validate_user_name(name: str) -> str:
    """Return ``name`` if it is usable as a client certificate CN and as a directory name, else raise."""
    if not isinstance(name, str) or not _USER_RE.match(name):
        raise InvalidNameError(
            f"user name {name!r} is not valid: use 1-64 characters from letters, digits, '.', '_', '@', '-', "
            "starting with a letter or digit"
        )
    return name


def _validate_org(org: str | None) -> str | None:
    if org is None:
        return None
    if not org.strip() or len(org) > 64:
        raise InvalidNameError(f"organisation {org!r} must be 1-64 characters")
    return org


def _validate_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise PKIError(f"validity must be a positive number of days, got {days!r}", code="bad_days")
    return days


# --------------------------------------------------------------------------------------------------- keys, names


def generate_key(key_type: KeyType = "ec") -> PrivateKey:
    """Make a fresh private key: EC P-256 (small, fast handshakes) or RSA-2048 (for old tooling)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    raise PKIError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}", code="bad_key_type")


def _name(cn: str, org: str | None) -> x509.Name:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def common_name(cert: x509.Certificate) -> str:
    """The subject CN, or ``""`` when the certificate has none."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's DNS subjectAltNames (empty when it has no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))


def public_key_der(key: PrivateKey | x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo, the thing to compare when asking "is this the key of that certificate?"."""
    pub = key.public_key()
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when ``cert`` names itself as issuer and its own key verifies its signature (a root)."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------------------------------- issuing


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _validity(
    days: int, issuer: x509.Certificate | None, now: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    """Start slightly in the past; end after ``days`` but never after the issuer, whose expiry ends ours anyway."""
    start = (now or _now()) - CLOCK_SKEW
    end = start + CLOCK_SKEW + datetime.timedelta(days=_validate_days(days))
    if issuer is not None:
        end = min(end, issuer.not_valid_after_utc)
        start = max(start, issuer.not_valid_before_utc)
    if end <= start:
        raise PKIError("the issuing CA has expired; make a new CA before issuing certificates", code="ca_expired")
    return start, end


def _key_usage(*, ca: bool, key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key transport (TLS 1.2 RSA kx) needs keyEncipherment; EC keys never encrypt.
        key_encipherment=(not ca) and isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    key: PrivateKey,
    issuer: CertifiedKey | None,
    days: int,
    now: datetime.datetime | None,
) -> x509.CertificateBuilder:
    start, end = _validity(days, None if issuer is None else issuer.cert, now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    else:
        try:
            ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return builder.add_extension(aki, critical=False)


def _sign(builder: x509.CertificateBuilder, signer: PrivateKey) -> x509.Certificate:
    return builder.sign(signer, hashes.SHA256())


def _check_can_issue(issuer: CertifiedKey, *, for_ca: bool) -> None:
    """Refuse to sign with something that verifiers would not accept as an issuer, before making a useless cert."""
    try:
        bc = issuer.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    name = issuer.common_name or issuer.cert.subject.rfc4514_string()
    if bc is None or not bc.ca:
        raise PKIError(f"certificate {name!r} is not a CA (basicConstraints CA:TRUE missing)", code="not_a_ca")
    if for_ca and bc.path_length is not None and bc.path_length < 1:
        raise PKIError(
            f"CA {name!r} has path length 0: it may only issue router and client certificates, not another CA",
            code="path_length",
        )
    try:
        ku = issuer.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.key_cert_sign:
        raise PKIError(f"CA {name!r} lacks the keyCertSign key usage", code="not_a_ca")
    if public_key_der(issuer.key) != public_key_der(issuer.cert):
        raise PKIError(f"the private key given for CA {name!r} does not belong to its certificate", code="key_mismatch")


def create_root_ca(
    name: str = "WeCross Root CA",
    *,
    org: str | None = None,
    days: int = DEFAULT_CA_DAYS,
    key_type: KeyType = "ec",
    path_length: int | None = None,
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """A self-signed root; ``path_length`` bounds how many intermediate CAs may sit under it (None: unbounded)."""
    key = generate_key(key_type)
    builder = (
        _builder(_name(name, _validate_org(org)), key, None, days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True, key=key), critical=True)
    )
    return CertifiedKey(_sign(builder, key), key, ())


def create_intermediate_ca(
    issuer: CertifiedKey,
    name: str,
    *,
    org: str | None = None,
    days: int = DEFAULT_CA_DAYS,
    key_type: KeyType = "ec",
    path_length: int | None = 0,
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """An intermediate CA signed by ``issuer``; its chain is the issuer followed by the issuer's own chain."""
    _check_can_issue(issuer, for_ca=True)
    key = generate_key(key_type)
    builder = (
        _builder(_name(name, _validate_org(org)), key, issuer, days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True, key=key), critical=True)
    )
    chain = () if is_self_signed(issuer.cert) else (issuer.cert, *issuer.chain)
    return CertifiedKey(_sign(builder, issuer.key), key, chain)


def create_ca_chain(
    intermediates: int = 0,
    *,
    org: str | None = None,
    days: int = DEFAULT_CA_DAYS,
    key_type: KeyType = "ec",
    root_name: str = "WeCross Root CA",
    now: datetime.datetime | None = None,
) -> list[CertifiedKey]:
    """Root plus ``intermediates`` CAs, each signing the next: ``[root, int-1, ..., int-n]``.

    Path lengths are exact (the root allows n CAs below it, the last intermediate 0), so a stolen issuing key
    cannot grow the hierarchy; issue leaves with the last element.
    """
    if isinstance(intermediates, bool) or not isinstance(intermediates, int) or intermediates < 0:
        raise PKIError(f"number of intermediate CAs must be 0 or more, got {intermediates!r}", code="bad_depth")
    cas = [create_root_ca(root_name, org=org, days=days, key_type=key_type, path_length=intermediates, now=now)]
    for k in range(1, intermediates + 1):
        cas.append(
            create_intermediate_ca(
                cas[-1],
                f"WeCross Intermediate CA {k}",
                org=org,
                days=days,
                key_type=key_type,
                path_length=intermediates - k,
                now=now,
            )
        )
    return cas


def _leaf(
    issuer: CertifiedKey,
    subject: x509.Name,
    key: PrivateKey,
    days: int,
    now: datetime.datetime | None,
    usages: Sequence[x509.ObjectIdentifier],
    san: Sequence[x509.GeneralName],
    private: Sequence[x509.UnrecognizedExtension] = (),
) -> CertifiedKey:
    _check_can_issue(issuer, for_ca=False)
    builder = (
        _builder(subject, key, issuer, days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, key=key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    for extension in private:  # non-critical: TLS libraries that do not know them must still accept the certificate
        builder = builder.add_extension(extension, critical=False)
    chain = () if is_self_signed(issuer.cert) else (issuer.cert, *issuer.chain)
    return CertifiedKey(_sign(builder, issuer.key), key, chain)


def issue_router_cert(
    issuer: CertifiedKey,
    router_id: str,
    *,
    org: str | None = None,
    days: int = DEFAULT_LEAF_DAYS,
    key_type: KeyType = "ec",
    extra_dns_names: Iterable[str] = (),
    serves: Iterable[str] = (),
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """A router certificate: CN and DNS SAN are the router id; good for both TLS ends since links are dialled
    either way (serverAuth + clientAuth).

    ``serves`` are the chain patterns (``zone.chain``, ``zone.*``, ``*``) the router may announce, written into the
    non-critical serves extension (wecross.pki.serves, never the subjectAltName, which holds the router id only);
    without any, the certificate has no such extension and other routers ignore every chain it claims.
    """
    names = [validate_router_id(router_id)]
    for extra in extra_dns_names:
        if validate_router_id(extra) not in names:
            names.append(extra)
    patterns = [serves] if isinstance(serves, str) else list(serves)
    try:
        private = [serves_extension(patterns)] if patterns else []
    except ServesPatternError as exc:
        raise InvalidNameError(str(exc), code="bad_serves") from None
    return _leaf(
        issuer,
        _name(router_id, _validate_org(org)),
        generate_key(key_type),
        days,
        now,
        (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        [x509.DNSName(n) for n in names],
        private,
    )


def issue_client_cert(
    issuer: CertifiedKey,
    user: str,
    *,
    org: str | None = None,
    days: int = DEFAULT_LEAF_DAYS,
    key_type: KeyType = "ec",
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """A REST user's certificate: CN is the user name, clientAuth only so it can never pose as a router server."""
    return _leaf(
        issuer,
        _name(validate_user_name(user), _validate_org(org)),
        generate_key(key_type),
        days,
        now,
        (ExtendedKeyUsageOID.CLIENT_AUTH,),
        (),
    )


# --------------------------------------------------------------------------------------------------- PEM I/O


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8: the router must start unattended, so the file mode (0600) is the protection."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_file(path: Path, data: bytes, mode: int, force: bool = False) -> None:
    """Write ``data`` with exactly ``mode`` (creating parents); without ``force`` never replace an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise FileExistsRefusedError(f"{path} already exists (use --force to replace it)", path=path) from None
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
        return
    # Replace atomically so a crash never leaves a half-written key where the old one was.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_certificates(path: Path | str, certs: Iterable[x509.Certificate], *, force: bool = False) -> Path:
    p = Path(path)
    write_file(p, certs_to_pem(certs), 0o644, force)
    return p


def write_private_key(path: Path | str, key: PrivateKey, *, force: bool = False) -> Path:
    """Write a key readable by its owner only (0600), whatever the umask."""
    p = Path(path)
    write_file(p, key_to_pem(key), 0o600, force)
    return p


def read_certificates(path: Path | str) -> list[x509.Certificate]:
    """All certificates of a PEM file in order, with an error that names the file and the problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{p}: file does not exist", code="missing_file", path=p) from None
    except OSError as exc:
        raise PKIError(f"{p}: cannot read ({exc.strerror})", code="unreadable", path=p) from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        what = "a private key" if b"PRIVATE KEY-----" in data else "not PEM"
        raise PKIError(f"{p}: no PEM CERTIFICATE block found ({what})", code="not_pem", path=p)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PKIError(f"{p}: malformed PEM certificate ({exc})", code="not_pem", path=p) from None


_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)


def read_private_key(path: Path | str) -> PrivateKey:
    """The first private key of a PEM file (which may also hold certificates); EC or RSA, unencrypted."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{p}: file does not exist", code="missing_file", path=p) from None
    except OSError as exc:
        raise PKIError(f"{p}: cannot read ({exc.strerror})", code="unreadable", path=p) from None
    match = _KEY_BLOCK.search(data)
    if match is None:
        what = "it holds certificates only" if b"CERTIFICATE-----" in data else "not PEM"
        raise PKIError(f"{p}: no PEM PRIVATE KEY block found ({what})", code="not_pem", path=p)
    if match.group(1).startswith(b"ENCRYPTED"):
        raise PKIError(
            f"{p}: the private key is encrypted; WeCross needs an unencrypted key protected by file mode 0600",
            code="encrypted_key",
            path=p,
        )
    try:
        key = serialization.load_pem_private_key(match.group(0), password=None)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{p}: malformed private key ({exc})", code="not_pem", path=p) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PKIError(f"{p}: unsupported key type {type(key).__name__} (use EC or RSA)", code="bad_key_type", path=p)
    return key


def load_issuer(cert_path: Path | str, key_path: Path | str) -> tuple[CertifiedKey, x509.Certificate | None]:
    """Load an existing CA (root or intermediate) to issue more certificates from it; returns (CA, root or None).

    ``cert_path`` holds the issuing CA first; certificates after it are taken as its chain up to the root. When the
    file holds only an intermediate, its issuers are looked up next to it (``ca.crt``, ``intermediate-*.crt``: the
    layout ``wecross certs`` writes), so leaves issued from it still get a complete ``chain.pem``.
    """
    cert_path = Path(cert_path)
    certs = read_certificates(cert_path)
    key = read_private_key(key_path)
    issuer_cert = certs[0]
    if public_key_der(key) != public_key_der(issuer_cert):
        raise PKIError(
            f"{key_path}: this key does not belong to the first certificate of {cert_path}",
            code="key_mismatch",
            path=key_path,
        )
    above = [c for c in certs[1:] if not is_self_signed(c)]
    roots = [c for c in certs[1:] if is_self_signed(c)]
    if is_self_signed(issuer_cert):
        above, roots = [], [issuer_cert]
    elif not certs[1:]:
        above, roots = _find_issuers(issuer_cert, cert_path.parent)
        if not above and not roots:
            raise PKIError(
                f"{cert_path}: cannot find the CA certificates above {common_name(issuer_cert)!r}; put them after "
                "it in the file (issuing CA first, up to and including the root) or keep ca.crt and "
                "intermediate-*.crt next to it",
                code="incomplete_chain",
                path=cert_path,
            )
    candidate = CertifiedKey(issuer_cert, key, tuple(above))
    _check_can_issue(candidate, for_ca=False)
    links = list(candidate.full_chain)
    for child, parent in itertools.pairwise(links):
        if not _issued_by(child, parent):
            raise PKIError(
                f"{cert_path}: {common_name(child)!r} is not signed by the next certificate {common_name(parent)!r} "
                "(order must be: issuing CA first, then its issuers towards the root)",
                code="bad_chain",
                path=cert_path,
            )
    root = next((r for r in roots if _issued_by(links[-1], r)), None)
    if root is None and not is_self_signed(links[-1]):
        root = find_root(candidate, cert_path.parent)
    if roots and root is None:
        raise PKIError(
            f"{cert_path}: the root in this file did not sign {common_name(links[-1])!r}",
            code="bad_chain",
            path=cert_path,
        )
    return candidate, root


def find_root(issuer: CertifiedKey, directory: Path | str) -> x509.Certificate | None:
    """The self-signed root above ``issuer``, if it is ``issuer`` itself or lies as a ``*.crt`` in ``directory``."""
    top = issuer.full_chain[-1]
    if is_self_signed(top):
        return top
    for path in sorted(Path(directory).glob("*.crt")):
        try:
            for cert in read_certificates(path):
                if is_self_signed(cert) and _issued_by(top, cert):
                    return cert
        except PKIError:
            continue
    return None


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _find_issuers(cert: x509.Certificate, directory: Path) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Walk up from ``cert`` through the CA files in ``directory``; returns (intermediates, roots found)."""
    pool: list[x509.Certificate] = []
    for path in sorted(directory.glob("*.crt")):
        try:
            pool.extend(read_certificates(path))
        except PKIError:
            continue
    chain: list[x509.Certificate] = []
    current = cert
    for _ in range(64):
        parent = next((c for c in pool if c != current and _issued_by(current, c)), None)
        if parent is None:
            return chain, []
        if is_self_signed(parent):
            return chain, [parent]
        chain.append(parent)
        current = parent
    return chain, []
