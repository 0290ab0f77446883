"""Readiness that tells the truth: whether the bot reaches Slack and each tenant's authority,
probed at most once per `ttl` seconds however often /healthz is asked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import TenantSettings
from bot.microsoft.steps.delete_directory import TENANT_NOT_FOUND

log = logging.getLogger("close_account_bot.health")
TTL = 30.0  # seconds a probe's answer stands: health checks stay cheap for Slack and Microsoft
PROBE_TIMEOUT = 3.0  # seconds per probe: under the image HEALTHCHECK's 4 s


def _unreachable(exc: BaseException) -> str:
    return f"unreachable: {type(exc).__name__}{f': {exc}' if str(exc) else ''}"


class Health:
    """Probes Slack (auth.test) and each tenant's authority (its OpenID configuration, the URL
    step 5 asks to prove a tenant gone) and keeps the answer `ttl` seconds."""

    def __init__(
        self,
        *,
        slack: AsyncWebClient,
        session: aiohttp.ClientSession,
        tenants: Sequence[TenantSettings],
        ssl_context: ssl.SSLContext | None,
        ttl: float = TTL,
        timeout: float = PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slack = slack
        self.session = session
        self.tenants = tenants
        self.ssl_context = ssl_context
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self._answer: dict[str, Any] | None = None
        self._at = 0.0
        self._probing: asyncio.Task[dict[str, Any]] | None = None
        self._was_ok: bool | None = None

    async def check(self) -> dict[str, Any]:
        """`{"ok", "slack", "tenants"}` (and `"reason"` when not ok), at most `ttl` old."""
        if self._answer is not None and self.clock() - self._at < self.ttl:
            return self._answer
        if self._probing is None or self._probing.done():
            # One probe at a time, whoever asks: a burst of /healthz is one auth.test.
            self._probing = asyncio.create_task(self._probe())
        return await asyncio.shield(self._probing)

    async def close(self) -> None:
        if self._probing is not None and not self._probing.done():
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing

    async def _probe(self) -> dict[str, Any]:
        slack, *authorities = await asyncio.gather(
            self._slack(), *(self._authority(t) for t in self.tenants)
        )
        tenants = {t.name: a for t, a in zip(self.tenants, authorities, strict=True)}
        reasons = [] if slack["ok"] else [f"Slack {slack['error']}"]
        reasons += [
            f"{name}'s authority {a['authority']}"
            for name, a in tenants.items()
            if a["authority"] != "ok"
        ]
        answer: dict[str, Any] = {"ok": not reasons, "slack": slack, "tenants": tenants}
        if reasons:
            answer["reason"] = "; ".join(reasons)
        if answer["ok"] != self._was_ok:  # a change is worth a line; every probe is not
            if answer["ok"]:
                log.info("health: Slack and every tenant's authority answer")
            else:
                log.warning("health: not ready: %s", answer["reason"])
            self._was_ok = answer["ok"]
        self._answer, self._at = answer, self.clock()
        return answer

    async def _slack(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self.slack.auth_test()
        except SlackApiError as exc:
            return {"ok": False, "error": f"answered {exc.response.get('error')}"}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return {"ok": False, "error": _unreachable(exc)}
        return {"ok": True, "team": resp.get("team_id"), "bot_user": resp.get("user_id")}

    async def _authority(self, tenant: TenantSettings) -> dict[str, Any]:
        url = f"{tenant.authority_host}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"
        try:
            async with (
                asyncio.timeout(self.timeout),
                self.session.get(
                    url, ssl=self.ssl_context if self.ssl_context is not None else True
                ) as resp,
            ):
                status = resp.status
                body = await resp.json(content_type=None) if status == 400 else None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return {"authority": _unreachable(exc)}
        if status == 200:
            return {"authority": "ok"}
        codes = body.get("error_codes") if isinstance(body, dict) else None
        if isinstance(codes, list) and TENANT_NOT_FOUND in codes:
            # The authority answers; it no longer knows the tenant (closed, or a wrong ID that
            # `check` reports). Readiness is about reaching it.
            return {"authority": "ok", "tenant": "not found"}
        return {"authority": f"answered HTTP {status}"}
