"""Step 5 = Microsoft's preconditions before the point of no return (MicrosoftDocs/entra-docs
docs/identity/users/directory-delete-howto.md), and the bot's own access last in both setups:
single-tenant (its application object) and multi-tenant (only its service principal here)."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot import doctor, messages
from bot.microsoft import tenant as ms
from bot.microsoft.steps import delete_directory as step5
from bot.microsoft.steps.base import StepContext
from bot.world import World
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES, SimTenant
from simulator.microsoft.graph_seed import add_app
from tests.conftest import MakeWorld

PARTNER = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"


def ready_for_step5(tenant: SimTenant) -> None:
    """Steps 1-3 done as Microsoft sees them: only the retained admin left, nothing billed."""
    for user_id, user in list(tenant.users.items()):
        if user is not tenant.retained_user:
            tenant.soft_delete_user(user_id)
    for sub in tenant.subscriptions:
        sub["status"] = "Deleted"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def context(world: World, http: aiohttp.ClientSession, **settings: object) -> StepContext:
    assert world.service is not None
    tenant = world.service.core.tenants[world.tenant.name]
    if settings:
        tenant = ms.Tenant(
            dataclasses.replace(tenant.settings, **settings),  # type: ignore[arg-type]
            tenant.graph,
            tenant.arm,
            tenant.partner,
        )
    org = await ms.organization(tenant)
    ssl_context = ssl.create_default_context(cafile=world.microsoft.ca_file)
    return StepContext(tenant=tenant, session=http, ssl_context=ssl_context, org=org)


async def noop(done: int, total: int) -> None:
    return None


def writes(world: World) -> list[str]:
    return [
        f"{r.method} {r.path.split('?')[0]}"
        for r in world.microsoft.requests
        if r.method in ("DELETE", "PATCH")
    ]


async def test_two_retained_admins_block_while_planning_with_the_fix(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """A second retained Global Administrator is a blocker found while planning, naming both
    accounts and the fix, and nothing is written."""
    world = await make_world(users=4, start=True)
    second = next(u for u in world.tenant.users.values() if u is not world.tenant.retained_user)
    ready_for_step5(world.tenant)
    world.tenant.restore_user(second["id"])
    world.tenant.roles[second["id"]] = {step5_ga()}
    retain = (world.tenant.retained_upn, second["userPrincipalName"])
    ctx = await context(world, http, retain=retain)
    plan = await step5.STEP.plan(ctx)
    assert step5.SEVERAL_RETAINED in plan.blocker_codes()
    text = next(b.text for b in plan.blockers if b.code == step5.SEVERAL_RETAINED)
    assert second["userPrincipalName"] in text and "retain" in text and "retry" in text
    assert writes(world) == []


def step5_ga() -> str:
    return ms.GLOBAL_ADMIN_ROLE


async def test_missing_permission_for_a_later_call_blocks_before_any_write(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """Without Application.ReadWrite.All (needed after the purge), planning blocks and names it."""
    roles = (DEFAULT_APP_ROLES - {"Application.ReadWrite.All"}) | {"Application.Read.All"}
    world = await make_world(users=3, tenant={"app_roles": roles})
    ready_for_step5(world.tenant)
    plan = await step5.STEP.plan(await context(world, http))
    assert step5.PERMISSIONS_MISSING in plan.blocker_codes()
    text = next(b.text for b in plan.blockers if b.code == step5.PERMISSIONS_MISSING)
    assert "Application.ReadWrite.All" in text and "disable service principals" in text
    assert writes(world) == []


async def test_single_tenant_execute_meets_microsofts_preconditions_own_app_last(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """Deletes and disables come before any purge, deleted applications are purged, the
    undeletable enterprise application is disabled, the bot's own application goes last; only
    that deleted application (on the admin's checklist) then stands in the tenant's way."""
    world = await make_world(users=3)
    tenant = world.tenant
    ready_for_step5(tenant)
    old = add_app(tenant, "Old Portal")
    tenant.delete_application(old["id"])  # already in the recycle bin
    ctx = await context(world, http)
    line = next(ln for ln in await doctor.check_tenant(ctx.tenant) if ln.check == "app setup")
    assert line.detail == "single-tenant (application in this tenant)"
    plan = await step5.STEP.plan(ctx)
    assert plan.blockers == ()
    assert [i.name for i in plan.of_kind("deleted_application")] == ["Old Portal"]
    assert plan.facts["app_setup"] == "single-tenant"
    assert any("Bills & payments" in line for line in plan.checklist)
    assert any("self-service sign-up" in line for line in plan.checklist)
    own = tenant.bot_application
    assert own is not None
    assert any(own["id"] in line and "Deleted applications" in line for line in plan.checklist)
    before = len(world.microsoft.requests)
    await step5.STEP.execute(ctx, plan, noop, 0)
    done = writes(world)
    first_purge = next(i for i, w in enumerate(done) if "/deletedItems/" in w)
    assert not any("/deletedItems/" not in w for w in done[first_purge:-1])
    assert any(w.startswith("PATCH /v1.0/servicePrincipals/") for w in done[:first_purge])
    assert done[-1] == f"DELETE /v1.0/applications/{own['id']}"
    assert not [r for r in world.microsoft.requests[before:] if r.status >= 500]
    assert list(tenant.deleted_applications) == [own["id"]]
    assert [r for r in tenant.deletion_blockers() if "deleted app registrations" in r]
    tenant.purge_application(own["id"])
    assert tenant.deletion_blockers() == []


async def test_multi_tenant_app_removes_its_service_principal_last(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """A multi-tenant app (registered in a partner's tenant) has only a service principal here:
    the plan says so, it goes last, and once the admin purges it the tenant passes Microsoft's
    checks."""
    world = await make_world(users=3, tenant={"app_home_tenant_id": PARTNER})
    tenant = world.tenant
    assert tenant.bot_application is None
    ready_for_step5(tenant)
    ctx = await context(world, http)
    setup = await ms.app_setup(ctx.tenant)
    assert setup.multi_tenant and setup.home_tenant_id == PARTNER
    lines = await doctor.check_tenant(ctx.tenant)
    line = next(ln for ln in lines if ln.check == "app setup")
    assert line.detail == messages.app_setup(True, PARTNER) and PARTNER in line.detail
    plan = await step5.STEP.plan(ctx)
    assert plan.blockers == ()
    assert plan.facts["app_setup"] == "multi-tenant"
    assert not any("Deleted applications" in line for line in plan.checklist)
    own_sp = tenant.bot_service_principal
    assert own_sp is not None
    await step5.STEP.execute(ctx, plan, noop, 0)
    assert writes(world)[-1] == f"DELETE /v1.0/servicePrincipals/{own_sp['id']}"
    assert tenant.bot_service_principal is None
    assert list(tenant.deleted_service_principals) == [own_sp["id"]]  # on the checklist
    tenant.purge_service_principal(own_sp["id"])
    assert tenant.deletion_blockers() == []


async def test_simulator_refuses_tenant_deletion_until_preconditions_met(
    make_world: MakeWorld,
) -> None:
    """Microsoft's check: a deleted application in the recycle bin and an enabled enterprise
    application that cannot be deleted each block the tenant's deletion."""
    world = await make_world(users=1, start=False)
    tenant = world.tenant
    ready_for_step5(tenant)
    for app in list(tenant.applications.values()):
        tenant.delete_application(app["id"])
    for sp_id, sp in list(tenant.service_principals.items()):
        if sp_id not in tenant.undeletable_sps and sp["appOwnerOrganizationId"] != (
            "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
        ):
            tenant.delete_service_principal(sp_id)
    reasons = tenant.deletion_blockers()
    assert any("deleted app registrations" in r for r in reasons)
    assert any("cannot be deleted are still enabled" in r for r in reasons)
    for app_id in list(tenant.deleted_applications):
        tenant.purge_application(app_id)
    for sp_id in list(tenant.deleted_service_principals):
        tenant.purge_service_principal(sp_id)
    for sp_id in tenant.undeletable_sps:
        tenant.service_principals[sp_id]["accountEnabled"] = False
    assert tenant.deletion_blockers() == []
