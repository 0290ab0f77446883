"""`close-account-bot check` against the simulators, with the failures an admin would hit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from bot import doctor
from bot.microsoft.tenant import GLOBAL_ADMIN_ROLE
from bot.world import World
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES
from simulator.slack.server import SimUser
from tests.conftest import MakeWorld


async def run_check(world: World) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess against the running simulators."""
    env = {**os.environ, **world.environ}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        "--config",
        str(world.config_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())


def failing(output: str) -> list[str]:
    return [line for line in output.splitlines() if " FAIL " in f" {line} "]


async def test_a_ready_tenant_passes_every_check(make_world: MakeWorld) -> None:
    """With every permission, role and scope in place, check prints ok lines and exits 0."""
    world = await make_world(start=False)
    result = await run_check(world)
    assert result.returncode == 0, result.stdout + result.stderr
    assert failing(result.stdout) == []
    for what in (
        "bot token",
        "scopes",
        "progress channel",
        "token tenant",
        "directory role",
        "directory sync",
        "permissions 1 delete users",
        "permissions 5 delete directory",
        "retained",
    ):
        assert what in result.stdout


async def test_missing_permission_role_and_sync_are_reported_with_fixes(
    make_world: MakeWorld,
) -> None:
    """A missing permission, no admin role, sync on, a retained non-admin: each FAILs with a fix."""
    world = await make_world(
        start=False,
        tenant={
            "app_roles": DEFAULT_APP_ROLES - {"Policy.ReadWrite.ConditionalAccess"},
            "app_directory_roles": frozenset(),
            "sync_enabled": True,
            "retained_is_global_admin": False,
        },
    )
    result = await run_check(world)
    assert result.returncode == 1
    lines = failing(result.stdout)
    joined = "\n".join(lines)
    assert "Policy.ReadWrite.ConditionalAccess" in joined and "admin consent" in joined
    assert "directory role" in joined and "Privileged Authentication Administrator" in joined
    assert "directory sync" in joined and "72 h" in joined
    assert "retained" in joined and "Global Administrator" in joined
    assert len(lines) == 4


async def test_delete_restore_alone_is_reported_as_unable_to_list_users(
    make_world: MakeWorld,
) -> None:
    """With only User.DeleteRestore.All, check names per step what is missing: step 1 cannot
    list users (User.Read.All or User.ReadWrite.All ...), though it may delete them."""
    world = await make_world(
        start=False, tenant={"app_roles": frozenset({"User.DeleteRestore.All"})}
    )
    result = await run_check(world)
    assert result.returncode == 1
    step1 = next(ln for ln in failing(result.stdout) if "permissions 1 delete users" in ln)
    assert "list users: needs User.Read.All or User.ReadWrite.All" in step1
    assert "delete users:" not in step1
    assert "add " in step1 and "User.Read.All" in step1.split("add ")[1]
    rollback = next(ln for ln in result.stdout.splitlines() if "permissions rollback" in ln)
    assert " ok " in f" {rollback} "


async def test_missing_slack_scope_and_channel_are_reported(make_world: MakeWorld) -> None:
    """A token without a manifest scope, and a progress channel that doesn't exist, FAIL."""
    world = await make_world(start=False)
    world.slack.bot_scopes = world.slack.bot_scopes - {"files:write"}
    text = world.config_path.read_text().replace('"C0PROGRESS"', '"C0NOWHERE"')
    world.config_path.write_text(text)
    result = await run_check(world)
    assert result.returncode == 1
    joined = "\n".join(failing(result.stdout))
    assert "missing files:write" in joined and "manifest.yml" in joined
    assert "C0NOWHERE" in joined


async def test_wrong_secret_fails_the_token_line(make_world: MakeWorld) -> None:
    """A wrong client secret is one FAIL line with Microsoft's error and never the secret."""
    world = await make_world(start=False)
    world.environ["SIM_TENANT_SECRET"] = "wrong-secret-value"
    result = await run_check(world)
    assert result.returncode == 1
    assert "invalid_client" in result.stdout
    assert "wrong-secret-value" not in result.stdout + result.stderr


