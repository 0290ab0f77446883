"""Azure subscriptions are cancelled through Azure Resource Manager, after step 2's quorum."""

from __future__ import annotations

from bot.demo import APPROVERS
from tests.conftest import MakeWorld


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
