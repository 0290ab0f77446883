"""Step 2, cancel all active subscriptions: through Partner Center what the configured partner sold,
through Azure Resource Manager the Azure subscriptions, and a checklist for the rest. Its undo asks
a person to reactivate what is cancelled but not deleted yet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.microsoft.azure import ACTIVE_STATES as AZURE_ACTIVE
from bot.microsoft.azure import ArmError
from bot.microsoft.partner import PartnerCenterError
from bot.microsoft.steps.base import Outstanding, Progress, Step, StepContext
from bot.microsoft.tenant import (
    ACTIVE_STATUSES,
    StepError,
    Tenant,
    azure_subscriptions,
    facts,
    subscription_item,
    subscription_line,
    subscriptions,
)
from statemachine.plan import Item, Plan


class Reactivate:
    """Undo: cancelled subscriptions not deleted yet, for a person to reactivate."""

    kinds = frozenset({"reactivate_subscription"})

    async def plan(
        self, tenant: Tenant, done: Plan
    ) -> tuple[list[Item], list[str], dict[str, Any]]:
        status = {str(s["id"]): s.get("status") for s in await subscriptions(tenant)}
        items: list[Item] = []
        lost: list[str] = []
        for sub in done.of_kind("subscription"):
            now = status.get(sub.id)
            if now == "Deleted" or now is None:
                lost.append(f"{sub.name} ({sub.id})")
            elif now not in ACTIVE_STATUSES:
                items.append(Item("reactivate_subscription", sub.id, sub.name))
        checklist = [
            f"{i.name} ({i.id}): Microsoft 365 admin center > Billing > Your products > {i.name} >"
            " Reactivate"
            for i in items
        ]
        return items, checklist, {"lost_subscriptions": lost}

    async def execute(
        self, tenant: Tenant, items: Sequence[Item], progress: Progress, start: int
    ) -> None:
        return None  # no API reactivates a subscription: the checklist does

    async def outstanding(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        """Still to reactivate (one deleted meanwhile can no longer be: not waited on)."""
        if not items:
            return []
        status = {str(s["id"]): s.get("status") for s in await subscriptions(tenant)}
        return [
            f"{i.name} ({i.id}) is {status.get(i.id)}"
            for i in items
            if status.get(i.id) not in ACTIVE_STATUSES and status.get(i.id) not in (None, "Deleted")
        ]

    async def verify(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        return await self.outstanding(tenant, items)


def _by_partner_api(item: Item, sub: dict[str, Any], tenant: Tenant) -> Item:
    """Mark a subscription the configured partner sold: the bot cancels it in Partner Center."""
    owner = item.detail.get("owner_tenant_id")
    if tenant.partner is None or owner != tenant.partner.tenant_id:
        return item
    commerce = str(sub.get("commerceSubscriptionId") or sub["id"])
    return Item(item.kind, item.id, item.name, {**item.detail, "partner_api": commerce})


class CancelSubscriptions(Step):
    name = "cancel_subscriptions"
    undo = Reactivate()

    async def plan(self, ctx: StepContext) -> Plan:
        tenant = ctx.tenant
        subs = await subscriptions(tenant)
        skus = await tenant.graph.get_all("/subscribedSkus")
        active = [s for s in subs if s.get("status") in ACTIVE_STATUSES]
        items = tuple(
            _by_partner_api(subscription_item(s, tenant.tenant_id), s, tenant) for s in active
        )
        checklist = tuple(
            subscription_line(i, "Cancel subscription")
            for i in items
            if not i.detail.get("partner_api")
        )
        if checklist:
            checklist += (
                "Custom domains must be removed before the last subscription can be cancelled:"
                " Microsoft 365 admin center > Settings > Domains.",
            )
        azure, problem = await azure_subscriptions(tenant)
        items += tuple(
            Item(
                "azure_subscription",
                str(a["subscriptionId"]),
                str(a.get("displayName", "")),
                {"state": a.get("state")},
            )
            for a in azure
            if a.get("state") in AZURE_ACTIVE
        )
        if problem:
            checklist += (problem,)
        elif not azure and checklist:
            checklist += (
                "Azure subscriptions the bot's app has no role on are invisible to it: if the"
                " tenant has any, cancel them in the Azure portal > Subscriptions > select >"
                " Cancel subscription.",
            )
        tenant_facts = {**facts(dict(ctx.org)), "skus": len(skus), "azure_listed": problem is None}
        return Plan(self.name, tenant.tenant_id, items, (), checklist, tenant_facts)

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        """Cancel through Partner Center what the configured partner sold and through ARM the
        Azure subscriptions; the rest follows as a checklist for the admin center."""
        tenant = ctx.tenant
        partner_items = [i for i in plan.of_kind("subscription") if i.detail.get("partner_api")]
        azure = plan.of_kind("azure_subscription")
        total = len(partner_items) + len(azure)
        for index in range(start, len(partner_items)):
            await progress(index, total)  # also the check that the closure still runs
            item = partner_items[index]
            if tenant.partner is None:
                raise StepError("Partner Center credentials are no longer configured")
            try:
                await tenant.partner.cancel(tenant.tenant_id, str(item.detail["partner_api"]))
            except PartnerCenterError as exc:
                if exc.status != 400:  # 400: no longer active, so cancelled already
                    raise StepError(
                        f"Partner Center refused to cancel {item.name} ({item.id}): {exc}"
                    ) from exc
            await progress(index + 1, total)
        for index in range(max(0, start - len(partner_items)), len(azure)):
            await progress(len(partner_items) + index, total)
            item = azure[index]
            if tenant.arm is None:
                raise StepError("no Azure Resource Manager endpoint is configured")
            try:
                await tenant.arm.cancel(item.id)
            except ArmError as exc:
                if exc.code != "SubscriptionNotActive":  # cancelled already: done
                    raise StepError(
                        f"cancelling Azure subscription {item.name} ({item.id}): {exc}. Give the"
                        " bot's app the Owner role on it, or cancel it in the Azure portal, then"
                        " retry."
                    ) from exc
            await progress(len(partner_items) + index + 1, total)

    def handed_off(self, plan: Plan) -> bool:
        return bool(plan.checklist)

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        return Outstanding(tuple(await self.verify(ctx, plan)))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        """What is still active (empty when Microsoft shows the step done)."""
        subs = await subscriptions(ctx.tenant)
        azure, _ = await azure_subscriptions(ctx.tenant)
        return [
            f"{s.get('skuPartNumber')} ({s.get('id')}) is {s.get('status')}"
            for s in subs
            if s.get("status") in ACTIVE_STATUSES
        ] + [
            f"Azure subscription {a.get('displayName')} ({a.get('subscriptionId')})"
            f" is {a.get('state')}"
            for a in azure
            if a.get("state") in AZURE_ACTIVE
        ]


STEP = CancelSubscriptions()
