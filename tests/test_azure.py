"""Azure subscriptions are cancelled through Azure Resource Manager, after step 2's quorum."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.world import APPROVERS
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
    assert "Azure subscriptions to cancel through Azure Resource Manager" in str(request.blocks)
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
