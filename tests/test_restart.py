"""A restart resumes every open closure where it was."""

from __future__ import annotations

from collections import Counter

from bot.world import APPROVERS
from tests.conftest import MakeWorld


async def test_restart_in_the_middle_of_deleting_users(make_world: MakeWorld) -> None:
    """The bot stops mid-delete; a new process on the same database finishes each user once."""
    world = await make_world(users=120)
    world.microsoft.hold_writes(after=45)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.microsoft.writes_held()
    assert world.state() == "delete_users.executing"
    await world.stop_bot()  # a crash: the held batch reaches Microsoft, its answer is lost
    world.microsoft.release_writes()
    await world.start_bot()
    await world.wait_state("cancel_subscriptions.awaiting_approval", timeout=30)
    deletes = [
        r
        for r in world.microsoft.requests
        if r.method == "DELETE" and "/users/" in r.path and r.status == 204
    ]
    per_user = Counter(r.path for r in deletes)
    assert len(per_user) == 119
    assert max(per_user.values()) == 1, "a user was deleted twice"
    assert len(world.tenant.users) == 1
    # One approval request for step 1 only: the restart did not ask again.
    assert len(world.requests("delete_users")) == 1


async def test_restart_while_waiting_on_the_admin(make_world: MakeWorld) -> None:
    """A closure waiting on the admin-center checklist keeps polling after a restart."""
    world = await make_world(users=10)
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state("cancel_subscriptions.waiting_external", timeout=30)
    await world.stop_bot()
    await world.start_bot()
    assert world.state() == "cancel_subscriptions.waiting_external"
    for sub in list(world.tenant.subscriptions):
        if sub["status"] in ("Enabled", "Warning"):
            world.tenant.cancel_subscription(sub["id"])
    await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=30)


async def test_a_restart_reads_votes_back_within_tier_3(make_world: MakeWorld) -> None:
    """The votes read back after a restart go through the client's reactions.get pace: Slack's
    tier 3 (50 a minute) after a small burst, so one read per open request never meets a 429."""
    world = await make_world(users=5)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.stop_bot()
    await world.start_bot()
    assert world.service is not None
    pace = world.service.client.paces["reactions.get"]  # type: ignore[attr-defined]
    assert (pace.per_minute, pace.burst) == (50, 10)
    await world.vote(request, APPROVERS[1])
    await world.wait_state(
        "delete_users.executing",
        "delete_users.verifying",
        "cancel_subscriptions.planning",
        "cancel_subscriptions.awaiting_approval",
        "cancel_subscriptions.waiting_external",
        timeout=30,
    )
    assert pace._free_at > float("-inf"), "the read-back went through the pace"
