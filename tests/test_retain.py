"""`retain` is compared by what it holds: an object ID (a GUID) by the user's ID, anything else
by user principal name, case-insensitively; step 1 plans and verifies with it."""

from __future__ import annotations

import dataclasses
from typing import cast

import aiohttp

from bot.microsoft.steps.base import StepContext
from bot.microsoft.steps.delete_users import RETAINED_MISSING, STEP, is_retained, keeps
from bot.microsoft.tenant import organization
from bot.world import World
from statemachine.plan import Plan
from tests.conftest import MakeWorld
from tests.test_faults import run_to_closed

USER = {"id": "0A1B2C3D-0000-4000-8000-00000000ABCD", "userPrincipalName": "Admin@Contoso.com"}


def test_a_guid_is_compared_by_object_id() -> None:
    """A GUID entry keeps the user with that ID (any case), never one whose UPN looks alike."""
    assert keeps("0a1b2c3d-0000-4000-8000-00000000abcd", USER)
    assert not keeps("0a1b2c3d-0000-4000-8000-00000000abce", USER)
    assert not keeps(USER["id"], {"id": "x", "userPrincipalName": USER["id"]})


def test_anything_else_is_compared_by_upn_case_insensitively() -> None:
    """A UPN entry keeps the user with that UPN whatever the case."""
    assert keeps("admin@contoso.com", USER)
    assert keeps(" ADMIN@CONTOSO.COM ", USER)
    assert not keeps("other@contoso.com", USER)
    assert is_retained(["other@contoso.com", USER["id"]], USER)


async def plan_with(world: World, retain: tuple[str, ...]) -> Plan:
    assert world.service is not None
    tenant = next(iter(world.service.core.tenants.values()))
    tenant = dataclasses.replace(
        tenant, settings=dataclasses.replace(tenant.settings, retain=retain)
    )
    org = await organization(tenant)
    session = cast(aiohttp.ClientSession, None)  # step 1's plan reads Graph only
    return await STEP.plan(StepContext(tenant, session, None, org=org))


async def test_step_1_keeps_the_admin_named_by_object_id(make_world: MakeWorld) -> None:
    """With `retain` holding the admin's object ID, step 1 plans every other user, no blocker,
    and an unknown ID is a 'missing' blocker."""
    world = await make_world(users=8)
    upn = world.tenant.retained_upn.lower()
    admin = next(u for u in world.tenant.users.values() if u["userPrincipalName"] == upn)
    plan = await plan_with(world, (admin["id"].upper(),))
    assert not plan.blockers
    ids = {i.id for i in plan.items}
    assert admin["id"] not in ids and len(ids) == 7
    missing = await plan_with(world, ("99999999-9999-4999-8999-999999999999",))
    assert [b.code for b in missing.blockers] == [RETAINED_MISSING]


async def test_a_whole_closure_keeps_the_admin_named_by_object_id(make_world: MakeWorld) -> None:
    """With `retain` holding only the admin's object ID, every step (step 5's 'exactly one
    retained Global Administrator' included) recognises the admin, and the tenant is closed."""
    world = await make_world(users=8, start=False)
    upn = world.tenant.retained_upn
    admin = world.tenant.find_user(upn)
    assert admin is not None
    text = world.config_path.read_text()
    assert f'retain = ["{upn}"]' in text
    world.config_path.write_text(text.replace(f'retain = ["{upn}"]', f'retain = ["{admin["id"]}"]'))
    await world.start_bot()
    await run_to_closed(world)
    assert world.tenant.deleted
