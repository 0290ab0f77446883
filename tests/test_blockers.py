"""Preconditions Microsoft requires stop step 1 in `blocked`, with the fix, until `retry`."""

from __future__ import annotations

from bot.world import APPROVERS
from tests.conftest import MakeWorld


async def test_directory_sync_on_blocks_until_fixed_and_retried(make_world: MakeWorld) -> None:
    """Sync on: blocked with the fix in the thread; after turning it off, retry plans again."""
    world = await make_world(tenant={"sync_enabled": True})
    await world.command(world.tenant.name)
    assert await world.wait_state("delete_users.blocked") == "delete_users.blocked"
    blocked = await world.slack.wait_for(
        lambda _: next((m for m in world.slack.messages if "is blocked" in m.text), None)
    )
    assert "Directory synchronization is on" in blocked.text and "retry" in blocked.text
    assert world.requests() == []
    world.tenant.set_sync(False)
    await world.command(f"retry {world.tenant.name}")
    request = await world.wait_request("delete_users")
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    await world.wait_state("cancel_subscriptions.awaiting_approval")


async def test_retained_account_without_global_admin_blocks(make_world: MakeWorld) -> None:
    """A retained account with no active Global Administrator role blocks step 1."""
    world = await make_world(tenant={"retained_is_global_admin": False})
    await world.command(world.tenant.name)
    await world.wait_state("delete_users.blocked")
    blocked = next(m for m in world.slack.messages if "is blocked" in m.text)
    assert world.tenant.retained_upn.lower() in blocked.text
    assert "Global Administrator" in blocked.text
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]
    # Retrying without a fix blocks again, and still nothing is deleted.
    await world.command(f"retry {world.tenant.name}")
    await world.slack.wait_for(
        lambda _: sum("is blocked" in m.text for m in world.slack.messages) == 2
    )
    assert await world.wait_state("delete_users.blocked") == "delete_users.blocked"


async def test_bot_turns_sync_off_as_an_approved_action(make_world: MakeWorld) -> None:
    """disable-sync asks for approval, PATCHes the organization, waits for Microsoft, then
    plans step 1 itself; no user is deleted while sync is on."""
    import datetime as dt

    world = await make_world(tenant={"sync_enabled": True}, timing={"poll_interval": "100ms"})
    world.tenant.sync_off_delay = dt.timedelta(seconds=0)
    await world.command(world.tenant.name)
    await world.wait_state("delete_users.blocked")
    blocked = next(m for m in world.slack.messages if "is blocked" in m.text)
    assert f"/close-account disable-sync {world.tenant.name}" in blocked.text
    assert "approvals follow" in await world.command(f"disable-sync {world.tenant.name}")
    request = await world.wait_request("delete_users")
    assert "turned off first" in str(request.blocks)
    assert world.tenant.sync_enabled
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    users = await world.wait_request("delete_users", count=2)
    assert not world.tenant.sync_enabled
    patches = [r for r in world.microsoft.requests if r.method == "PATCH"]
    assert [r.path.split("?")[0].startswith("/v1.0/organization/") for r in patches] == [True]
    assert not [r for r in world.microsoft.requests if r.method == "DELETE"]
    assert "users" in str(users.blocks)
    await world.vote(users, APPROVERS[0])
    await world.vote(users, APPROVERS[1])
    await world.wait_state("cancel_subscriptions.awaiting_approval")
