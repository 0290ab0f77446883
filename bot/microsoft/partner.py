"""Partner Center: stopping what a partner sold, with the partner's own app and tenant.

A subscription bought through a partner (its ownerTenantId is the partner's tenant) can only be
stopped by that partner, with a token the partner's app gets from the partner's tenant:
`GET /v1/customers/{customer}/subscriptions/{id}`, then `PATCH` of that same URL with the whole
resource as GET returned it and its status changed (MicrosoftDocs/partner-center-pr,
developer/cancel-an-azure-marketplace-subscription.md and suspend-a-subscription.md):
`deleted` for a new-commerce subscription, which Partner Center allows only within its
cancellation window (`cancellationAllowedUntilDate`, on new-commerce subscriptions only:
developer/api-change-log.md); `suspended` for a legacy one.

Both calls are throttled (developer/api-throttling-guidance.md): a 429 carries Retry-After in
seconds, and the client waits that long and tries again, backing off while it is still
throttled. As with Graph, a 429 spends no attempt and fails a call only after GIVE_UP_AFTER
with nothing admitted; a 5xx, a dropped connection or a timeout is tried again with bounded
exponential backoff, and then raises a PartnerCenterError the runner waits out like any
Microsoft outage (bot.patience.retry_can_fix). Neither is ever read as a refusal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from bot.config import NetworkSettings, PartnerCenterSettings, TenantSettings
from bot.microsoft.graph import GIVE_UP_AFTER, retry_after
from bot.microsoft.learned import Learned
from bot.microsoft.tokens import MsalTokens

# Answers worth sending the same call again for: Partner Center overloaded or down (0 is no
# answer at all: a dropped connection or a timeout). 429 is apart: it waits for Retry-After.
TRANSIENT = frozenset({0, 408, 500, 502, 503, 504})
THROTTLED_TOO_LONG = "throttledTooLong"
CONNECTION_ERROR = "connectionError"


class PartnerCenterError(Exception):
    """Partner Center answered with an error (`status` is the HTTP status, `code` its own)."""

    def __init__(self, status: int, description: str, code: str = "") -> None:
        super().__init__(f"{status}: {description}" + (f" (code {code})" if code else ""))
        self.status = status
        self.code = code
        self.description = description

    @property
    def transient(self) -> bool:
        """No answer, 5xx or throttled (short of GIVE_UP_AFTER): trying later can fix it."""
        if self.code == THROTTLED_TOO_LONG:
            return False
        return self.status in TRANSIENT or self.status == 429 or self.status >= 500


class _PatchUnanswered(Exception):
    """The PATCH got no usable answer (5xx, timeout): it may or may not have been applied."""

    def __init__(self, error: PartnerCenterError) -> None:
        super().__init__(str(error))
        self.error = error


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
    max_attempts: int = 6  # per call, for 5xx and no answer; 429s spend none
    backoff_base: float = 1.0  # the first wait after a 5xx (doubling, with jitter)
    give_up_after: float = GIVE_UP_AFTER  # 429s with nothing admitted before a call fails
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

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
        backoff_base: float = 1.0,
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
        return cls(
            session, partner, tokens, ssl_context, learned or Learned(), backoff_base=backoff_base
        )

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

    def _url(self, customer_tenant_id: str, subscription_id: str) -> str:
        return (
            f"{self.settings.api_url}/v1/customers/{customer_tenant_id}"
            f"/subscriptions/{subscription_id}"
        )

    async def _send(
        self, method: str, url: str, body: Any, headers: dict[str, str] | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
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
            return resp.status, answer, dict(resp.headers)

    async def _call(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        resend: bool = True,
    ) -> dict[str, Any]:
        """One call. A 429 waits for Retry-After and goes again without spending an attempt,
        until give_up_after of 429s with nothing admitted; a 5xx or no answer goes again with
        exponential backoff, max_attempts in all, only when `resend` (a PATCH that may have
        been applied is not sent blindly again: its caller reads the subscription first)."""
        failures = streak = throttled = 0
        since: float | None = None  # when this call's run of 429s began
        while True:
            try:
                status, answer, got = await self._send(method, url, body, headers)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                failures += 1
                error = PartnerCenterError(0, str(exc) or type(exc).__name__, CONNECTION_ERROR)
                if not resend or failures >= self.max_attempts:
                    raise error from exc
                await self.sleep(retry_after({}, failures - 1, self.backoff_base))
                continue
            if status == 429:  # api-throttling-guidance.md: wait Retry-After, then retry
                throttled += 1
                now = self.clock()
                since = now if since is None else since
                if now - since >= self.give_up_after:
                    raise PartnerCenterError(
                        429,
                        f"Partner Center answered 429 to every call for"
                        f" {(now - since) / 60:.0f} min ({throttled} times) and admitted none;"
                        " the bot gives up after that bound (the partner's other apps may be"
                        " spending its whole budget); retry the step later",
                        THROTTLED_TOO_LONG,
                    )
                await self.sleep(retry_after(got, streak, self.backoff_base))
                streak += 1
                continue
            since, streak = None, 0
            if status < 300:
                return answer
            description = str(answer.get("description") or answer.get("message") or "")
            error = PartnerCenterError(status, description, str(answer.get("code", "")))
            if error.transient and resend and failures + 1 < self.max_attempts:
                await self.sleep(retry_after(got, failures, self.backoff_base))
                failures += 1
                continue
            raise error

    async def subscription(self, customer_tenant_id: str, subscription_id: str) -> dict[str, Any]:
        """The Subscription resource, as Partner Center's GET returns it."""
        return await self._call("GET", self._url(customer_tenant_id, subscription_id))

    async def cancel_subscription(
        self, customer_tenant_id: str, subscription_id: str
    ) -> CancelOutcome:
        """Cancel (new commerce) or suspend (legacy) one subscription; never raises for an
        answer Partner Center gives about the subscription (network errors, 401 and 5xx that
        outlast the retries do, and 429s past give_up_after). A PATCH without a usable answer
        may have been applied: the subscription is read again before it is sent again."""
        failures = 0
        while True:
            try:
                return await self._cancel_once(customer_tenant_id, subscription_id)
            except _PatchUnanswered as unanswered:
                failures += 1
                if failures >= self.max_attempts:
                    raise unanswered.error from None
                await self.sleep(retry_after({}, failures - 1, self.backoff_base))

    async def _cancel_once(self, customer_tenant_id: str, subscription_id: str) -> CancelOutcome:
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
        if_match = {"If-Match": str(etag)} if etag else None
        try:
            answer = await self._call("PATCH", url, body, if_match, resend=False)
        except PartnerCenterError as exc:
            if exc.transient:  # overloaded or no answer: never a refusal
                raise _PatchUnanswered(exc) from exc
            if exc.status == 400 and exc.code == _ALREADY[wanted]:
                return CancelOutcome("already", exc.code, exc.description, new_commerce)
            if 400 <= exc.status < 500 and exc.status not in (401, 429):
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
