"""The abstract chain: block headers of remote chains that an entry router has checked, per chain.

A proof says "this transaction is in the block whose transaction root is R". It is worth something only if the
entry router knows, independently of the router that sent the proof, that the block with root R really is block n of
that chain. The header chain here is that knowledge: headers accepted only when they link by hash, block by block,
to a checkpoint the router trusts (the genesis hash from its config, or the one it saw first and pinned), and, if
the policy asks for it, only when ``quorum`` independent routers serving the chain gave the same header.

Sans-IO: no database, no network. :class:`HeaderChain` is fed header wire dicts (``BlockHeader.to_wire``) and
answers what it accepts and why it refuses; the router fetches headers and persists them (wecross.chain.store).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Recomputes a header's hash from its wire dict (chain-specific); None for chain types whose abstract header does
#: not carry every hashed field (their headers are trusted by linkage and quorum alone).
Rehash = Callable[[Mapping[str, Any]], str]
#: Headers further than this above the trusted head are not held while they wait (a source cannot fill memory).
_MAX_AHEAD = 8192


class HeaderError(Exception):
    """A header refused, with the check that failed (a stable word for clients and tests) and why."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


def _hex(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise HeaderError("malformed", f"{what} must be a hex string")
    text = value.lower().removeprefix("0x")
    try:
        bytes.fromhex(text)
    except ValueError:
        raise HeaderError("malformed", f"{what} is not hex: {value!r}") from None
    return text


@dataclass(frozen=True, slots=True)
class TrustedHeader:
    number: int
    hash: str
    prev_hash: str
    wire: Mapping[str, Any]
    #: Routers that gave this header (a quorum needs that many distinct ones).
    sources: frozenset[str] = frozenset()


def parse(wire: Mapping[str, Any]) -> tuple[int, str, str]:
    """(number, hash, prev_hash) of a header wire dict; HeaderError('malformed') for anything else."""
    if not isinstance(wire, Mapping):
        raise HeaderError("malformed", "a header must be a map")
    number = wire.get("number")
    if type(number) is not int or number < 0:
        raise HeaderError("malformed", f"header number must be an integer >= 0, got {number!r}")
    return number, _hex(wire.get("hash"), "header hash"), _hex(wire.get("prev_hash"), "header prev_hash")


@dataclass
class HeaderChain:
    """The trusted headers of one chain, from its checkpoint up, without gaps.

    ``checkpoint``: the hash of block ``checkpoint_number`` the config pins (the genesis, block 0, by default; a
    later block for a long chain such as Ethereum's, where linking back to genesis is out of the question), or None
    to pin the first genesis seen (trust on first use, reported as such). A router never leaves it None when it
    fetches: TrustedResults._pin sets the genesis from the owner's signed gossip record first; the fallback serves
    callers of this sans-IO class that have no signed source. Blocks below the checkpoint cannot be
    trusted. ``quorum``: how many distinct routers must give the same header before it is accepted.
    """

    chain: str
    checkpoint: str | None = None
    quorum: int = 1
    rehash: Rehash | None = None
    pinned_by: str = "config"
    checkpoint_number: int = 0
    headers: dict[int, TrustedHeader] = field(default_factory=dict)
    #: number -> hash -> (prev hash, wire, routers that offered it), while not trusted yet.
    _pending: dict[int, dict[str, tuple[str, Mapping[str, Any], set[str]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quorum < 1:
            raise ValueError("quorum must be at least 1")
        if self.checkpoint_number < 0 or (self.checkpoint_number > 0 and self.checkpoint is None):
            raise ValueError("a checkpoint above the genesis needs its hash")
        if self.checkpoint is not None:
            self.checkpoint = _hex(self.checkpoint, f"checkpoint of {self.chain}")
        else:
            self.pinned_by = "first sight"

    @property
    def height(self) -> int:
        """The highest block with every header from the checkpoint up to it trusted (checkpoint - 1: none yet)."""
        return self.checkpoint_number + len(self.headers) - 1

    def hash_of(self, number: int) -> str | None:
        header = self.headers.get(number)
        return None if header is None else header.hash

    def offer(self, wires: Sequence[Mapping[str, Any]], source: str) -> int:
        """Headers from router ``source``, in any order; returns how many became trusted.

        Raises HeaderError when a header contradicts what is trusted (a forgery or another chain): the caller
        treats everything from that source as suspect. Headers above a gap wait for the gap to be filled.
        """
        parsed: dict[int, tuple[str, str, Mapping[str, Any]]] = {}
        for wire in wires:
            number, digest, prev = parse(wire)
            if self.rehash is not None:
                try:
                    actual = self.rehash(wire)
                except Exception as exc:
                    raise HeaderError("malformed", f"block {number} of {self.chain}: {exc}") from None
                if actual != digest:
                    raise HeaderError("header_hash", f"block {number} of {self.chain} does not hash to its "
                                                     f"stated hash")
            if number < self.checkpoint_number:
                continue  # below the checkpoint: nothing to link it to, never trusted
            trusted = self.headers.get(number)
            if trusted is not None and trusted.hash != digest:
                raise HeaderError("header_mismatch", f"block {number} of {self.chain} from {source} is not the "
                                                     f"trusted one ({digest[:16]}… vs {trusted.hash[:16]}…)")
            if number == self.checkpoint_number and self.checkpoint is not None and digest != self.checkpoint:
                raise HeaderError("checkpoint", f"block {number} of {self.chain} from {source} is "
                                                f"{digest[:16]}…, not the pinned {self.checkpoint[:16]}…")
            parsed[number] = (digest, prev, wire)
        # Every offered header above the trusted head gets this source's vote at once, so that with a quorum a run
        # of headers from k routers is accepted in one pass rather than one block per round of fetches.
        for number, (digest, prev, wire) in parsed.items():
            if self.height < number <= self.height + _MAX_AHEAD:
                votes = self._pending.setdefault(number, {}).setdefault(digest, (prev, wire, set()))
                votes[2].add(source)
        accepted = 0
        number = self.height + 1
        while number in self._pending:
            winner = next(((digest, entry) for digest, entry in self._pending[number].items()
                           if len(entry[2]) >= self.quorum), None)
            if winner is None:
                break
            digest, (prev, wire, voters) = winner
            if number > self.checkpoint_number:
                below = self.headers[number - 1]
                if prev != below.hash:
                    del self._pending[number][digest]
                    raise HeaderError("link", f"block {number} of {self.chain} from {source} does not link to "
                                              f"trusted block {number - 1}")
            if number == 0 and self.checkpoint is None:
                self.checkpoint = digest  # trust on first use: pinned from now on
            self.headers[number] = TrustedHeader(number, digest, prev, dict(wire), frozenset(voters))
            self._pending.pop(number, None)
            accepted += 1
            number += 1
        return accepted

    def load(self, stored: Sequence[TrustedHeader]) -> None:
        """Headers read back from the router's own database (checked when they were first accepted)."""
        for header in sorted(stored, key=lambda h: h.number):
            if header.number != self.height + 1:
                break
            if header.number == self.checkpoint_number and self.checkpoint is not None \
                    and header.hash != self.checkpoint:
                break  # the config now pins another checkpoint: the stored chain is not that one
            if header.number == 0 and self.checkpoint is None:
                self.checkpoint = header.hash
            self.headers[header.number] = header

    def describe(self) -> dict[str, Any]:
        return {"chain": self.chain, "trusted_height": self.height, "checkpoint": self.checkpoint,
                "checkpoint_number": self.checkpoint_number, "pinned_by": self.pinned_by, "quorum": self.quorum}
