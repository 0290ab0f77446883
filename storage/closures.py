"""Closures, their per-step progress, and the plans each step was given."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sqlite_utils import Database

Row = dict[str, Any]
FINAL = ("closed", "aborted", "rolled_back")


class OpenClosureExists(Exception):
    """The schema refused a second open closure for a tenant."""


def _row(cursor: sqlite3.Cursor) -> Row | None:
    rows = _rows(cursor)
    return rows[0] if rows else None


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    names = [d[0] for d in cursor.description]
    out = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        for key in ("extra", "detail", "content"):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        out.append(row)
    return out


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
) -> Row:
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


def get_closure(db: Database, closure_id: str) -> Row | None:
    return _row(db.execute("SELECT * FROM closures WHERE id = ?", [closure_id]))


def open_closure_for(db: Database, tenant: str) -> Row | None:
    placeholders = ",".join("?" * len(FINAL))
    return _row(
        db.execute(
            f"SELECT * FROM closures WHERE tenant = ? AND state NOT IN ({placeholders})",
            [tenant, *FINAL],
        )
    )


def latest_closure_for(db: Database, tenant: str) -> Row | None:
    return _row(
        db.execute(
            "SELECT * FROM closures WHERE tenant = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            [tenant],
        )
    )


def open_closures(db: Database) -> list[Row]:
    placeholders = ",".join("?" * len(FINAL))
    return _rows(
        db.execute(
            f"SELECT * FROM closures WHERE state NOT IN ({placeholders}) ORDER BY created_at",
            list(FINAL),
        )
    )


def all_closures(db: Database) -> list[Row]:
    return _rows(db.execute("SELECT * FROM closures ORDER BY created_at"))


def save_closure(
    db: Database,
    closure_id: str,
    *,
    at: float,
    state: str | None = None,
    failed_phase: str | None = None,
    reason: str | None = None,
    status_ts: str | None = None,
    extra: dict[str, Any] | None = None,
    clear_failure: bool = False,
) -> None:
    sets: list[str] = ["updated_at = ?"]
    values: list[Any] = [at]
    if state is not None:
        sets.append("state = ?")
        values.append(state)
    if failed_phase is not None or clear_failure:
        sets.append("failed_phase = ?")
        values.append(failed_phase)
    if reason is not None:
        sets.append("reason = ?")
        values.append(reason)
    if status_ts is not None:
        sets.append("status_ts = ?")
        values.append(status_ts)
    if extra is not None:
        sets.append("extra = ?")
        values.append(json.dumps(extra, sort_keys=True))
    with db.atomic():
        db.execute(f"UPDATE closures SET {', '.join(sets)} WHERE id = ?", [*values, closure_id])


# --- plans ---------------------------------------------------------------------------------


def save_plan(
    db: Database, *, closure_id: str, step: str, plan_hash: str, content: dict[str, Any], at: float
) -> int:
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO plans (closure_id, step, hash, content, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [closure_id, step, plan_hash, json.dumps(content, sort_keys=True), at],
        )
        plan_id = cursor.lastrowid
    assert plan_id is not None
    return plan_id


def get_plan(db: Database, plan_id: int) -> Row | None:
    return _row(db.execute("SELECT * FROM plans WHERE id = ?", [plan_id]))


def get_step(db: Database, closure_id: str, step: str) -> Row:
    row = _row(
        db.execute("SELECT * FROM steps WHERE closure_id = ? AND step = ?", [closure_id, step])
    )
    if row is None:
        return {
            "closure_id": closure_id,
            "step": step,
            "plan_id": None,
            "done": 0,
            "total": 0,
            "started_at": None,
            "finished_at": None,
            "next_check_at": None,
            "checks": 0,
            "detail": {},
        }
    return row


def steps_of(db: Database, closure_id: str) -> dict[str, Row]:
    rows = _rows(db.execute("SELECT * FROM steps WHERE closure_id = ?", [closure_id]))
    return {r["step"]: r for r in rows}


def update_step(db: Database, closure_id: str, step: str, **fields: Any) -> None:
    """Upsert the step's progress row with the given columns."""
    if "detail" in fields:
        fields["detail"] = json.dumps(fields["detail"], sort_keys=True)
    columns = ["closure_id", "step", *fields]
    values = [closure_id, step, *fields.values()]
    updates = ", ".join(f"{c} = excluded.{c}" for c in fields) or "step = excluded.step"
    with db.atomic():
        db.execute(
            f"INSERT INTO steps ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT (closure_id, step) DO UPDATE SET {updates}",
            values,
        )


def mark_status_sending(db: Database, closure_id: str, at: float) -> None:
    with db.atomic():
        db.execute("UPDATE closures SET status_sending_at = ? WHERE id = ?", [at, closure_id])


def set_status_shown(db: Database, closure_id: str, state: str) -> None:
    with db.atomic():
        db.execute("UPDATE closures SET status_state = ? WHERE id = ?", [state, closure_id])


def needing_slack(db: Database) -> list[Row]:
    """Finished closures whose status message or thread is not up to date (a crash at the end)."""
    placeholders = ",".join("?" * len(FINAL))
    return _rows(
        db.execute(
            f"SELECT * FROM closures WHERE state IN ({placeholders}) AND ("
            " status_state IS NULL OR status_state != state"
            " OR EXISTS (SELECT 1 FROM outbox WHERE outbox.closure_id = closures.id"
            " AND outbox.ts IS NULL))",
            list(FINAL),
        )
    )


# --- read-only, for /metrics ---------------------------------------------------------------


def counts_by_state(db: Database) -> dict[str, int]:
    """How many closures are in each state (final states included)."""
    return dict(db.execute("SELECT state, COUNT(*) FROM closures GROUP BY state").fetchall())


def open_request_count(db: Database) -> int:
    """Open approval requests of closures that are still open."""
    placeholders = ",".join("?" * len(FINAL))
    cursor = db.execute(
        "SELECT COUNT(*) FROM requests JOIN closures ON closures.id = requests.closure_id"
        f" WHERE requests.status = 'open' AND closures.state NOT IN ({placeholders})",
        list(FINAL),
    )
    return int(cursor.fetchone()[0])


def oldest_wait_on_people(db: Database) -> float | None:
    """Since when the oldest wait on a person has lasted: the oldest open approval request of an
    open closure, or the oldest entry into `waiting_external` (from the audit trail); None if
    nothing waits on a person."""
    placeholders = ",".join("?" * len(FINAL))
    cursor = db.execute(
        "SELECT MIN(since) FROM ("
        " SELECT requests.created_at AS since FROM requests"
        " JOIN closures ON closures.id = requests.closure_id"
        f" WHERE requests.status = 'open' AND closures.state NOT IN ({placeholders})"
        " UNION ALL"
        " SELECT COALESCE((SELECT MAX(audit.at) FROM audit WHERE audit.tenant = closures.tenant"
        "  AND audit.closure_id = closures.id"  # the tenant first: audit_by_tenant serves it
        "  AND json_extract(audit.detail, '$.to') = closures.state), closures.updated_at)"
        " AS since FROM closures WHERE closures.state LIKE '%.waiting_external')",
        list(FINAL),
    )
    since = cursor.fetchone()[0]
    return None if since is None else float(since)
