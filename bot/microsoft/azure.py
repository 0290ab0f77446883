"""Azure Resource Manager: the tenant's Azure subscriptions, listed and cancelled by API.

Azure subscriptions are not in Graph's `directory/subscriptions`; ARM is its own resource with
its own token scope (`{arm_url}/.default`), and the app needs a role (Owner) on each one.

The subscription list is pageable: Azure/azure-rest-api-specs,
specification/resources/resource-manager/Microsoft.Resources/stable/2022-12-01/subscriptions.json,
`Subscriptions_List` has `x-ms-pageable: {nextLinkName: nextLink}` and `SubscriptionListResult`
carries `nextLink`, "The URL to get the next set of results" (absolute; empty or absent on the
last page). It is followed only on the configured ARM host and path over HTTPS, since each request
carries the ARM token.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.microsoft.graph import retry_after
from bot.microsoft.tokens import MsalTokens

LIST_API = "2020-01-01"
CANCEL_API = "2021-10-01"
ACTIVE_STATES = frozenset({"Enabled", "PastDue", "Warned"})


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass
class Arm:
    session: aiohttp.ClientSession
    arm_url: str
    tokens: MsalTokens
    ssl_context: ssl.SSLContext | None = None
    max_attempts: int = 6
    backoff_base: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def url(self, path: str) -> str:
        """The absolute URL of `path`; an absolute URL (a nextLink) only under the configured ARM
        URL over HTTPS, as it would carry the ARM token: else an ArmError, nothing sent."""
        if "://" not in path:
            return f"{self.arm_url}{path}"
        own, link = urlsplit(self.arm_url), urlsplit(path)
        prefix = own.path.rstrip("/")
        if (
            link.scheme != "https"
            or link.netloc.lower() != own.netloc.lower()
            or not (link.path == prefix or link.path.startswith(prefix + "/"))
        ):
            raise ArmError(
                0,
                "foreignLink",
                f"refusing to send the ARM token to {link.scheme}://{link.netloc}{link.path}:"
                f" only {self.arm_url} is this tenant's Azure Resource Manager",
            )
        return path

    async def _call(self, method: str, path: str) -> dict[str, Any]:
        scopes = [f"{self.arm_url}/.default"]
        url = self.url(path)
        for attempt in range(self.max_attempts):
            token = await self.tokens.token(scopes=scopes)
            async with self.session.request(
                method,
                url,
                headers={"Authorization": f"Bearer {token}"},
                ssl=self.ssl_context if self.ssl_context is not None else True,
            ) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else {}
                except ValueError:
                    body = {}
                if resp.status < 300:
                    return body if isinstance(body, dict) else {}
                if resp.status in (429, 500, 502, 503, 504) and attempt + 1 < self.max_attempts:
                    await self.sleep(retry_after(dict(resp.headers), attempt, self.backoff_base))
                    continue
                error = body.get("error") if isinstance(body, dict) else None
                error = error if isinstance(error, dict) else {}
                raise ArmError(
                    resp.status, str(error.get("code", "")), str(error.get("message", ""))
                )
        raise ArmError(0, "retriesExhausted", path)

    async def subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription the app can see, following `nextLink` to the last page."""
        items: list[dict[str, Any]] = []
        next_path: str | None = f"/subscriptions?api-version={LIST_API}"
        seen: set[str] = set()
        while next_path:
            seen.add(next_path)
            body = await self._call("GET", next_path)
            value = body.get("value", [])
            if isinstance(value, list):
                items.extend(v for v in value if isinstance(v, dict))
            link = body.get("nextLink")
            next_path = link if isinstance(link, str) and link else None
            if next_path in seen:
                raise ArmError(0, "nextLinkLoop", "ARM answered the same nextLink twice")
        return items

    async def blocking_subscriptions(self) -> list[dict[str, Any]]:
        """Every Azure subscription not yet deleted: MicrosoftDocs/entra-docs,
        docs/identity/users/directory-delete-howto.md, "Delete a tenant": an active *or
        cancelled* Azure subscription blocks the directory's deletion until it is deleted or
        transferred. A subscription ARM lists as "Deleted" (or no longer lists) does not block."""
        return [s for s in await self.subscriptions() if str(s.get("state", "")) != "Deleted"]

    async def cancel(self, subscription_id: str) -> None:
        await self._call(
            "POST",
            f"/subscriptions/{subscription_id}/providers/Microsoft.Subscription/cancel"
            f"?api-version={CANCEL_API}",
        )
