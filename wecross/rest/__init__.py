"""The router's public REST API (twisted.web), written against :class:`wecross.facade.RouterFacade`.

See ``docs/rest-api.md`` for the endpoints, the JSON envelope and the error codes.
"""

from wecross.rest.api import RestSite, make_site

__all__ = ["RestSite", "make_site"]
