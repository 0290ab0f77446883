"""The rollback's checklist sends each cancelled subscription back where it was bought, as step 2
tells them apart: partner-bought to the partner (named), Azure to the Azure portal, the rest to
the Microsoft 365 admin center (issue 13 item 7)."""

from __future__ import annotations

from typing import Any, cast

from bot.microsoft.steps.rollback import (
    AZURE_REACTIVATE,
    AZURE_UNSEEN,
    ReactivateAzure,
    reactivation_line,
)
from bot.microsoft.tenant import Tenant
from bot.world import APPROVERS, World
from statemachine.plan import Item, Plan
from storage import closures as closures_db
from tests.conftest import MakeWorld


async def approve(world: World, step: str) -> None:
    request = await world.wait_request(step)
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])


def test_each_kind_of_subscription_is_reactivated_where_it_was_bought() -> None:
    """A partner-bought subscription goes to its partner by tenant, an Azure one to the Azure
    portal, a direct one to the admin center."""
    target = Item("reactivate_subscription", "s1", "SPB")
    partner = Item("subscription", "s1", "SPB", {"channel": "partner", "owner_tenant_id": "P1"})
    azure = Item("subscription", "s1", "SPB", {"channel": "azure"})
    direct = Item("subscription", "s1", "SPB", {"channel": "direct"})
    assert "ask the partner (tenant P1) to reactivate it in Partner Center" in (
        reactivation_line(target, partner)
    )
    by_bot = Item("subscription", "s1", "SPB", {**partner.detail, "partner_api": "7"})
    assert reactivation_line(target, by_bot).endswith(
        "reactivate it in Partner Center with the partner's account (tenant P1)"
    )
    assert reactivation_line(target, azure).endswith(AZURE_REACTIVATE)
    assert "Microsoft 365 admin center > Billing > Your products > SPB > Reactivate" in (
        reactivation_line(target, direct)
    )
    arm = Item("reactivate_azure_subscription", "a1", "Pay-As-You-Go")
    assert reactivation_line(arm, None) == f"Pay-As-You-Go (a1): {AZURE_REACTIVATE}"


async def test_the_rollback_checklist_sends_each_subscription_to_its_seller(
    make_world: MakeWorld,
) -> None:
    """After step 2 cancelled a partner-bought subscription (Partner Center), an Azure one (ARM)
    and direct ones (the admin), the rollback's checklist names the partner for the first, the
    Azure portal for the second and the admin center for the rest."""
    world = await make_world(users=6, partner=True, tenant={"azure_subscriptions": 1})
    tenant = world.tenant
    world.script_admin()
    await world.command(tenant.name)
    await approve(world, "delete_users")
    await approve(world, "cancel_subscriptions")
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)
    await world.command(f"rollback {tenant.name}")
    await world.wait_request("rollback")
    assert world.service is not None
    row = closures_db.latest_closure_for(world.service.db, tenant.name)
    assert row is not None
    plan = closures_db.latest_plan(world.service.db, row.id, "rollback")
    assert plan is not None
    lines = {line.split(" (", 1)[1].split(")", 1)[0]: line for line in plan.plan.checklist}
    partner_bought = [
        s for s in tenant.subscriptions if s.get("ownerTenantId") not in (None, tenant.tenant_id)
    ]
    assert partner_bought
    step_2 = closures_db.latest_plan(world.service.db, row.id, "cancel_subscriptions")
    assert step_2 is not None
    by_bot = {i.id for i in step_2.plan.items if i.detail.get("partner_api")}
    assert by_bot
    for sub in partner_bought:
        owner = sub["ownerTenantId"]
        assert (
            f"reactivate it in Partner Center with the partner's account (tenant {owner})"
            if sub["id"] in by_bot
            else f"ask the partner (tenant {owner}) to reactivate it in Partner Center"
        ) in lines[sub["id"]]
    [azure] = tenant.azure.subscriptions
    assert lines[azure["subscriptionId"]].endswith(AZURE_REACTIVATE)
    direct = [
        s
        for s in tenant.subscriptions
        if s not in partner_bought and s["id"] in lines and s["status"] != "Deleted"
    ]
    assert direct
    for sub in direct:
        assert "Microsoft 365 admin center > Billing > Your products" in lines[sub["id"]]
    kinds = {i.kind for i in plan.plan.items}
    assert {"reactivate_subscription", "reactivate_azure_subscription"} <= kinds


async def test_an_azure_subscription_arm_no_longer_lists_stays_on_the_checklist() -> None:
    """A cancelled Azure subscription Resource Manager no longer lists is a checklist line
    saying the bot cannot see it and to check the Azure portal; a Deleted one is lost."""

    class Seen(ReactivateAzure):
        async def _states(self, tenant: Tenant) -> dict[str, Any]:
            return {"a1": "Disabled", "a3": "Deleted"}

    cancelled = tuple(
        Item("azure_subscription", sid, name)
        for sid, name in (("a1", "One"), ("a2", "Two"), ("a3", "Three"))
    )
    done = Plan("cancel_subscriptions", "t", cancelled, (), (), {})
    items, lines, notes = await Seen().plan(cast(Tenant, None), done)
    assert [i.id for i in items] == ["a1"]
    assert lines == [f"One (a1): {AZURE_REACTIVATE}", f"Two (a2): {AZURE_UNSEEN}"]
    assert notes == {"lost_azure_subscriptions": ["Three (a3)"]}
