"""Decoding media into what models take in: RGB images, 16 kHz audio, frames, document text.

Every decoder checks its caps (pixels, seconds, frames, pages) before decoding everything,
raises :class:`MediaError` with a message safe to show the client (never a library's own
text), and runs blocking work only where the caller put it (a worker thread).
"""

from gemserve.media.errors import MediaError

__all__ = ["MediaError"]
