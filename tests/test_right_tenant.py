"""Before every destructive step the bot checks that the token reaches the closure's tenant."""

from __future__ import annotations

from bot.world import APPROVERS, World


async def test_config_pointing_at_another_tenant_destroys_nothing(world: World) -> None:
    """Resumed under another tenant's credentials, a closure refuses, says why, deletes nothing."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.stop_bot()
    other = world.microsoft.add_tenant(name="fabrikam", users=15, seed=7)
    text = world.config_path.read_text()
    text = text.replace(world.tenant.tenant_id, other.tenant_id)
    text = text.replace(world.tenant.client_id, other.client_id)
    world.config_path.write_text(text)
    world.environ["SIM_TENANT_SECRET"] = other.client_secret
    await world.start_bot()
    await world.vote(request, APPROVERS[0])
    await world.vote(request, APPROVERS[1])
    assert await world.wait_state("delete_users.failed") == "delete_users.failed"
    failure = next(
        m for m in world.slack.messages if "failed" in m.text and "wrong tenant" in m.text
    )
    assert other.tenant_id in failure.text and world.tenant.tenant_id in failure.text
    assert not [r for r in world.microsoft.requests if r.method in ("DELETE", "PATCH")]
    assert len(other.users) == 15
