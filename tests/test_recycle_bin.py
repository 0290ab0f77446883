"""Step 5 and the recycle bin: deleted service principals are kept there (microsoftgraph/
microsoft-graph-docs-contrib api-reference/v1.0/api/directory-deleteditems-list.md, -delete.md)
and block the tenant's deletion until purged; the bot purges them, and asks a Global
Administrator to purge its own (multi-tenant) and to confirm no Azure subscription is left
when Resource Manager lists none (MicrosoftDocs/entra-docs docs/identity/users/
directory-delete-howto.md)."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot import messages
from bot.microsoft import tenant as ms
from bot.microsoft.azure import ArmError
from bot.microsoft.steps import delete_directory as step5
from bot.world import World
from simulator.microsoft.graph_data import SimError
from simulator.microsoft.graph_seed import _add_sp, add_app
from tests.conftest import MakeWorld
from tests.test_delete_directory import PARTNER, context, noop, ready_for_step5

OTHER_VENDOR = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def admin_action(world: World, action: str, body: dict[str, Any] | None = None) -> int:
    """What the simulated Global Administrator does, through the simulator's admin endpoint."""
    base = f"{world.microsoft.base_url}/_sim/tenants/{world.tenant.tenant_id}"
    ssl_context = ssl.create_default_context(cafile=world.microsoft.ca_file)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/{action}", json=body or {}, ssl=ssl_context) as resp:
            return resp.status


