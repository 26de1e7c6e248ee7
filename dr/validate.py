"""Typed field checks for stored, untrusted documents (manifest.json and its stanzas).

Everything read back from a store is hostile until authenticated, and the manifest is
parsed before its MAC can be checked. These helpers check a JSON value's type and range
and raise IntegrityError (exit 6) with one line naming the field and what was expected.
A message never echoes the value: it may be long, binary or (in a stanza) key material.

Only dr.errors is imported: this module sits at the bottom of the layers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dr.errors import IntegrityError

MAX_SIZE = 1 << 48  # object sizes and counts: 256 TiB is far beyond any snapshot
MAX_TEXT = 4096  # free-form strings (addresses, object keys, contexts, stanza fields)
MAX_KEYS = 64  # entries of a free-form object
MAX_DOCUMENT = 1 << 20  # bytes of a manifest.json
HEX64_RE = re.compile(r"[0-9a-f]{64}")
ISO_UTC_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
KEY_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

__all__ = [
    "HEX64_RE",
    "MAX_DOCUMENT",
    "MAX_KEYS",
    "MAX_SIZE",
    "MAX_TEXT",
    "FieldError",
    "b64_bytes",
    "hex64",
    "integer",
    "iso_utc",
    "load_json_object",
    "member",
    "number",
    "obj",
    "optional_text",
    "scalar_map",
    "text",
]


class FieldError(IntegrityError):
    """A stored field failed its type or range check; `field` names it (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}' {problem}")
        self.field = field
        self.problem = problem


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def load_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Strict JSON: UTF-8, one object, no NaN/Infinity, no duplicate keys, bounded size
    and depth. Raises IntegrityError with `what` and a short reason."""
    if not isinstance(raw, (bytes, bytearray)):
        raise IntegrityError(f"{what} is not bytes")
    if len(raw) > MAX_DOCUMENT:
        raise IntegrityError(f"{what} is larger than {MAX_DOCUMENT} bytes")
    try:
        text_ = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"{what} is not valid UTF-8") from None
    try:
        data = json.loads(
            text_,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise IntegrityError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        # json.JSONDecodeError's message names a position, never the content; ours name
        # at most 40 characters of a key. Cut anyway: one short line.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IntegrityError(f"{what} is not valid JSON ({reason:.80})") from None
    if not isinstance(data, dict):
        raise IntegrityError(f"{what} is not a JSON object (it is {_type_name(data)})")
    return data


def member(field: str, key: str) -> str:
    """The dotted name of `key` inside `field` ("" is the document itself)."""
    return f"{field}.{key}" if field else key


def obj(
    value: object,
    field: str,
    *,
    required: frozenset[str] = frozenset(),
    allowed: frozenset[str] | None = None,
    max_keys: int = MAX_KEYS,
) -> dict[str, Any]:
    """A JSON object with string keys, the `required` ones present and (when `allowed`
    is given) no others."""
    if not isinstance(value, dict):
        raise FieldError(field, f"must be an object, not {_type_name(value)}")
    if len(value) > max_keys:
        raise FieldError(field, f"has more than {max_keys} entries")
    for key in value:
        if not isinstance(key, str) or not KEY_NAME_RE.fullmatch(key):
            raise FieldError(field, "has a key that is not a short field name")
    missing = sorted(required - value.keys())
    if missing:
        raise FieldError(member(field, missing[0]), "is missing")
    if allowed is not None:
        extra = sorted(value.keys() - allowed)
        if extra:
            raise FieldError(member(field, extra[0]), "is not a known field")
    return value


def text(
    value: object,
    field: str,
    *,
    max_len: int = MAX_TEXT,
    pattern: re.Pattern[str] | None = None,
    ascii_only: bool = False,
    allow_empty: bool = False,
) -> str:
    """A string: printable (no control characters or lone surrogates), bounded, and
    matching `pattern` (whole string) when given."""
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, not {_type_name(value)}")
    if len(value) > max_len:
        raise FieldError(field, f"is longer than {max_len} characters")
    if not value and not allow_empty:
        raise FieldError(field, "is empty")
    if not value.isprintable():
        raise FieldError(field, "has non-printable characters")
    if ascii_only and not value.isascii():
        raise FieldError(field, "has non-ASCII characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise FieldError(field, f"does not have the expected form ({pattern.pattern:.60})")
    return value


def optional_text(value: object, field: str, *, max_len: int = MAX_TEXT) -> str | None:
    return None if value is None else text(value, field, max_len=max_len)


def hex64(value: object, field: str) -> str:
    """64 lower-case hex digits (a SHA-256 or HMAC-SHA256 in hex)."""
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, not {_type_name(value)}")
    if not HEX64_RE.fullmatch(value):
        raise FieldError(field, "must be 64 lower-case hex digits")
    return value


def integer(value: object, field: str, *, lo: int = 0, hi: int = MAX_SIZE) -> int:
    """An integer (not a boolean) in lo..hi."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, f"must be an integer, not {_type_name(value)}")
    if not lo <= value <= hi:
        raise FieldError(field, f"is outside {lo}..{hi}")
    return value


def number(value: object, field: str, *, lo: float = -1e15, hi: float = 1e15) -> float:
    """A finite number (integer or float, not a boolean) in lo..hi."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(field, f"must be a number, not {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(field, "is not a finite number")
    if not lo <= value <= hi:
        raise FieldError(field, f"is outside {lo:g}..{hi:g}")
    return value


def iso_utc(value: object, field: str) -> str:
    """An ISO-8601 UTC time as vault-dr writes it: 2026-11-26T06:00:00Z."""
    value = text(value, field, max_len=40, ascii_only=True)
    if not ISO_UTC_RE.fullmatch(value):
        raise FieldError(field, "must be an ISO-8601 UTC time like 2026-11-26T06:00:00Z")
    try:
        datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        raise FieldError(field, "is not a valid date and time") from None
    return value


def b64_bytes(value: object, field: str, *, size: int | None = None, max_len: int = 4096) -> bytes:
    """Standard base64 (padded, no whitespace); exactly `size` bytes when given."""
    value = text(value, field, max_len=max_len, ascii_only=True)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(field, "is not valid base64") from None
    if size is not None and len(raw) != size:
        raise FieldError(field, f"must decode to {size} bytes, not {len(raw)}")
    return raw


def scalar_map(
    value: object, field: str, *, checks: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A flat object whose values are JSON scalars (bounded strings, bounded finite
    numbers, booleans, null). `checks` maps known keys to a check(value, field) that
    must accept them when present."""
    data = obj(value, field)
    for key, item in data.items():
        where = f"{field}.{key}"
        if checks is not None and key in checks:
            checks[key](item, where)
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, str):
            text(item, where, allow_empty=True)
        elif isinstance(item, (int, float)):
            number(item, where, lo=-float(MAX_SIZE), hi=float(MAX_SIZE))
        else:
            raise FieldError(
                where, f"must be a string, number, boolean or null, not {_type_name(item)}"
            )
    return data
