"""The rollback, run as its own step before the point of no return: each step that started puts
back what its approved plan changed (its `undo`), in the order of the list of steps."""

from __future__ import annotations

from collections.abc import Callable

from bot.microsoft.steps.base import Outstanding, Progress, Step, StepContext, Undo
from bot.microsoft.tenant import StepError, facts
from statemachine import steps
from statemachine.plan import Item, Plan


class Rollback(Step):
    name = steps.ROLLBACK

    def __init__(self, implementation: Callable[[str], Step]) -> None:
        self._implementation = implementation

    def _undos(self) -> list[tuple[str, Undo]]:
        return [
            (name, undo)
            for name in steps.names()
            if (undo := self._implementation(name).undo) is not None
        ]

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
            checklist += lines
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
