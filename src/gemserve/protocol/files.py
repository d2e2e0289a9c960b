"""Wire shapes of the Files API: the upload start body (either casing), names, and the File
resource."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import Field, StrictInt, StrictStr, ValidationError, field_validator

from gemserve.errors import InvalidArgument
from gemserve.protocol.common import WireModel, invalid_argument, is_decimal_count

# Google's rule for file ids: up to 40 lowercase letters, digits or dashes, no dash at either end.
FILE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
MIME_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)


class FileMetadata(WireModel):
    """The ``file`` object of an upload start request (Python sends snake_case, JS camelCase)."""

    name: StrictStr | None = None
    display_name: StrictStr | None = Field(default=None, max_length=512)
    mime_type: StrictStr | None = None
    # Python sends a number, JS a string (int64 in proto JSON).
    size_bytes: StrictInt | StrictStr | None = None

    @field_validator("size_bytes")
    @classmethod
    def _non_negative(cls, value: int | str | None) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            if not is_decimal_count(value):
                raise ValueError("must be a non-negative integer")
            value = int(value)
        if value < 0:
            raise ValueError("must be a non-negative integer")
        return value

    def size(self) -> int | None:
        return None if self.size_bytes is None else int(self.size_bytes)


class UploadStart(WireModel):
    file: FileMetadata | None = None

    @classmethod
    def parse(cls, body: Any) -> UploadStart:
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise InvalidArgument("The request body must be a JSON object.")
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise invalid_argument(exc) from None


def file_id_from_name(name: str, field: str = "name") -> str:
    """``files/abc`` or ``abc`` → ``abc``; 400 unless it follows Google's id rule."""
    bare = name.removeprefix("files/")
    if not FILE_NAME.fullmatch(bare):
        raise InvalidArgument(
            f"Invalid value at '{field}': {name!r} is not a file name (files/ followed by up to "
            "40 lowercase letters, digits or dashes, not starting or ending with a dash)."
        )
    return bare


def check_mime_type(value: str, field: str = "mime_type") -> str:
    if not MIME_TYPE.fullmatch(value):
        raise InvalidArgument(f"Invalid value at '{field}': {value!r} is not a MIME type.")
    return value.lower()


class StoredFile(Protocol):
    """What the File resource reads of a stored file (the store's record has these fields)."""

    @property
    def name(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...


def file_resource(record: StoredFile, base_url: str, version: str) -> dict[str, Any]:
    """The File resource, camelCase with ``sizeBytes`` as a string (proto JSON).

    The JS SDK hands this JSON to the caller as is, so ``uploadedFile.mimeType`` must exist.
    ``base_url`` is the caller's view of this server (scheme, host and path prefix).
    """
    uri = f"{base_url}/{version}/files/{record.name}"
    resource: dict[str, Any] = {
        "name": f"files/{record.name}",
        "mimeType": record.mime_type,
        "sizeBytes": str(record.size_bytes),
        "createTime": _rfc3339(record.created_at),
        "updateTime": _rfc3339(record.updated_at),
        "expirationTime": _rfc3339(record.expires_at),
        "sha256Hash": base64.b64encode(bytes.fromhex(record.sha256)).decode(),
        "uri": uri,
        "downloadUri": f"{uri}:download?alt=media",
        "state": record.state,
        "source": record.source,
    }
    if record.display_name is not None:
        resource["displayName"] = record.display_name
    return resource


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
