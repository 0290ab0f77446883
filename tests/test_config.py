"""Tests for bot.config and bot.microsoft.clouds: loading, validation messages, secrets, clouds."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from bot.config import (
    ConfigError,
    Settings,
    Timing,
    load_settings,
    parse_duration,
    settings_from_mapping,
)
from bot.microsoft.clouds import CLOUDS, CloudEndpoints

TENANT_ID = "8f0c1d2e-3a4b-4c6d-8e8f-9a0b1c2d3e4f"
CLIENT_ID = "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0"
OTHER_TENANT_ID = "2a3b4c5d-6e7f-4081-9223-344556677889"
BOT_TOKEN = "xoxb-bot-token-value"
SIGNING_SECRET = "signing-secret-value"
APP_TOKEN = "xapp-app-token-value"
CLIENT_SECRET = "client~secret.value"
ENV = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "CONTOSO_SECRET": CLIENT_SECRET,
}

FULL_TOML = f"""
[slack]
progress_channel = "C0PROGRESS"
admins = ["U0ADMIN1", "W0ADMIN2", "ops@example.com"]
api_url = "https://slack.example.test/api"

[storage]
path = "data/close-account.db"

[tls]
ca_file = "corp-ca.pem"

[timing]
poll_interval = "5m"
approval_ttl = "24h"
reminder_interval = "1h30m"
tenant_gone_checks = 4

[[tenants]]
name = "contoso"
tenant_id = "{TENANT_ID.upper()}"
client_id = "{CLIENT_ID}"
client_secret_env = "CONTOSO_SECRET"
retain = ["admin@contoso.onmicrosoft.com"]
approvers = ["U0APPR1", "U0APPR2", "U0APPR3"]
quorum = 2
quorum_by_step = {{ delete_directory = 3, rollback = 1 }}
cloud = "usgov"

