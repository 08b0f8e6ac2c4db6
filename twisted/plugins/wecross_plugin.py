"""twistd drop-in: makes ``twistd wecross --config FILE`` available.

Only names the module that builds the service, so that scanning plugins imports nothing of the router.
"""

from twisted.application.service import ServiceMaker

wecross = ServiceMaker(
    "WeCross-Py router",
    "wecross.tap",
    "A WeCross-Py cross-chain router (stubs, P2P overlay, REST API).",
    "wecross",
)
