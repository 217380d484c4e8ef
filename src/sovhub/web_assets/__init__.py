"""The web pages' assets: Jinja templates and static files (CSS, JavaScript, icons).

No code lives here: the handlers that render these are in ``sovhub.assistant.web`` (the assistant,
the staff console, the credits pages) and ``sovhub.energy.page``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR", "TEMPLATES_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
