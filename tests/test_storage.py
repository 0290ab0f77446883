"""The schema enforces what must never happen, on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from statemachine.plan import Blocker, Item, Plan
from storage import approvals, audit, closures, slack
from storage.db import migrations, open_db

PLAN = Plan("s", "t", ())


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
    plan = closures.save_plan(db, closure_id="a", plan=PLAN, at=1)
    req = approvals.create_request(
        db, closure_id="a", step="s", plan_id=plan, plan_hash="h", quorum=2, expires_at=9, at=1
    )
    approvals.cast_vote(db, request_id=req, approver="U1", kind="approve", event_id="E1", at=1)
    approvals.cast_vote(db, request_id=req, approver="U1", kind="veto", event_id="E2", at=2)
    votes = approvals.votes_for(db, req)
    assert [(v.approver, v.kind) for v in votes] == [("U1", "veto")]
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO votes (request_id, approver, kind, at) VALUES (?, 'U1', 'approve', 3)",
            [req],
        )


def test_one_open_request_per_step(db: Database) -> None:
    """Opening a new request voids the previous open one."""
    new(db, "a")
    plan = closures.save_plan(db, closure_id="a", plan=PLAN, at=1)
    first = approvals.create_request(
        db, closure_id="a", step="s", plan_id=plan, plan_hash="h", quorum=2, expires_at=9, at=1
    )
    second = approvals.create_request(
        db, closure_id="a", step="s", plan_id=plan, plan_hash="h", quorum=2, expires_at=9, at=2
    )
    voided, opened = approvals.get_request(db, first), approvals.open_request(db, "a", "s")
    assert voided is not None and voided.status == "void"
    assert opened is not None and opened.id == second


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
    assert [r.actor for r in audit.trail(db, "contoso")] == ["U"]


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    """Opening an existing database again applies nothing twice and keeps the data."""
    db = open_db(tmp_path / "t.db")
    new(db, "a")
    db.conn.close()
    again = open_db(tmp_path / "t.db")
    assert closures.get_closure(again, "a") is not None


def test_a_second_open_closure_by_a_state_change_is_refused(db: Database) -> None:
    """Moving a finished closure back to an open state (a rollback) while the tenant has another
    open closure raises storage's own error, not sqlite3's."""
    new(db, "a")
    closures.save_closure(db, "a", at=2.0, state="aborted")
    new(db, "b")
    with pytest.raises(closures.OpenClosureExists):
        closures.save_closure(db, "a", at=3.0, state="rollback.planning")


def test_a_database_of_the_old_schema_is_carried_over(tmp_path: Path) -> None:
    """The flags the old schema kept in JSON (a closure's `extra`, a step's `detail`) become
    columns, and stored text blockers get codes; nothing else changes."""
    path = tmp_path / "old.db"
    old = open_db_before(path, "m007_typed_columns")
    old.execute(
        "INSERT INTO closures (id, tenant, tenant_id, requester, state, channel, extra,"
        " created_at, updated_at) VALUES ('a', 'contoso', 't', 'U0', 'delete_users.executing',"
        " 'C', ?, 1, 1)",
        [
            '{"display_name": "Contoso", "sync_action": true, "changes": ["• added: `x`"],'
            ' "rollback_requester": "U9"}'
        ],
    )
    old.execute(
        "INSERT INTO closures (id, tenant, tenant_id, requester, state, channel, created_at,"
        " updated_at) VALUES ('b', 'fabrikam', 't2', 'U0', 'closed', 'C', 1, 1)"
    )
    sync = "Directory synchronization is on: deleted users would come back."
    content = Plan("delete_users", "t", (Item("user", "1", "a"),)).as_dict()
    content["blockers"] = [sync, "The retained account a@x does not exist."]
    old.execute(
        "INSERT INTO plans (id, closure_id, step, hash, content, created_at)"
        " VALUES (1, 'a', 'delete_users', 'h', ?, 1)",
        [json.dumps(content)],
    )
    old.execute(
        "INSERT INTO steps (closure_id, step, plan_id, checks, detail) VALUES"
        " ('a', 'delete_users', 1, 2, ?), ('a', 'delete_directory', NULL, 0, ?)",
        ['{"remaining": ["SPB is Enabled"]}', '{"own_app_gone": true}'],
    )
    old.conn.close()

    db = open_db(path)
    a, b = closures.get_closure(db, "a"), closures.get_closure(db, "b")
    assert a is not None and b is not None
    assert (a.display_name, a.sync_action, a.changes, a.rollback_requester) == (
        "Contoso",
        True,
        ("• added: `x`",),
        "U9",
    )
    assert (b.display_name, b.sync_action, b.changes, b.rollback_requester) == (
        None,
        False,
        (),
        None,
    )
    users = closures.get_step(db, "a", "delete_users")
    directory = closures.get_step(db, "a", "delete_directory")
    assert (users.plan_id, users.checks, users.remaining, users.access_gone) == (
        1,
        2,
        ("SPB is Enabled",),
        False,
    )
    assert (directory.remaining, directory.access_gone) == (None, True)
    plan = closures.get_plan(db, 1)
    assert plan is not None and plan.plan.blockers == (
        Blocker("directory_sync_on", sync),
        Blocker("recorded_before_codes", "The retained account a@x does not exist."),
    )
    assert plan.plan.hash == Plan.from_dict(content | {"blockers": []}).hash


def open_db_before(path: Path, migration: str) -> Database:
    """A database as the code before `migration` made it."""
    db = Database(sqlite3.connect(str(path), isolation_level=None))
    migrations.apply(db, stop_before=migration)
    return db
