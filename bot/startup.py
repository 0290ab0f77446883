"""What `run` checks before it says "listening": credentials, the port, and Slack.

Each problem is one line naming what is wrong and the fix. `StartupError` is the operator's to
fix (exit 2: a supervisor's restart would not help); `Unreachable` is a service that did not
answer (exit 1: a restart later may work).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.config import ConfigError, Settings
from bot.microsoft.certificates import CertificateError, msal_credential

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
        error = str(exc.response.get("error", "unknown_error"))
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
