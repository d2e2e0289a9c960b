"""Offset paging for list endpoints: ``pageSize`` and an opaque ``pageToken``."""

from __future__ import annotations

from gemserve.errors import InvalidArgument

# Offsets go into SQL as a 64-bit integer: past it SQLite raises OverflowError and PostgreSQL
# DataError (a 500). No page token gemserve hands out comes near.
MAX_OFFSET = 2**63 - 1


def page_window(
    page_size: str | None, page_token: str | None, default: int, maximum: int
) -> tuple[int, int]:
    """``(offset, size)``: a size of 0 or less means the default; above the maximum, the max."""
    size = _parse_int(page_size, "pageSize", default)
    if size <= 0:
        size = default
    offset = _parse_int(page_token, "pageToken", 0)
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgument("Invalid value at 'pageToken'.")
    return offset, min(size, maximum)


def _parse_int(raw: str | None, field: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"Invalid value at '{field}': {raw!r} is not an integer.") from None
