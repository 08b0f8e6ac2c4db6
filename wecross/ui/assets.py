"""The router's web page as bytes, for the REST API to serve at ``/ui/`` (see docs/ui.md).

The page is three static files of this package. A request names a file; the name is looked up in a fixed table and
never joined to a filesystem path, so no URL (``..``, encoded slashes, absolute paths, NUL bytes) can reach a file
outside the package, or even another file inside it. Each file is read once, on first use, through
:mod:`importlib.resources` (so it works from a source tree, a wheel or a zip), then served from memory: the files
are small and the page asks for them on every load.
"""

from __future__ import annotations

from importlib import resources

#: The files the page consists of, with the Content-Type each is served with. JavaScript and CSS must carry their
#: exact types: the API sends ``X-Content-Type-Options: nosniff``, under which a browser refuses a script or a
#: stylesheet served as anything else.
CONTENT_TYPES: dict[str, bytes] = {
    "index.html": b"text/html; charset=utf-8",
    "app.js": b"text/javascript; charset=utf-8",
    "style.css": b"text/css; charset=utf-8",
}

#: ``/ui/`` is the page itself.
_ALIASES = {"": "index.html"}

_cache: dict[str, tuple[bytes, bytes]] = {}


def asset(path: str) -> tuple[bytes, bytes] | None:
    """``(content, content type)`` of the page's file ``path`` ("" means index.html), None for any other name.

    A missing file of the package itself (a broken installation) raises OSError: that is the operator's problem to
    see in the log, not a 404 telling the user the page does not exist.
    """
    name = _ALIASES.get(path, path)
    content_type = CONTENT_TYPES.get(name)
    if content_type is None:
        return None
    found = _cache.get(name)
    if found is None:
        content = resources.files(__package__).joinpath(name).read_bytes()
        found = _cache[name] = (content, content_type)
    return found


__all__ = ["CONTENT_TYPES", "asset"]
