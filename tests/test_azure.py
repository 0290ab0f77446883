"""Azure subscriptions are cancelled through Azure Resource Manager, after step 2's quorum."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from bot.config import ConfigError, load_settings
from bot.microsoft.azure import Arm, ArmError
from bot.microsoft.tokens import MsalTokens
from bot.world import APPROVERS
from simulator.microsoft.azure import AzureEstate, AzureRefused
from simulator.microsoft.azure import handle as azure_handle
from tests.conftest import MakeWorld

GUID = "8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f"


def arm_cancels(world: object) -> list[str]:
    return [
        r.path
        for r in world.microsoft.requests  # type: ignore[attr-defined]
        if r.method == "POST" and "/providers/Microsoft.Subscription/cancel" in r.path
    ]


async def test_azure_subscriptions_are_cancelled_by_api_after_quorum(make_world: MakeWorld) -> None:
    """Step 2 lists the tenant's Azure subscriptions, cancels them through ARM only once
    approved, leaves the Microsoft 365 ones to the checklist, and verifies both."""
    world = await make_world(users=10, tenant={"azure_subscriptions": 2})
    world.script_admin()
    await world.command(world.tenant.name)
    users = await world.wait_request("delete_users")
    await world.vote(users, APPROVERS[0])
    await world.vote(users, APPROVERS[1])
    request = await world.wait_request("cancel_subscriptions")
    assert "cancelled by the bot through Azure Resource Manager" in str(request.blocks)
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert arm_cancels(world) == []
    await world.vote(request, APPROVERS[1])
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)
    assert len(arm_cancels(world)) == 2
    assert {s["state"] for s in world.tenant.azure.subscriptions} == {"Disabled"}
    checklist = next(m for m in world.slack.messages if "checklist" in m.text.split("\n")[0])
    for sub in world.tenant.azure.subscriptions:
        assert sub["subscriptionId"] not in checklist.text


async def test_azure_subscriptions_are_listed_to_the_last_page(make_world: MakeWorld) -> None:
    """The subscription list follows ARM's nextLink across pages (the simulator pages by 2),
    so a subscription past the first page is cancelled too."""
    world = await make_world(users=10, tenant={"azure_subscriptions": 5})
    world.script_admin()
    await world.command(world.tenant.name)
    users = await world.wait_request("delete_users")
    await world.vote(users, APPROVERS[0])
    await world.vote(users, APPROVERS[1])
    request = await world.wait_request("cancel_subscriptions")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)
    lists = [
        r.path
        for r in world.microsoft.requests  # type: ignore[attr-defined]
        if r.method == "GET" and r.path.startswith("/arm/subscriptions?")
    ]
    assert any("skiptoken=4" in path for path in lists)
    assert len(arm_cancels(world)) == 5
    assert {s["state"] for s in world.tenant.azure.subscriptions} == {"Disabled"}


class _Tokens:
    async def token(self, force_refresh: bool = False, scopes: list[str] | None = None) -> str:
        return "arm-token"


class _Resp:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self._text = json.dumps(body)

    async def text(self) -> str:
        return self._text


class _Session:
    """Answers each GET with the next canned page and records where the token went."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.sent: list[tuple[str, str]] = []

    @asynccontextmanager
    async def request(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[_Resp]:
        self.sent.append((url, kwargs["headers"]["Authorization"]))
        yield _Resp(self.pages[len(self.sent) - 1])


ARM = "https://management.azure.com"


def _arm(pages: list[dict[str, Any]], arm_url: str = ARM) -> tuple[Arm, _Session]:
    session = _Session(pages)
    arm = Arm(cast(aiohttp.ClientSession, session), arm_url, cast(MsalTokens, _Tokens()))
    return arm, session


async def test_arm_next_link_is_followed_on_the_arm_host_only() -> None:
    """A nextLink on the configured ARM host over HTTPS is followed to the end; an empty or
    absent one ends the list."""
    link = f"{ARM}/subscriptions?api-version=2022-12-01&$skiptoken=abc"
    arm, session = _arm(
        [
            {"value": [{"subscriptionId": "a"}], "nextLink": link},
            {"value": [{"subscriptionId": "b"}], "nextLink": ""},
        ]
    )
    assert [s["subscriptionId"] for s in await arm.subscriptions()] == ["a", "b"]
    assert [url for url, _ in session.sent] == [
        f"{ARM}/subscriptions?api-version=2022-12-01",
        link,
    ]


@pytest.mark.parametrize(
    ("arm_url", "link"),
    [
        (ARM, "https://evil.example/subscriptions?api-version=2022-12-01&$skiptoken=x"),
        (ARM, "http://management.azure.com/subscriptions?api-version=2022-12-01&$skiptoken=x"),
        (ARM, "https://management.azure.com.evil.example/subscriptions?$skiptoken=x"),
        ("https://127.0.0.1:8443/arm", "https://127.0.0.1:8443/v1.0/users?$skiptoken=x"),
        ("https://127.0.0.1:8443/arm", "https://127.0.0.1:8443/armx/subscriptions?$skiptoken=x"),
    ],
)
async def test_arm_next_link_elsewhere_is_an_error_and_nothing_is_sent(
    arm_url: str, link: str
) -> None:
    """A nextLink to another host, over http://, or outside the configured ARM path is an
    ArmError and the ARM token is not sent there."""
    arm, session = _arm([{"value": [{"subscriptionId": "a"}], "nextLink": link}], arm_url)
    with pytest.raises(ArmError) as info:
        await arm.subscriptions()
    assert info.value.code == "foreignLink"
    assert [url for url, _ in session.sent] == [f"{arm_url}/subscriptions?api-version=2022-12-01"]


async def test_arm_next_link_loop_is_an_error() -> None:
    """ARM answering the same nextLink twice ends the listing with an error, not a loop."""
    link = f"{ARM}/subscriptions?api-version=2022-12-01&$skiptoken=same"
    page = {"value": [{"subscriptionId": "a"}], "nextLink": link}
    arm, session = _arm([page, page, page])
    with pytest.raises(ArmError, match="nextLink"):
        await arm.subscriptions()
    assert len(session.sent) == 2


async def test_no_owner_role_puts_azure_on_the_checklist(make_world: MakeWorld) -> None:
    """Without a role on the Azure subscriptions the checklist says how to cancel them."""
    world = await make_world(
        users=10, tenant={"azure_subscriptions": 1, "app_is_azure_owner": False}
    )
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    checklist = next(m for m in world.slack.messages if "checklist" in m.text.split("\n")[0])
    assert "Azure portal" in checklist.text
    assert arm_cancels(world) == []


async def test_partner_bought_subscription_is_cancelled_in_partner_center(
    make_world: MakeWorld,
) -> None:
    """With the partner's credentials configured, what the partner sold is cancelled through
    Partner Center after the quorum, and only the rest is on the checklist."""
    world = await make_world(users=10, partner=True)
    partner_subs = [
        s
        for s in world.tenant.subscriptions
        if s.get("ownerTenantId") not in (None, world.tenant.tenant_id)
    ]
    assert partner_subs
    world.script_admin()
    await world.command(world.tenant.name)
    for step in ("delete_users", "cancel_subscriptions"):
        request = await world.wait_request(step)
        if step == "cancel_subscriptions":
            assert not [r for r in world.microsoft.requests if "/partnercenter/" in r.path]
        await world.vote(request, APPROVERS[0])
        await world.vote(request, APPROVERS[1])
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)
    patches = [
        r for r in world.microsoft.requests if "/partnercenter/" in r.path and r.method == "PATCH"
    ]
    assert [r.status for r in patches] == [200] * len(partner_subs)  # after a GET of each
    checklist = next(m for m in world.slack.messages if "checklist" in m.text.split("\n")[0])
    for sub in partner_subs:
        assert sub["id"] not in checklist.text
        assert sub["status"] == "Suspended"