async def test_deleted_service_principals_are_purged_and_the_tenant_can_go(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """Service principals already in the recycle bin are planned as purges and purged, and so
    is one the step deletes itself; after the admin purges the bot's own application nothing
    in the recycle bin stands in the tenant's way."""
    world = await make_world(users=3)
    tenant = world.tenant
    ready_for_step5(tenant)
    gone = _add_sp(tenant, tenant.guid(), "Old Vendor Tool", OTHER_VENDOR)
    tenant.delete_service_principal(gone["id"])
    live = _add_sp(tenant, tenant.guid(), "Live Vendor Tool", OTHER_VENDOR)
    old = add_app(tenant, "Old Portal")
    tenant.delete_application(old["id"])  # its service principal goes to the bin with it
    assert gone["id"] in tenant.deleted_service_principals
    ctx = await context(world, http)
    plan = await step5.STEP.plan(ctx)
    assert plan.blockers == ()
    planned = {i.name for i in plan.of_kind("deleted_service_principal")}
    assert "Old Vendor Tool" in planned
    assert live["id"] in {i.id for i in plan.of_kind("service_principal")}
    await step5.STEP.execute(ctx, plan, noop, 0)
    purged = {
        r.path.split("?")[0].rsplit("/", 1)[1]
        for r in world.microsoft.requests
        if r.method == "DELETE" and "/deletedItems/" in r.path
    }
    assert {gone["id"], live["id"]} <= purged
    own = plan.of_kind("own_application")[0]
    assert list(tenant.deleted_applications) == [own.id]
    # Left in the bin: only the bot's own service principal, deleted with its application.
    assert [sp["appId"] for sp in tenant.deleted_service_principals.values()] == [tenant.client_id]
    tenant.purge_application(own.id)  # the admin, per the checklist
    assert tenant.deleted_service_principals == {}
    assert tenant.deletion_blockers() == []


async def test_simulator_refuses_deletion_while_a_deleted_service_principal_is_unpurged(
    make_world: MakeWorld,
) -> None:
    """A deleted enterprise application left in the recycle bin blocks the tenant's deletion,
    like a deleted app registration; purging it lets the tenant go."""
    world = await make_world(users=1, start=False)
    tenant = world.tenant
    ready_for_step5(tenant)
    for app in list(tenant.applications.values()):
        tenant.delete_application(app["id"])
        tenant.purge_application(app["id"])
    for sp_id, sp in list(tenant.service_principals.items()):
        if sp["appOwnerOrganizationId"] != step5.MICROSOFT_TENANT:
            if sp_id in tenant.undeletable_sps:
                sp["accountEnabled"] = False
            else:
                tenant.delete_service_principal(sp_id)
    leftover = list(tenant.deleted_service_principals)
    assert leftover
    with pytest.raises(SimError) as refused:
        tenant.delete_tenant()
    assert any("deleted enterprise applications" in r for r in refused.value.reasons)
    for sp_id in leftover:
        assert await admin_action(world, "purge-deleted", {"id": sp_id}) == 200
    tenant.delete_tenant()
    assert tenant.deleted


async def test_multi_tenant_own_service_principal_gets_a_purge_line(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """Multi-tenant: the bot's own service principal, deleted last, stays in the recycle bin;
    the checklist names it with the Graph call to purge it, and once purged the tenant goes."""
    world = await make_world(users=3, tenant={"app_home_tenant_id": PARTNER})
    tenant = world.tenant
    ready_for_step5(tenant)
    own_sp = tenant.bot_service_principal
    assert own_sp is not None
    ctx = await context(world, http)
    plan = await step5.STEP.plan(ctx)
    line = messages.purge_own_service_principal_line(own_sp["displayName"], own_sp["id"])
    assert line in plan.checklist
    assert f"deletedItems/{own_sp['id']}" in line
    assert plan.checklist.index(line) < len(plan.checklist) - 1  # before deleting the tenant
    await step5.STEP.execute(ctx, plan, noop, 0)
    assert list(tenant.deleted_service_principals) == [own_sp["id"]]
    assert await admin_action(world, "delete") == 409
    assert await admin_action(world, "purge-deleted", {"id": own_sp["id"]}) == 200
    assert await admin_action(world, "delete") == 200


async def test_single_tenant_has_no_own_service_principal_line(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """Single-tenant: the bot's own service principal goes with its application, so only the
    deleted-application line is on the checklist."""
    world = await make_world(users=3)
    ready_for_step5(world.tenant)
    plan = await step5.STEP.plan(await context(world, http))
    assert not any("enterprise application" in line for line in plan.checklist)
    assert any("Deleted applications" in line for line in plan.checklist)


async def test_azure_confirm_line_when_resource_manager_lists_none(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """When Resource Manager lists no Azure subscription (here: one exists, but the app holds
    no role on it), the checklist asks the admin to confirm none is left in the portal."""
    world = await make_world(users=3)
    tenant = world.tenant
    ready_for_step5(tenant)
    tenant.azure.seed(tenant.tenant_id, 1, 0)
    tenant.azure.app_is_owner = False
    plan = await step5.STEP.plan(await context(world, http))
    assert step5.AZURE_REMAIN not in plan.blocker_codes()
    assert messages.azure_confirm_none_line(False) in plan.checklist
    assert "Azure portal > Subscriptions" in messages.azure_confirm_none_line(False)


async def test_azure_listed_is_a_blocker_without_the_confirm_line(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """An Azure subscription Resource Manager lists blocks while planning; the confirm line is
    then not needed."""
    world = await make_world(users=3)
    ready_for_step5(world.tenant)
    world.tenant.azure.seed(world.tenant.tenant_id, 1, 0)
    plan = await step5.STEP.plan(await context(world, http))
    assert step5.AZURE_REMAIN in plan.blocker_codes()
    assert not any("Azure portal > Subscriptions" in line for line in plan.checklist)


@dataclasses.dataclass
class RefusingArm:
    """Resource Manager refusing the listing."""

    async def blocking_subscriptions(self) -> list[dict[str, Any]]:
        raise ArmError(403, "AuthorizationFailed", "no access")


async def test_azure_confirm_line_when_the_listing_is_refused(
    make_world: MakeWorld, http: aiohttp.ClientSession
) -> None:
    """A refused listing blocks and still puts the confirm line on the checklist."""
    world = await make_world(users=3)
    ready_for_step5(world.tenant)
    ctx = await context(world, http)
    arm: Any = RefusingArm()
    refusing = ms.Tenant(ctx.tenant.settings, ctx.tenant.graph, arm, None)
    plan = await step5.STEP.plan(dataclasses.replace(ctx, tenant=refusing))
    assert step5.AZURE_REMAIN in plan.blocker_codes()
    assert messages.azure_confirm_none_line(True) in plan.checklist