async def test_partner_center_sign_in_is_checked(make_world: MakeWorld) -> None:
    """With Partner Center configured, check signs in as the partner; a wrong secret FAILs."""
    world = await make_world(start=False, partner=True)
    result = await run_check(world)
    assert result.returncode == 0, result.stdout
    assert "signed in as the partner" in result.stdout
    world.environ["SIM_PARTNER_SECRET"] = "wrong"
    result = await run_check(world)
    assert result.returncode == 1
    assert any("partner center" in line for line in failing(result.stdout))


async def test_check_says_who_checklists_will_ping(make_world: MakeWorld) -> None:
    """check names the Slack user the retained UPN resolves to, and says, without failing,
    that nobody will be pinged when no Slack user has that email."""
    world = await make_world(start=False)
    result = await run_check(world)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "checklist ping" in ln)
    assert "nobody will be pinged" in line and "users_not_found" in line
    world.slack.add_user(SimUser("U0GALE", "gale.global", world.tenant.retained_upn))
    result = await run_check(world)
    line = next(ln for ln in result.stdout.splitlines() if "checklist ping" in ln)
    assert result.returncode == 0 and "@gale.global (U0GALE)" in line


def set_retain(world: World, *entries: str) -> None:
    """Rewrite the config's `retain` (as an admin would edit it)."""
    text = world.config_path.read_text()
    old = f'retain = ["{world.tenant.retained_upn}"]'
    assert old in text
    world.config_path.write_text(text.replace(old, f"retain = {list(entries)!r}".replace("'", '"')))


async def test_a_retained_admin_named_by_object_id_passes(make_world: MakeWorld) -> None:
    """A `retain` entry holding the admin's object ID is resolved as step 1 resolves it and
    passes as an active Global Administrator, named with its UPN."""
    world = await make_world(start=False)
    admin = world.tenant.retained_user
    assert admin is not None
    set_retain(world, admin["id"].upper())
    result = await run_check(world)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(ln for ln in result.stdout.splitlines() if f"retained {admin['id'].upper()}" in ln)
    assert world.tenant.retained_upn in line and "active Global Administrator" in line
    assert " ok " in f" {line} "


async def test_two_retained_entries_fail_with_keep_exactly_one(make_world: MakeWorld) -> None:
    """Two `retain` entries, both active Global Administrators, are one FAIL line saying
    Microsoft needs exactly one left, with the fix; each account is still checked."""
    world = await make_world(start=False, users=4)
    second = next(u for u in world.tenant.users.values() if u is not world.tenant.retained_user)
    world.tenant.roles[second["id"]] = {GLOBAL_ADMIN_ROLE}
    set_retain(world, world.tenant.retained_upn, second["id"])
    result = await run_check(world)
    assert result.returncode == 1
    lines = failing(result.stdout)
    assert len(lines) == 1, result.stdout
    assert "retained accounts" in lines[0] and "exactly one" in lines[0]
    assert "keep exactly one account in `retain`" in lines[0]
    assert f"{second['id']} ({second['userPrincipalName']})" in result.stdout


async def test_an_app_without_a_service_principal_is_not_consented(make_world: MakeWorld) -> None:
    """When Graph shows neither the bot's application nor its service principal in the
    tenant, check says "not consented" and FAILs with the fix (grant admin consent), instead
    of calling it a single-tenant app."""
    world = await make_world(users=3)
    assert world.service is not None
    tenant = world.service.core.tenants[world.tenant.name]
    await tenant.graph.tokens.token()  # the token was issued while the app was consented
    app, sp = world.tenant.bot_application, world.tenant.bot_service_principal
    assert app is not None and sp is not None
    app["appId"] = sp["appId"] = "99999999-0000-4000-8000-000000000000"  # gone from this tenant
    line = next(ln for ln in await doctor.check_tenant(tenant) if ln.check == "app setup")
    assert not line.ok
    assert line.detail == "not consented (no service principal for the app in this tenant)"
    assert "admin consent" in line.fix
