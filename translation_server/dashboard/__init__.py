"""The dashboard: the page at ``GET /`` with its script and stylesheet (``static/``, shipped in
the package, nothing from another host), and the JSON endpoints it reads (``/v1/dashboard``)."""

from .page import bp as page_bp
from .routes import bp as api_bp

__all__ = ["api_bp", "page_bp"]
