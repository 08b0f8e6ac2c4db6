"""The router's public REST API (twisted.web), written against :class:`wecross.facade.RouterFacade`.

See ``docs/rest-api.md`` for the endpoints, the JSON envelope and the error codes.

``RestSite`` and ``make_site`` are imported on first use: the SDK signs what ``wecross.rest.json_body`` parses,
and a blocking client must not load twisted.web for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wecross.rest.api import RestSite, make_site


def __getattr__(name: str) -> Any:
    if name in ("RestSite", "make_site"):
        from wecross.rest import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RestSite", "make_site"]
