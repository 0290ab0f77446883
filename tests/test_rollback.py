"""Rolling a closure back until the point of no return (steps.md, Rollback)."""

from __future__ import annotations

from bot.world import APPROVERS, World
from storage import audit
from tests.conftest import MakeWorld


async def approve(world: World, step: str, count: int = 1) -> None:
    request = await world.wait_request(step, count=count)
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])


async def test_rollback_after_step_1_restores_every_user(world: World) -> None:
    """After step 1, rollback (with its own quorum) restores every deleted user."""
    before = set(world.tenant.users)
    await world.command(world.tenant.name)
    await approve(world, "delete_users")
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    assert len(world.tenant.users) == 1
    reply = await world.command(f"rollback {world.tenant.name}")
    assert "Rolling back" in reply
    request = await world.wait_request("rollback")
    payload = (request.metadata or {})["event_payload"]
    assert payload["step"] == "rollback" and payload["quorum"] == 2
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    assert len(world.tenant.users) == 1, "nothing is restored before the quorum"
    await world.vote(request, APPROVERS[2])
    assert await world.wait_state("rolled_back") == "rolled_back"
    assert set(world.tenant.users) == before
    assert world.service is not None
    actions = [r.action for r in audit.trail(world.service.db, world.tenant.name)]
    ended = [a for a in actions if a != "changed_list_posted"]  # the end's file follows it
    assert "start_rollback" in actions and ended[-1] == "verified"


async def test_rollback_after_step_4_puts_every_policy_back(world: World) -> None:
    """After step 4, security defaults, each CA policy and per-user MFA return to their state."""
    tenant = world.tenant
    defaults_before = tenant.security_defaults_enabled
    policies_before = {i: p["state"] for i, p in tenant.ca_policies.items()}
    retained = tenant.retained_user
    assert retained is not None
    mfa_before = tenant.per_user_mfa.get(retained["id"], "disabled")
    world.script_admin()
    await world.command(tenant.name)
    for step in ("delete_users", "cancel_subscriptions", "delete_disabled_subscriptions"):
        await approve(world, step)
    await approve(world, "disable_mfa")
    await world.wait_state("delete_directory.awaiting_approval", timeout=60)
    assert not tenant.security_defaults_enabled
    assert not any(
        p["state"] != "disabled"
        for p in tenant.ca_policies.values()
        if "mfa" in (p.get("grantControls") or {}).get("builtInControls", [])
    )
    await world.command(f"rollback {tenant.name}")
    await approve(world, "rollback")
    assert await world.wait_state("rolled_back", timeout=60) == "rolled_back"
    assert tenant.security_defaults_enabled == defaults_before
    assert {i: p["state"] for i, p in tenant.ca_policies.items()} == policies_before
    assert tenant.per_user_mfa.get(retained["id"], "disabled") == mfa_before


async def test_rollback_is_refused_once_step_5_acts(world: World) -> None:
    """After step 5's approval starts the purge, rollback is refused with the reason."""
    world.script_admin()
    world.script_approvers()
    await world.command(world.tenant.name)
    await world.wait_state(
        "delete_directory.executing",
        "delete_directory.waiting_external",
        "delete_directory.verifying",
        "closed",
        timeout=60,
    )
    reply = await world.command(f"rollback {world.tenant.name}")
    assert "point of no return" in reply
    assert world.requests("rollback") == []


async def test_rollback_after_abort(world: World) -> None:
    """An aborted closure can still be rolled back."""
    await world.command(world.tenant.name)
    await approve(world, "delete_users")
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    await world.command(f"abort {world.tenant.name} customer renewed")
    await world.wait_state("aborted")
    assert "Rolling back" in await world.command(f"rollback {world.tenant.name}")
    await approve(world, "rollback")
    assert await world.wait_state("rolled_back") == "rolled_back"
    assert len(world.tenant.users) > 1


async def test_restart_in_the_middle_of_a_rollback_finishes_it(make_world: MakeWorld) -> None:
    """The bot stops while restoring users; after a restart the rollback finishes."""
    world = await make_world(users=90)
    before = set(world.tenant.users)
    await world.command(world.tenant.name)
    await approve(world, "delete_users")
    await world.wait_state("cancel_subscriptions.awaiting_approval")
    await world.command(f"rollback {world.tenant.name}")
    world.microsoft.hold_writes(after=30)
    await approve(world, "rollback")
    await world.microsoft.writes_held()
    await world.stop_bot()
    world.microsoft.release_writes()
    await world.start_bot()
    assert await world.wait_state("rolled_back", timeout=30) == "rolled_back"
    assert set(world.tenant.users) == before
    assert len(world.requests("rollback")) == 1


async def test_rollback_needs_admin(world: World) -> None:
    """Only admins may ask for a rollback."""
    await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    reply = await world.command(f"rollback {world.tenant.name}", user=APPROVERS[0])
    assert "Only the configured admins" in reply
    assert world.state() == "delete_users.awaiting_approval"
