"""The gossip directory: signed router records and the sans-IO directory that holds and exchanges them.

:mod:`wecross.gossip.record` defines what one router tells the network about itself and how that is signed and
verified; :mod:`wecross.gossip.directory` keeps the newest verified record of every router and supports push-pull
anti-entropy. Neither does I/O or imports Twisted: the GossipService drives them. See docs/gossip.md.
"""

from wecross.gossip.directory import ChainClash, Directory
from wecross.gossip.record import (
    DEFAULT_RECORD_LIMITS,
    MAX_TTL,
    ChainInfo,
    LinkInfo,
    RecordError,
    RecordLimits,
    RecordSigner,
    RecordVerifier,
    ResourceEntry,
    RouterRecord,
    SignedRecord,
    Version,
)

__all__ = [
    "DEFAULT_RECORD_LIMITS",
    "MAX_TTL",
    "ChainClash",
    "ChainInfo",
    "Directory",
    "LinkInfo",
    "RecordError",
    "RecordLimits",
    "RecordSigner",
    "RecordVerifier",
    "ResourceEntry",
    "RouterRecord",
    "SignedRecord",
    "Version",
]
