"""Approval requests (one per step and plan) and the votes cast on them."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from storage.closures import Row, _row, _rows


def create_request(
    db: Database,
    *,
    closure_id: str,
    step: str,
    plan_id: int,
    plan_hash: str,
    quorum: int,
    expires_at: float,
    at: float,
) -> int:
    """A new open request; any previous open one for this step is voided first."""
    with db.atomic():
        db.execute(
            "UPDATE requests SET status = 'void' WHERE closure_id = ? AND step = ?"
            " AND status = 'open'",
            [closure_id, step],
        )
        cursor = db.execute(
            "INSERT INTO requests (closure_id, step, plan_id, plan_hash, quorum, expires_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [closure_id, step, plan_id, plan_hash, quorum, expires_at, at],
        )
        request_id = cursor.lastrowid
    assert request_id is not None
    return request_id


def set_request_message(db: Database, request_id: int, channel: str, ts: str) -> None:
    with db.atomic():
        db.execute(
            "UPDATE requests SET channel = ?, ts = ? WHERE id = ?", [channel, ts, request_id]
        )


def set_request_status(db: Database, request_id: int, status: str) -> None:
    with db.atomic():
        db.execute("UPDATE requests SET status = ? WHERE id = ?", [status, request_id])


def get_request(db: Database, request_id: int) -> Row | None:
    return _row(db.execute("SELECT * FROM requests WHERE id = ?", [request_id]))


def open_request(db: Database, closure_id: str, step: str) -> Row | None:
    return _row(
        db.execute(
            "SELECT * FROM requests WHERE closure_id = ? AND step = ? AND status = 'open'",
            [closure_id, step],
        )
    )


def latest_request(db: Database, closure_id: str, step: str) -> Row | None:
    return _row(
        db.execute(
            "SELECT * FROM requests WHERE closure_id = ? AND step = ? ORDER BY id DESC LIMIT 1",
            [closure_id, step],
        )
    )


def request_at(db: Database, channel: str, ts: str) -> Row | None:
    return _row(db.execute("SELECT * FROM requests WHERE channel = ? AND ts = ?", [channel, ts]))


def cast_vote(
    db: Database, *, request_id: int, approver: str, kind: str, event_id: str | None, at: float
) -> None:
    """One vote per (request, approver): a later reaction replaces the earlier one."""
    with db.atomic():
        db.execute(
            "INSERT INTO votes (request_id, approver, kind, event_id, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (request_id, approver) DO UPDATE SET kind = excluded.kind,"
            " event_id = excluded.event_id, at = excluded.at",
            [request_id, approver, kind, event_id, at],
        )


def withdraw_vote(db: Database, *, request_id: int, approver: str, kind: str) -> bool:
    with db.atomic():
        cursor = db.execute(
            "DELETE FROM votes WHERE request_id = ? AND approver = ? AND kind = ?",
            [request_id, approver, kind],
        )
    return cursor.rowcount > 0


def votes_for(db: Database, request_id: int) -> list[Row]:
    return _rows(db.execute("SELECT * FROM votes WHERE request_id = ? ORDER BY at", [request_id]))


def requests_of(db: Database, closure_id: str) -> list[dict[str, Any]]:
    return _rows(
        db.execute("SELECT * FROM requests WHERE closure_id = ? ORDER BY id", [closure_id])
    )


def set_reminded(db: Database, request_id: int, at: float) -> None:
    with db.atomic():
        db.execute("UPDATE requests SET reminded_at = ? WHERE id = ?", [at, request_id])


def set_marked(db: Database, request_id: int, status: str) -> None:
    with db.atomic():
        db.execute("UPDATE requests SET marked_status = ? WHERE id = ?", [status, request_id])


def unmarked(db: Database, closure_id: str) -> list[Row]:
    """Finished requests whose Slack message does not show how they ended yet."""
    return _rows(
        db.execute(
            "SELECT * FROM requests WHERE closure_id = ? AND status != 'open' AND ts IS NOT NULL"
            " AND (marked_status IS NULL OR marked_status != status) ORDER BY id",
            [closure_id],
        )
    )
