"""Partner Center as documented: new-commerce subscriptions are cancelled only inside their
cancellation window, legacy ones are suspended, the PATCH carries the whole resource, and the
bot's client reports what happened instead of reading any 400 as "already cancelled"."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import pytest

from bot.config import PartnerCenterSettings
from bot.microsoft.partner import PartnerCenter, PartnerCenterRefused
from bot.microsoft.tokens import MsalTokens
from simulator.microsoft.server import MicrosoftSimulator, SimTenant
from tests.conftest import MakeWorld


@dataclass
class PartnerTokens:
    """The partner app's Partner Center token, minted by the simulator's authority."""

    ms: MicrosoftSimulator
    partner: SimTenant

    async def token(self, force_refresh: bool = False, scopes: list[str] | None = None) -> str:
        sp = self.partner.bot_service_principal
        assert sp is not None
        return self.ms.authority._mint(
            self.partner, sp["id"], f"{self.ms.base_url}/partnercenter", certificate=False
        )


@dataclass
class Setup:
    ms: MicrosoftSimulator
    customer: SimTenant
    partner: SimTenant
    client: PartnerCenter
    http: aiohttp.ClientSession

    @property
    def sub(self) -> dict[str, Any]:
        return next(
            s for s in self.customer.subscriptions if s["ownerTenantId"] == self.partner.tenant_id
        )

    @property
    def url(self) -> str:
        return (
            f"{self.ms.base_url}/partnercenter/v1/customers/{self.customer.tenant_id}"
            f"/subscriptions/{self.sub['commerceSubscriptionId']}"
        )

    async def token(self) -> str:
        return await PartnerTokens(self.ms, self.partner).token()

    async def patch(self, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        auth = {"Authorization": f"Bearer {await self.token()}", **headers}
        async with self.http.patch(self.url, json=body, headers=auth) as resp:
            return resp.status, await resp.json()

    async def get(self) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {await self.token()}"}
        async with self.http.get(self.url, headers=auth) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body


@pytest.fixture
async def pc() -> AsyncIterator[Setup]:
    async with MicrosoftSimulator() as ms:
        partner = ms.add_tenant(name="partner", users=2, seed=7)
        customer = ms.add_tenant(
            name="customer",
            users=3,
            subscriptions=[
                {"skuPartNumber": "ENTERPRISEPACK"},
                {"skuPartNumber": "SPB", "ownerTenantId": partner.tenant_id},
            ],
        )
        context = ssl.create_default_context(cafile=ms.ca_file)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            settings = PartnerCenterSettings(
                tenant_id=partner.tenant_id,
                client_id=partner.client_id,
                client_secret_env="UNUSED",
                client_secret="unused",
                api_url=f"{ms.base_url}/partnercenter",
            )
            tokens = cast(MsalTokens, PartnerTokens(ms, partner))
            client = PartnerCenter(http, settings, tokens, context)
            yield Setup(ms, customer, partner, client, http)


def patches(setup: Setup) -> list[int]:
    return [
        r.status for r in setup.ms.requests if r.method == "PATCH" and "/partnercenter/" in r.path
    ]


async def test_new_commerce_inside_its_window_is_cancelled(pc: Setup) -> None:
    """A new-commerce subscription inside its cancellation window is PATCHed to deleted and
    reported cancelled; Graph then shows it no longer active."""
    commerce = pc.sub["commerceSubscriptionId"]
    outcome = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert (outcome.kind, outcome.new_commerce) == ("cancelled", True)
    assert (await pc.get())["status"] == "deleted"
    assert pc.sub["status"] == "Suspended"
    assert patches(pc) == [200]


async def test_new_commerce_outside_its_window_is_refused_with_the_documented_code(
    pc: Setup,
) -> None:
    """Past cancellationAllowedUntilDate Partner Center answers 400 code 900117; the client
    reports a refusal with that code, the subscription stays active, and cancel() raises."""
    pc.customer.partner_center.set_terms(
        pc.customer,
        pc.sub["id"],
        kind="new_commerce",
        term_start=pc.customer.now() - dt.timedelta(days=8),
    )
    commerce = pc.sub["commerceSubscriptionId"]
    outcome = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert (outcome.kind, outcome.code) == ("refused", "900117")
    assert "cancellation window" in outcome.reason
    assert (await pc.get())["status"] == "active"
    assert pc.sub["status"] == "Enabled"
    with pytest.raises(PartnerCenterRefused) as info:
        await pc.client.cancel(pc.customer.tenant_id, commerce)
    assert info.value.status != 400  # a caller reading 400 as "already done" is not fooled
    assert "900117" in str(info.value)


async def test_legacy_subscription_is_suspended_not_deleted(pc: Setup) -> None:
    """A legacy subscription (no cancellationAllowedUntilDate) is PATCHed to suspended, and a
    second request reports it already suspended, as Partner Center says."""
    pc.customer.partner_center.set_terms(pc.customer, pc.sub["id"], kind="legacy")
    commerce = pc.sub["commerceSubscriptionId"]
    assert "cancellationAllowedUntilDate" not in await pc.get()
    outcome = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert (outcome.kind, outcome.new_commerce) == ("suspended", False)
    assert (await pc.get())["status"] == "suspended"
    again = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert again.kind == "already"
    assert patches(pc) == [200]  # the second time, GET already showed it suspended


async def test_legacy_subscription_cannot_be_deleted(pc: Setup) -> None:
    """PATCHing a legacy subscription to deleted is refused (800096): legacy ones are
    suspended."""
    pc.customer.partner_center.set_terms(pc.customer, pc.sub["id"], kind="legacy")
    body = {k: v for k, v in (await pc.get()).items() if k != "links"} | {"status": "deleted"}
    status, answer = await pc.patch(body)
    assert (status, answer["code"]) == (400, 800096)


async def test_a_partial_patch_body_is_refused(pc: Setup) -> None:
    """The PATCH must carry the whole resource: `{"status": "deleted"}` alone is 400 800002
    and cancels nothing."""
    status, answer = await pc.patch({"status": "deleted"})
    assert (status, answer["code"]) == (400, 800002)
    assert "offerId" in answer["description"]
    assert (await pc.get())["status"] == "active"


async def test_a_stale_etag_is_refused(pc: Setup) -> None:
    """A body read before the subscription changed carries a stale etag: 400 code 2055."""
    stale = {k: v for k, v in (await pc.get()).items() if k != "links"}
    pc.customer.partner_center.set_terms(pc.customer, pc.sub["id"], kind="new_commerce")
    status, answer = await pc.patch(stale | {"status": "deleted"})
    assert (status, answer["code"]) == (400, 2055)


async def test_already_deleted_is_already_only_because_partner_center_says_so(pc: Setup) -> None:
    """A subscription Partner Center shows deleted is reported `already`; a PATCH on it is
    400 code 2011, which the client also reads as already, and no other 400 is."""
    commerce = pc.sub["commerceSubscriptionId"]
    first = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert first.kind == "cancelled"
    body = {k: v for k, v in (await pc.get()).items() if k != "links"}
    status, answer = await pc.patch(body)
    assert (status, answer["code"]) == (400, 2011)
    again = await pc.client.cancel_subscription(pc.customer.tenant_id, commerce)
    assert again.kind == "already"


async def test_a_subscription_another_partner_sold_is_refused(pc: Setup) -> None:
    """The customer's directly bought subscription: 403 code 20002, reported refused."""
    direct = next(
        s for s in pc.customer.subscriptions if s["ownerTenantId"] != pc.partner.tenant_id
    )
    outcome = await pc.client.cancel_subscription(
        pc.customer.tenant_id, direct["commerceSubscriptionId"]
    )
    assert (outcome.kind, outcome.code) == ("refused", "20002")
    assert direct["status"] == "Enabled"


