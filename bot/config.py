"""Settings from the TOML config file and the environment: the only place that reads either.

Every problem raises ConfigError with one line naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.config_table import GUID, Table, kind_of
from bot.config_table import ConfigError as ConfigError
from bot.config_table import parse_duration as parse_duration
from bot.microsoft.clouds import CLOUDS
from bot.settings import NetworkSettings as NetworkSettings
from bot.settings import PartnerCenterSettings as PartnerCenterSettings
from bot.settings import Settings as Settings
from bot.settings import SlackSettings as SlackSettings
from bot.settings import TenantSettings as TenantSettings
from bot.settings import Timing as Timing
from bot.settings import bypasses_proxy as bypasses_proxy
from statemachine import steps


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
    root = Table(file, "", data, ("slack", "storage", "tls", "timing", "network", "tenants"))
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
    "retain_slack_user",
)
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _slack(table: Table, environ: Mapping[str, str]) -> SlackSettings:
    channel = table.string("progress_channel")
    if not _CHANNEL_ID.fullmatch(channel):
        raise table.error("progress_channel", f"{channel!r} is not a channel ID like C0123ABCD")
    admins = table.id_list("admins", _USER_ID, "a Slack user ID like U0123ABCD or an email", _EMAIL)
    api_url = table.url("api_url", schemes=("https",), allow_path=True, loopback_http=True)
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


def _network(table: Table, environ: Mapping[str, str]) -> NetworkSettings:
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


def _timing(table: Table) -> Timing:
    defaults = Timing()
    durations: dict[str, float] = {}
    for name in ("poll_interval", "approval_ttl", "reminder_interval", "status_edit_interval"):
        value = table.get(name)
        if value is None:
            durations[name] = getattr(defaults, name)
            continue
        if not isinstance(value, str):
            raise table.error(name, f"expected a duration string like '5m', got {kind_of(value)}")
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


def _tenants(root: Table, base: Path, environ: Mapping[str, str]) -> tuple[TenantSettings, ...]:
    raw = root.get("tenants")
    if raw is None or raw == []:
        raise root.error("tenants", "at least one [[tenants]] table is required")
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        raise root.error("tenants", f"expected [[tenants]] tables, got {kind_of(raw)}")
    tenants: list[TenantSettings] = []
    for index, item in enumerate(raw):
        table = Table(root.file, f"tenants[{index}]", item, _TENANT_KEYS)
        tenant = _tenant(table, base, environ)
        for other_index, other in enumerate(tenants):
            if other.name == tenant.name:
                raise table.error("name", f"{tenant.name!r} is also tenants[{other_index}]")
            if other.tenant_id == tenant.tenant_id:
                raise table.error("tenant_id", f"same tenant as tenants[{other_index}]")
        tenants.append(tenant)
    return tuple(tenants)


def _tenant(table: Table, base: Path, environ: Mapping[str, str]) -> TenantSettings:
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
    retain = table.id_list("retain", _EMAIL, "a user principal name or an object ID", GUID)
    approvers = table.id_list(
        "approvers", _USER_ID, "a Slack user ID like U0123ABCD or an email", _EMAIL
    )
    slack_user = table.optional_string("retain_slack_user")
    if slack_user is not None and not (
        _USER_ID.fullmatch(slack_user) or _EMAIL.fullmatch(slack_user)
    ):
        problem = f"{slack_user!r} is not a Slack user ID like U0123ABCD or an email"
        raise table.error("retain_slack_user", problem)
    quorum = table.integer("quorum")
    if not 1 <= quorum <= len(approvers):
        raise table.error("quorum", f"must be between 1 and {len(approvers)} (the approvers)")
    by_step = table.table("quorum_by_step", known=steps.quorum_keys())
    step_quorums: dict[str, int] = {}
    for step in steps.quorum_keys():
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
        retain_slack_user=slack_user,
    )


def _partner_center(table: Table, environ: Mapping[str, str]) -> PartnerCenterSettings | None:
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
