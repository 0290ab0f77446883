"""Approval rules 1 and 2 as Slack delivers them: who counts, quorum, veto, retry."""

from __future__ import annotations

from bot.world import ADMIN, APPROVERS, OUTSIDER, World
from storage import approvals as requests_db
from storage import audit
from tests.conftest import MakeWorld


async def test_requester_and_non_approvers_do_not_count(make_world: MakeWorld) -> None:
    """Reactions by the requester (even if listed) and by a non-approver add no approval."""
    world = await make_world(approvers=(ADMIN, *APPROVERS[:2]))
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, ADMIN)
    await world.vote(request, OUTSIDER)
    await world.slack.wait_for(  # each refusal is told to its reactor only
        lambda _: sum("does not count" in str(e["text"]) for e in world.slack.ephemerals) == 2
    )
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert world.state() == "delete_users.awaiting_approval"
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]
    assert world.service is not None
    actions = [row.action for row in audit.trail(world.service.db, world.tenant.name)]
    assert actions.count("vote_ignored") == 2 and actions.count("vote") == 1


async def test_veto_stops_the_step_and_retry_asks_again(make_world: MakeWorld) -> None:
    """A veto puts the step in rejected; retry posts a new request for the same plan."""
    world = await make_world()
    await world.command(world.tenant.name)
    first = await world.wait_request("delete_users")
    await world.vote(first, APPROVERS[0])
    await world.vote(first, APPROVERS[1], "x")
    assert await world.wait_state("delete_users.rejected") == "delete_users.rejected"
    await world.vote(first, APPROVERS[2])  # a late approval changes nothing
    assert world.state() == "delete_users.rejected"
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]
    reply = await world.command(f"retry {world.tenant.name}")
    assert "Retrying" in reply
    second = await world.wait_request("delete_users", count=2)
    assert second.ts != first.ts
    same_plan = (second.metadata or {})["event_payload"]["plan_hash"]
    assert same_plan == (first.metadata or {})["event_payload"]["plan_hash"]
    await world.vote(second, APPROVERS[0])
    await world.vote(second, APPROVERS[2])
    await world.wait_state("cancel_subscriptions.awaiting_approval")


async def test_distinct_approvers_up_to_quorum(make_world: MakeWorld) -> None:
    """The same approver reacting twice (and a redelivered event) still counts once."""
    world = await make_world(quorum=2)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    result = await world.slack.react(
        user_id=APPROVERS[0], channel=request.channel, ts=request.ts, name="white_check_mark"
    )
    assert result.envelope is not None
    again = await world.slack.deliver(result.envelope, retry_num=1, retry_reason="http_timeout")
    assert again.status == 200
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert world.service is not None
    req = requests_db.request_at(world.service.db, request.channel, request.ts)
    assert req is not None
    assert len(requests_db.votes_for(world.service.db, req.id)) == 1
    assert world.state() == "delete_users.awaiting_approval"


async def test_withdrawn_approval_no_longer_counts(world: World) -> None:
    """Removing a reaction before the step starts withdraws the vote."""
    w = world
    await w.command(w.tenant.name)
    request = await w.wait_request("delete_users")
    await w.vote(request, APPROVERS[0])
    await w.slack.wait_for(lambda _: "Approvals: 1/2" in w.status_text())
    await w.slack.react(
        user_id=APPROVERS[0],
        channel=request.channel,
        ts=request.ts,
        name="white_check_mark",
        remove=True,
    )
    await w.slack.wait_for(lambda _: "Approvals: 0/2" in w.status_text())
    await w.vote(request, APPROVERS[1])
    await w.slack.wait_for(lambda _: "Approvals: 1/2" in w.status_text())
    assert w.state() == "delete_users.awaiting_approval"


async def test_retry_of_an_event_never_processed_counts_once(world: World) -> None:
    """A reaction delivered while the bot was down counts when Slack retries it, once."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    world.slack.add_reaction(request, "white_check_mark", APPROVERS[0])
    envelope = world.slack.envelope(
        {
            "type": "reaction_added",
            "user": APPROVERS[0],
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": request.channel, "ts": request.ts},
            "item_user": request.user,
            "event_ts": world.slack.next_ts(),
        }
    )
    url = world.slack.request_url
    world.slack.request_url = url.replace("/slack/events", "/nowhere") if url else None
    first = await world.slack.deliver(envelope)
    assert first.status == 404  # the first delivery never reached the bot's handler
    world.slack.request_url = url
    for retry in (1, 2):
        again = await world.slack.deliver(envelope, retry_num=retry, retry_reason="http_error")
        assert again.status == 200
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert world.service is not None
    trail = audit.trail(world.service.db, world.tenant.name)
    assert sum(r.action == "vote" for r in trail) == 1


async def test_withdrawal_after_the_step_started_changes_nothing(world: World) -> None:
    """Removing an approval once the step has started is recorded and changes nothing."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    await world.slack.react(
        user_id=APPROVERS[0],
        channel=request.channel,
        ts=request.ts,
        name="white_check_mark",
        remove=True,
    )
    assert world.service is not None
    db = world.service.db
    await world.slack.wait_for(
        lambda _: any(r.action == "withdrawal_ignored" for r in audit.trail(db, "contoso"))
    )
    req = requests_db.request_at(db, request.channel, request.ts)
    assert req is not None and req.status == "approved"
    assert len(requests_db.votes_for(db, req.id)) == 2
    assert world.state() == "cancel_subscriptions.awaiting_approval"
