"""Stub plugin drop-in: the embedded chain. Found by wecross.stub.loader via twisted.plugin; keep it thin."""

from wecross.embedded.factory import EmbeddedStubFactory

embedded = EmbeddedStubFactory()
