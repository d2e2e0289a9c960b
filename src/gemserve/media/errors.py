"""The one error media decoders raise; the service turns it into a 400 naming the part."""

from __future__ import annotations


class MediaError(ValueError):
    """Corrupt, mislabelled or over-limit media. The message is written for the client."""
