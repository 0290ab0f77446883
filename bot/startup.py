"""What `run` checks before it says "listening": credentials, the port, and Slack.

Each problem is one line naming what is wrong and the fix. `StartupError` is the operator's to
fix (exit 2: a supervisor's restart would not help); `Unreachable` is a service that did not
answer (exit 1: a restart later may work).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import ssl
from collections.abc import Awaitable

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlite_utils import Database

from bot.config import ConfigError, Settings
from bot.microsoft.certificates import CertificateError, msal_credential
from bot.slackapi import plain_error
from storage.db import open_db
from storage.lock import InstanceLock, acquire_instance_lock

# Slack's answers that mean the token itself is wrong, not that Slack is having a bad day.
_REFUSED_TOKEN = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
        "no_permission",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
SLACK_PROBE_TIMEOUT = 20.0  # seconds for Slack to answer at start


class StartupError(Exception):
    """A problem the operator must fix before the bot can start; str() is one line."""


class Unreachable(Exception):
    """A service the bot needs did not answer at start; str() is one line."""


def check_credentials(settings: Settings) -> None:
    """Load every tenant's certificate the way MSAL will: readable, a key that opens without a
    password and belongs to the certificate, not expired. A bad one is found now, not mid-closure.
    (Secrets were checked present when the config was read.)"""
    for index, tenant in enumerate(settings.tenants):
        if tenant.certificate_file is None:
            continue
        try:
            msal_credential(tenant.certificate_file)
        except CertificateError as exc:
            problem = str(exc).removeprefix(f"{tenant.certificate_file}: ")
            raise ConfigError(
                settings.file, f"tenants[{index}].certificate_file", problem
            ) from None


def check_tls(settings: Settings) -> None:
    """`[tls] ca_file` holds at least one PEM certificate Python's ssl module can load."""
    if settings.ca_file is None:
        return
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(settings.ca_file))
    except (ssl.SSLError, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            settings.file, "tls.ca_file", f"not a PEM CA certificate ({reason})"
        ) from None


def storage_lock(settings: Settings) -> InstanceLock:
    """The instance lock beside the database, or one line saying why it cannot be written."""
    try:
        return acquire_instance_lock(settings.storage_path)
    except OSError as exc:
        raise StartupError(_unwritable(settings, exc)) from None


def open_storage(settings: Settings) -> Database:
    """Open (and migrate) the database, or say in one line why it cannot be used."""
    try:
        return open_db(settings.storage_path)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            raise StartupError(_unwritable(settings, exc)) from None
        raise StartupError(
            f"{settings.file}: storage.path: {settings.storage_path} is not a usable database "
            f"({exc}); restore it from a backup (deploy/README.md, Restoring)"
        ) from None


def _unwritable(settings: Settings, exc: Exception) -> str:
    reason = getattr(exc, "strerror", None) or str(exc)
    return (
        f"{settings.file}: storage.path: cannot write in {settings.storage_path.parent} "
        f"({reason}); make that directory writable by the bot's user (uid 10001 in the image; "
        "ReadWritePaths= under systemd)"
    )


async def listen(runner: web.AppRunner, host: str, port: int) -> None:
    """Bind the HTTP server, or say in one line why the address cannot be used."""
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fix = "stop what holds it (`ss -ltnp`) or pass another --port"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            fix = "ports below 1024 need privileges: pass --port 3000 or higher"
        elif exc.errno == errno.EADDRNOTAVAIL:
            fix = "--host must be an address of this machine (0.0.0.0 for all)"
        else:
            fix = "check --host and --port"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: {reason}; {fix}") from None


async def check_slack(client: AsyncWebClient, settings: Settings) -> None:
    """The bot token works (auth.test); in Socket Mode the app token can open a connection."""
    where = settings.slack.api_url or "https://slack.com/api/"
    await _ask(client.auth_test(), "SLACK_BOT_TOKEN", "auth.test", where)
    if settings.slack.app_token:
        # Bolt's handler would retry a refused token or a blocked websocket forever, logging a
        # traceback each time: open one connection here first, and say in one line why not.
        opened = await _ask(
            client.apps_connections_open(app_token=settings.slack.app_token),
            "SLACK_APP_TOKEN",
            "apps.connections.open",
            where,
        )
        url = str(opened.get("url", ""))
        await _websocket(client, url, settings.network.proxy_for(url))


async def _websocket(client: AsyncWebClient, url: str, proxy: str | None) -> None:
    session = client.session or aiohttp.ClientSession()
    try:
        async with asyncio.timeout(SLACK_PROBE_TIMEOUT), session.ws_connect(url, proxy=proxy) as ws:
            await ws.close()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise Unreachable(
            f"cannot open Slack's Socket Mode connection ({_reason(exc)}); allow outgoing WSS "
            "to wss-primary.slack.com (port 443) through the firewall and proxy"
        ) from None
    finally:
        if session is not client.session:
            await session.close()


def _reason(exc: BaseException) -> str:
    """What went wrong in a few words, without aiohttp's object reprs."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the handshake was answered {exc.status} {exc.message}"
    return str(exc) or type(exc).__name__


async def _ask(
    call: Awaitable[AsyncSlackResponse], variable: str, method: str, where: str
) -> AsyncSlackResponse:
    try:
        async with asyncio.timeout(SLACK_PROBE_TIMEOUT):
            return await call
    except SlackApiError as exc:
        plain_error(exc)
        error = str(exc.response.get("error", "unknown_error"))
        if error.startswith("http_4"):  # not Slack's JSON: the URL is not Slack's API
            raise StartupError(
                f"{where} answered {method} with HTTP {error[5:]}, not Slack's API; check "
                "[slack] api_url and the proxy"
            ) from None
        if error in _REFUSED_TOKEN:
            fix = (
                "an app-level token (xapp-) with connections:write"
                if variable == "SLACK_APP_TOKEN"
                else "the app's Bot User OAuth Token (xoxb-); reinstall the app if it was revoked"
            )
            raise StartupError(f"Slack refused {variable} ({method}: {error}); set {fix}") from None
        raise Unreachable(
            f"Slack answered {method} with {error}; retry later (status.slack.com)"
        ) from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise Unreachable(
            f"cannot reach Slack at {where} ({method}: {_reason(exc)}); check the network, the "
            "proxy and [slack] api_url"
        ) from None
