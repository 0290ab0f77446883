"""`close-account-bot plan`: what a closure of a tenant would do, step by step, and what would
block it, read from Microsoft now. Reads only: no database, no Slack, no Graph write."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from bot import messages
from bot.csvsafe import csv_row
from bot.microsoft import tenant as ms
from bot.microsoft.azure import ArmError
from bot.microsoft.graph import GraphError
from bot.microsoft.steps import implementation
from bot.microsoft.steps.base import StepContext
from statemachine import steps
from statemachine.plan import Plan


@dataclass(frozen=True)
class StepPreview:
    """One step as a closure started now would plan it (or why it could not be read)."""

    step: str
    plan: Plan | None
    error: str | None = None


async def preview(
    tenant: ms.Tenant, session: aiohttp.ClientSession, ssl_context: object, checks_needed: int
) -> list[StepPreview]:
    """Each step's plan against the tenant as it is now. Later steps are planned as if the
    earlier ones had not run yet, so their blockers include what the earlier steps would fix."""
    org = await ms.organization(tenant)
    out = []
    for name in steps.names():
        ctx = StepContext(
            tenant=tenant,
            session=session,
            ssl_context=ssl_context,
            org=org,
            checks_needed=checks_needed,
        )
        try:
            out.append(StepPreview(name, await implementation(name).plan(ctx)))
        except (ms.StepError, GraphError, ArmError) as exc:
            out.append(StepPreview(name, None, str(exc)))
    return out


def as_text(tenant: str, previews: Sequence[StepPreview]) -> str:
    lines = [f"Preview of closing {tenant} (nothing was changed):"]
    for n, p in enumerate(previews, start=1):
        title = steps.info(p.step).title
        if p.plan is None:
            lines.append(f"{n}. {title}: cannot be read now: {p.error}")
            continue
        counts = ", ".join(f"{k} x{v}" for k, v in sorted(p.plan.counts().items()))
        what = f"{counts}: {steps.info(p.step).verb}" if counts else "nothing to change"
        lines.append(f"{n}. {title}: {what}")
        if p.step == "delete_users":
            lines += [f"   {line}" for line in messages.step_one_plain(p.plan.facts)]
        lines += [f"   blocked: {b.text}" for b in p.plan.blockers]
        lines += [f"   for a Global Administrator: {c}" for c in p.plan.checklist]
    return "\n".join(lines)


def as_csv(previews: Sequence[StepPreview]) -> str:
    """The whole inventory: one row per item (kind, ID, name, and what happens to it), each
    cell made inert for a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "kind", "id", "name", "what happens"])
    for p in previews:
        for item in p.plan.items if p.plan else ():
            writer.writerow(
                csv_row(
                    [
                        p.step,
                        item.kind,
                        item.id,
                        messages.known_name(item),
                        messages.item_action(p.step, item),
                    ]
                )
            )
    return out.getvalue()


def item_count(previews: Sequence[StepPreview]) -> int:
    """How many rows `as_csv` has besides its header: every item of every step read."""
    return sum(len(p.plan.items) for p in previews if p.plan)


def as_json(previews: Sequence[StepPreview]) -> str:
    return json.dumps(
        [
            {
                "step": p.step,
                "error": p.error,
                "items": [i.as_dict() for i in p.plan.items] if p.plan else [],
                "blockers": [b.as_dict() for b in p.plan.blockers] if p.plan else [],
                "checklist": list(p.plan.checklist) if p.plan else [],
                "facts": dict(p.plan.facts) if p.plan else {},
            }
            for p in previews
        ],
        indent=2,
        sort_keys=True,
        default=str,
    )
