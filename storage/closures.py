"""Closures, their per-step progress, and the plans each step was given: frozen rows in, out."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from sqlite_utils import Database

from statemachine.closure import FINAL_STATES
from statemachine.plan import Plan
from storage.db import StorageError, fetch, fetch_one, loads

_NOT_FINAL = f"state NOT IN ({','.join('?' * len(FINAL_STATES))})"


class OpenClosureExists(StorageError):
    """The schema refused a second open closure for a tenant."""


@dataclass(frozen=True)
class ClosureRow:
    id: str
    tenant: str  # the configured name
    tenant_id: str
    requester: str
    state: str
    failed_phase: str | None
    reason: str | None  # what blocked, failed, vetoed or aborted it, in words
    channel: str
    status_ts: str | None  # the status message, once posted
    status_sending_at: float | None  # a status post under way (a crash is reconciled)
    status_state: str | None  # the state the status message shows
    created_at: float
    updated_at: float
    display_name: str | None  # the tenant's live name, once read from Microsoft
    changes: tuple[str, ...]  # what changed in the plan since the void request, for the next
    sync_action: bool  # step 1 runs its preparation (turning directory sync off) first
    rollback_requester: str | None  # who asked for the rollback, once one was
    sync_requester: str | None = None  # who asked the bot to turn directory sync off

    @staticmethod
    def load(row: Mapping[str, Any]) -> ClosureRow:
        return ClosureRow(
            **{
                **row,
                "changes": tuple(loads(row["changes"], [])),
                "sync_action": bool(row["sync_action"]),
            }
        )


@dataclass(frozen=True)
class PlanRow:
    id: int
    closure_id: str
    step: str
    hash: str
    plan: Plan
    created_at: float

    @staticmethod
    def load(row: Mapping[str, Any]) -> PlanRow:
        return PlanRow(
            id=row["id"],
            closure_id=row["closure_id"],
            step=row["step"],
            hash=row["hash"],
            plan=Plan.from_dict(json.loads(row["content"])),
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class StepRow:
    """A step's progress in one closure (all zero until it has any)."""

    closure_id: str
    step: str
    plan_id: int | None = None  # the approved plan, once approved
    done: int = 0
    total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    next_check_at: float | None = None
    checks: int = 0  # consecutive confirmations (step 5: "tenant not found")
    reminded_at: float | None = None
    remaining: tuple[str, ...] | None = None  # admin-center work Microsoft showed last
    access_gone: bool = False  # the step deleted the bot's own access

    @staticmethod
    def load(row: Mapping[str, Any]) -> StepRow:
        remaining = loads(row["remaining"], None)
        return StepRow(
            **{
                **row,
                "remaining": None if remaining is None else tuple(remaining),
                "access_gone": bool(row["access_gone"]),
            }
        )


class StepFields(TypedDict, total=False):
    plan_id: int | None
    done: int
    total: int
    started_at: float | None
    finished_at: float | None
    next_check_at: float | None
    checks: int
    reminded_at: float | None
    remaining: Sequence[str] | None
    access_gone: bool


def create_closure(
    db: Database,
    *,
    closure_id: str,
    tenant: str,
    tenant_id: str,
    requester: str,
    state: str,
    channel: str,
    at: float,
) -> ClosureRow:
    try:
        with db.atomic():
            db.execute(
                "INSERT INTO closures (id, tenant, tenant_id, requester, state, channel,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [closure_id, tenant, tenant_id, requester, state, channel, at, at],
            )
    except sqlite3.IntegrityError as exc:
        raise OpenClosureExists(tenant) from exc
    closure = get_closure(db, closure_id)
    assert closure is not None
    return closure


def get_closure(db: Database, closure_id: str) -> ClosureRow | None:
    return fetch_one(db, ClosureRow.load, "SELECT * FROM closures WHERE id = ?", [closure_id])


def open_closure_for(db: Database, tenant: str) -> ClosureRow | None:
    return fetch_one(
        db,
        ClosureRow.load,
        f"SELECT * FROM closures WHERE tenant = ? AND {_NOT_FINAL}",
        [tenant, *FINAL_STATES],
    )


def latest_closure_for(db: Database, tenant: str) -> ClosureRow | None:
    return fetch_one(
        db,
        ClosureRow.load,
        "SELECT * FROM closures WHERE tenant = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        [tenant],
    )


def open_closures(db: Database) -> list[ClosureRow]:
    return fetch(
        db,
        ClosureRow.load,
        f"SELECT * FROM closures WHERE {_NOT_FINAL} ORDER BY created_at",
        FINAL_STATES,
    )


def all_closures(db: Database) -> list[ClosureRow]:
    return fetch(db, ClosureRow.load, "SELECT * FROM closures ORDER BY created_at")


def save_closure(
    db: Database,
    closure_id: str,
    *,
    at: float,
    state: str | None = None,
    failed_phase: str | None = None,
    reason: str | None = None,
    status_ts: str | None = None,
    clear_failure: bool = False,
    display_name: str | None = None,
    changes: Sequence[str] | None = None,
    sync_action: bool | None = None,
    rollback_requester: str | None = None,
    sync_requester: str | None = None,
) -> None:
    """Change the given columns (None leaves one as it is); a state that would make a second
    open closure for the tenant raises `OpenClosureExists`."""
    values: dict[str, Any] = {"updated_at": at}
    if state is not None:
        values["state"] = state
    if failed_phase is not None or clear_failure:
        values["failed_phase"] = failed_phase
    for column, value in (
        ("reason", reason),
        ("status_ts", status_ts),
        ("display_name", display_name),
        ("sync_action", sync_action),
        ("rollback_requester", rollback_requester),
        ("sync_requester", sync_requester),
    ):
        if value is not None:
            values[column] = value
    if changes is not None:
        values["changes"] = json.dumps(list(changes)) if changes else None
    sets = ", ".join(f"{column} = ?" for column in values)
    try:
        with db.atomic():
            db.execute(f"UPDATE closures SET {sets} WHERE id = ?", [*values.values(), closure_id])
    except sqlite3.IntegrityError as exc:
        raise OpenClosureExists(closure_id) from exc


