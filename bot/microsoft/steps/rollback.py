"""The rollback, run as its own step before the point of no return: each step that started puts
back what its approved plan changed (its `undo`), in the order of the list of steps. Step 2's
cancelled subscriptions go back where they were bought: the partner, the Azure portal, or the
Microsoft 365 admin center (as step 2's own checklist tells them apart). One the bot cancelled
itself through Partner Center is reactivated there with the partner's account, whose credentials
the operator holds; an Azure subscription Resource Manager no longer lists stays on the list, for
a person to look up in the Azure portal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bot.microsoft.azure import ACTIVE_STATES as AZURE_ACTIVE
from bot.microsoft.steps.base import Outstanding, Progress, Step, StepContext, Undo
from bot.microsoft.tenant import StepError, Tenant, azure_subscriptions, facts
from statemachine import steps
from statemachine.plan import Item, Plan

AZURE_REACTIVATE = "Azure portal > Subscriptions > select it > Reactivate subscription"
AZURE_UNSEEN = (
    "no longer visible to the bot (Azure Resource Manager does not list it); check it in the"
    " Azure portal > Subscriptions and reactivate it there if it is cancelled"
)


def reactivation_line(item: Item, bought: Item | None) -> str:
    """Where a person reactivates a subscription step 2 cancelled, by how it was bought: the
    partner who sold it (named by its tenant), the Azure portal, or the admin center."""
    head = f"{item.name} ({item.id})"
    detail = bought.detail if bought is not None else {}
    if detail.get("partner_api"):  # the bot cancelled it with the partner's credentials
        owner = detail.get("owner_tenant_id") or "?"
        return (
            f"{head}: bought through partner {owner}: reactivate it in Partner Center with the"
            f" partner's account (tenant {owner})"
        )
    if detail.get("channel") == "partner":
        owner = detail.get("owner_tenant_id") or "?"
        return (
            f"{head}: bought through partner {owner}: ask the partner (tenant {owner}) to"
            " reactivate it in Partner Center"
        )
    if detail.get("channel") == "azure" or item.kind == "reactivate_azure_subscription":
        return f"{head}: {AZURE_REACTIVATE}"
    return (
        f"{head}: Microsoft 365 admin center > Billing > Your products > {item.name} > Reactivate"
    )


class ReactivateAzure:
    """Undo of step 2's Azure cancellations through Resource Manager: each cancelled (not yet
    deleted) Azure subscription, for a person to reactivate in the Azure portal."""

    kinds = frozenset({"reactivate_azure_subscription"})

    async def _states(self, tenant: Tenant) -> dict[str, Any]:
        azure, _ = await azure_subscriptions(tenant)
        return {str(a["subscriptionId"]): a.get("state") for a in azure}

    async def plan(
        self, tenant: Tenant, done: Plan
    ) -> tuple[list[Item], list[str], dict[str, Any]]:
        cancelled = done.of_kind("azure_subscription")
        if not cancelled:
            return [], [], {}
        state = await self._states(tenant)
        items = [
            Item("reactivate_azure_subscription", sub.id, sub.name)
            for sub in cancelled
            if state.get(sub.id) not in (*AZURE_ACTIVE, None, "Deleted")
        ]
        lost = [f"{s.name} ({s.id})" for s in cancelled if state.get(s.id) == "Deleted"]
        unseen = [
            f"{s.name} ({s.id}): {AZURE_UNSEEN}" for s in cancelled if state.get(s.id) is None
        ]
        notes: dict[str, Any] = {"lost_azure_subscriptions": lost} if lost else {}
        return items, [reactivation_line(i, None) for i in items] + unseen, notes

    async def execute(
        self, tenant: Tenant, items: Sequence[Item], progress: Progress, start: int
    ) -> None:
        return None  # the checklist does: the bot reactivates nothing in Azure

    async def outstanding(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        if not items:
            return []
        state = await self._states(tenant)
        return [
            f"Azure subscription {i.name} ({i.id}) is {state.get(i.id)}"
            for i in items
            if state.get(i.id) not in (*AZURE_ACTIVE, None, "Deleted")
        ]

    async def verify(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        return await self.outstanding(tenant, items)


# Parts of a step's undo the rollback adds itself, after the step's own.
EXTRA_UNDOS: dict[str, tuple[Undo, ...]] = {"cancel_subscriptions": (ReactivateAzure(),)}


def by_kind(lines: Sequence[str], items: Sequence[Item], done: Plan) -> list[str]:
    """A step's undo checklist with each reactivation line saying where it was bought."""
    bought = {i.id: i for i in done.items}
    mine = [i for i in items if i.kind == "reactivate_subscription"]
    heads = tuple(f"{i.name} ({i.id}):" for i in mine)
    kept = [line for line in lines if not line.startswith(heads)] if heads else list(lines)
    return [reactivation_line(i, bought.get(i.id)) for i in mine] + kept


class Rollback(Step):
    name = steps.ROLLBACK

    def __init__(self, implementation: Callable[[str], Step]) -> None:
        self._implementation = implementation

    def _undos(self) -> list[tuple[str, Undo]]:
        out: list[tuple[str, Undo]] = []
        for name in steps.names():
            undo = self._implementation(name).undo
            if undo is not None:
                out.append((name, undo))
            out += [(name, extra) for extra in EXTRA_UNDOS.get(name, ())]
        return out

    async def plan(self, ctx: StepContext) -> Plan:
        """What is still changed: deleted users to restore, MFA settings, subscriptions."""
        items: list[Item] = []
        checklist: list[str] = []
        plan_facts = facts(dict(ctx.org))
        for name, undo in self._undos():
            done = ctx.history.get(name)
            if done is None:
                continue
            more, lines, notes = await undo.plan(ctx.tenant, done)
            items += more
            checklist += by_kind(lines, more, done)
            plan_facts.update(notes)
        return Plan(self.name, ctx.tenant.tenant_id, tuple(items), (), tuple(checklist), plan_facts)

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        """Each part in turn, counting progress over the whole plan (a restart resumes)."""
        offset = 0
        for _, undo in self._undos():
            items = [i for i in plan.items if i.kind in undo.kinds]
            if not items:
                continue

            async def part(done: int, _: int, base: int = offset) -> None:
                await progress(base + done, len(plan.items))

            await undo.execute(ctx.tenant, items, part, max(0, start - offset))
            offset += len(items)

    def handed_off(self, plan: Plan) -> bool:
        return bool(plan.checklist)

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        lines: list[str] = []
        for _, undo in self._undos():
            items = [i for i in plan.items if i.kind in undo.kinds]
            lines += await undo.outstanding(ctx.tenant, items)
        return Outstanding(tuple(lines))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        """Read everything back; what a person still has to do keeps the rollback waiting,
        anything else is a failure."""
        problems: list[str] = []
        for _, undo in self._undos():
            items = [i for i in plan.items if i.kind in undo.kinds]
            problems += await undo.verify(ctx.tenant, items)
        if problems and not (await self.outstanding(ctx, plan)).lines:
            raise StepError("rollback verification failed: " + "; ".join(problems))
        return problems
