"""Settings from the TOML config file and the environment: the only place that reads either.

Every problem raises ConfigError with one line naming the file, the key and what is wrong.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import os
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.microsoft.clouds import CLOUDS

QUORUM_STEPS = (
    "delete_users",
    "cancel_subscriptions",
    "delete_disabled_subscriptions",
    "disable_mfa",
    "delete_directory",
    "rollback",
)


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


@dataclass(frozen=True)
class SlackSettings:
    """The [slack] table plus the Slack secrets from the environment."""

    progress_channel: str
    admins: tuple[str, ...]
    api_url: str | None
    bot_token: str = field(repr=False)
    signing_secret: str | None = field(repr=False)
    app_token: str | None = field(repr=False)


@dataclass(frozen=True)
class Timing:
    """The [timing] table; durations in seconds."""

    poll_interval: float = 300.0
    approval_ttl: float = 86400.0
    reminder_interval: float = 43200.0
    tenant_gone_checks: int = 3
    # Least time between two edits of a status message (0: every edit at once, for tests).
    status_edit_interval: float = 2.0


@dataclass(frozen=True)
class PartnerCenterSettings:
    """[tenants.partner_center]: the partner's own app, to cancel what the partner sold."""

    tenant_id: str  # the partner's tenant (a subscription's ownerTenantId)
    client_id: str
    client_secret_env: str
    client_secret: str = field(repr=False)
    api_url: str = "https://api.partnercenter.microsoft.com"


@dataclass(frozen=True)
class TenantSettings:
    """One [[tenants]] table, its endpoints resolved and its client secret read."""

    name: str
    tenant_id: str
    client_id: str
    retain: tuple[str, ...]
    approvers: tuple[str, ...]
    quorum: int
    quorum_by_step: Mapping[str, int]
    cloud: str
    authority_host: str
    graph_url: str
    client_secret_env: str | None
    client_secret: str | None = field(repr=False)
    certificate_file: Path | None
    arm_url: str = ""  # Azure Resource Manager (the cloud's unless overridden)
    partner_center: PartnerCenterSettings | None = None

    def quorum_for(self, step: str) -> int:
        """Approvals needed for `step` (a step name or 'rollback')."""
        if step not in QUORUM_STEPS:
            raise ValueError(f"unknown step {step!r}")
        return self.quorum_by_step.get(step, self.quorum)


@dataclass(frozen=True)
class NetworkSettings:
    """[network], else the HTTPS_PROXY and NO_PROXY environment variables: the proxy every
    outgoing HTTPS call (Slack, sign-in, Graph, Resource Manager, Partner Center) goes through.

    `https_proxy` may carry credentials (only from the environment), so it is never shown.
    `no_proxy` entries are host names (matching the host and its subdomains), '.'-prefixed
    domains, IP addresses or networks, or '*' for every host.
    """

    https_proxy: str | None = field(default=None, repr=False)
    no_proxy: tuple[str, ...] = ()

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL to reach `url` through, or None to connect directly."""
        if self.https_proxy is None:
            return None
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        return None if bypasses_proxy(host, self.no_proxy) else self.https_proxy


def bypasses_proxy(host: str, no_proxy: Sequence[str]) -> bool:
    """Whether `host` is covered by one of the `no_proxy` entries (curl's rules, plus CIDR)."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.strip("[]")
        )
    except ValueError:
        address = None
    for entry in no_proxy:
        entry = entry.lower().strip()
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


@dataclass(frozen=True)
class Settings:
    """Everything the bot is configured with; `file` is the config file as given."""

    file: Path
    slack: SlackSettings
    storage_path: Path
    ca_file: Path | None
    timing: Timing
    tenants: tuple[TenantSettings, ...]
    network: NetworkSettings = NetworkSettings()

    def tenant(self, name: str) -> TenantSettings | None:
        """The tenant configured under `name`, compared case-insensitively."""
        wanted = name.lower()
        return next((t for t in self.tenants if t.name == wanted), None)