[[tenants]]
name = "fabrikam-2"
tenant_id = "{OTHER_TENANT_ID}"
client_id = "{CLIENT_ID}"
certificate_file = "certs/fabrikam.pem"
retain = ["{OTHER_TENANT_ID}"]
approvers = ["U0APPR1"]
quorum = 1
authority_host = "https://127.0.0.1:8443/"
graph_url = "https://127.0.0.1:8444/graph/"
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A directory holding the files FULL_TOML refers to."""
    (tmp_path / "data").mkdir()
    (tmp_path / "certs").mkdir()
    (tmp_path / "corp-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "certs" / "fabrikam.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    return tmp_path


def minimal() -> dict[str, Any]:
    """A fresh minimal valid config mapping with one tenant using a client secret."""
    return {
        "slack": {"progress_channel": "C0PROGRESS", "admins": ["U0ADMIN1"]},
        "storage": {"path": "bot.db"},
        "tenants": [
            {
                "name": "contoso",
                "tenant_id": TENANT_ID,
                "client_id": CLIENT_ID,
                "client_secret_env": "CONTOSO_SECRET",
                "retain": ["admin@contoso.onmicrosoft.com"],
                "approvers": ["U0APPR1", "U0APPR2", "U0APPR3"],
                "quorum": 2,
            }
        ],
    }


DELETE = object()


def with_value(path: str, value: Any) -> dict[str, Any]:
    """minimal() with the dotted `path` (list indexes as numbers) set to `value` or deleted."""
    data = minimal()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = copy.deepcopy(value)
    return data


def build(data: dict[str, Any], tmp_path: Path, environ: dict[str, str] | None = None) -> Settings:
    return settings_from_mapping(data, file=tmp_path / "bot.toml", environ=ENV | (environ or {}))


def config_error(
    data: dict[str, Any], tmp_path: Path, environ: dict[str, str] | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(
            data, file=tmp_path / "bot.toml", environ=ENV if environ is None else environ
        )
    return info.value


def assert_names(error: ConfigError, tmp_path: Path, key: str, fragment: str) -> None:
    """The error is one line '<file>: <key>: <problem>' and the problem mentions `fragment`."""
    file = tmp_path / "bot.toml"
    assert error.file == file
    assert error.key == key
    assert str(error) == f"{file}: {key}: {error.problem}"
    assert "\n" not in str(error)
    assert fragment in error.problem


# --- a valid config ------------------------------------------------------------------------------


def test_full_config_round_trip(config_dir: Path) -> None:
    """Every key of a full TOML file lands, normalised, in the Settings it loads into."""
    (config_dir / "bot.toml").write_text(FULL_TOML)
    settings = load_settings(config_dir / "bot.toml", ENV | {"SLACK_APP_TOKEN": APP_TOKEN})

    assert settings.file == config_dir / "bot.toml"
    assert settings.slack.progress_channel == "C0PROGRESS"
    assert settings.slack.admins == ("U0ADMIN1", "W0ADMIN2", "ops@example.com")
    assert settings.slack.api_url == "https://slack.example.test/api/"
    assert settings.slack.bot_token == BOT_TOKEN
    assert settings.slack.signing_secret == SIGNING_SECRET
    assert settings.slack.app_token == APP_TOKEN
    assert settings.storage_path == config_dir / "data" / "close-account.db"
    assert settings.ca_file == config_dir / "corp-ca.pem"
    assert settings.timing == Timing(
        poll_interval=300.0, approval_ttl=86400.0, reminder_interval=5400.0, tenant_gone_checks=4
    )

    contoso, fabrikam = settings.tenants
    assert contoso.name == "contoso"
    assert contoso.tenant_id == TENANT_ID
    assert contoso.client_id == CLIENT_ID
    assert contoso.client_secret_env == "CONTOSO_SECRET"
    assert contoso.client_secret == CLIENT_SECRET
    assert contoso.certificate_file is None
    assert contoso.retain == ("admin@contoso.onmicrosoft.com",)
    assert contoso.approvers == ("U0APPR1", "U0APPR2", "U0APPR3")
    assert contoso.quorum == 2
    assert dict(contoso.quorum_by_step) == {"delete_directory": 3, "rollback": 1}
    assert contoso.cloud == "usgov"
    assert contoso.authority_host == "https://login.microsoftonline.us"
    assert contoso.graph_url == "https://graph.microsoft.us"

    assert fabrikam.name == "fabrikam-2"
    assert fabrikam.client_secret_env is None
    assert fabrikam.client_secret is None
    assert fabrikam.certificate_file == config_dir / "certs" / "fabrikam.pem"
    assert fabrikam.retain == (OTHER_TENANT_ID,)
    assert fabrikam.cloud == "global"
    assert fabrikam.authority_host == "https://127.0.0.1:8443"
    assert fabrikam.graph_url == "https://127.0.0.1:8444/graph"


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    """Optional keys default to: no api_url, no CA file, the Timing defaults, the global cloud."""
    settings = build(minimal(), tmp_path)
    assert settings.slack.api_url is None
    assert settings.slack.app_token is None
    assert settings.ca_file is None
    assert settings.timing == Timing(300.0, 86400.0, 43200.0, 3)
    (tenant,) = settings.tenants
    assert tenant.cloud == "global"
    assert tenant.authority_host == "https://login.microsoftonline.com"
    assert tenant.graph_url == "https://graph.microsoft.com"
    assert dict(tenant.quorum_by_step) == {}


def test_settings_are_frozen(tmp_path: Path) -> None:
    """Settings cannot be changed after loading, not even the per-step quorum mapping."""
    settings = build(with_value("tenants.0.quorum_by_step", {"delete_users": 3}), tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.tenants[0].quorum = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.tenants[0].quorum_by_step["delete_users"] = 1  # type: ignore[index]


def test_tenant_lookup_is_case_insensitive(tmp_path: Path) -> None:
    """Settings.tenant finds a tenant by its configured name in any case and None otherwise."""
    settings = build(minimal(), tmp_path)
    assert settings.tenant("CONTOSO") is settings.tenants[0]
    assert settings.tenant("contoso") is settings.tenants[0]
    assert settings.tenant("fabrikam") is None


def test_quorum_for_uses_the_step_override_or_the_tenant_quorum(tmp_path: Path) -> None:
    """quorum_for returns quorum_by_step[step] when set, the tenant's quorum otherwise."""
    data = with_value("tenants.0.quorum_by_step", {"delete_directory": 3, "rollback": 1})
    tenant = build(data, tmp_path).tenants[0]
    assert tenant.quorum_for("delete_directory") == 3
    assert tenant.quorum_for("rollback") == 1
    assert tenant.quorum_for("delete_users") == 2
    with pytest.raises(ValueError, match="delete_user"):
        tenant.quorum_for("delete_user")


