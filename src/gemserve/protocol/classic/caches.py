"""Wire shapes of ``cachedContents``: the create and update bodies (either casing, at every
depth), ``ttl`` (a protobuf Duration: ``"300s"``, ``"1.5s"``), ``expireTime`` (RFC 3339), and
the CachedContent resource (camelCase, as both SDKs parse it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import Field, StrictStr

from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.request import Content
from gemserve.protocol.common import WireModel, validate_body

# The id after "cachedContents/": gemserve makes 16 lowercase letters and digits.
CACHE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# proto3 JSON Duration: seconds with up to nine fractional digits, then "s".
_DURATION = re.compile(r"^(-?)([0-9]{1,12})(?:\.([0-9]{1,9}))?s$")
# What ``updateMask`` may name: only the expiration can be updated, as on Gemini.
UPDATABLE = frozenset({"ttl", "expire_time", "expireTime"})


class CreateCachedContent(WireModel):
    """The body of ``POST cachedContents``. ``contents``, ``systemInstruction``, ``tools``
    and ``toolConfig`` are what a generate request gives; they are validated as one."""

    model: StrictStr | None = None
    display_name: StrictStr | None = Field(default=None, max_length=512)
    contents: list[Content] | None = None
    system_instruction: Content | None = None
    tools: list[Any] | None = None
    tool_config: Any = None
    ttl: StrictStr | None = None
    expire_time: StrictStr | None = None

    @classmethod
    def parse(cls, body: Any) -> CreateCachedContent:
        request = validate_body(cls, body)
        if not request.model:
            raise InvalidArgument("Missing required field 'model'.")
        if not request.contents:
            raise InvalidArgument("Missing required field 'contents'.")
        return request

    def content(self) -> dict[str, Any]:
        """The cached part of a generate request, as stored (camelCase JSON)."""
        out: dict[str, Any] = {
            "contents": [
                c.model_dump(mode="json", by_alias=True, exclude_none=True)
                for c in self.contents or ()
            ]
        }
        if self.system_instruction is not None:
            out["systemInstruction"] = self.system_instruction.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        if self.tools is not None:
            out["tools"] = self.tools
        if self.tool_config is not None:
            out["toolConfig"] = self.tool_config
        return out


class UpdateCachedContent(WireModel):
    """The body of ``PATCH cachedContents/{id}``: the new expiration, one way or the other."""

    ttl: StrictStr | None = None
    expire_time: StrictStr | None = None
    # Clients that send the whole resource back repeat its name.
    name: StrictStr | None = None

    @classmethod
    def parse(cls, body: Any, update_mask: str | None) -> UpdateCachedContent:
        request = validate_body(cls, {} if body is None else body)
        if update_mask:
            fields = {f.strip() for f in update_mask.split(",") if f.strip()}
            other = sorted(fields - UPDATABLE)
            if other:
                raise InvalidArgument(
                    f"Invalid value at 'update_mask': {', '.join(other)} cannot be updated; "
                    "only the expiration (ttl or expire_time) can."
                )
        if request.ttl is None and request.expire_time is None:
            raise InvalidArgument("Missing required field: set ttl or expire_time.")
        return request


def expiry(
    ttl: str | None,
    expire_time: str | None,
    now: datetime,
    *,
    default: timedelta,
    maximum: timedelta,
) -> datetime:
    """When a cache expires: ``ttl`` from now, or ``expireTime``, or ``default`` from now; in
    the future and at most ``maximum`` ahead."""
    if ttl is not None and expire_time is not None:
        raise InvalidArgument("Invalid value: set ttl or expire_time, not both.")
    if ttl is not None:
        span = parse_duration(ttl, "ttl")
        if span <= timedelta(0):
            raise InvalidArgument(f"Invalid value at 'ttl': {ttl!r} must be positive.")
        field, moment = "ttl", now + span
    elif expire_time is not None:
        field, moment = "expire_time", parse_timestamp(expire_time, "expire_time")
        if moment <= now:
            raise InvalidArgument(
                f"Invalid value at 'expire_time': {expire_time!r} is in the past."
            )
    else:
        return now + default
    if moment - now > maximum:
        raise InvalidArgument(
            f"Invalid value at '{field}': a cache lives at most "
            f"{int(maximum.total_seconds())} s (limits.max_cache_ttl_seconds)."
        )
    return moment


def parse_duration(value: str, field: str) -> timedelta:
    match = _DURATION.fullmatch(value)
    if match is None:
        raise InvalidArgument(
            f"Invalid value at '{field}': {value!r} is not a duration (seconds with an 's', "
            "such as '300s' or '1.5s')."
        )
    sign, seconds, fraction = match.groups()
    span = timedelta(seconds=int(seconds), microseconds=int((fraction or "0")[:6].ljust(6, "0")))
    return -span if sign else span


def parse_timestamp(value: str, field: str) -> datetime:
    """RFC 3339 (``2026-01-01T00:00:00.5Z``, or with an offset); a time without a zone is
    UTC (the Python SDK writes a naive ``datetime`` without one)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"Invalid value at '{field}': {value!r} is not an RFC 3339 timestamp."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def cache_id_from_name(name: str, field: str = "name") -> str:
    """``cachedContents/abc`` or ``abc`` → ``abc``; 400 unless it can be a cache id."""
    bare = name.removeprefix("cachedContents/")
    if not CACHE_ID.fullmatch(bare):
        raise InvalidArgument(
            f"Invalid value at '{field}': {name!r} is not a cached content name "
            "(cachedContents/ followed by its id)."
        )
    return bare


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StoredCache(Protocol):
    """What the resource reads of a stored cache (the store's record has these fields)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def token_count(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...


def cached_content_resource(record: StoredCache) -> dict[str, Any]:
    """The CachedContent resource. Its contents are input only, as on Gemini: they are not
    returned."""
    resource: dict[str, Any] = {
        "name": f"cachedContents/{record.id}",
        "model": record.model,
        "createTime": rfc3339(record.created_at),
        "updateTime": rfc3339(record.updated_at),
        "expireTime": rfc3339(record.expires_at),
        "usageMetadata": {"totalTokenCount": record.token_count},
    }
    if record.display_name is not None:
        resource["displayName"] = record.display_name
    return resource
