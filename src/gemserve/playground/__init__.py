"""The playground's static files (vanilla JS modules, CSS, one HTML page), served by
``gemserve.api.playground``. Nothing here is fetched from a CDN or built by npm."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
