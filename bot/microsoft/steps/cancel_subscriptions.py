"""Step 2, cancel all active subscriptions: through Partner Center what the configured partner sold,
through Azure Resource Manager the Azure subscriptions, and a checklist for the rest. Its undo asks
a person to reactivate what is cancelled but not deleted yet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.microsoft.azure import ACTIVE_STATES as AZURE_ACTIVE
from bot.microsoft.azure import ArmError, resource_name
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
from storage.learned import Refusal


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
        _note_states(tenant, azure, plan=True)
        for a in azure:
            if a.get("state") in AZURE_ACTIVE and tenant.arm is not None:
                held = await self._held(tenant, str(a["subscriptionId"]))
                if held:
                    checklist += (
                        f"Azure subscription {a.get('displayName')} ({a['subscriptionId']})"
                        + azure_resources_line(held),
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
            outcome = await tenant.partner.cancel_subscription(
                tenant.tenant_id, str(item.detail["partner_api"])
            )
            learned = tenant.partner.learned
            if outcome.stopped:
                learned.accepted(tenant.tenant_id, item.id, "partner")
            else:  # a checklist line naming the partner until Graph shows it stopped
                learned.refused(
                    tenant.tenant_id,
                    item.id,
                    "partner",
                    status=0,  # the outcome carries Partner Center's own code, not HTTP's
                    code=outcome.code,
                    reason=outcome.reason,
                )
            await progress(index + 1, total)
        for index in range(max(0, start - len(partner_items)), len(azure)):
            await progress(len(partner_items) + index, total)
            item = azure[index]
            if tenant.arm is None:
                raise StepError("no Azure Resource Manager endpoint is configured")
            result = await tenant.arm.cancel(item.id)
            learned = tenant.arm.learned
            if result.kind == "refused":
                learned.refused(
                    tenant.tenant_id,
                    item.id,
                    "arm",
                    status=result.status,
                    code=result.code,
                    reason=result.reason,
                )
            else:  # cancelled, or holding resources (re-read live by `verify`)
                learned.accepted(tenant.tenant_id, item.id, "arm")
            if result.kind == "cancelled":  # the time step 3's "delete on or after" counts from
                learned.cancelled(tenant.tenant_id, item.id, by_bot=not result.already)
            await progress(len(partner_items) + index + 1, total)

    def handed_off(self, plan: Plan) -> bool:
        return bool(plan.checklist)

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        return Outstanding(tuple(await self.verify(ctx, plan)))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        """What is still active (empty when Microsoft shows the step done), each line saying
        who must act: the partner that refused, the Azure resources to remove, or ARM's refusal."""
        tenant = ctx.tenant
        partner_api = {i.id for i in plan.of_kind("subscription") if i.detail.get("partner_api")}
        lines: list[str] = []
        partner_refused = (
            tenant.partner.learned.refusals(tenant.tenant_id, "partner")
            if tenant.partner is not None
            else {}
        )
        for s in await subscriptions(tenant):
            if s.get("status") not in ACTIVE_STATUSES:
                continue
            line = f"{s.get('skuPartNumber')} ({s.get('id')}) is {s.get('status')}"
            refused = partner_refused.get(str(s.get("id")))
            if refused is not None or str(s.get("id")) in partner_api:
                line += partner_line(tenant, s, refused)
            lines.append(line)
        azure, _ = await azure_subscriptions(tenant)
        _note_states(tenant, azure, plan=False)
        arm_refused = (
            tenant.arm.learned.refusals(tenant.tenant_id, "arm") if tenant.arm is not None else {}
        )
        for a in azure:
            if a.get("state") in AZURE_ACTIVE:
                refused = arm_refused.get(str(a.get("subscriptionId")))
                lines.append(await self._azure_line(tenant, a, refused))
        return lines

    async def _held(self, tenant: Tenant, sid: str) -> list[str]:
        """The resources an Azure subscription still holds (none known if ARM cannot say)."""
        if tenant.arm is None:
            return []
        try:
            return [resource_name(r) for r in await tenant.arm.resources(sid)]
        except ArmError:
            return []

    async def _azure_line(
        self, tenant: Tenant, sub: dict[str, Any], refused: Refusal | None
    ) -> str:
        sid = str(sub.get("subscriptionId"))
        head = f"Azure subscription {sub.get('displayName')} ({sid}) is {sub.get('state')}"
        held = await self._held(tenant, sid)
        if held:
            return head + azure_resources_line(held)
        if refused is not None and refused.status == 403:
            return (
                f"{head}: Azure Resource Manager refused to cancel it (403 {refused.code}). Give"
                " the bot's app the Owner role on it, or cancel it in the Azure portal >"
                " Subscriptions > select > Cancel subscription."
            )
        if refused is not None:
            return (
                f"{head}: Azure Resource Manager refused to cancel it ({refused.status}"
                f" {refused.code}: {refused.reason}). Cancel it in the Azure portal >"
                " Subscriptions > select > Cancel subscription, or transfer it to another"
                " directory."
            )
        return (
            f"{head}: cancel it in the Azure portal > Subscriptions > select > Cancel subscription."
        )


MAX_RESOURCES_NAMED = 20


def _note_states(tenant: Tenant, azure: Sequence[dict[str, Any]], *, plan: bool) -> None:
    """Remember when each Azure subscription is first seen cancelled by someone else (it was
    cancelled then or before: ARM does not say when); while planning, forget the cancellation
    of one that is active again (reactivated: a later cancellation counts anew)."""
    if tenant.arm is None:
        return
    for a in azure:
        sid, state = str(a.get("subscriptionId")), a.get("state")
        if state in AZURE_ACTIVE:
            if plan:
                tenant.arm.learned.reactivated(tenant.tenant_id, sid)
        elif state != "Deleted":
            tenant.arm.learned.cancelled(tenant.tenant_id, sid, by_bot=False)


def azure_resources_line(held: Sequence[str]) -> str:
    """ARM cancels no subscription that still holds resources: name them (up to 20)."""
    named = ", ".join(held[:MAX_RESOURCES_NAMED])
    more = len(held) - MAX_RESOURCES_NAMED
    if more > 0:
        named += f" and {more} more"
    return (
        f": it still holds {len(held)} resource{'s' if len(held) != 1 else ''}, which Azure"
        f" Resource Manager requires removed before it cancels it: {named}. Delete them in the"
        " Azure portal, then cancel the subscription there; or transfer the subscription to"
        " another directory."
    )


def partner_line(tenant: Tenant, sub: dict[str, Any], refused: Refusal | None) -> str:
    """A subscription the partner sold that Partner Center did not stop: the partner acts."""
    owner = sub.get("ownerTenantId") or (tenant.partner.tenant_id if tenant.partner else "?")
    why = (
        f"Partner Center refused to cancel it (code {refused.code}: {refused.reason})"
        if refused
        else ("Partner Center has not stopped it")
    )
    return (
        f": {why}. Ask the partner (tenant {owner}) to cancel it in Partner Center, or cancel it"
        " in the Microsoft 365 admin center > Billing > Your products."
    )


STEP = CancelSubscriptions()
