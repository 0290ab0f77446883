"""A whole closure driven the way Slack drives it: signed slash commands and reaction events."""

from __future__ import annotations

from bot.world import APPROVERS, World
from simulator.microsoft.server import RequestRecord
from statemachine.steps import names as step_names


def writes_for(world: World, step: str) -> list[RequestRecord]:
    """The writes the bot made to the simulated tenant for `step` ($batch: per sub-request)."""
    return [
        r
        for r in world.microsoft.requests
        if r.method in ("DELETE", "PATCH") and _step_of(r) == step
    ]


def _step_of(record: RequestRecord) -> str:
    path = record.path
    if "/directory/deletedItems" in path or "/applications" in path or "/servicePrincipals" in path:
        return "delete_directory"
    if "/users/" in path and record.method == "DELETE":
        return "delete_users"
    return "disable_mfa"


async def test_whole_closure_only_acts_after_each_quorum(world: World) -> None:
    """Every step waits for its quorum before any write, and the tenant ends deleted."""
    world.script_admin()
    assert "started" in await world.command(world.tenant.name)
    for step in step_names():
        request = await world.wait_request(step)
        await world.vote(request, APPROVERS[0])
        await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
        assert writes_for(world, step) == [], f"a write for {step} came before its quorum"
        await world.vote(request, APPROVERS[1])
    assert await world.wait_state("closed", timeout=60) == "closed"
    assert world.tenant.deleted
    assert writes_for(world, "delete_users"), "users were deleted through Graph"
