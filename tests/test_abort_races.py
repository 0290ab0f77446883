"""An abort or a veto that lands while the bot is busy elsewhere still stops what it must."""

from __future__ import annotations

import asyncio

from bot.world import ADMIN, APPROVERS, World
from storage import closures as closures_db
from tests.conftest import MakeWorld


async def test_abort_while_the_step_gets_ready_sends_no_delete(world: World) -> None:
    """An abort recorded while the drive loop is in Slack I/O before executing stops the step
    before its first batch: no user is deleted after the abort."""
    assert world.service is not None
    core = world.service.core
    original = core.outbox.flush
    at_abort: list[int] = []

    async def flush(closure_id: str) -> None:
        await original(closure_id)
        row = closures_db.get_closure(core.db, closure_id)
        task = asyncio.current_task()
        in_drive = task is not None and task.get_name().startswith("closure-")
        if row and row.state == "delete_users.executing" and in_drive and not at_abort:
            await core.actions.abort(world.tenant.name, ADMIN, "wrong tenant")
            at_abort.append(len(world.tenant.users))

    core.outbox.flush = flush  # type: ignore[method-assign]
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("aborted")
    await core.runner.idle()
    assert at_abort and len(world.tenant.users) == at_abort[0]


async def test_a_veto_stands_until_its_x_is_removed(world: World) -> None:
    """An approver who vetoed and then adds a check mark still vetoes."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[2], "x")
    await world.vote(request, APPROVERS[2])
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    assert await world.wait_state("delete_users.rejected") == "delete_users.rejected"
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]


async def test_the_closures_requester_never_counts_for_its_rollback(
    make_world: MakeWorld,
) -> None:
    """Rule 1 holds in a rollback too: the closure's requester's approval does not count."""
    world = await make_world(approvers=(ADMIN, *APPROVERS[:2]))
    other_admin = APPROVERS[0]
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    text = world.config_path.read_text().replace(
        f'admins = ["{ADMIN}"]', f'admins = ["{ADMIN}", "{other_admin}"]'
    )
    world.config_path.write_text(text)
    await world.stop_bot()
    await world.start_bot()
    assert "Rolling back" in await world.command(f"rollback {world.tenant.name}", user=other_admin)
    rollback = await world.wait_request("rollback")
    await world.vote(rollback, ADMIN)  # requested the closure
    await world.vote(rollback, APPROVERS[1])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert world.state() == "rollback.awaiting_approval"
    assert len(world.tenant.users) == 1


async def test_reactions_made_while_the_bot_was_down_are_reconciled(world: World) -> None:
    """On resume the request's reactions are read back: a vote and a veto that Slack never
    delivered both count, so the step is vetoed and nothing is deleted."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    await world.stop_bot()
    # Slack shows these reactions, but their events never reached the bot.
    world.slack.add_reaction(request, "white_check_mark", APPROVERS[1])
    world.slack.add_reaction(request, "x", APPROVERS[2])
    await world.start_bot()
    assert await world.wait_state("delete_users.rejected") == "delete_users.rejected"
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]


async def test_a_withdrawal_slack_never_delivered_is_honoured(world: World) -> None:
    """An approval whose reaction is gone from the message does not count toward the quorum."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    world.slack.remove_reaction(request, "white_check_mark", APPROVERS[0])  # no event
    await world.vote(request, APPROVERS[1])
    await world.slack.wait_for(lambda _: f"Approvals: 1/2 (@{APPROVERS[1]})" in world.status_text())
    assert world.state() == "delete_users.awaiting_approval"
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]
