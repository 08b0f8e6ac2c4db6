"""``twistd wecross``: options and the service maker (kept apart from the plugin drop-in so twistd's plugin scan
stays cheap: the drop-in names this module and twistd imports it only when the wecross command is used).

Everything that can be checked before the reactor runs (the config, the certificates and key) is checked while
parsing options, so a mistake prints one clear line and twistd exits with status 1, never a traceback. What can
only fail once running (a port in use, a corrupt chain database) stops the daemon with exit status 1 too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from wecross.config import ConfigError, load_settings

#: Exit status of a router that started but could not serve (a port in use, a broken chain database...).
EXIT_STARTUP_FAILED = 1


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = "Run one WeCross-Py router: its stubs, its peer links and its REST API."
    optParameters = [["config", "c", "conf/router.toml", "The router's TOML configuration file."]]

    node: Any

    def postOptions(self) -> None:
        from wecross.node import RouterNode

        try:
            settings = load_settings(self["config"])
            self.node = RouterNode(settings)
        except (ConfigError, ValueError) as exc:  # TLSConfigError and PKI errors are ValueErrors
            raise usage.UsageError(str(exc)) from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    node = options.node

    def failed(failure: Any) -> None:
        # A router that cannot serve must not linger as a half-started daemon.
        print(f"wecross: {failure.getErrorMessage()}", file=sys.stderr)
        reactor.addSystemEventTrigger("after", "shutdown", os._exit, EXIT_STARTUP_FAILED)
        if reactor.running:
            reactor.stop()
        else:
            reactor.callWhenRunning(reactor.stop)

    node.ready.addErrback(failed)
    return node  # type: ignore[no-any-return]