def test_admins_and_approvers_accept_emails(tmp_path: Path) -> None:
    """Admins and approvers may be Slack user IDs or emails (resolved through Slack later)."""
    settings = build(with_value("slack.admins", ["U0ADMIN1", "Ops@Example.com"]), tmp_path)
    assert settings.slack.admins == ("U0ADMIN1", "Ops@Example.com")
    settings = build(with_value("tenants.0.approvers", ["U0APPR1", "a@b.com"]), tmp_path)
    assert settings.tenants[0].approvers == ("U0APPR1", "a@b.com")
    error = config_error(with_value("tenants.0.approvers", ["U0APPR1", "bob"]), tmp_path)
    assert_names(error, tmp_path, "tenants[0].approvers[1]", "not a Slack user ID")


def test_api_url_gets_a_trailing_slash(tmp_path: Path) -> None:
    """slack.api_url may be http or https and always ends with exactly one '/'."""
    settings = build(with_value("slack.api_url", "http://127.0.0.1:9000/api"), tmp_path)
    assert settings.slack.api_url == "http://127.0.0.1:9000/api/"
    settings = build(with_value("slack.api_url", "https://slack.com/api/"), tmp_path)
    assert settings.slack.api_url == "https://slack.com/api/"


def test_load_settings_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit environ, load_settings takes the secrets from os.environ."""
    (tmp_path / "bot.toml").write_text(FULL_TOML.split("[[tenants]]")[0] + TENANT_TOML)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "corp-ca.pem").write_text("ca")
    settings = load_settings(str(tmp_path / "bot.toml"))
    assert settings.slack.bot_token == BOT_TOKEN
    assert settings.tenants[0].client_secret == CLIENT_SECRET


TENANT_TOML = f"""
[[tenants]]
name = "contoso"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret_env = "CONTOSO_SECRET"
retain = ["admin@contoso.onmicrosoft.com"]
approvers = ["U0APPR1"]
quorum = 1
"""


# --- paths ---------------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file_not_the_cwd(
    config_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """storage.path, tls.ca_file and certificate_file resolve against the config's directory."""
    (config_dir / "bot.toml").write_text(FULL_TOML)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    settings = load_settings(os.path.relpath(config_dir / "bot.toml"), ENV)
    assert settings.storage_path == config_dir / "data" / "close-account.db"
    assert settings.ca_file == config_dir / "corp-ca.pem"
    assert settings.tenants[1].certificate_file == config_dir / "certs" / "fabrikam.pem"


