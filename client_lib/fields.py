"""Declared fields: one definition of a request field both validates it and documents it.

A ``Field`` names its JSON type and limits; ``check`` validates a value against them (raising
``APIProblem`` 422 naming the field, as the contract wants), ``schema`` gives its JSON Schema
for the OpenAPI documents, and ``parse`` reads it from a query string. The services validate
their request bodies and query parameters with the fields the contract declares
(``client_lib.contract``) and build their ``/openapi.json`` from the same fields, so the
document and the behaviour cannot drift. Standard library only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .wire import invalid

_MISSING: Any = object()


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One field of a request body or query string."""

    name: str
    type: str  # string, integer, number, boolean, object
    description: str = ""
    default: Any = None
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None  # matched whole
    pattern_hint: str = ""  # the message when the pattern does not match
    enum: tuple[str, ...] = ()
    format: str | None = None  # "uri": an http(s) URL naming a host
    max_json_bytes: int | None = None  # objects: size as compact JSON
    properties: tuple[Field, ...] = ()  # objects: the only fields allowed, when given
    code: str = "validation_error"  # the problem code of this field's errors
    required: bool = False  # objects: a field that must be present
    blank_is_default: bool = True  # query strings: an empty value means the default

    # ------------------------------------------------------------ checking

    def check(self, value: Any, path: str | None = None) -> Any:
        """The value, validated; APIProblem 422 naming ``path`` (the field's name) if not."""
        where = path or self.name
        if value is None:
            if self.nullable:
                return None
            raise invalid(where, f"must not be null ({self._what()})", self.code)
        checker = getattr(self, f"_check_{self.type}")
        return checker(value, where)

    def parse(self, raw: str | None) -> Any:
        """The value of a query-string parameter (ASCII digits only for integers)."""
        if raw is None or (raw == "" and self.blank_is_default):
            return self.default
        if self.type == "integer":
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
                raise invalid(self.name, self._range_message(True), self.code)
            return self.check(int(raw))
        if self.type == "number":
            try:
                number = float(raw) if raw.isascii() else math.nan
            except ValueError:
                number = math.nan
            return self.check(number)
        return self.check(raw)

    def _is_text(self) -> bool:
        return self.type == "string" and not self.enum

    def _what(self) -> str:
        return {"object": "a JSON object", "boolean": "true or false"}.get(self.type, self.type)

    def _range_message(self, integer: bool) -> str:
        low, high = self.minimum, self.maximum
        lead = "must be an integer" if integer else "must be"
        if low is not None and high is not None:
            span = "from {} to {}" if integer else "between {} and {}"
            return f"{lead} " + span.format(f"{low:g}", f"{high:g}")
        if low is not None:
            return f"{lead} of at least {low:g}" if integer else f"must be at least {low:g}"
        if high is not None:
            return f"{lead} of at most {high:g}" if integer else f"must be at most {high:g}"
        return lead if integer else "must be a number"

    def _in_range(self, value: float, where: str, integer: bool) -> None:
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise invalid(where, self._range_message(integer), self.code)

    def _check_boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise invalid(where, "must be true or false", self.code)
        return value

    def _check_integer(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(where, self._range_message(True), self.code)
        self._in_range(value, where, True)
        return value

    def _check_number(self, value: Any, where: str) -> float:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value):
            raise invalid(where, "must be a number", self.code)
        self._in_range(value, where, False)
        return float(value)

    def _check_string(self, value: Any, where: str) -> str:
        if self.enum:
            if value not in self.enum:
                raise invalid(where, f"must be one of {', '.join(self.enum)}", self.code)
            return str(value)
        if not isinstance(value, str) or not value:
            raise invalid(where, "must be a non-empty string", self.code)
        if not value.isascii() and not _unicode(value):
            raise invalid(where, "must be Unicode text (an unpaired surrogate is not)", self.code)
        if self.max_length is not None and len(value) > self.max_length:
            raise invalid(where, f"must be at most {self.max_length} characters", self.code)
        if self.min_length is not None and len(value) < self.min_length:
            raise invalid(where, f"must be at least {self.min_length} characters", self.code)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise invalid(where, self.pattern_hint or f"must match {self.pattern}", self.code)
        if self.format == "uri":
            _check_url(value, where, self.code)
        return value

    def _check_object(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid(where, "must be a JSON object", self.code)
        if self.max_json_bytes is not None:
            text = json.dumps(value, separators=(",", ":"))
            if len(text) > self.max_json_bytes:
                raise invalid(
                    where, f"must be at most {self.max_json_bytes} bytes as JSON (got {len(text)})"
                )
            if "\\ud" in text and not _unicode(json.dumps(value, ensure_ascii=False)):
                raise invalid(where, "must hold Unicode text (an unpaired surrogate is not)")
        if not self.properties:
            return value
        return check_object(self.properties, value, prefix=f"{where}.", fill=False)

    # ------------------------------------------------------------- schemas

    def schema(self) -> dict[str, Any]:
        """The field's JSON Schema (OpenAPI 3.1)."""
        out: dict[str, Any] = {"type": [self.type, "null"] if self.nullable else self.type}
        if self.enum:
            out = {"enum": [*self.enum, *([None] if self.nullable else [])]}
        limits = {
            "description": self.description or None,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "minLength": max(1, self.min_length or 0) if self._is_text() else None,
            "maxLength": self.max_length,
            "pattern": f"^(?:{self.pattern})$" if self.pattern else None,
            "format": self.format,
            "x-max-json-bytes": self.max_json_bytes,
        }
        out.update({k: v for k, v in limits.items() if v is not None})
        if self.properties:
            out.update(object_schema(self.properties))
        return out


def _unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text: a JSON ``"\\ud800"`` escape parses to an unpaired
    surrogate, which no UTF-8 store or strict JSON reader takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_url(value: str, where: str, code: str) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise invalid(where, f"not a valid URL ({exc})", code) from exc
    if parts.scheme not in ("http", "https"):
        raise invalid(where, "scheme must be http or https", code)
    if not parts.hostname:
        raise invalid(where, "must name a host", code)


def check_object(
    fields: Sequence[Field], body: Mapping[str, Any], *, prefix: str = "", fill: bool = True
) -> dict[str, Any]:
    """Every declared field of ``body`` checked; absent ones take their default (``fill``) or
    stay absent (nested options, where absent means "not pinned"). An unknown field is 422
    ``unknown_field``."""
    names = {f.name for f in fields}
    unknown = sorted(set(body) - names)
    if unknown:
        raise invalid(prefix + unknown[0], "unknown field", "unknown_field")
    out = {}
    for field in fields:
        value = body.get(field.name, _MISSING)
        if value is _MISSING:
            if field.required:
                raise invalid(prefix + field.name, "is required", field.code)
            if fill:
                out[field.name] = copy.copy(field.default)  # a fresh {} for each request
        else:
            out[field.name] = field.check(value, prefix + field.name)
    return out


def object_schema(fields: Sequence[Field]) -> dict[str, Any]:
    """The JSON Schema of an object made of these fields, and no others."""
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: f.schema() for f in fields},
    }
    required = [f.name for f in fields if f.required]
    if required:
        out["required"] = required
    return out


def query_parameters(fields: Sequence[Field]) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a query string made of these fields (an empty value, where
    it means the default, is part of each one's schema)."""
    return [
        {"name": f.name, "in": "query", "required": False, "schema": _query_schema(f)}
        for f in fields
    ]


def _query_schema(field: Field) -> dict[str, Any]:
    schema = field.schema()
    if not field.blank_is_default:
        return schema
    return {"anyOf": [schema, {"const": ""}], "description": schema.pop("description", "")}


def parameter(field: Field, where: str, *, required: bool = False) -> dict[str, Any]:
    """The OpenAPI parameter (``path`` or ``header``) a field describes."""
    return {"name": field.name, "in": where, "required": required, "schema": field.schema()}
