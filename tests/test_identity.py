"""Approvers and admins by email, deactivated accounts, and an unreachable quorum."""

from __future__ import annotations

from bot.world import ADMIN, APPROVERS, World
from storage import identities
from tests.conftest import MakeWorld


async def test_approvers_given_as_emails_are_resolved_and_kept(make_world: MakeWorld) -> None:
    """Emails in `approvers` resolve through Slack to user IDs whose reactions count."""
    world = await make_world(approvers=("blake@msp.example", "Casey@msp.example", APPROVERS[2]))
    assert world.service is not None
    kept = identities.known(world.service.db)
    assert kept == {"blake@msp.example": APPROVERS[0], "casey@msp.example": APPROVERS[1]}
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    assert f"<@{APPROVERS[0]}>" in str(request.blocks)
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("cancel_subscriptions.awaiting_approval")


async def test_deactivated_approver_does_not_count(world: World) -> None:
    """A reaction by an approver whose Slack account was deactivated is refused."""
    w = world
    await w.command(w.tenant.name)
    request = await w.wait_request("delete_users")
    w.slack.deactivate(APPROVERS[0])
    w.slack.add_reaction(request, "white_check_mark", APPROVERS[0])
    envelope = w.slack.envelope(
        {
            "type": "reaction_added",
            "user": APPROVERS[0],
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": request.channel, "ts": request.ts},
            "item_user": request.user,
            "event_ts": w.slack.next_ts(),
        }
    )
    await w.slack.deliver(envelope)
    note = await w.slack.wait_for(
        lambda _: next((m for m in w.slack.messages if "does not count" in m.text), None)
    )
    assert "deactivated" in note.text
    await w.vote(request, APPROVERS[1])
    await w.slack.wait_for(lambda _: "Approvals: 1/2" in w.status_text())
    assert w.state() == "delete_users.awaiting_approval"


async def test_start_is_refused_when_quorum_cannot_be_reached(make_world: MakeWorld) -> None:
    """With the requester excluded and one approver deactivated, quorum 2 is out of reach."""
    world = await make_world(approvers=(ADMIN, APPROVERS[0], APPROVERS[1]))
    world.slack.deactivate(APPROVERS[1])
    reply = await world.command(world.tenant.name)
    assert reply.startswith("Refused") and "requester never counts" in reply
    assert "deactivated" in reply
    assert world.slack.messages == []