def load_settings(path: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at `path` and the secrets from `environ` (default: os.environ)."""
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(file, None, f"cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(file, None, "the config file is not valid UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if where:
            key = f"line {where[1]}"
            message = f"{message[: where.start()]} (column {where[2]})"
        else:
            key = f"line {text.count(chr(10)) + 1}"
            message = re.sub(r"\s*\(at end of document\)$", " (at end of file)", message)
        raise ConfigError(file, key, f"invalid TOML: {message}") from None
    return settings_from_mapping(
        data, file=file, environ=os.environ if environ is None else environ
    )


def settings_from_mapping(
    data: Mapping[str, Any], *, file: Path, environ: Mapping[str, str]
) -> Settings:
    """Validate parsed TOML `data` read from `file`; relative paths are relative to `file`."""
    root = _Table(file, "", data, ("slack", "storage", "tls", "timing", "network", "tenants"))
    base = Path(os.path.abspath(file)).parent
    slack = _slack(root.table("slack", known=_SLACK_KEYS), environ)
    storage = root.table("storage", known=("path",))
    tls = root.table("tls", known=("ca_file",))
    ca_file = tls.path("ca_file", base, required=False, must_exist=True)
    return Settings(
        file=file,
        slack=slack,
        storage_path=storage.storage_path("path", base),
        ca_file=ca_file,
        timing=_timing(root.table("timing", known=tuple(Timing.__dataclass_fields__))),
        tenants=_tenants(root, base, environ),
        network=_network(root.table("network", known=("https_proxy", "no_proxy")), environ),
    )


_SLACK_KEYS = ("progress_channel", "admins", "api_url")
_TENANT_KEYS = (
    "name",
    "tenant_id",
    "client_id",
    "client_secret_env",
    "certificate_file",
    "retain",
    "approvers",
    "quorum",
    "quorum_by_step",
    "cloud",
    "authority_host",
    "graph_url",
    "arm_url",
    "partner_center",
)
_SECRET_HINTS = {
    "bot_token": "set the SLACK_BOT_TOKEN environment variable instead",
    "signing_secret": "set the SLACK_SIGNING_SECRET environment variable instead",
    "app_token": "set the SLACK_APP_TOKEN environment variable instead",
    "client_secret": "put it in an environment variable and name that variable in "
    "client_secret_env",
}
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def _slack(table: _Table, environ: Mapping[str, str]) -> SlackSettings:
    channel = table.string("progress_channel")
    if not _CHANNEL_ID.fullmatch(channel):
        raise table.error("progress_channel", f"{channel!r} is not a channel ID like C0123ABCD")
    admins = table.id_list("admins", _USER_ID, "a Slack user ID like U0123ABCD or an email", _EMAIL)
    api_url = table.url("api_url", schemes=("http", "https"), allow_path=True)
    bot_token = environ.get("SLACK_BOT_TOKEN") or None
    signing_secret = environ.get("SLACK_SIGNING_SECRET") or None
    app_token = environ.get("SLACK_APP_TOKEN") or None
    if bot_token is None:
        raise ConfigError(table.file, "SLACK_BOT_TOKEN", "environment variable is not set")
    if signing_secret is None and app_token is None:
        raise ConfigError(
            table.file,
            "SLACK_SIGNING_SECRET",
            "environment variable is not set (needed for HTTP mode; "
            "set SLACK_APP_TOKEN instead for Socket Mode)",
        )
    return SlackSettings(
        progress_channel=channel,
        admins=admins,
        api_url=None if api_url is None else api_url.rstrip("/") + "/",
        bot_token=bot_token,
        signing_secret=signing_secret,
        app_token=app_token,
    )


def _network(table: _Table, environ: Mapping[str, str]) -> NetworkSettings:
    """[network] wins; without it, HTTPS_PROXY and NO_PROXY (or their lowercase forms)."""
    raw_proxy = table.get("https_proxy")
    if isinstance(raw_proxy, str) and urlsplit(raw_proxy).password is not None:
        # Not repeated: the value holds a password.
        problem = (
            "secrets do not belong in the config file; put a proxy URL with a user and "
            "password in the HTTPS_PROXY environment variable instead"
        )
        raise table.error("https_proxy", problem)
    proxy = table.url("https_proxy", schemes=("http", "https"), allow_path=False)
    if proxy is not None and not _valid_port(proxy):
        raise table.error("https_proxy", "has an invalid port")
    if table.get("no_proxy") == []:  # no exceptions, whatever NO_PROXY says
        no_proxy: tuple[str, ...] = ()
    elif table.get("no_proxy") is not None:
        no_proxy = table.string_list("no_proxy")
    else:
        raw = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
        no_proxy = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    if proxy is None:
        variable = "HTTPS_PROXY" if environ.get("HTTPS_PROXY") else "https_proxy"
        value = (environ.get(variable) or "").strip()
        if value:
            # The variable may carry the proxy's user:password: it is never repeated.
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problem = "environment variable must be an http:// or https:// proxy URL"
                raise ConfigError(table.file, variable, problem)
            if not _valid_port(value):
                raise ConfigError(table.file, variable, "environment variable has an invalid port")
            proxy = value.rstrip("/")
    return NetworkSettings(https_proxy=proxy, no_proxy=no_proxy)


def _valid_port(url: str) -> bool:
    try:
        return urlsplit(url).port != 0
    except ValueError:
        return False


def _timing(table: _Table) -> Timing:
    defaults = Timing()
    durations: dict[str, float] = {}
    for name in ("poll_interval", "approval_ttl", "reminder_interval", "status_edit_interval"):
        value = table.get(name)
        if value is None:
            durations[name] = getattr(defaults, name)
            continue
        if not isinstance(value, str):
            raise table.error(name, f"expected a duration string like '5m', got {_kind(value)}")
        try:
            durations[name] = parse_duration(value)
        except ValueError as exc:
            raise table.error(name, str(exc)) from None
        if durations[name] <= 0 and name != "status_edit_interval":
            raise table.error(name, "must be longer than 0")
    checks = table.optional_integer("tenant_gone_checks")
    checks = defaults.tenant_gone_checks if checks is None else checks
    if checks < 1:
        raise table.error("tenant_gone_checks", f"must be at least 1, not {checks}")
    return Timing(**durations, tenant_gone_checks=checks)


def _tenants(root: _Table, base: Path, environ: Mapping[str, str]) -> tuple[TenantSettings, ...]:
    raw = root.get("tenants")
    if raw is None or raw == []:
        raise root.error("tenants", "at least one [[tenants]] table is required")
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        raise root.error("tenants", f"expected [[tenants]] tables, got {_kind(raw)}")
    tenants: list[TenantSettings] = []
    for index, item in enumerate(raw):
        table = _Table(root.file, f"tenants[{index}]", item, _TENANT_KEYS)
        tenant = _tenant(table, base, environ)
        for other_index, other in enumerate(tenants):
            if other.name == tenant.name:
                raise table.error("name", f"{tenant.name!r} is also tenants[{other_index}]")
            if other.tenant_id == tenant.tenant_id:
                raise table.error("tenant_id", f"same tenant as tenants[{other_index}]")
        tenants.append(tenant)
    return tuple(tenants)


def _tenant(table: _Table, base: Path, environ: Mapping[str, str]) -> TenantSettings:
    name = table.string("name")
    if not _TENANT_NAME.fullmatch(name):
        raise table.error(
            "name", f"{name!r} must be 1-63 lowercase letters, digits or '-', not starting with '-'"
        )
    tenant_id, client_id = table.guid("tenant_id"), table.guid("client_id")
    secret_env = table.optional_string("client_secret_env")
    certificate = table.path("certificate_file", base, required=False, must_exist=True)
    if (secret_env is None) == (certificate is None):
        problem = "set exactly one of client_secret_env and certificate_file"
        raise table.error("client_secret_env", problem)
    client_secret = None
    if secret_env is not None:
        if not _ENV_NAME.fullmatch(secret_env):
            # The value may be a pasted secret, so it is not repeated here.
            problem = "must name an environment variable (letters, digits, '_'), not hold a secret"
            raise table.error("client_secret_env", problem)
        client_secret = environ.get(secret_env) or None
        if client_secret is None:
            raise table.error(
                "client_secret_env", f"environment variable {secret_env} is not set or is empty"
            )
    retain = table.id_list("retain", _EMAIL, "a user principal name or an object ID", _GUID)
    approvers = table.id_list(
        "approvers", _USER_ID, "a Slack user ID like U0123ABCD or an email", _EMAIL
    )
    quorum = table.integer("quorum")
    if not 1 <= quorum <= len(approvers):
        raise table.error("quorum", f"must be between 1 and {len(approvers)} (the approvers)")
    by_step = table.table("quorum_by_step", known=QUORUM_STEPS)
    step_quorums: dict[str, int] = {}
    for step in QUORUM_STEPS:
        value = by_step.optional_integer(step)
        if value is not None and not 1 <= value <= len(approvers):
            raise by_step.error(step, f"must be between 1 and {len(approvers)} (the approvers)")
        if value is not None:
            step_quorums[step] = value
    cloud = table.optional_string("cloud") or "global"
    if cloud not in CLOUDS:
        raise table.error("cloud", f"{cloud!r} is not one of {', '.join(CLOUDS)}")
    authority_host = table.url("authority_host", schemes=("https",), allow_path=False)
    graph_url = table.url("graph_url", schemes=("https",), allow_path=True)
    arm_url = table.url("arm_url", schemes=("https",), allow_path=True)
    partner = _partner_center(table, environ)
    return TenantSettings(
        name=name,
        tenant_id=tenant_id,
        client_id=client_id,
        retain=retain,
        approvers=approvers,
        quorum=quorum,
        quorum_by_step=types.MappingProxyType(step_quorums),
        cloud=cloud,
        authority_host=authority_host or CLOUDS[cloud].authority_host,
        graph_url=graph_url or CLOUDS[cloud].graph_url,
        client_secret_env=secret_env,
        client_secret=client_secret,
        certificate_file=certificate,
        arm_url=arm_url or CLOUDS[cloud].arm_url,
        partner_center=partner,
    )


def _partner_center(table: _Table, environ: Mapping[str, str]) -> PartnerCenterSettings | None:
    if table.get("partner_center") is None:
        return None
    pc = table.table(
        "partner_center", known=("tenant_id", "client_id", "client_secret_env", "api_url")
    )
    secret_env = pc.string("client_secret_env")
    if not _ENV_NAME.fullmatch(secret_env):
        raise pc.error("client_secret_env", "must name an environment variable, not hold a secret")
    secret = environ.get(secret_env) or None
    if secret is None:
        raise pc.error(
            "client_secret_env", f"environment variable {secret_env} is not set or is empty"
        )
    api_url = pc.url("api_url", schemes=("https",), allow_path=True)
    return PartnerCenterSettings(
        tenant_id=pc.guid("tenant_id"),
        client_id=pc.guid("client_id"),
        client_secret_env=secret_env,
        client_secret=secret,
        **({"api_url": api_url} if api_url else {}),
    )


def _kind(value: object) -> str:
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


class _Table:
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
            raise self.error(name, f"expected {expected}, got {_kind(value)}")
        return value

    def table(self, name: str, *, known: Sequence[str]) -> _Table:
        value = self._typed(name, Mapping, "a table", required=False)
        return _Table(self.file, self.key(name), value or {}, known)

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
                got = _kind(value) if value != "" else "an empty string"
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
        if not _GUID.fullmatch(value):
            raise self.error(
                name, f"{value!r} is not a GUID like 8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f"
            )
        return value.lower()

    def url(self, name: str, *, schemes: tuple[str, ...], allow_path: bool) -> str | None:
        value = self.optional_string(name)
        if value is None:
            return None
        # URLs are not echoed: one could carry credentials.
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
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