async def test_a_refused_cancellation_is_a_checklist_line_naming_the_partner(
    make_world: MakeWorld,
) -> None:
    """Step 2 with the partner's credentials: Partner Center refusing (outside the window) is
    never done: the waiting lines name the partner and code 900117; once Graph shows the
    subscription stopped the closure goes on."""
    world = await make_world(users=10, partner=True)
    tenant = world.tenant
    partner_subs = [
        s for s in tenant.subscriptions if s.get("ownerTenantId") not in (None, tenant.tenant_id)
    ]
    for sub in partner_subs:
        tenant.partner_center.set_terms(
            tenant, sub["id"], kind="new_commerce", term_start=tenant.now() - dt.timedelta(days=9)
        )
    world.script_approvers()
    world.script_admin()
    await world.command(tenant.name)
    owner = str(partner_subs[0]["ownerTenantId"])
    await world.slack.wait_for(
        lambda _: (
            "900117" in "\n".join(m.text for m in world.slack.messages)
            and owner in "\n".join(m.text for m in world.slack.messages)
        ),
        timeout=60,
    )
    assert "cancel_subscriptions" in await world.wait_state(
        "cancel_subscriptions.waiting_external", timeout=30
    )
    for sub in partner_subs:
        assert sub["status"] == "Enabled"
        tenant.cancel_subscription(sub["id"])  # the partner cancels it after all
    await world.wait_state(
        "delete_disabled_subscriptions.awaiting_approval",
        "delete_disabled_subscriptions.waiting_external",
        timeout=60,
    )
