"""A bare TLS relay pair: the floor under the cost of forwarding a request through one router-to-router link.

    client --plain TCP--> relay-in ==mutual TLS==> relay-out --plain TCP--> target (an owner's REST port)

Both legs copy bytes and do nothing else: no parsing, no framing, no routing. The TLS leg is built exactly as a
router link is (``wecross.peer.tls`` server and client options, router certificates with an intermediate, the
client checking the server's router id), so whatever a forwarded request costs above this relay is the router's
own work. Each accepted client connection gets its own TLS connection (keep-alive clients pay the handshake once).

Run by ``bench/forward.py`` in its own process; by hand:

    python bench/relay.py --certs DIR --target 127.0.0.1:8250 --ready-file /tmp/relay.json

It listens on free ports and writes them to ``--ready-file`` as JSON once both legs accept connections.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    SSL4ClientEndpoint,
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from wecross.peer.tls import client_options, load_tls_material, server_options  # noqa: E402

reactor: Any = _reactor


def _no_delay(protocol: Protocol) -> None:
    """TCP_NODELAY on the socket under ``protocol`` (also under a TLS wrapper), so small writes leave at once."""
    transport: Any = protocol.transport
    while transport is not None:
        sock = getattr(transport, "socket", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
        transport = getattr(transport, "transport", None)


class Splice(Protocol):
    """One end of a spliced pair of connections: what arrives here is written to the other end, unchanged.

    The accepting end holds what arrives before the dialled end is connected (a request or two: clients wait for
    answers). Once joined, each end is the producer of the other's transport, so a slow reader on one side pauses
    reading on the other instead of buffering without end.
    """

    #: Twisted's zope interfaces do not type-check as classes; the transports here are plain TCP or TLS ones.
    transport: Any

    def __init__(self, dial: Any, nodelay: bool) -> None:
        self.dial = dial
        self.nodelay = nodelay
        self.other: Splice | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connectionMade(self) -> None:
        if self.nodelay:
            _no_delay(self)
        if self.dial is None:
            return  # the dialled end: joined by the accepting end once connected
        factory = Factory.forProtocol(lambda: Splice(None, self.nodelay))
        self.dial.connect(factory).addCallbacks(self._joined, self._dial_failed)

    def _joined(self, other: Splice) -> None:
        if self.closed:
            other.transport.loseConnection()
            return
        self.other, other.other = other, self
        assert self.transport is not None and other.transport is not None
        self.transport.registerProducer(other.transport, True)
        other.transport.registerProducer(self.transport, True)
        if self.pending:
            other.transport.write(b"".join(self.pending))
            self.pending = []

    def _dial_failed(self, failure: Failure) -> None:
        print(f"relay: could not reach the next leg: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        other, self.other = self.other, None
        if other is not None and other.transport is not None:
            other.other = None
            other.transport.unregisterProducer()
            other.transport.loseConnection()


def start(certs: Path, target: tuple[str, int], nodelay: bool) -> Any:
    """Listen with both legs; fire with ``{"in_port": ..., "out_port": ...}``."""
    ca = certs / "ca.crt"
    inner = load_tls_material(ca, certs / "relay-in" / "chain.pem", certs / "relay-in" / "key.pem",
                              router_id="relay-in")
    outer = load_tls_material(ca, certs / "relay-out" / "chain.pem", certs / "relay-out" / "key.pem",
                              router_id="relay-out")
    to_target: Any = TCP4ClientEndpoint(reactor, target[0], target[1])
    out_endpoint: Any = SSL4ServerEndpoint(  # type: ignore[no-untyped-call]
        reactor, 0, server_options(outer, require_client_cert=True), interface="127.0.0.1")
    client_tls = client_options(inner, expected_peer_id="relay-out")

    def out_listening(out_port: Any) -> Any:
        out_number: int = out_port.getHost().port
        to_out: Any = SSL4ClientEndpoint(reactor, "127.0.0.1", out_number, client_tls)  # type: ignore[no-untyped-call]
        in_endpoint: Any = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")  # type: ignore[no-untyped-call]
        in_factory = Factory.forProtocol(lambda: Splice(to_out, nodelay))
        return in_endpoint.listen(in_factory).addCallback(
            lambda in_port: {"in_port": in_port.getHost().port, "out_port": out_number})

    out_factory = Factory.forProtocol(lambda: Splice(to_target, nodelay))
    return out_endpoint.listen(out_factory).addCallback(out_listening)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certs", type=Path, required=True,
                        help="PKI directory: ca.crt, relay-in/{chain,key}.pem, relay-out/{chain,key}.pem")
    parser.add_argument("--target", required=True, help="host:port the relay-out leg connects to")
    parser.add_argument("--ready-file", type=Path, required=True, help="written with the ports once listening")
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY on every relay socket")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")

    def ready(ports: dict[str, int]) -> None:
        scratch = args.ready_file.with_suffix(".tmp")
        scratch.write_text(json.dumps({**ports, "pid": os.getpid()}))
        scratch.replace(args.ready_file)  # the reader never sees half a file

    def failed(failure: Failure) -> None:
        print(f"relay: could not start: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    start(args.certs, (host, int(port)), args.nodelay).addCallbacks(ready, failed)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
