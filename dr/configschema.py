"""A small validating reader over parsed YAML, so every error names its location.

Why not a schema library: the errors must read `FILE: at 'storage.bucket': ...` in one
line with what is accepted, `${VAR}` must be resolved per key with the key in the
message, and the config has a dozen keys. A hundred lines here beat a dependency whose
messages would need rewriting anyway.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dr.errors import ConfigError

T = TypeVar("T")

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
}


def interpolate(value: str, source: str, where: str, env: Mapping[str, str]) -> str:
    """Resolve `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            source, where, f"environment variable {name} is not set (used as ${{{name}}})"
        )

    return _VAR.sub(repl, value)


def parse_duration(text: str | int | float, source: str, where: str) -> float:
    if isinstance(text, bool):
        raise ConfigError(source, where, "expected a duration like 90s, 15m, 7h or 1d")
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(source, where, f"'{text}' is not a duration; use e.g. 90s, 15m, 7h, 1d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def parse_size(text: str | int, source: str, where: str) -> int:
    if isinstance(text, bool):
        raise ConfigError(source, where, "expected a size like 8MiB")
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(source, where, f"'{text}' is not a size; use e.g. 1MiB, 8MiB, 64KiB")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"]


class Section:
    """One mapping of the config with its dotted location, read key by key.

    Each getter records the key as known; `done()` then refuses keys nobody asked
    for, suggesting the closest known key (typos must not silently change behaviour).
    """

    def __init__(
        self, data: Any, source: str, where: str, env: Mapping[str, str] | None = None
    ) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(source, where or "(top level)", "expected a mapping of keys")
        self.data: Mapping[str, Any] = data
        self.source = source
        self.where = where
        self.env = env if env is not None else os.environ
        self._known: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, problem: str) -> ConfigError:
        if problem.startswith("is required"):
            problem += self._typo_of(key)
        return ConfigError(self.source, self.path(key), problem)

    def _typo_of(self, key: str) -> str:
        """A missing required key is often a typo of it ('adr:' for 'addr:'): name it,
        as unknown keys are named, instead of only saying the key is required."""
        unknown = [str(k) for k in self.data if str(k) not in self._known and str(k) != key]
        close = difflib.get_close_matches(key, unknown, n=1)
        return f"; '{close[0]}' is set: did you mean '{key}'?" if close else ""

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self.data and self.data[key] is not None

    def _raw(self, key: str, required: bool) -> Any:
        self._known.add(key)
        value = self.data.get(key)
        if value is None and required:
            raise self.error(key, "is required")
        if isinstance(value, str):
            value = interpolate(value, self.source, self.path(key), self.env)
        return value

    def text(
        self,
        key: str,
        default: str | None = None,
        *,
        required: bool = False,
        choices: tuple[str, ...] | None = None,
        pattern: str | None = None,
        hint: str = "",
    ) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(key, "expected a string")
        value = str(value)
        if choices is not None and value not in choices:
            raise self.error(key, f"'{value}' is not one of: {', '.join(choices)}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.error(key, f"'{value}' is not accepted{': ' + hint if hint else ''}")
        return value

    def req_str(self, key: str, **kwargs: Any) -> str:
        value = self.text(key, required=True, **kwargs)
        assert value is not None
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._raw(key, False)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise self.error(key, "expected true or false")

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._raw(key, False)
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self.error(key, f"'{value}' is not an integer") from None
        if isinstance(value, bool) or (minimum is not None and number < minimum):
            raise self.error(key, f"must be an integer >= {minimum}")
        if maximum is not None and number > maximum:
            raise self.error(key, f"must be at most {maximum}")
        return number

    def duration(self, key: str, default: float | None) -> float | None:
        value = self._raw(key, False)
        if value is None:
            return default
        return parse_duration(value, self.source, self.path(key))

    def size(self, key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self._raw(key, False)
        if value is None:
            return default
        size = parse_size(value, self.source, self.path(key))
        if size < minimum or (maximum is not None and size > maximum):
            raise self.error(
                key,
                f"must be between {minimum} and {maximum} bytes" if maximum else f">= {minimum}",
            )
        return size

    def str_list(self, key: str) -> list[str] | None:
        value = self._raw(key, False)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "expected a list of strings")
        return [interpolate(v, self.source, f"{self.path(key)}", self.env) for v in value]

    def section(self, key: str) -> Section:
        self._known.add(key)
        return Section(self.data.get(key), self.source, self.path(key), self.env)

    def sections(self, key: str, *, required: bool = False) -> list[Section]:
        self._known.add(key)
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required: a list of mappings")
            return []
        if not isinstance(value, list):
            raise self.error(key, "expected a list of mappings")
        return [
            Section(item, self.source, f"{self.path(key)}[{i}]", self.env)
            for i, item in enumerate(value)
        ]

    def done(self) -> None:
        for key in self.data:
            if key not in self._known:
                close = difflib.get_close_matches(str(key), sorted(self._known), n=1)
                hint = (
                    f"; did you mean '{close[0]}'?"
                    if close
                    else (
                        f"; accepted here: {', '.join(sorted(self._known))}" if self._known else ""
                    )
                )
                raise ConfigError(self.source, self.path(str(key)), f"unknown key{hint}")


def parse_with(section: Section, parser: Callable[[Section], T]) -> T:
    """Parse a section and then refuse its unknown keys."""
    result = parser(section)
    section.done()
    return result