def test_absolute_paths_are_kept(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An absolute path in the config is used as written."""
    other = tmp_path_factory.mktemp("other")
    (other / "ca.pem").write_text("ca")
    data = with_value("tls.ca_file", str(other / "ca.pem"))
    data["storage"]["path"] = str(other / "x.db")
    settings = build(data, tmp_path)
    assert settings.ca_file == other / "ca.pem"
    assert settings.storage_path == other / "x.db"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file whatever its mode")
def test_unreadable_ca_file_is_rejected(tmp_path: Path) -> None:
    """A CA file that exists but cannot be read is a config error naming tls.ca_file."""
    (tmp_path / "ca.pem").write_text("ca")
    (tmp_path / "ca.pem").chmod(0)
    error = config_error(with_value("tls.ca_file", "ca.pem"), tmp_path)
    assert_names(error, tmp_path, "tls.ca_file", "cannot read")


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        ("storage.path", DELETE, "storage.path", "missing"),
        ("storage.path", "", "storage.path", "must not be empty"),
        ("storage.path", "nowhere/bot.db", "storage.path", "does not exist"),
        ("storage.path", ".", "storage.path", "is a directory"),
        ("tls.ca_file", "missing.pem", "tls.ca_file", "no such file"),
        ("tls.ca_file", ".", "tls.ca_file", "no such file"),
        ("tenants.0.certificate_file", "missing.pem", "tenants[0].certificate_file", "no such"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_paths_name_their_key(
    tmp_path: Path, path: str, value: Any, key: str, fragment: str
) -> None:
    """A missing, empty, absent or wrong-kind path is rejected naming its key."""
    data = with_value(path, value)
    if path.startswith("tenants"):
        del data["tenants"][0]["client_secret_env"]
    assert_names(config_error(data, tmp_path), tmp_path, key, fragment)


# --- validation rules ----------------------------------------------------------------------------

RULES = [
    # [slack]
    ("slack", "C0", "slack", "expected a table, got a string"),
    ("slack.progress_channel", DELETE, "slack.progress_channel", "missing"),
    ("slack.progress_channel", "#general", "slack.progress_channel", "not a channel ID"),
    ("slack.progress_channel", "U0ADMIN1", "slack.progress_channel", "not a channel ID"),
    ("slack.progress_channel", 5, "slack.progress_channel", "expected a string, got an integer"),
    ("slack.admins", DELETE, "slack.admins", "missing"),
    ("slack.admins", [], "slack.admins", "at least one"),
    ("slack.admins", "U0ADMIN1", "slack.admins", "expected an array of strings, got a string"),
    ("slack.admins", ["U0ADMIN1", "bob"], "slack.admins[1]", "not a Slack user ID"),
    ("slack.admins", ["U0ADMIN1", 7], "slack.admins[1]", "expected a non-empty string"),
    ("slack.admins", ["U0ADMIN1", ""], "slack.admins[1]", "got an empty string"),
    ("slack.admins", ["U0ADMIN1", "U0ADMIN1"], "slack.admins[1]", "listed twice"),
    ("slack.api_url", "ftp://slack.com/api/", "slack.api_url", "http:// or https://"),
    ("slack.api_url", "slack.com/api", "slack.api_url", "http:// or https://"),
    ("slack.api_url", "https://slack.com/api?x=1", "slack.api_url", "query"),
    # [timing]
    ("timing", [], "timing", "expected a table, got an array"),
    ("timing.poll_interval", "5x", "timing.poll_interval", "invalid duration"),
    ("timing.poll_interval", 300, "timing.poll_interval", "expected a duration string"),
    ("timing.approval_ttl", "0s", "timing.approval_ttl", "longer than 0"),
    ("timing.reminder_interval", "12", "timing.reminder_interval", "invalid duration"),
    ("timing.tenant_gone_checks", 0, "timing.tenant_gone_checks", "at least 1"),
    ("timing.tenant_gone_checks", "3", "timing.tenant_gone_checks", "expected an integer"),
    ("timing.tenant_gone_checks", True, "timing.tenant_gone_checks", "got a boolean"),
    # [[tenants]]
    ("tenants", DELETE, "tenants", "at least one [[tenants]]"),
    ("tenants", [], "tenants", "at least one [[tenants]]"),
    ("tenants", {"name": "contoso"}, "tenants", "expected [[tenants]] tables, got a table"),
    ("tenants.0.name", DELETE, "tenants[0].name", "missing"),
    ("tenants.0.name", "Contoso", "tenants[0].name", "lowercase"),
    ("tenants.0.name", "-contoso", "tenants[0].name", "lowercase"),
    ("tenants.0.name", "contoso_ltd", "tenants[0].name", "lowercase"),
    ("tenants.0.name", "a" * 64, "tenants[0].name", "1-63"),
    ("tenants.0.tenant_id", DELETE, "tenants[0].tenant_id", "missing"),
    ("tenants.0.tenant_id", "contoso.onmicrosoft.com", "tenants[0].tenant_id", "not a GUID"),
    ("tenants.0.client_id", TENANT_ID[:-1], "tenants[0].client_id", "not a GUID"),
    ("tenants.0.client_secret_env", DELETE, "tenants[0].client_secret_env", "exactly one"),
    ("tenants.0.certificate_file", "cert.pem", "tenants[0].client_secret_env", "exactly one"),
    ("tenants.0.client_secret_env", "UNSET_VAR", "tenants[0].client_secret_env", "UNSET_VAR"),
    ("tenants.0.client_secret_env", "EMPTY_VAR", "tenants[0].client_secret_env", "EMPTY_VAR"),
    ("tenants.0.client_secret_env", 1, "tenants[0].client_secret_env", "expected a string"),
    ("tenants.0.retain", DELETE, "tenants[0].retain", "missing"),
    ("tenants.0.retain", [], "tenants[0].retain", "at least one"),
    ("tenants.0.retain", ["admin"], "tenants[0].retain[0]", "user principal name"),
    ("tenants.0.approvers", DELETE, "tenants[0].approvers", "missing"),
    ("tenants.0.approvers", [], "tenants[0].approvers", "at least one"),
    ("tenants.0.approvers", ["U0APPR1", "U0APPR1"], "tenants[0].approvers[1]", "listed twice"),
    ("tenants.0.quorum", DELETE, "tenants[0].quorum", "missing"),
    ("tenants.0.quorum", 0, "tenants[0].quorum", "between 1 and 3"),
    ("tenants.0.quorum", 4, "tenants[0].quorum", "between 1 and 3"),
    ("tenants.0.quorum", "2", "tenants[0].quorum", "expected an integer, got a string"),
    ("tenants.0.quorum", 2.0, "tenants[0].quorum", "expected an integer, got a float"),
    ("tenants.0.quorum_by_step", 2, "tenants[0].quorum_by_step", "expected a table"),
    (
        "tenants.0.quorum_by_step",
        {"delete_user": 2},
        "tenants[0].quorum_by_step.delete_user",
        "did you mean 'delete_users'?",
    ),
    (
        "tenants.0.quorum_by_step",
        {"delete_directory": 4},
        "tenants[0].quorum_by_step.delete_directory",
        "between 1 and 3",
    ),
    (
        "tenants.0.quorum_by_step",
        {"rollback": 0},
        "tenants[0].quorum_by_step.rollback",
        "between 1 and 3",
    ),
    (
        "tenants.0.quorum_by_step",
        {"disable_mfa": "3"},
        "tenants[0].quorum_by_step.disable_mfa",
        "expected an integer",
    ),
    ("tenants.0.cloud", "azure", "tenants[0].cloud", "global, usgov, usgov-dod, china"),
    ("tenants.0.cloud", "Global", "tenants[0].cloud", "not one of"),
    ("tenants.0.authority_host", "http://login.example", "tenants[0].authority_host", "https://"),
    ("tenants.0.authority_host", "https://h/tenant", "tenants[0].authority_host", "no path"),
    ("tenants.0.graph_url", "graph.microsoft.com", "tenants[0].graph_url", "https://"),
    ("tenants.0.graph_url", "https://g#frag", "tenants[0].graph_url", "fragment"),
    # unknown keys, with the closest known key suggested
    ("slak", {}, "slak", "unknown key; did you mean 'slack'?"),
    ("slack.progres_channel", "C0", "slack.progres_channel", "did you mean 'progress_channel'?"),
    ("slack.colour", "red", "slack.colour", "unknown key"),
    ("storage.paht", "x.db", "storage.paht", "did you mean 'path'?"),
    ("tls.cafile", "x.pem", "tls.cafile", "did you mean 'ca_file'?"),
    ("timing.poll", "5m", "timing.poll", "did you mean 'poll_interval'?"),
    ("tenants.0.aprovers", ["U1"], "tenants[0].aprovers", "did you mean 'approvers'?"),
]


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    RULES,
    ids=[f"{path}={value!r}"[:60] for path, value, _, _ in RULES],
)
def test_each_rule_names_the_file_and_the_key(
    tmp_path: Path, path: str, value: Any, key: str, fragment: str
) -> None:
    """Each invalid value is rejected with one line naming the file, the exact key and why."""
    (tmp_path / "cert.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    environ = ENV | {"EMPTY_VAR": ""}
    assert_names(config_error(with_value(path, value), tmp_path, environ), tmp_path, key, fragment)


def test_duplicate_tenant_names_are_rejected(tmp_path: Path) -> None:
    """Two tenants with the same name are rejected at the second one's name."""
    data = minimal()
    data["tenants"].append(copy.deepcopy(data["tenants"][0]) | {"tenant_id": OTHER_TENANT_ID})
    assert_names(config_error(data, tmp_path), tmp_path, "tenants[1].name", "tenants[0]")


def test_duplicate_tenant_ids_are_rejected(tmp_path: Path) -> None:
    """Two names for one directory (GUIDs compared case-insensitively) are rejected."""
    data = minimal()
    twin = copy.deepcopy(data["tenants"][0]) | {"name": "twin", "tenant_id": TENANT_ID.upper()}
    data["tenants"].append(twin)
    assert_names(config_error(data, tmp_path), tmp_path, "tenants[1].tenant_id", "tenants[0]")


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"SLACK_SIGNING_SECRET": SIGNING_SECRET}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": SIGNING_SECRET}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET"),
    ],
    ids=["bot-token-unset", "bot-token-empty", "signing-secret-unset", "signing-secret-empty"],
)
def test_missing_slack_secret_names_the_variable(
    tmp_path: Path, environ: dict[str, str], key: str
) -> None:
    """An unset or empty Slack secret is an error keyed by the variable's name, in the file."""
    error = config_error(minimal(), tmp_path, environ | {"CONTOSO_SECRET": CLIENT_SECRET})
    assert_names(error, tmp_path, key, "not set")


