"""Azure Resource Manager: the tenant's Azure subscriptions, listed and cancelled by API.

Azure subscriptions are not in Graph's `directory/subscriptions`; ARM is its own resource with
its own token scope (`{arm_url}/.default`), and the app needs a role (Owner) on each one.

The subscription list is pageable: Azure/azure-rest-api-specs,
specification/resources/resource-manager/Microsoft.Resources/stable/2022-12-01/subscriptions.json,
`Subscriptions_List` has `x-ms-pageable: {nextLinkName: nextLink}` and `SubscriptionListResult`
carries `nextLink`, "The URL to get the next set of results" (absolute; empty or absent on the
last page). It is followed only on the configured ARM host and path over HTTPS, since each request
carries the ARM token.

Cancelling (`Subscription_Cancel`, Microsoft.Subscription/stable/2021-10-01/subscriptions.json)
is refused while the subscription still holds resources: 400 `ResourcesExistingOnSubscription`
(not in the spec's examples; reported in Azure/terraform-azurerm-lz-vending issue 405, by design
per Azure/azure-rest-api-specs issue 9042). What it holds is `Resources_List`,
`GET /subscriptions/{id}/resources` (Microsoft.Resources/stable/2022-12-01/resources.json,
pageable by `nextLink`). A cancelled subscription can be deleted in the Azure portal 3 days after
cancelling (free trial, pay-as-you-go) or 7 (any other offer), and blocks the directory's deletion
until then (MicrosoftDocs/entra-docs, docs/identity/users/directory-delete-howto.md). ARM shows no
cancellation time (neither `Subscription` in subscriptions.json nor `Subscription_Cancel`'s answer,
`CanceledSubscriptionId`, has one): the bot keeps the time it saw (bot.microsoft.learned).
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
from bot.microsoft.learned import Learned
from bot.microsoft.tokens import MsalTokens

# The version of the spec the listing follows (Microsoft.Resources/stable/2022-12-01/
# subscriptions.json, Subscriptions_List).
LIST_API = "2022-12-01"
CANCEL_API = "2021-10-01"
RESOURCES_API = "2022-12-01"
ACTIVE_STATES = frozenset({"Enabled", "PastDue", "Warned"})
HAS_RESOURCES = "ResourcesExistingOnSubscription"
# Offers (SubscriptionPolicies.quotaId prefixes) deletable 3 days after cancelling, not 7.
SHORT_WAIT_OFFERS = ("FreeTrial", "PayAsYouGo")


def delete_wait_days(subscription: dict[str, Any]) -> int:
    """Days after cancelling before the admin may delete it: 3 for a free trial or
    pay-as-you-go subscription, 7 for any other (directory-delete-howto.md)."""
    policies = subscription.get("subscriptionPolicies")
    quota = str(policies.get("quotaId", "")) if isinstance(policies, dict) else ""
    return 3 if quota.startswith(SHORT_WAIT_OFFERS) else 7


@dataclass(frozen=True)
class CancelResult:
    """What asking ARM to cancel came to: cancelled (`already`: by someone else before, at a
    time ARM does not say), has_resources (with what it still holds), or refused (ARM's HTTP
    status, code and message)."""

    kind: str  # "cancelled" | "has_resources" | "refused"
    already: bool = False
    resources: tuple[str, ...] = ()
    status: int = 0
    code: str = ""
    reason: str = ""


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Arm:
    session: aiohttp.ClientSession
    arm_url: str
    tokens: MsalTokens
    ssl_context: ssl.SSLContext | None = None
    max_attempts: int = 6
    backoff_base: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    # What ARM told the bot and does not show again (when each subscription was cancelled, what
    # it refused), kept in the database by the service.
    learned: Learned = field(default_factory=Learned)

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
        return await self._all(f"/subscriptions?api-version={LIST_API}")

    async def resources(self, subscription_id: str) -> list[dict[str, Any]]:
        """Every resource the subscription still holds (`Resources_List`), to the last page."""
        return await self._all(
            f"/subscriptions/{subscription_id}/resources?api-version={RESOURCES_API}"
        )

    async def _all(self, first: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_path: str | None = first
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

    async def cancel(self, subscription_id: str) -> CancelResult:
        """Cancel one subscription; ARM's refusals come back as a result, never raised (a
        network error or exhausted retries still raise)."""
        try:
            await self._call(
                "POST",
                f"/subscriptions/{subscription_id}/providers/Microsoft.Subscription/cancel"
                f"?api-version={CANCEL_API}",
            )
        except ArmError as exc:
            if exc.code == "SubscriptionNotActive":
                return CancelResult("cancelled", already=True)
            if exc.code == HAS_RESOURCES:
                held = await self.resources(subscription_id)
                return CancelResult(
                    "has_resources", resources=tuple(resource_name(r) for r in held)
                )
            if exc.status == 0:
                raise
            return CancelResult("refused", status=exc.status, code=exc.code, reason=exc.message)
        return CancelResult("cancelled")


def resource_name(resource: dict[str, Any]) -> str:
    """A resource as a person finds it in the portal: its name and type."""
    return f"{resource.get('name', resource.get('id', '?'))} ({resource.get('type', '?')})"
