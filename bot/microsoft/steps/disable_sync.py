"""Turning directory sync off: step 1's preparation, its own approved action when sync is the one
thing blocking step 1 (`/close-account disable-sync`). It runs in step 1's states; once Microsoft
shows sync off, step 1 itself is planned."""

from __future__ import annotations

from bot.microsoft.steps.base import Outstanding, Progress, Step, StepContext
from bot.microsoft.tenant import facts, organization
from statemachine.plan import Blocker, Item, Plan

SYNC_ON = "directory_sync_on"  # the blocker code this action clears
SYNC_ITEM = "disable_sync"


def blocker() -> Blocker:
    return Blocker(
        SYNC_ON,
        "Directory synchronization is on: deleted users would come back from on-premises."
        " Fix: turn off Microsoft Entra Connect sync (Update-MgOrganization"
        " -OnPremisesSyncEnabled:$false); it can take up to 72 hours to finish. Then `retry`.",
    )


class DisableSync(Step):
    name = "delete_users"  # it prepares step 1, in step 1's states
    command = "disable-sync"

    async def plan(self, ctx: StepContext) -> Plan:
        org = ctx.org
        items = (
            (
                Item(
                    SYNC_ITEM, str(org["id"]), "Directory synchronization (Microsoft Entra Connect)"
                ),
            )
            if org["sync_enabled"]
            else ()
        )
        checklist = (
            "Stop the Microsoft Entra Connect server's scheduler too (Set-ADSyncScheduler"
            " -SyncCycleEnabled $false), or it may try to sync again.",
        )
        return Plan(self.name, ctx.tenant.tenant_id, items, (), checklist, facts(dict(org)))

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        """Microsoft's organization update through its documented version, v1.0
        (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
        organization-update.md): onPremisesSyncEnabled false."""
        for item in plan.of_kind(SYNC_ITEM):
            await ctx.tenant.graph.patch(
                f"/organization/{item.id}", {"onPremisesSyncEnabled": False}
            )
        await progress(1, 1)

    def handed_off(self, plan: Plan) -> bool:
        return True  # Microsoft takes its time (up to 72 hours); the checklist says what else

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        return Outstanding(tuple(await self.verify(ctx, plan)))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        org = await organization(ctx.tenant)
        return (
            ["directory synchronization is still on (Microsoft can take up to 72 hours)"]
            if org["sync_enabled"]
            else []
        )


STEP = DisableSync()
