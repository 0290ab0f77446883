"""Approvals bind to the plan: re-read before acting, expiry, reminders, concurrency."""

from __future__ import annotations

import asyncio

from bot.world import APPROVERS, World
from simulator.microsoft.graph_seed import _user
from simulator.slack.server import render_message
from storage import audit
from tests.conftest import MakeWorld


async def test_changed_inventory_voids_the_approvals(world: World) -> None:
    """A user added after approval voids the votes; the new request shows what changed."""
    await world.command(world.tenant.name)
    first = await world.wait_request("delete_users")
    late = _user(world.tenant, "late.hire@contoso.com", "Late Hire", guest=False, synced=False)
    world.tenant.users[late["id"]] = late
    await world.vote(first, APPROVERS[0])
    await world.vote(first, APPROVERS[1])
    second = await world.wait_request("delete_users", count=2)
    assert "late.hire@contoso.com" in render_message(second)
    assert "changed" in render_message(second)
    old = (first.metadata or {})["event_payload"]["plan_hash"]
    new = (second.metadata or {})["event_payload"]["plan_hash"]
    assert old != new
    assert "Void" in render_message(world.slack.message(first.channel, first.ts))  # type: ignore[arg-type]
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]
    await world.vote(second, APPROVERS[0])
    await world.vote(second, APPROVERS[2])
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    assert late["id"] not in world.tenant.users


async def test_unanswered_request_expires_and_is_replaced(make_world: MakeWorld) -> None:
    """After approval_ttl the request is marked expired in place and a fresh one is posted."""
    world = await make_world(timing={"approval_ttl": "300ms"})
    await world.command(world.tenant.name)
    first = await world.wait_request("delete_users")
    await world.vote(first, APPROVERS[0])
    second = await world.wait_request("delete_users", count=2)
    edited = world.slack.message(first.channel, first.ts)
    assert edited is not None and "Expired" in render_message(edited)
    # The late vote on the expired request does not carry over to the new one.
    await world.slack.wait_for(lambda _: "Approvals: 0/2" in world.status_text())
    assert world.state() == "delete_users.awaiting_approval"
    assert world.service is not None
    trail = audit.trail(world.service.db, world.tenant.name)
    assert any(r.action == "replan" and r.detail.get("why") == "expired" for r in trail)
    assert second.ts != first.ts


async def test_reminders_name_who_is_still_needed(make_world: MakeWorld) -> None:
    """While a request waits, reminders name the approvers whose approval is still missing."""
    world = await make_world(timing={"reminder_interval": "150ms"})
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    reminder = await world.slack.wait_for(
        lambda _: next(
            (m for m in world.slack.messages if "Reminder" in m.text and "1 more" in m.text), None
        )
    )
    assert f"<@{APPROVERS[1]}>" in reminder.text and f"<@{APPROVERS[2]}>" in reminder.text
    assert f"<@{APPROVERS[0]}>" not in reminder.text
    assert world.service is not None
    posted = sum("Reminder" in m.text for m in world.slack.messages)
    logged = sum(r.action == "reminder" for r in audit.trail(world.service.db, "contoso"))
    assert logged >= posted >= 1


async def test_simultaneous_quorum_votes_start_the_step_once(make_world: MakeWorld) -> None:
    """Two votes that each complete the quorum, arriving together, start the step once."""
    world = await make_world(quorum=1)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await asyncio.gather(world.vote(request, APPROVERS[0]), world.vote(request, APPROVERS[1]))
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    assert world.service is not None
    trail = audit.trail(world.service.db, world.tenant.name)
    assert sum(r.action == "approve" and r.step == "delete_users" for r in trail) == 1
    assert sum("Step 1 approved" in m.text for m in world.slack.messages) == 1
