"""The web page every router serves at ``/ui/``: static HTML, JavaScript and CSS reading the router's REST API.

The files live next to this module and are served by :func:`wecross.ui.assets.asset`; see docs/ui.md.
"""