def test_app_token_replaces_the_signing_secret(tmp_path: Path) -> None:
    """With SLACK_APP_TOKEN set (Socket Mode) SLACK_SIGNING_SECRET is not needed."""
    environ = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}
    settings = settings_from_mapping(
        minimal(), file=tmp_path / "bot.toml", environ=environ | {"CONTOSO_SECRET": "s"}
    )
    assert settings.slack.signing_secret is None
    assert settings.slack.app_token == APP_TOKEN


def test_repr_hides_every_secret(config_dir: Path) -> None:
    """repr of the settings, and of each part, contains no secret value."""
    (config_dir / "bot.toml").write_text(FULL_TOML)
    settings = load_settings(config_dir / "bot.toml", ENV | {"SLACK_APP_TOKEN": APP_TOKEN})
    shown = repr(settings) + repr(settings.slack) + str(settings.tenants)
    assert "CONTOSO_SECRET" in shown  # the variable's name is fine to show
    for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN, CLIENT_SECRET):
        assert secret not in shown


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("slack.bot_token", "slack.bot_token"),
        ("tenants.0.client_secret", "tenants[0].client_secret"),
    ],
)
def test_secrets_in_the_file_are_refused_without_echoing_them(
    tmp_path: Path, path: str, key: str
) -> None:
    """A secret written into the config file is refused, and the message does not repeat it."""
    error = config_error(with_value(path, "pasted-secret-value"), tmp_path)
    assert_names(error, tmp_path, key, "secrets do not belong in the config file")
    assert "pasted-secret-value" not in str(error)


