"""``twistd wecross``: options and the service maker (kept apart from the plugin drop-in so twistd's plugin scan
stays cheap: the drop-in names this module and twistd imports it only when the wecross command is used)."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from wecross.config import ConfigError, Settings, load_settings


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = "Run one WeCross-Py router: its stubs, its peer links and its REST API."
    optParameters = [["config", "c", "conf/router.toml", "The router's TOML configuration file."]]

    settings: Settings

    def postOptions(self) -> None:
        try:
            self.settings = load_settings(self["config"])
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None


def makeService(options: Any) -> IService:
    from twisted.internet import reactor

    from wecross.node import RouterNode

    node = RouterNode(options.settings, reactor)

    def failed(failure: Any) -> None:
        # A router that cannot serve must not linger as a half-started daemon: stop, so twistd exits.
        if reactor.running:
            reactor.stop()

    node.ready.addErrback(failed)
    return node
