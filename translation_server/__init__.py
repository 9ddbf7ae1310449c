"""The simulated video translation server (see ../shared/API.md, sections 1, 2, 3 and 5)."""

from .app import create_app
from .config import Settings

__all__ = ["Settings", "create_app"]
