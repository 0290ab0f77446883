"""Approval requests (one per step and plan) and the votes cast on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlite_utils import Database

from storage.db import fetch, fetch_one

RequestStatus = Literal["open", "approved", "rejected", "expired", "void"]


@dataclass(frozen=True)
class RequestRow:
    """An approval request: one per step and plan, bound to the plan's hash."""

    id: int
    closure_id: str
    step: str
    plan_id: int
    plan_hash: str
    channel: str | None  # where its message is, once posted
    ts: str | None
    quorum: int
    expires_at: float
    status: RequestStatus
    created_at: float
    reminded_at: float | None
    marked_status: str | None  # the status its Slack message shows

    @staticmethod
    def load(row: Mapping[str, Any]) -> RequestRow:
        return RequestRow(**row)


@dataclass(frozen=True)
class VoteRow:
    request_id: int
    approver: str
    kind: Literal["approve", "veto"]
    event_id: str | None
    at: float

    @staticmethod
    def load(row: Mapping[str, Any]) -> VoteRow:
        return VoteRow(**row)


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


def set_request_status(db: Database, request_id: int, status: RequestStatus) -> None:
    with db.atomic():
        db.execute("UPDATE requests SET status = ? WHERE id = ?", [status, request_id])


def get_request(db: Database, request_id: int) -> RequestRow | None:
    return fetch_one(db, RequestRow.load, "SELECT * FROM requests WHERE id = ?", [request_id])


def open_request(db: Database, closure_id: str, step: str) -> RequestRow | None:
    return fetch_one(
        db,
        RequestRow.load,
        "SELECT * FROM requests WHERE closure_id = ? AND step = ? AND status = 'open'",
        [closure_id, step],
    )


def request_at(db: Database, channel: str, ts: str) -> RequestRow | None:
    return fetch_one(
        db, RequestRow.load, "SELECT * FROM requests WHERE channel = ? AND ts = ?", [channel, ts]
    )


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


def votes_for(db: Database, request_id: int) -> list[VoteRow]:
    return fetch(
        db, VoteRow.load, "SELECT * FROM votes WHERE request_id = ? ORDER BY at", [request_id]
    )


def requests_of(db: Database, closure_id: str) -> list[RequestRow]:
    return fetch(
        db, RequestRow.load, "SELECT * FROM requests WHERE closure_id = ? ORDER BY id", [closure_id]
    )


def set_reminded(db: Database, request_id: int, at: float) -> None:
    with db.atomic():
        db.execute("UPDATE requests SET reminded_at = ? WHERE id = ?", [at, request_id])


def set_marked(db: Database, request_id: int, status: str) -> None:
    with db.atomic():
        db.execute("UPDATE requests SET marked_status = ? WHERE id = ?", [status, request_id])


def unmarked(db: Database, closure_id: str) -> list[RequestRow]:
    """Finished requests whose Slack message does not show how they ended yet."""
    return fetch(
        db,
        RequestRow.load,
        "SELECT * FROM requests WHERE closure_id = ? AND status != 'open' AND ts IS NOT NULL"
        " AND (marked_status IS NULL OR marked_status != status) ORDER BY id",
        [closure_id],
    )
