"""The browser workspace: files built from ``client_js/`` (``make web``), served at ``/``."""

from parley.web.static import routes

__all__ = ["routes"]
