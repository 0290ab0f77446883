"""Partner Center: stopping what a partner sold, with the partner's own app and tenant.

A subscription bought through a partner (its ownerTenantId is the partner's tenant) can only be
stopped by that partner, with a token the partner's app gets from the partner's tenant:
`GET /v1/customers/{customer}/subscriptions/{id}`, then `PATCH` of that same URL with the whole
resource as GET returned it and its status changed (MicrosoftDocs/partner-center-pr,
developer/cancel-an-azure-marketplace-subscription.md and suspend-a-subscription.md):
`deleted` for a new-commerce subscription, which Partner Center allows only within its
cancellation window (`cancellationAllowedUntilDate`, on new-commerce subscriptions only:
developer/api-change-log.md); `suspended` for a legacy one.
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from bot.config import NetworkSettings, PartnerCenterSettings, TenantSettings
from bot.microsoft.learned import Learned
from bot.microsoft.tokens import MsalTokens


class PartnerCenterError(Exception):
    """Partner Center answered with an error (`status` is the HTTP status, `code` its own)."""

    def __init__(self, status: int, description: str, code: str = "") -> None:
        super().__init__(f"{status}: {description}" + (f" (code {code})" if code else ""))
        self.status = status
        self.code = code
        self.description = description


class PartnerCenterRefused(PartnerCenterError):
    """Partner Center refused to cancel or suspend: the subscription is still running.

    Its `status` is 409 (Conflict) whatever Partner Center's HTTP status was (often 400):
    callers that read a 400 as "no longer active, so done" must not read a refusal so."""

    def __init__(self, outcome: CancelOutcome) -> None:
        super().__init__(409, outcome.reason, outcome.code)
        self.outcome = outcome

    def __str__(self) -> str:
        return f"refused ({self.outcome.code}): {self.outcome.reason}"


OutcomeKind = Literal["cancelled", "suspended", "already", "refused"]


@dataclass(frozen=True)
class CancelOutcome:
    """What asking Partner Center to stop a subscription came to.

    cancelled: a new-commerce subscription is now `deleted`; suspended: a legacy one is now
    `suspended`; already: Microsoft says it already was; refused: it is still running, with
    Partner Center's error code and description (e.g. 900117, the cancellation window has
    passed): someone has to handle it, the partner named in the checklist."""

    kind: OutcomeKind
    code: str = ""
    reason: str = ""
    new_commerce: bool | None = None  # None when the subscription could not be read

    @property
    def stopped(self) -> bool:
        return self.kind != "refused"


# Partner Center error codes (MicrosoftDocs/partner-center-pr developer/error-codes.md) that
# say the subscription already is in the state asked for.
_ALREADY = {"deleted": "2011", "suspended": "800091"}


@dataclass
class PartnerCenter:
    session: aiohttp.ClientSession
    settings: PartnerCenterSettings
    tokens: MsalTokens
    ssl_context: ssl.SSLContext | None = None
    # What Partner Center refused, kept in the database by the service (bot.microsoft.learned).
    learned: Learned = field(default_factory=Learned)

    @classmethod
    def build(
        cls,
        session: aiohttp.ClientSession,
        tenant: TenantSettings,
        *,
        ca_bundle: str | None,
        ssl_context: ssl.SSLContext | None,
        network: NetworkSettings | None = None,
        learned: Learned | None = None,
    ) -> PartnerCenter | None:
        """The partner's client, or None without [tenants.partner_center]. Its HTTP goes
        through `session` (which applies the proxy); its tokens through `network`'s proxy."""
        partner = tenant.partner_center
        if partner is None:
            return None
        # The partner's app signs in at the partner's tenant, same cloud and authority.
        as_partner = dataclasses.replace(
            tenant,
            tenant_id=partner.tenant_id,
            client_id=partner.client_id,
            client_secret_env=partner.client_secret_env,
            client_secret=partner.client_secret,
            certificate_file=None,
        )
        tokens = MsalTokens(as_partner, ca_bundle=ca_bundle, network=network)
        return cls(session, partner, tokens, ssl_context, learned or Learned())

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

    def _url(self, customer_tenant_id: str, subscription_id: str) -> str:
        return (
            f"{self.settings.api_url}/v1/customers/{customer_tenant_id}"
            f"/subscriptions/{subscription_id}"
        )

    async def _call(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        token = await self.tokens.token(scopes=[f"{self.settings.api_url}/.default"])
        async with self.session.request(
            method,
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
            | (headers or {}),
            ssl=self.ssl_context if self.ssl_context is not None else True,
        ) as resp:
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = None
            answer = answer if isinstance(answer, dict) else {}
            if resp.status >= 300:
                raise PartnerCenterError(
                    resp.status, str(answer.get("description", "")), str(answer.get("code", ""))
                )
            return answer

    async def subscription(self, customer_tenant_id: str, subscription_id: str) -> dict[str, Any]:
        """The Subscription resource, as Partner Center's GET returns it."""
        return await self._call("GET", self._url(customer_tenant_id, subscription_id))

    async def cancel_subscription(
        self, customer_tenant_id: str, subscription_id: str
    ) -> CancelOutcome:
        """Cancel (new commerce) or suspend (legacy) one subscription; never raises for an
        answer Partner Center gives about the subscription (network errors and 401/5xx do)."""
        url = self._url(customer_tenant_id, subscription_id)
        try:
            current = await self._call("GET", url)
        except PartnerCenterError as exc:
            if exc.status in (403, 404):
                return CancelOutcome("refused", exc.code or str(exc.status), exc.description)
            raise
        new_commerce = "cancellationAllowedUntilDate" in current
        wanted = "deleted" if new_commerce else "suspended"
        status = str(current.get("status", "")).lower()
        if status == wanted or status == "deleted":
            return CancelOutcome("already", new_commerce=new_commerce)
        body = {k: v for k, v in current.items() if k != "links"} | {"status": wanted}
        etag = (current.get("attributes") or {}).get("etag")
        try:
            answer = await self._call("PATCH", url, body, {"If-Match": str(etag)} if etag else None)
        except PartnerCenterError as exc:
            if exc.status == 400 and exc.code == _ALREADY[wanted]:
                return CancelOutcome("already", exc.code, exc.description, new_commerce)
            if 400 <= exc.status < 500 and exc.status != 401:
                return CancelOutcome(
                    "refused", exc.code or str(exc.status), exc.description, new_commerce
                )
            raise
        if str(answer.get("status", "")).lower() != wanted:
            return CancelOutcome(
                "refused",
                "unexpected-status",
                f"Partner Center answered status {answer.get('status')!r}, not {wanted!r}",
                new_commerce,
            )
        return CancelOutcome(
            "cancelled" if new_commerce else "suspended", new_commerce=new_commerce
        )

    async def cancel(self, customer_tenant_id: str, subscription_id: str) -> None:
        """cancel_subscription for callers that only know success or an exception: returns
        when the subscription is stopped (or already was); raises PartnerCenterRefused (status
        409) when Partner Center refused, PartnerCenterError for anything else."""
        outcome = await self.cancel_subscription(customer_tenant_id, subscription_id)
        if not outcome.stopped:
            raise PartnerCenterRefused(outcome)

    def close(self) -> None:
        self.tokens.close()
