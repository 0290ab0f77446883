"""What the current step runs and against what: the step (or its preparation) looked up once in
the registry, the context it is given, the tenant checked to be the configured one, its fresh
plan, and the plans approved so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlite_utils import Database

from bot.config import Settings
from bot.microsoft import tenant as ms
from bot.microsoft.steps import implementation
from bot.microsoft.steps.base import Step, StepContext
from bot.microsoft.tokens import jwt_claims
from statemachine import steps
from statemachine.closure import split_state
from statemachine.plan import Plan
from storage import closures as closures_db
from storage.closures import ClosureRow


@dataclass(eq=False, kw_only=True)
class Planner:
    settings: Settings
    db: Database
    clock: Callable[[], float]
    tenants: dict[str, ms.Tenant]
    session: aiohttp.ClientSession
    ssl_context: Any

    def tenant(self, row: ClosureRow) -> ms.Tenant:
        return self.tenants[row.tenant]

    def step(self, row: ClosureRow) -> Step:
        """The closure's current step (or the rollback), looked up in the registry."""
        step = split_state(row.state)[0]
        assert step is not None
        return implementation(step)

    def preparing(self, row: ClosureRow) -> bool:
        """Whether the closure runs its step's preparation (turning directory sync off before
        step 1) rather than the step itself."""
        return row.sync_action and self.step(row).preparation is not None

    def action(self, row: ClosureRow) -> Step:
        """What the closure's current step runs: the step itself, or its preparation."""
        impl = self.step(row)
        return impl.preparation if self.preparing(row) and impl.preparation else impl

    def context(self, row: ClosureRow, org: dict[str, Any] | None = None) -> StepContext:
        step = split_state(row.state)[0]
        assert step is not None
        return StepContext(
            tenant=self.tenant(row),
            session=self.session,
            ssl_context=self.ssl_context,
            org=org or {},
            history=self.history(row) if org is not None else {},
            checks=closures_db.get_step(self.db, row.id, step).checks,
            checks_needed=self.settings.timing.tenant_gone_checks,
        )

    async def organization(self, row: ClosureRow) -> dict[str, Any]:
        """The live organization, refusing to go on if it is not the configured tenant."""
        tenant = self.tenant(row)
        org = await ms.organization(tenant)
        claims = jwt_claims(await tenant.graph.tokens.token())
        tid = claims.get("tid")
        if org["id"] != row.tenant_id or (tid is not None and tid != row.tenant_id):
            raise ms.StepError(
                f"wrong tenant: the token reaches {tid or org['id']}, the config says"
                f" {row.tenant_id}; nothing was changed"
            )
        if org.get("display_name") and row.display_name != org["display_name"]:
            closures_db.save_closure(
                self.db, row.id, at=self.clock(), display_name=org["display_name"]
            )
        return org

    async def plan(self, row: ClosureRow) -> Plan:
        """The current step's plan as the tenant is now (the right tenant, checked first)."""
        org = await self.organization(row)
        return await self.action(row).plan(self.context(row, org))

    def history(self, row: ClosureRow) -> dict[str, Plan]:
        """The approved plans of the steps that started: what the closure changed, and from what."""
        out: dict[str, Plan] = {}
        for step, info in closures_db.steps_of(self.db, row.id).items():
            if steps.is_step(step) and info.plan_id and info.started_at is not None:
                plan_row = closures_db.get_plan(self.db, info.plan_id)
                if plan_row is not None:
                    out[step] = plan_row.plan
        return out

    def approved(self, row: ClosureRow, step: str) -> Plan | None:
        """The plan approved for `step` of this closure, if one was."""
        info = closures_db.get_step(self.db, row.id, step)
        plan_row = closures_db.get_plan(self.db, info.plan_id) if info.plan_id else None
        return plan_row.plan if plan_row is not None else None
