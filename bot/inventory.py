"""A plan's full inventory as the file attached to its approval request: every item as a CSV row
(kind, ID, name as people know it, what happens to it, why, the rest of its detail), and the
checklist as text when it is longer than its message can show. Pure."""

from __future__ import annotations

import csv
import io
import json

from bot import messages
from bot.csvsafe import csv_row
from statemachine.plan import Item, Plan

COLUMNS = ("kind", "id", "name", "action", "why", "detail")


def file_stem(plan: Plan) -> str:
    return f"plan-{plan.step}-{plan.hash[:12]}"


def csv_name(plan: Plan) -> str:
    return f"{file_stem(plan)}.csv"


def checklist_name(plan: Plan) -> str:
    return f"{file_stem(plan)}-checklist.txt"


def _detail(item: Item) -> str:
    """What else the plan recorded of the item, as compact JSON ('' for nothing)."""
    rest = {k: v for k, v in item.detail.items() if k != "why" and v not in (None, "")}
    return json.dumps(rest, sort_keys=True, default=str) if rest else ""


def row(step: str, item: Item) -> list[str]:
    """The item's cells, each made inert for a spreadsheet (names come from the tenant)."""
    return csv_row(
        [
            item.kind,
            item.id,
            messages.known_name(item),
            messages.item_action(step, item),
            messages.setting_reason(item) or "",
            _detail(item),
        ]
    )


def inventory_csv(plan: Plan) -> str:
    """Every item of `plan`, one row each, in the plan's order. CSV quotes what needs it, so a
    name with a comma or a quote stays one field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in plan.items:
        writer.writerow(row(plan.step, item))
    return out.getvalue()


def checklist_text(plan: Plan) -> str:
    header = f"# {plan.step} plan {plan.hash}: checklist, {len(plan.checklist):,} lines"
    lines = [f"{n}. {line}" for n, line in enumerate(plan.checklist, start=1)]
    return "\n".join([header, *lines]) + "\n"
