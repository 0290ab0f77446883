"""Step 3, delete all disabled subscriptions: no API deletes one, so the whole step is a checklist
for a Global Administrator, re-checked until Microsoft shows every subscription Deleted.

Azure subscriptions too: an active *or cancelled* one blocks the directory's deletion until it is
deleted, which the Azure portal allows 3 days after cancelling (free trial, pay-as-you-go) or 7
(any other offer), or transferred to another directory (MicrosoftDocs/entra-docs,
docs/identity/users/directory-delete-howto.md, "Delete an Azure subscription"). ARM shows no
cancellation time: the date counts from when the bot saw ARM cancel it, kept in the database
across restarts (bot.microsoft.learned). One someone else cancelled was cancelled at the latest
when the bot first saw it so: the checklist says the time is unknown and gives the latest day
Microsoft allows the deletion; the portal's Delete and ARM's listing decide."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot import messages
from bot.microsoft.azure import ACTIVE_STATES as AZURE_ACTIVE
from bot.microsoft.azure import delete_wait_days
from bot.microsoft.learned import Learned
from bot.microsoft.steps.base import Outstanding, Step, StepContext
from bot.microsoft.tenant import (
    ACTIVE_STATUSES,
    Tenant,
    azure_subscriptions,
    facts,
    subscription_item,
    subscription_line,
    subscriptions,
)
from statemachine.plan import Blocker, Item, Plan

STILL_ACTIVE = "subscription_active"


def azure_delete_line(tenant: Tenant, sub: dict[str, Any]) -> str:
    """The admin's item for one cancelled Azure subscription, with the first day it may go (or,
    cancelled by someone else at a time ARM does not show, the latest day it may)."""
    sid = str(sub.get("subscriptionId"))
    name = sub.get("displayName")
    days = delete_wait_days(sub)
    learned = tenant.arm.learned if tenant.arm is not None else Learned()  # listed by ARM only
    known = learned.cancelled(tenant.tenant_id, sid, by_bot=False)
    at = dt.datetime.fromtimestamp(known.at, dt.UTC)
    when = at + dt.timedelta(days=days)
    if known.by_bot:
        return messages.azure_delete_after(name, sid, when, days)
    return messages.azure_delete_unknown_time(name, sid, at, when, days)


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
        azure, problem = await azure_subscriptions(tenant)
        azure = [a for a in azure if a.get("state") != "Deleted"]
        items += tuple(
            Item(
                "azure_subscription",
                str(a["subscriptionId"]),
                str(a.get("displayName", "")),
                {"state": a.get("state"), "wait_days": delete_wait_days(a)},
            )
            for a in azure
        )
        blockers += tuple(
            Blocker(
                STILL_ACTIVE,
                f"Azure subscription {a.get('displayName')} ({a['subscriptionId']}) is still"
                f" {a.get('state')}: cancel it first",
            )
            for a in azure
            if a.get("state") in AZURE_ACTIVE
        )
        checklist += tuple(
            azure_delete_line(tenant, a) for a in azure if a.get("state") not in AZURE_ACTIVE
        )
        if problem:
            checklist += (problem,)
        return Plan(self.name, tenant.tenant_id, items, blockers, checklist, facts(dict(ctx.org)))

    def handed_off(self, plan: Plan) -> bool:
        return bool(plan.checklist)

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        return Outstanding(tuple(await self.verify(ctx, plan)))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        """Every subscription Microsoft does not show Deleted yet, Azure ones re-read from ARM."""
        lines = [
            f"{s.get('skuPartNumber')} ({s.get('id')}) is {s.get('status')}"
            for s in await subscriptions(ctx.tenant)
            if s.get("status") != "Deleted"
        ]
        azure, _ = await azure_subscriptions(ctx.tenant)
        lines += [
            f"Azure subscription {a.get('displayName')} ({a.get('subscriptionId')}) is"
            f" {a.get('state')}"
            for a in azure
            if a.get("state") != "Deleted"
        ]
        return lines


STEP = DeleteDisabledSubscriptions()