def mark_status_sending(db: Database, closure_id: str, at: float) -> None:
    with db.atomic():
        db.execute("UPDATE closures SET status_sending_at = ? WHERE id = ?", [at, closure_id])


def set_status_shown(db: Database, closure_id: str, state: str) -> None:
    with db.atomic():
        db.execute("UPDATE closures SET status_state = ? WHERE id = ?", [state, closure_id])


def needing_slack(db: Database) -> list[ClosureRow]:
    """Finished closures whose status message or thread is not up to date (a crash at the end)."""
    placeholders = ",".join("?" * len(FINAL_STATES))
    return fetch(
        db,
        ClosureRow.load,
        f"SELECT * FROM closures WHERE state IN ({placeholders}) AND ("
        " status_state IS NULL OR status_state != state"
        " OR EXISTS (SELECT 1 FROM outbox WHERE outbox.closure_id = closures.id"
        " AND outbox.ts IS NULL AND outbox.refused IS NULL))",
        FINAL_STATES,
    )


# --- plans ---------------------------------------------------------------------------------


def save_plan(db: Database, *, closure_id: str, plan: Plan, at: float) -> int:
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO plans (closure_id, step, hash, content, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [closure_id, plan.step, plan.hash, json.dumps(plan.as_dict(), sort_keys=True), at],
        )
        plan_id = cursor.lastrowid
    assert plan_id is not None
    return plan_id


def get_plan(db: Database, plan_id: int) -> PlanRow | None:
    return fetch_one(db, PlanRow.load, "SELECT * FROM plans WHERE id = ?", [plan_id])


def latest_plan(db: Database, closure_id: str, step: str) -> PlanRow | None:
    """The plan last made for `step` of the closure (what it is blocked on, say)."""
    return fetch_one(
        db,
        PlanRow.load,
        "SELECT * FROM plans WHERE closure_id = ? AND step = ? ORDER BY id DESC LIMIT 1",
        [closure_id, step],
    )


# --- step progress -------------------------------------------------------------------------


def get_step(db: Database, closure_id: str, step: str) -> StepRow:
    row = fetch_one(
        db,
        StepRow.load,
        "SELECT * FROM steps WHERE closure_id = ? AND step = ?",
        [closure_id, step],
    )
    return row if row is not None else StepRow(closure_id, step)


def steps_of(db: Database, closure_id: str) -> dict[str, StepRow]:
    rows = fetch(db, StepRow.load, "SELECT * FROM steps WHERE closure_id = ?", [closure_id])
    return {r.step: r for r in rows}


def update_step(db: Database, closure_id: str, step: str, **fields: Unpack[StepFields]) -> None:
    """Upsert the step's progress row with the given columns."""
    values: dict[str, Any] = dict(fields)
    if "remaining" in values:
        remaining = values["remaining"]
        values["remaining"] = None if remaining is None else json.dumps(list(remaining))
    columns = ["closure_id", "step", *values]
    updates = ", ".join(f"{c} = excluded.{c}" for c in values) or "step = excluded.step"
    with db.atomic():
        db.execute(
            f"INSERT INTO steps ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT (closure_id, step) DO UPDATE SET {updates}",
            [closure_id, step, *values.values()],
        )


# --- read-only, for /metrics ---------------------------------------------------------------


def counts_by_state(db: Database) -> dict[str, int]:
    """How many closures are in each state (final states included)."""
    return dict(db.execute("SELECT state, COUNT(*) FROM closures GROUP BY state").fetchall())


def open_request_count(db: Database) -> int:
    """Open approval requests of closures that are still open."""
    cursor = db.execute(
        "SELECT COUNT(*) FROM requests JOIN closures ON closures.id = requests.closure_id"
        f" WHERE requests.status = 'open' AND closures.{_NOT_FINAL}",
        FINAL_STATES,
    )
    return int(cursor.fetchone()[0])


def oldest_wait_on_people(db: Database) -> float | None:
    """Since when the oldest wait on a person has lasted: the oldest open approval request of an
    open closure, or the oldest entry into `waiting_external` (from the audit trail); None if
    nothing waits on a person."""
    cursor = db.execute(
        "SELECT MIN(since) FROM ("
        " SELECT requests.created_at AS since FROM requests"
        " JOIN closures ON closures.id = requests.closure_id"
        f" WHERE requests.status = 'open' AND closures.{_NOT_FINAL}"
        " UNION ALL"
        " SELECT COALESCE((SELECT MAX(audit.at) FROM audit WHERE audit.tenant = closures.tenant"
        "  AND audit.closure_id = closures.id"  # the tenant first: audit_by_tenant serves it
        "  AND json_extract(audit.detail, '$.to') = closures.state), closures.updated_at)"
        " AS since FROM closures WHERE closures.state LIKE '%.waiting_external')",
        FINAL_STATES,
    )
    since = cursor.fetchone()[0]
    return None if since is None else float(since)
