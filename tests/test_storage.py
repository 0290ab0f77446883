"""The schema enforces what must never happen, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from storage import approvals, audit, closures, slack
from storage.db import open_db


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_db(tmp_path / "t.db")


def new(db: Database, cid: str, tenant: str = "contoso", state: str = "x.planning") -> None:
    closures.create_closure(
        db,
        closure_id=cid,
        tenant=tenant,
        tenant_id="t",
        requester="U",
        state=state,
        channel="C",
        at=1.0,
    )


def test_pragmas_are_durable(db: Database) -> None:
    """WAL, synchronous=FULL and foreign keys are on."""
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_one_open_closure_per_tenant(db: Database) -> None:
    """A second open closure of a tenant is refused; after closing, a new one is allowed."""
    new(db, "a")
    with pytest.raises(closures.OpenClosureExists):
        new(db, "b")
    closures.save_closure(db, "a", at=2.0, state="aborted")
    new(db, "b")
    new(db, "c", tenant="fabrikam")


def test_one_vote_per_request_and_approver(db: Database) -> None:
    """A second reaction by the same approver replaces the first."""
    new(db, "a")
    plan = closures.save_plan(db, closure_id="a", step="s", plan_hash="h", content={}, at=1)
    req = approvals.create_request(
        db, closure_id="a", step="s", plan_id=plan, plan_hash="h", quorum=2, expires_at=9, at=1
    )
    approvals.cast_vote(db, request_id=req, approver="U1", kind="approve", event_id="E1", at=1)
    approvals.cast_vote(db, request_id=req, approver="U1", kind="veto", event_id="E2", at=2)
    votes = approvals.votes_for(db, req)
    assert [(v["approver"], v["kind"]) for v in votes] == [("U1", "veto")]
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO votes (request_id, approver, kind, at) VALUES (?, 'U1', 'approve', 3)",
            [req],
        )


def test_one_open_request_per_step(db: Database) -> None:
    """Opening a new request voids the previous open one."""
    new(db, "a")
    plan = closures.save_plan(db, closure_id="a", step="s", plan_hash="h", content={}, at=1)
    first = approvals.create_request(
        db, closure_id="a", step="s", plan_id=plan, plan_hash="h", quorum=2, expires_at=9, at=1
    )
    second = approvals.create_request(
        db, closure_id="a", step="s", plan_id=plan, plan_hash="h", quorum=2, expires_at=9, at=2
    )
    assert approvals.get_request(db, first)["status"] == "void"  # type: ignore[index]
    assert approvals.open_request(db, "a", "s")["id"] == second  # type: ignore[index]


def test_event_ids_are_claimed_once(db: Database) -> None:
    """The same Slack event ID is processed once."""
    assert slack.claim_event(db, "Ev1", 1.0) is True
    assert slack.claim_event(db, "Ev1", 2.0) is False


def test_audit_trail_is_append_only(db: Database) -> None:
    """The schema refuses to update or delete audit rows."""
    audit.append(db, tenant="contoso", closure_id=None, at=1, actor="U", action="start")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'X'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
    assert [r["actor"] for r in audit.trail(db, "contoso")] == ["U"]


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    """Opening an existing database again applies nothing twice and keeps the data."""
    db = open_db(tmp_path / "t.db")
    new(db, "a")
    db.conn.close()
    again = open_db(tmp_path / "t.db")
    assert closures.get_closure(again, "a") is not None
