"""WeCross-Py: a cross-chain router network on Twisted."""

__version__ = "0.1.0"
