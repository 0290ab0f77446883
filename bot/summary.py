"""The closure's record at its end, read from the database: the summary queued with the
transition into closed, aborted or rolled_back (once per end), and the list of every object the
closure changed, as CSV, shared in the thread after the summary and printed by `audit --deleted`."""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import export, messages
from bot.csvsafe import csv_dict
from bot.outbox import Post
from bot.slackapi import slack_error
from statemachine import steps
from statemachine.closure import is_final, split_state
from statemachine.plan import Plan
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage.audit import AuditRow
from storage.closures import ClosureRow
from storage.db import fetch

log = logging.getLogger("close_account_bot.summary")

SUMMARY = "summary"  # the outbox kind of an end's summary: summary:closed, summary:aborted...
SHARED = "changed_list_posted"  # audit action: the end's list of changed objects is in Slack
REFUSED = "changed_list_refused"  # audit action: Slack refused it (its error in the detail)
SHARE_TRIES = 3  # refusals of one end's list before the bot stops trying (the CLI prints it)
CHECKLIST_SHOWN = 20  # lines of a stopped step's checklist in the summary (all are in its request)
FIELDS = [
    "closure_id",
    "step",
    "kind",
    "id",
    "name",
    "action",
    "status",
    "approved_by",
    "approved_at",
    "executed_at",
]


@dataclass(frozen=True)
class Approval:
    """A step's approved plan: who approved it (each with their vote's time), when it started
    and when its writes ended (None if they never did)."""

    step: str
    plan: Plan
    approvers: tuple[tuple[str, float], ...]
    at: float
    executed_at: float | None


def _trail(db: Database, row: ClosureRow) -> list[AuditRow]:
    return fetch(
        db,
        AuditRow.load,
        "SELECT * FROM audit WHERE tenant = ? AND closure_id = ? ORDER BY id",
        [row.tenant, row.id],
    )


def approvals(db: Database, row: ClosureRow, trail: Sequence[AuditRow]) -> list[Approval]:
    """Every approved plan of the closure, in the order approved."""
    out: list[Approval] = []
    for req in requests_db.requests_of(db, row.id):
        plan_row = closures_db.get_plan(db, req.plan_id)
        if req.status != "approved" or plan_row is None:
            continue
        approve = next(
            (
                a
                for a in trail
                if a.action == "approve" and a.step == req.step and a.plan_hash == req.plan_hash
            ),
            None,
        )
        at = approve.at if approve else req.created_at
        voted = {v.approver: v.at for v in requests_db.votes_for(db, req.id) if v.kind == "approve"}
        names = approve.detail.get("approvers", list(voted)) if approve else list(voted)
        ran = next(
            (
                a.at
                for a in trail
                if approve is not None
                and a.id > approve.id
                and a.step == req.step
                and a.action in ("executed", "hand_off")
            ),
            None,
        )
        who = tuple((str(u), float(voted.get(str(u), at))) for u in names)
        out.append(Approval(req.step, plan_row.plan, who, at, ran))
    return sorted(out, key=lambda a: a.at)


def _steps_reached(trail: Sequence[AuditRow]) -> list[str]:
    names = list(steps.names())
    if any(a.step == steps.ROLLBACK for a in trail):
        names.append(steps.ROLLBACK)
    return names


@dataclass
class _Line:
    step: str
    outcome: str = "not_reached"
    counts: dict[str, int] = field(default_factory=dict)
    done: int = 0
    total: int = 0
    approvals: list[tuple[str, float]] = field(default_factory=list)

    def as_tuple(self) -> tuple[str, str, dict[str, int], int, int, list[tuple[str, float]]]:
        return (self.step, self.outcome, self.counts, self.done, self.total, self.approvals)


def _lines(
    db: Database, row: ClosureRow, trail: Sequence[AuditRow], approved: Sequence[Approval]
) -> list[_Line]:
    progress = closures_db.steps_of(db, row.id)
    out: list[_Line] = []
    for step in _steps_reached(trail):
        line = _Line(step)
        mine = [a for a in approved if a.step == step]
        info = progress.get(step)
        for a in mine:
            for kind, n in a.plan.counts().items():
                line.counts[kind] = line.counts.get(kind, 0) + n
            line.total += len(a.plan.items)
            line.approvals += [p for p in a.approvers if p not in line.approvals]
        if info is not None and info.finished_at is not None:
            line.outcome = "done" if mine else "nothing"
            line.done = line.total
        elif mine:
            line.outcome = "stopped"  # earlier approved plans (a preparation) ran to the end
            line.done = sum(len(a.plan.items) for a in mine[:-1]) + (info.done if info else 0)
        elif any(a.step == step for a in trail):
            line.outcome = "planned"
        out.append(line)
    return out


