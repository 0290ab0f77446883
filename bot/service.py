"""Builds every client once and starts the bot: database, Slack, Graph, the core objects
(`bot.core`), the HTTP server (`bot.web`), Socket Mode; and stops it cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import logs
from bot.app import build_app
from bot.config import Settings
from bot.core import Core, build_core
from bot.health import PROBE_TIMEOUT, Health
from bot.metrics import Metrics
from bot.microsoft.azure import Arm
from bot.microsoft.graph import Graph
from bot.microsoft.learned import Learned
from bot.microsoft.pacing import WritePacer
from bot.microsoft.partner import PartnerCenter
from bot.microsoft.tenant import Tenant
from bot.microsoft.tokens import MsalTokens
from bot.network import client_session
from bot.runner import Runner
from bot.slackapi import ObservedWebClient
from bot.startup import (
    Unreachable,
    check_credentials,
    check_slack,
    check_tls,
    listen,
    open_storage,
    storage_lock,
)
from bot.web import build_web
from storage.lock import InstanceLock

log = logging.getLogger("close_account_bot.service")
SLACK_API = "https://slack.com/api/"
SLACK_TIMEOUT = 30  # seconds per Slack Web API call, slack-sdk's own default
SOCKET_CONNECT_TIMEOUT = 30  # seconds to open Socket Mode's websocket at start


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust store plus the configured extra CA, for every outgoing HTTPS call."""
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def ca_bundle(ca_file: Path | None) -> str | None:
    """A PEM bundle for MSAL (requests): certifi's roots plus the configured extra CA."""
    if ca_file is None:
        return None
    fd, path = tempfile.mkstemp(prefix="close-account-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as out:
        out.write(Path(certifi.where()).read_text())
        out.write("\n")
        out.write(ca_file.read_text())
    return path


def slack_client(
    settings: Settings,
    context: ssl.SSLContext,
    session: aiohttp.ClientSession,
    metrics: Metrics | None = None,
    *,
    probe: bool = False,
    quiet: bool = False,
) -> AsyncWebClient:
    """The one Slack Web API client, over its own session: connections to Slack are kept and
    reused (without one, slack-sdk opens a session, a connection and a TLS handshake per call).
    Every call and failure is counted in `metrics`, and failures are logged unless `quiet`. A
    `probe` client (for /healthz) answers fast: no retries, a short timeout."""
    return ObservedWebClient(
        token=settings.slack.bot_token,
        base_url=settings.slack.api_url or SLACK_API,
        ssl=context,
        session=session,
        timeout=int(PROBE_TIMEOUT) if probe else SLACK_TIMEOUT,
        retry_handlers=[]
        if probe
        else [
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
        ],
        metrics=metrics,
        quiet=quiet,
    )


def version() -> str:
    """The installed distribution's version, for the start line."""
    try:
        return metadata.version("close-account-bot")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare source tree
        return "0+unknown"


def secret_values(settings: Settings) -> list[str | None]:
    """Every secret read from the environment, for the log redactor."""
    values = [settings.slack.bot_token, settings.slack.signing_secret, settings.slack.app_token]
    if settings.network.https_proxy and urlsplit(settings.network.https_proxy).password:
        values += [settings.network.https_proxy, urlsplit(settings.network.https_proxy).password]
    for t in settings.tenants:
        values.append(t.client_secret)
        if t.partner_center is not None:
            values.append(t.partner_center.client_secret)
    return values


@dataclass
class Service:
    settings: Settings
    db: Database
    core: Core
    app: AsyncApp
    session: aiohttp.ClientSession
    client: AsyncWebClient
    slack_session: aiohttp.ClientSession
    url: str = ""
    web_runner: web.AppRunner | None = None
    socket_handler: Any = None
    ready: bool = False
    metrics: Metrics = field(default_factory=Metrics)
    health: Health | None = None
    _bundle: str | None = field(default=None, repr=False)
    _lock: InstanceLock | None = field(default=None, repr=False)

    @property
    def runner(self) -> Runner:
        return self.core.runner

    async def stop(self) -> None:
        started = self.ready  # a start that failed is already one line; it says no more
        if started:
            log.info("stopping; %d open closures resume at the next start", self.runner.running())
        if self.health is not None:
            await self.health.close()
        await self.runner.stop()
        if self.socket_handler is not None:
            await self.socket_handler.close_async()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        await self.session.close()
        await self.slack_session.close()
        for tenant in self.core.tenants.values():
            close = getattr(tenant.graph.tokens, "close", None)
            if close is not None:
                close()
            if tenant.partner is not None:
                tenant.partner.close()
        self.db.conn.close()
        if self._lock is not None:
            self._lock.release()
        if self._bundle:
            os.unlink(self._bundle)  # a small temp file; no need to leave the loop
        if started:
            log.info("stopped")


def build_tenants(
    settings: Settings,
    session: aiohttp.ClientSession,
    context: ssl.SSLContext,
    bundle: str | None,
    *,
    graph_backoff: float = 1.0,
    pacer: Callable[[], WritePacer] | None = None,
    db: Database | None = None,
) -> dict[str, Tenant]:
    """One MSAL app and one Graph client per configured tenant, over the shared session; what
    ARM and Partner Center tell them is kept in `db` (in memory without one)."""
    tenants = {}
    learned = Learned(db)
    for t in settings.tenants:
        tokens = MsalTokens(t, ca_bundle=bundle, network=settings.network)
        graph = Graph(
            session,
            graph_url=t.graph_url,
            tokens=tokens,
            ssl_context=context,
            backoff_base=graph_backoff,
            pacer=pacer() if pacer is not None else None,
            name=t.name,
        )
        arm = (
            Arm(
                session,
                t.arm_url,
                tokens,
                ssl_context=context,
                backoff_base=graph_backoff,
                learned=learned,
            )
            if t.arm_url
            else None
        )
        partner = PartnerCenter.build(
            session,
            t,
            ca_bundle=bundle,
            ssl_context=context,
            network=settings.network,
            learned=learned,
            backoff_base=graph_backoff,
        )
        tenants[t.name] = Tenant(t, graph, arm, partner)
    return tenants


async def start_service(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    clock: Callable[[], float] = time.time,
    graph_backoff: float = 1.0,
) -> Service:
    """Start the bot: HTTP server (and Socket Mode if configured), then resume closures.

    Raises StartupError or ConfigError (the operator's to fix) and Unreachable (Slack did not
    answer) with one line, having closed whatever it had opened."""
    check_tls(settings)
    check_credentials(settings)  # a certificate that cannot work fails now, not mid-closure
    lock = storage_lock(settings)  # exactly one instance per database
    try:
        return await _start(
            settings,
            lock,
            host=host,
            port=port,
            clock=clock,
            graph_backoff=graph_backoff,
        )
    except BaseException:
        lock.release()
        raise


async def _start(
    settings: Settings,
    lock: InstanceLock,
    *,
    host: str,
    port: int,
    clock: Callable[[], float],
    graph_backoff: float,
) -> Service:
    logs.protect(secret_values(settings))
    db = open_storage(settings)  # before anything else is opened: a bad file leaks nothing
    context = ssl_context(settings.ca_file)
    bundle = ca_bundle(settings.ca_file)
    session = client_session(settings.network, timeout=aiohttp.ClientTimeout(total=120))
    slack_session = client_session(
        settings.network, timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT)
    )
    metrics = Metrics()
    client = slack_client(settings, context, slack_session, metrics, quiet=True)
    tenants = build_tenants(settings, session, context, bundle, graph_backoff=graph_backoff, db=db)
    metrics.watch(db, tenants, clock)
    core = build_core(
        settings=settings,
        db=db,
        client=client,
        tenants=tenants,
        session=session,
        ssl_context=context,
        clock=clock,
    )
    app = build_app(
        actions=core.actions,
        reactions=core.reactions,
        home_source=core.home,
        background=core.background,
        client=client,
        signing_secret=None if settings.slack.app_token else settings.slack.signing_secret,
        db=db,
        clock=clock,
    )
    health = Health(
        # Its failures are counted; Health logs when readiness changes, not every probe.
        slack=slack_client(settings, context, slack_session, metrics, probe=True, quiet=True),
        session=session,
        tenants=settings.tenants,
        ssl_context=context,
    )
    service = Service(
        settings,
        db,
        core,
        app,
        session,
        client,
        slack_session,
        metrics=metrics,
        health=health,
        _bundle=bundle,
        _lock=lock,
    )
    try:
        await _open(service, host, port)
    except BaseException:
        await service.stop()
        raise
    return service


