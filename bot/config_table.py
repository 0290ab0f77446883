"""Reading one TOML table of the config: typed getters whose errors name the file and the
dotted key (`ConfigError`), and durations like '90s' or '1h30m'."""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_SECRET_HINTS = {
    "bot_token": "set the SLACK_BOT_TOKEN environment variable instead",
    "signing_secret": "set the SLACK_SIGNING_SECRET environment variable instead",
    "app_token": "set the SLACK_APP_TOKEN environment variable instead",
    "client_secret": "put it in an environment variable and name that variable in "
    "client_secret_env",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


class ConfigError(Exception):
    """A user error in the config or the environment; str(e) is one line.

    The line is '<file>: <key>: <problem>'. `key` is a dotted config key such as
    'tenants[0].quorum', an environment variable such as 'SLACK_BOT_TOKEN', 'line N' for a TOML
    syntax error, or None when the file as a whole cannot be read (then: '<file>: <problem>').
    """

    def __init__(self, file: Path | str, key: str | None, problem: str) -> None:
        self.file = Path(file)
        self.key = key
        self.problem = " ".join(problem.split())
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.file}: {self.problem}"
        return f"{self.file}: {self.key}: {self.problem}"


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_RANK = {unit: rank for rank, unit in enumerate(_UNITS)}


def parse_duration(text: str) -> float:
    """Return the seconds in a duration like '90s', '5m', '24h', '2d', '500ms' or '1h30m'."""
    usage = "expected a number and a unit (ms, s, m, h, d) like '90s', '5m' or '1h30m'"
    if not isinstance(text, str) or not text:
        raise ValueError(f"invalid duration {text!r}: {usage}")
    total, pos, last_rank = 0.0, 0, -1
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: {usage}")
        rank = _UNIT_RANK[match[2]]
        if rank <= last_rank:
            raise ValueError(f"invalid duration {text!r}: units go from largest to smallest, once")
        total += float(match[1]) * _UNITS[match[2]]
        pos, last_rank = match.end(), rank
    return total


def kind_of(value: object) -> str:
    """The TOML name of `value`'s type, for 'expected X, got Y' messages."""
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (Mapping, "a table"),
        ((dt.datetime, dt.date, dt.time), "a date/time"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


class Table:
    """One TOML table being validated; knows its dotted key prefix for error messages."""

    def __init__(self, file: Path, prefix: str, data: Mapping[str, Any], known: Sequence[str]):
        self.file, self.prefix, self.data = file, prefix, data
        for key in data:
            if key in known:
                continue
            hint = _SECRET_HINTS.get(key)
            if hint is not None:
                raise self.error(key, f"secrets do not belong in the config file; {hint}")
            close = difflib.get_close_matches(key, known, n=1) or [
                k for k in known if k.startswith(key) or key.startswith(k)
            ]
            raise self.error(
                key, "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
            )

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def _typed(self, name: str, kind: type, expected: str, *, required: bool) -> Any:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error(name, "missing (required)")
            return None
        # bool is an int in Python but not in TOML.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"expected {expected}, got {kind_of(value)}")
        return value

    def table(self, name: str, *, known: Sequence[str]) -> Table:
        value = self._typed(name, Mapping, "a table", required=False)
        return Table(self.file, self.key(name), value or {}, known)

    def string(self, name: str) -> str:
        value: str = self._typed(name, str, "a string", required=True)
        if not value:
            raise self.error(name, "must not be empty")
        return value

    def optional_string(self, name: str) -> str | None:
        return None if self.data.get(name) is None else self.string(name)

    def integer(self, name: str) -> int:
        value: int = self._typed(name, int, "an integer", required=True)
        return value

    def optional_integer(self, name: str) -> int | None:
        value: int | None = self._typed(name, int, "an integer", required=False)
        return value

    def string_list(self, name: str) -> tuple[str, ...]:
        values = self._typed(name, list, "an array of strings", required=True)
        if not values:
            raise self.error(name, "must list at least one entry")
        for index, value in enumerate(values):
            if not isinstance(value, str) or not value:
                got = kind_of(value) if value != "" else "an empty string"
                raise self.error(f"{name}[{index}]", f"expected a non-empty string, got {got}")
            if value in values[:index]:
                raise self.error(f"{name}[{index}]", f"{value!r} is listed twice")
        return tuple(values)

    def id_list(
        self, name: str, pattern: re.Pattern[str], what: str, alt: re.Pattern[str] | None = None
    ) -> tuple[str, ...]:
        values = self.string_list(name)
        for index, value in enumerate(values):
            if not pattern.fullmatch(value) and not (alt and alt.fullmatch(value)):
                raise self.error(f"{name}[{index}]", f"{value!r} is not {what}")
        return values

    def guid(self, name: str) -> str:
        value = self.string(name)
        if not GUID.fullmatch(value):
            raise self.error(
                name, f"{value!r} is not a GUID like 8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f"
            )
        return value.lower()

    def url(
        self,
        name: str,
        *,
        schemes: tuple[str, ...],
        allow_path: bool,
        loopback_http: bool = False,
    ) -> str | None:
        """`loopback_http`: plain http:// is accepted for a loopback host only (a simulator on
        this machine), where nothing crosses a network."""
        value = self.optional_string(name)
        if value is None:
            return None
        # URLs are not echoed: one could carry credentials.
        parts = urlsplit(value)
        if loopback_http and (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or (parts.scheme == "http" and not _loopback(parts.hostname))
        ):
            raise self.error(
                name,
                "must be an http:// or https:// URL, and https:// unless its host is a loopback"
                " address (127.0.0.1, ::1 or localhost, like a local simulator)",
            )
        if not loopback_http and (parts.scheme not in schemes or not parts.hostname):
            raise self.error(name, f"must be a {' or '.join(s + '://' for s in schemes)} URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise self.error(name, "must not contain credentials, a query or a fragment")
        if not allow_path and parts.path.strip("/"):
            raise self.error(name, "must be a scheme and host only, with no path")
        return value.rstrip("/")

    def path(self, name: str, base: Path, *, required: bool, must_exist: bool) -> Path | None:
        if not required and self.data.get(name) is None:
            return None
        path = Path(os.path.normpath(base / Path(self.string(name)).expanduser()))
        if must_exist:
            if not path.is_file():
                raise self.error(name, f"no such file: {path}")
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise self.error(name, f"cannot read {path}: {exc.strerror}") from None
        return path

    def storage_path(self, name: str, base: Path) -> Path:
        path = self.path(name, base, required=True, must_exist=False)
        assert path is not None  # required=True
        if path.is_dir():
            raise self.error(name, f"{path} is a directory, not a database file")
        if not path.parent.is_dir():
            raise self.error(name, f"directory {path.parent} does not exist")
        return path


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