def _left(
    row: ClosureRow, end: str, lines: Sequence[_Line], db: Database, approved: Sequence[Approval]
) -> list[str]:
    """What a person still has to do (or may want to) once the closure ended."""
    left: list[str] = []
    progress = closures_db.steps_of(db, row.id)
    for line in lines:
        if line.outcome != "stopped":
            continue
        info = progress.get(line.step)
        mine = [a for a in approved if a.step == line.step]
        todo = (info.remaining if info else None) or mine[-1].plan.checklist
        name = messages.step_name(line.step)
        left.append(f"{name} stopped after {line.done:,} of {line.total:,} changes.")
        left += [f"{name}: {item}" for item in todo[:CHECKLIST_SHOWN]]
        if len(todo) > CHECKLIST_SHOWN:
            left.append(messages.checklist_more(name, len(todo) - CHECKLIST_SHOWN))
    if end == "aborted":
        undone = [
            messages.step_name(x.step) for x in lines if x.outcome in ("not_reached", "planned")
        ]
        if undone:
            left.append("Not done: " + ", ".join(undone) + ".")
        ran = {x.step for x in lines if x.outcome in ("done", "stopped")}
        last = steps.point_of_no_return()
        if ran and last not in ran:
            left.append(
                f"What the closure changed stays changed: `/close-account rollback {row.tenant}`"
                " puts it back (deleted users are restorable for 30 days)."
            )
    if end == "rolled_back":
        rollback = [a for a in approved if a.step == steps.ROLLBACK]
        for a in rollback:
            lost = [
                *(a.plan.facts.get("lost_subscriptions") or []),
                *(a.plan.facts.get("lost_azure_subscriptions") or []),
            ]
            left += [f"Could not be put back (deleted meanwhile): {s}" for s in lost]
    return left


def summary_post(db: Database, row: ClosureRow, end: str, *, at: float) -> Post:
    """The summary of the closure as it ended (read inside the terminal transition)."""
    trail = _trail(db, row)
    approved = approvals(db, row, trail)
    lines = _lines(db, row, trail, approved)
    text = messages.summary_text(
        tenant=row.tenant,
        tenant_id=row.tenant_id,
        end=end,
        reason=row.reason,
        started_at=row.created_at,
        ended_at=at,
        lines=[x.as_tuple() for x in lines],
        left=_left(row, end, lines, db, approved),
        changed=sum(len(a.plan.items) for a in approved),
    )
    return Post(text, kind=f"{SUMMARY}:{end}")


def _summary_queued(db: Database, closure_id: str, end: str) -> bool:
    return bool(
        db.execute(
            "SELECT 1 FROM outbox WHERE closure_id = ? AND kind = ? LIMIT 1",
            [closure_id, f"{SUMMARY}:{end}"],
        ).fetchone()
    )


def _count(db: Database, row: ClosureRow, end: str, action: str) -> int:
    """How many audit rows `action` the closure has for its end `end`."""
    found = db.execute(
        "SELECT COUNT(*) FROM audit WHERE tenant = ? AND closure_id = ? AND action = ?"
        " AND json_extract(detail, '$.end') = ?",
        [row.tenant, row.id, action, end],
    ).fetchone()
    return int(found[0])


def _shared(db: Database, row: ClosureRow, end: str) -> bool:
    """Shared, or refused SHARE_TRIES times (the thread says how to print it)."""
    return bool(_count(db, row, end, SHARED)) or _count(db, row, end, REFUSED) >= SHARE_TRIES


def queue_summary(db: Database, row: ClosureRow, *, at: float) -> list[Post]:
    """Inside the transaction that ends the closure: its summary, once per end (its outbox row,
    kind summary:<end>, commits with the end, so a restart never queues it again)."""
    if not is_final(row.state) or _summary_queued(db, row.id, row.state):
        return []
    if row.status_ts is None:  # it never had a thread (Slack refused its start): nothing ran
        return []
    return [summary_post(db, row, row.state, at=at)]


