"""Request-model base: proto3-style JSON parsing, snake_case or lowerCamelCase at every depth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from gemserve.errors import InvalidArgument


class WireModel(BaseModel):
    """Accepts both ``max_output_tokens`` and ``maxOutputTokens``; unknown keys are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        frozen=True,
        loc_by_alias=False,
    )


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def invalid_argument(exc: ValidationError, prefix: str = "") -> InvalidArgument:
    """Turn a pydantic error into a Google-style message that names the field."""
    messages = []
    for err in exc.errors(include_url=False)[:5]:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        where = _path(((prefix,) if prefix else ()) + loc) or prefix or "request"
        if err["type"] == "extra_forbidden":
            parent, _, name = where.rpartition(".")
            messages.append(f"Unknown name {name!r} at '{parent or 'request'}': Cannot find field.")
        elif err["type"] == "missing":
            messages.append(f"Missing required field '{where}'.")
        else:
            messages.append(f"Invalid value at '{where}': {err['msg']}.")
    return InvalidArgument(" ".join(messages))


# ``int`` refuses a longer digit string (Python's default ``sys.get_int_max_str_digits``).
MAX_DECIMAL_DIGITS = 4300


def is_decimal_count(text: str) -> bool:
    """ASCII digits only, as proto3 JSON writes a 64-bit integer. ``str.isdigit`` also accepts
    "²", which ``int`` then refuses (a 500), and full-width digits, which ``int`` reads. More
    than ``MAX_DECIMAL_DIGITS`` digits is no count either: ``int`` would raise (a 500)."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_DECIMAL_DIGITS


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _proto_int(value: Any) -> Any:
    """proto3 JSON: an integer is a number without a fraction or a string of ASCII digits
    (64-bit values are written as strings); never a boolean."""
    _not_a_boolean(value)
    if isinstance(value, str):
        digits = value.removeprefix("-")
        if not is_decimal_count(digits):
            raise ValueError("must be an integer written in ASCII digits")
        return int(value)
    return value


# Numbers as proto3 JSON reads them (pydantic alone would take true as 1).
ProtoFloat = Annotated[float, BeforeValidator(_not_a_boolean)]
ProtoInt = Annotated[int, BeforeValidator(_proto_int)]


def iso_utc(moment: datetime) -> str:
    """A timestamp as the Interactions API writes one (seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Body = TypeVar("Body", bound=BaseModel)


def validate_body(model: type[Body], body: Any) -> Body:
    """A request body as ``model``: a JSON object, or a 400 naming what is wrong."""
    if not isinstance(body, dict):
        raise InvalidArgument("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_argument(exc) from None


def refuse_unserved(model: BaseModel, names: tuple[str, ...], path: str = "") -> None:
    """A 400 naming the first field among ``names`` that is set (not None, false or empty):
    fields in a surface's schema that this server does not serve yet are never dropped."""
    for name in names:
        if getattr(model, name) not in (None, False, []):
            field = f"{path}.{name}" if path else name
            raise InvalidArgument(f"Invalid value at '{field}': not supported by this server yet.")
