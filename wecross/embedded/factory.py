"""The plugin object for the embedded chain (``type = "embedded"``); plugins/embedded.py exposes an instance."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from twisted.plugin import IPlugin
from zope.interface import implementer

from wecross.chain.verifier import IChainVerifier, IVerifierFactory
from wecross.embedded.stub import EmbeddedStub
from wecross.embedded.verifier import EmbeddedVerifier
from wecross.stub.interfaces import IStub, IStubFactory, StubSettings


@implementer(IPlugin, IStubFactory, IVerifierFactory)
class EmbeddedStubFactory:
    stub_type = "embedded"
    description = "built-in chain in the router process, persisted in SQLite (kv and asset resources)"

    def build(self, settings: StubSettings, data_dir: Path) -> IStub:
        return cast(IStub, EmbeddedStub(settings, data_dir))  # @implementer is invisible to plain mypy

    def verifier(self) -> IChainVerifier:
        return cast(IChainVerifier, _VERIFIER)

    def __repr__(self) -> str:
        return "<EmbeddedStubFactory>"


#: Verifiers hold no per-request state: one serves every router of the process.
_VERIFIER = EmbeddedVerifier()