async def _open(service: Service, host: str, port: int) -> None:
    """Check Slack, bind the port, connect Socket Mode, resume closures; then ready."""
    settings, core, app, client = service.settings, service.core, service.app, service.client
    await check_slack(client, settings)
    web_runner = web.AppRunner(build_web(service), access_log=None)
    await web_runner.setup()
    service.web_runner = web_runner
    await listen(web_runner, host, port)
    bound = web_runner.addresses[0][1] if web_runner.addresses else port
    service.url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    if settings.slack.app_token:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(app, settings.slack.app_token, web_client=client)
        # The handler's own aiohttp session: slack-sdk reads HTTPS_PROXY itself, ignoring
        # NO_PROXY, so the proxy is set here from [network] (None: connect directly).
        handler.client.proxy = settings.network.proxy_for(
            settings.slack.api_url or "https://wss-primary.slack.com"
        )
        service.socket_handler = handler
        try:
            async with asyncio.timeout(SOCKET_CONNECT_TIMEOUT):
                await handler.connect_async()  # type: ignore[no-untyped-call]
        except (TimeoutError, aiohttp.ClientError, OSError, SlackApiError) as exc:
            raise Unreachable(
                f"cannot open Slack's Socket Mode connection ({str(exc) or type(exc).__name__});"
                " check that outgoing WSS to wss-primary.slack.com is allowed"
            ) from None
    # Checked and connected: from here on the logs speak (a failed start is one line).
    log.info(
        "close-account-bot %s starting: %s mode, database %s, tenants %s",
        version(),
        "socket" if settings.slack.app_token else "http",
        settings.storage_path,
        ", ".join(t.name for t in settings.tenants),
    )
    if isinstance(client, ObservedWebClient):
        client.quiet = False
    for problem in await core.directory.resolve(
        [*settings.slack.admins, *(a for t in settings.tenants for a in t.approvers)]
    ):
        log.warning("cannot resolve %s; that person cannot act until it resolves", problem)
    resumed = await core.runner.start()
    service.ready = True
    log.info("ready on %s; resumed %d open closures", service.url, resumed)


async def serve_forever(service: Service, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (SIGINT or SIGTERM in `run`), then stop cleanly."""
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await service.stop()
