"""Peer links over real TCP with mutual TLS: the transports a daemon uses.

The simulator supplies its own transports with the same three methods; nothing else in the peer layer knows the
difference.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from twisted.internet.endpoints import SSL4ClientEndpoint, SSL4ServerEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

from wecross.config import Address, PeerSettings
from wecross.peer.protocol import PeerLink
from wecross.peer.tls import (
    ClientTLS,
    PeerIdentityError,
    TLSMaterial,
    TLSRefusal,
    client_options,
    peer_chain,
    peer_identity,
    server_options,
    verify_peer_id,
)
from wecross.pki.revocation import RevocationList
from wecross.wire.messages import Hello


class TLSTransports:
    def __init__(
        self,
        reactor: object,
        material: TLSMaterial,
        listen: Address | None,
        *,
        ciphers: str | None = None,
        connect_timeout: float = 10.0,
        revocation: RevocationList | None = None,
    ) -> None:
        self.reactor = reactor
        self.revocation = revocation
        #: Told of every handshake we refuse (the node counts them in the peer service's refused_links).
        self.on_refusal: Callable[[TLSRefusal], None] | None = None
        self.material = material
        self.listen = listen
        self.ciphers = ciphers
        self.connect_timeout = connect_timeout
        self._server_options = server_options(material, require_client_cert=True, ciphers=ciphers,
                                              on_refusal=self._refused, revocation=revocation)
        # One client context per configured peer: not rebuilt on every redial, and its last refusal stays per peer.
        self._client_options: dict[PeerSettings, ClientTLS] = {}

    def server_endpoint(self) -> IStreamServerEndpoint | None:
        if self.listen is None:
            return None
        return SSL4ServerEndpoint(self.reactor, self.listen.port, self._server_options, interface=self.listen.host)

    def client_endpoint(self, peer: PeerSettings) -> IStreamClientEndpoint:
        options = self._client_options.get(peer)
        if options is None:
            options = client_options(self.material, expected_peer_id=peer.id, ciphers=self.ciphers,
                                     on_refusal=self._refused, revocation=self.revocation)
            self._client_options[peer] = options
        return SSL4ClientEndpoint(self.reactor, peer.address.host, peer.address.port, options,
                                  timeout=self.connect_timeout)

    def set_revocation(self, revocation: RevocationList) -> None:
        """Use a new revocation list from the next handshake on, for the listener and every dialler."""
        self.revocation = revocation
        self._server_options.revocation = revocation
        for options in self._client_options.values():
            options.revocation = revocation

    def peer_chain(self, link: PeerLink) -> tuple[x509.Certificate, ...]:
        """The certificates the link's peer presented (leaf first): what a newer revocation list is checked on."""
        return peer_chain(link.transport)

    def _refused(self, refusal: TLSRefusal) -> None:
        if self.on_refusal is not None:
            self.on_refusal(refusal)

    def identify(self, link: PeerLink, hello: Hello) -> str | None:
        identity = peer_identity(link.transport)
        if identity is None:
            return "the peer presented no certificate"
        try:
            verify_peer_id(identity, hello.router_id)
        except PeerIdentityError as exc:
            return f"HELLO says {hello.router_id!r} but the certificate does not: {exc}"
        link.peer_identity = identity
        return None