# --- the list of every object changed --------------------------------------------------------


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def changed_rows(db: Database, row: ClosureRow) -> list[dict[str, str]]:
    """Every object the closure's executed steps changed, from their approved plans."""
    trail = _trail(db, row)
    approved = approvals(db, row, trail)
    progress = closures_db.steps_of(db, row.id)
    out: list[dict[str, str]] = []
    for n, a in enumerate(approved):
        info = progress.get(a.step)
        later = any(b.step == a.step for b in approved[n + 1 :])
        finished = later or (info is not None and info.finished_at is not None)
        status = (
            "done"
            if finished
            else f"step stopped after {info.done if info else 0} of {len(a.plan.items)}"
        )
        for item in a.plan.items:
            out.append(
                {
                    "closure_id": row.id,
                    "step": a.step,
                    "kind": item.kind,
                    "id": item.id,
                    "name": messages.known_name(item),
                    "action": messages.item_action(a.step, item),
                    "status": status,
                    "approved_by": " ".join(u for u, _ in a.approvers),
                    "approved_at": _iso(a.at),
                    "executed_at": _iso(a.executed_at),
                }
            )
    return out


def as_csv(rows: Iterable[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(csv_dict(r) for r in rows)  # names come from the tenant: made inert
    return out.getvalue()


def changed_csv(db: Database, tenant: str) -> str:
    """Every object each of the tenant's closures changed, oldest closure first (the CLI's)."""
    closures = [c for c in closures_db.all_closures(db) if c.tenant == tenant]
    return as_csv(
        r for c in sorted(closures, key=lambda c: c.created_at) for r in changed_rows(db, c)
    )


def write_csv(rows: Sequence[dict[str, str]], path: Path) -> export.ExportFile:
    """The list as a CSV file, written row by row (run it in a thread)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(csv_dict(r) for r in rows)  # names come from the tenant: made inert
    return export.ExportFile(path, path.name)


@dataclass(eq=False, kw_only=True)
class Records:
    """After a closure's thread posts are sent: the list of what its end changed, shared once
    per end in its thread (after the summary, which the outbox sent first). A refusal is
    audited and retried at the next flush, SHARE_TRIES times at most; the first one is said in
    the thread with the command that prints the list."""

    db: Database
    client: AsyncWebClient
    clock: Callable[[], float]
    mark_requests: Callable[[str], Awaitable[None]]
    say: Callable[[str, str], Awaitable[None]] | None = None  # a thread line, through the outbox
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    async def after_posts(self, closure_id: str) -> None:
        await self.mark_requests(closure_id)
        row = closures_db.get_closure(self.db, closure_id)
        if row is None or not is_final(row.state) or row.status_ts is None:
            return
        async with self._locks.setdefault(closure_id, asyncio.Lock()):
            if not _summary_queued(self.db, row.id, row.state) or _shared(self.db, row, row.state):
                return
            error = await self._share(row)
        if error is not None and self.say is not None:  # outside the lock: its flush comes back
            await self.say(closure_id, messages.changed_list_refused(row.tenant, error))

    async def _share(self, row: ClosureRow) -> str | None:
        """Share the list; Slack's error when it is refused the first time, for the thread."""
        rows = changed_rows(self.db, row)
        detail: dict[str, Any] = {"end": row.state, "rows": len(rows)}
        step = split_state(row.state)[0]
        if rows:
            stamp = f"changed-{row.tenant}-{row.id}"
            try:
                await export.share_written(
                    self.client,
                    lambda tmp: [write_csv(rows, tmp / f"{stamp}.csv")],
                    channel=row.channel,
                    thread_ts=str(row.status_ts),
                    comment=messages.changed_list_posted(row.tenant, len(rows), row.state),
                )
            except (SlackApiError, export.UploadError, aiohttp.ClientError, TimeoutError) as exc:
                # Audited; the next flush of the thread tries again, SHARE_TRIES times at most.
                error = slack_error(exc) if isinstance(exc, SlackApiError) else str(exc)
                error = error or type(exc).__name__
                log.warning("closure %s: the list of changed objects not shared: %s", row.id, error)
                first = not _count(self.db, row, row.state, REFUSED)
                detail["error"] = error
                audit.record(self.db, row, REFUSED, at=self.clock(), step=step, detail=detail)
                return error if first else None
        audit.record(self.db, row, SHARED, at=self.clock(), step=step, detail=detail)
        return None
