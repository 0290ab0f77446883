"""Step 3, delete all disabled subscriptions: no API deletes one, so the whole step is a checklist
for a Global Administrator, re-checked until Microsoft shows every subscription Deleted."""

from __future__ import annotations

from bot.microsoft.steps.base import Outstanding, Step, StepContext
from bot.microsoft.tenant import (
    ACTIVE_STATUSES,
    facts,
    subscription_item,
    subscription_line,
    subscriptions,
)
from statemachine.plan import Blocker, Plan

STILL_ACTIVE = "subscription_active"


class DeleteDisabledSubscriptions(Step):
    name = "delete_disabled_subscriptions"
    writes = False

    async def plan(self, ctx: StepContext) -> Plan:
        tenant = ctx.tenant
        subs = await subscriptions(tenant)
        items = tuple(
            subscription_item(s, tenant.tenant_id) for s in subs if s.get("status") != "Deleted"
        )
        blockers = tuple(
            Blocker(
                STILL_ACTIVE, f"{i.name} ({i.id}) is still {i.detail['status']}: cancel it first"
            )
            for i in items
            if i.detail["status"] in ACTIVE_STATUSES
        )
        checklist = tuple(subscription_line(i, "Delete subscription") for i in items)
        return Plan(self.name, tenant.tenant_id, items, blockers, checklist, facts(dict(ctx.org)))

    def handed_off(self, plan: Plan) -> bool:
        return bool(plan.checklist)

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        return Outstanding(tuple(await self.verify(ctx, plan)))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        return [
            f"{s.get('skuPartNumber')} ({s.get('id')}) is {s.get('status')}"
            for s in await subscriptions(ctx.tenant)
            if s.get("status") != "Deleted"
        ]


STEP = DeleteDisabledSubscriptions()