async def test_without_partner_credentials_the_checklist_names_the_partner(
    make_world: MakeWorld,
) -> None:
    """No Partner Center credentials: the checklist names the partner's tenant to ask."""
    world = await make_world(users=10)
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    checklist = next(m for m in world.slack.messages if "checklist" in m.text.split("\n")[0])
    owners = {
        s["ownerTenantId"]
        for s in world.tenant.subscriptions
        if s.get("ownerTenantId") not in (None, world.tenant.tenant_id)
    }
    assert owners and all(f"bought through partner {o}" in checklist.text for o in owners)


def test_partner_center_config_errors_name_the_key(tmp_path: Path) -> None:
    """A partner_center table with an unset secret variable, or a typo, is a one-line error."""
    base = f"""
[slack]
progress_channel = "C0PROGRESS"
admins = ["U0ADMIN1"]
[storage]
path = "bot.db"
[[tenants]]
name = "contoso"
tenant_id = "{GUID}"
client_id = "{GUID}"
client_secret_env = "SECRET"
retain = ["admin@contoso.onmicrosoft.com"]
approvers = ["U0APPR1", "U0APPR2"]
quorum = 1
[tenants.partner_center]
tenant_id = "{GUID}"
client_id = "{GUID}"
"""
    env = {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "s", "SECRET": "v"}
    config = tmp_path / "bot.toml"
    config.write_text(base + 'client_secret_env = "PARTNER_SECRET"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, env)
    assert "tenants[0].partner_center.client_secret_env" in str(info.value)
    assert "PARTNER_SECRET" in str(info.value)
    settings = load_settings(config, {**env, "PARTNER_SECRET": "p"})
    partner = settings.tenants[0].partner_center
    assert partner is not None and partner.api_url == "https://api.partnercenter.microsoft.com"
    assert "'p'" not in repr(settings)
    config.write_text(base + 'client_secret_env = "PARTNER_SECRET"\napi_urll = "x"\n')
    with pytest.raises(ConfigError, match="api_urll"):
        load_settings(config, {**env, "PARTNER_SECRET": "p"})


def all_text(world: object) -> str:
    return "\n".join(m.text for m in world.slack.messages)  # type: ignore[attr-defined]


async def test_arm_refusing_to_cancel_a_subscription_with_resources_names_them(
    make_world: MakeWorld,
) -> None:
    """ARM refuses to cancel a subscription that still holds resources (400
    ResourcesExistingOnSubscription): the checklist names up to 20 of them, "and N more", and
    offers the transfer; nothing speaks of a missing Owner role."""
    world = await make_world(users=10, tenant={"azure_subscriptions": 1})
    estate = world.tenant.azure
    sid = estate.subscriptions[0]["subscriptionId"]
    for n in range(23):
        estate.add_resource(sid, f"store{n:02d}")
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    cancels = [r for r in world.microsoft.requests if r.method == "POST" and sid in r.path]
    assert [r.status for r in cancels] == [400]
    assert estate.subscriptions[0]["state"] == "Enabled"
    checklist = next(m for m in world.slack.messages if "checklist" in m.text.split("\n")[0])
    assert "store00 (Microsoft.Storage/storageAccounts)" in checklist.text
    assert "store19" in checklist.text and "store20" not in checklist.text
    assert "and 3 more" in checklist.text and "transfer" in checklist.text
    assert "Owner role" not in all_text(world)


async def test_arm_403_alone_speaks_of_the_owner_role() -> None:
    """Arm.cancel turns ARM's answers into outcomes: 403 is refused with its status (the only
    case the step asks for the Owner role), SubscriptionNotActive counts as cancelled."""
    answers = [
        (403, {"error": {"code": "AuthorizationFailed", "message": "no"}}),
        (400, {"error": {"code": "SubscriptionNotActive", "message": "x"}}),
    ]

    class _ErrSession(_Session):
        @asynccontextmanager
        async def request(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[_Resp]:
            self.sent.append((url, method))
            status, body = answers.pop(0)
            resp = _Resp(body)
            resp.status = status
            yield resp

    session = _ErrSession([])
    arm = Arm(cast(aiohttp.ClientSession, session), ARM, cast(MsalTokens, _Tokens()))
    result = await arm.cancel("s1")
    assert (result.kind, result.status, result.code) == ("refused", 403, "AuthorizationFailed")
    assert (await arm.cancel("s1")).kind == "cancelled"


async def test_cancelled_azure_subscription_is_deleted_3_or_7_days_later(
    make_world: MakeWorld,
) -> None:
    """Step 3 asks to delete each cancelled Azure subscription on or after the day Microsoft
    allows it (3 days for pay-as-you-go, 7 for another offer), and is done only once ARM lists
    them Deleted."""
    world = await make_world(users=10, tenant={"azure_subscriptions": 2})
    estate = world.tenant.azure
    payg, other = (s["subscriptionId"] for s in estate.subscriptions)
    estate.set_offer(other, "EnterpriseAgreement_2014-09-01")
    world.script_approvers()
    world.script_admin()
    await world.command(world.tenant.name)
    await world.wait_state("delete_disabled_subscriptions.waiting_external", timeout=60)
    checklist = next(
        m
        for m in world.slack.messages
        if "checklist" in m.text.split("\n")[0] and "Delete the Azure subscription" in m.text
    )
    for sid, days in ((payg, 3), (other, 7)):
        line = next(x for x in checklist.text.split("\n") if sid in x)
        match = re.search(r"on or after (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", line)
        assert match is not None and f"({days} days after cancelling)" in line
        shown = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        allowed = estate.deletable_from(sid)
        assert allowed is not None and abs((shown - allowed).total_seconds()) < 600
    assert {s["state"] for s in estate.subscriptions} == {"Disabled"}  # too early to delete
    world.tenant.advance(7 * 86400 + 60)
    estate.delete(payg)
    estate.delete(other)
    await world.wait_state("disable_mfa.awaiting_approval", "disable_mfa.executing", timeout=60)
    assert {s["state"] for s in estate.subscriptions} == {"Deleted"}


async def test_deleting_an_azure_subscription_too_early_is_refused() -> None:
    """The simulated portal refuses deletion before 3 (pay-as-you-go) or 7 days after
    cancelling, and refuses an uncancelled subscription outright."""
    clock = [dt.datetime(2024, 5, 1, tzinfo=dt.UTC)]
    estate = AzureEstate(now=lambda: clock[0])
    estate.seed("t", 2, 0)
    a, b = (s["subscriptionId"] for s in estate.subscriptions)
    estate.set_offer(b, "MSDN_2014-09-01")
    with pytest.raises(AzureRefused):
        estate.delete(a)
    for sid in (a, b):
        assert (
            azure_handle(estate, "POST", _cancel_path(sid), {"api-version": "2021-10-01"})[0] == 200
        )
    clock[0] += dt.timedelta(days=3, seconds=1)
    assert estate.delete(a)["state"] == "Deleted"
    with pytest.raises(AzureRefused):
        estate.delete(b)
    clock[0] += dt.timedelta(days=4)
    assert estate.delete(b)["state"] == "Deleted"


def _cancel_path(sid: str) -> list[str]:
    return ["subscriptions", sid, "providers", "Microsoft.Subscription", "cancel"]