def test_secret_pasted_into_client_secret_env_is_not_echoed(tmp_path: Path) -> None:
    """A value that cannot be a variable name (likely the secret itself) is not repeated."""
    error = config_error(with_value("tenants.0.client_secret_env", "a1~b2.c3"), tmp_path)
    assert_names(error, tmp_path, "tenants[0].client_secret_env", "must name an environment")
    assert "a1~b2.c3" not in str(error)


# --- the file itself -----------------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config file that does not exist is a one-line ConfigError naming the file."""
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.toml", ENV)
    assert info.value.key is None
    assert str(info.value).startswith(f"{tmp_path / 'nope.toml'}: cannot read the config file")


def test_directory_as_file_is_a_config_error(tmp_path: Path) -> None:
    """A directory given as the config file is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(tmp_path, ENV)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError naming the file."""
    (tmp_path / "bot.toml").write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_settings(tmp_path / "bot.toml", ENV)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[slack]\nprogress_channel = "C0"\nadmins = [\n  "U1" "U2"]\n', "line 4", "column"),
        ("[slack\n", "line 1", "invalid TOML"),
        ("a = 1\na = 2\n", "line 2", "invalid TOML"),
        ('[slack]\napi_url = "https://x', "line 2", "end of file"),
    ],
    ids=["array", "table-header", "duplicate-key", "unterminated"],
)
def test_toml_syntax_error_names_the_line(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    """A TOML syntax error is a one-line ConfigError naming the file and the line."""
    (tmp_path / "bot.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "bot.toml", ENV)
    assert_names(info.value, tmp_path, key, fragment)


def test_config_error_is_always_one_line() -> None:
    """ConfigError folds any newline in the problem so the CLI prints exactly one line."""
    error = ConfigError("bot.toml", "slack.admins", "first\nsecond")
    assert (error.file, error.key, error.problem) == (
        Path("bot.toml"),
        "slack.admins",
        "first second",
    )
    assert str(error) == "bot.toml: slack.admins: first second"


# --- clouds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "authority_host", "graph_url"),
    [
        ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
        ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        ("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_cloud_picks_its_endpoints(
    tmp_path: Path, cloud: str, authority_host: str, graph_url: str
) -> None:
    """Each national cloud maps to its sign-in host and Graph URL, which a tenant inherits."""
    assert (CLOUDS[cloud].authority_host, CLOUDS[cloud].graph_url) == (authority_host, graph_url)
    assert isinstance(CLOUDS[cloud], CloudEndpoints)
    tenant = build(with_value("tenants.0.cloud", cloud), tmp_path).tenants[0]
    assert (tenant.cloud, tenant.authority_host, tenant.graph_url) == (
        cloud,
        authority_host,
        graph_url,
    )


def test_clouds_are_exactly_the_four_national_clouds() -> None:
    """CLOUDS lists the four clouds the config accepts, all https and without a trailing slash."""
    assert set(CLOUDS) == {"global", "usgov", "usgov-dod", "china"}
    for endpoints in CLOUDS.values():
        for url in (endpoints.authority_host, endpoints.graph_url):
            assert url.startswith("https://")
            assert not url.endswith("/")


def test_explicit_endpoints_override_the_cloud(tmp_path: Path) -> None:
    """authority_host and graph_url replace the cloud's endpoints, trailing slash stripped."""
    data = with_value("tenants.0.cloud", "china")
    data["tenants"][0]["authority_host"] = "https://127.0.0.1:8443/"
    tenant = build(data, tmp_path).tenants[0]
    assert tenant.cloud == "china"
    assert tenant.authority_host == "https://127.0.0.1:8443"
    assert tenant.graph_url == "https://microsoftgraph.chinacloudapi.cn"


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("2d", 172800.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("0s", 0.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    """parse_duration turns a number-and-unit string (units combinable) into seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "-1s", "5x", "s", "1.s", ".5s", "5 m", " 5m", "5M", "30m1h", "1m1m", "1e3s"]
)
def test_parse_duration_rejects(text: str) -> None:
    """parse_duration raises ValueError for anything but numbers with units, largest first."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
