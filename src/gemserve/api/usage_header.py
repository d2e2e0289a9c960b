"""``X-Gemserve-Usage-Estimated: true`` on a unary response whose usage is gemserve's estimate.

The flag is in the body too (``"estimated": true`` in the usage object), but the Python SDK
drops the classic surface's unknown fields; the header reaches it anyway
(``response.sdk_http_response.headers``). A stream has sent its headers before the usage is
known, so there the body's flag is the only one.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

USAGE_ESTIMATED_HEADER = "X-Gemserve-Usage-Estimated"


def flag_estimate(response: Response, usage: object) -> Response:
    """``response`` with the header set when ``usage`` (a usage object) says ``estimated``."""
    if isinstance(usage, Mapping) and usage.get("estimated") is True:
        response.headers[USAGE_ESTIMATED_HEADER] = "true"
    return response
