"""Opening the database: pragmas that make it durable, the schema migrations, transactions, and
reading rows into the frozen dataclasses each table family defines."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database, Migrations

migrations = Migrations("close-account-bot")
R = TypeVar("R")


class StorageError(Exception):
    """Something the schema refused; each kind says what in its own subclass."""


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[None]:
    """One transaction around several storage calls (each is one otherwise); never await in it."""
    with db.atomic():
        yield


def fetch(
    db: Database,
    make: Callable[[Mapping[str, Any]], R],
    sql: str,
    params: Sequence[Any] = (),
) -> list[R]:
    """Rows of `sql` as `make` builds them from a column -> value mapping."""
    cursor = db.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [make(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]


def fetch_one(
    db: Database,
    make: Callable[[Mapping[str, Any]], R],
    sql: str,
    params: Sequence[Any] = (),
) -> R | None:
    rows = fetch(db, make, sql, params)
    return rows[0] if rows else None


def loads(text: str | None, default: Any) -> Any:
    """A JSON column's value (`default` when NULL)."""
    return default if text is None else json.loads(text)


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE closures (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            requester TEXT NOT NULL,
            state TEXT NOT NULL,
            failed_phase TEXT,
            reason TEXT,
            channel TEXT NOT NULL,
            status_ts TEXT,
            extra TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        -- One open closure per tenant, enforced by the schema.
        CREATE UNIQUE INDEX one_open_closure_per_tenant ON closures(tenant)
            WHERE state NOT IN ('closed', 'aborted', 'rolled_back');

        CREATE TABLE plans (
            id INTEGER PRIMARY KEY,
            closure_id TEXT NOT NULL REFERENCES closures(id),
            step TEXT NOT NULL,
            hash TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX plans_by_closure ON plans(closure_id, step);

        CREATE TABLE steps (
            closure_id TEXT NOT NULL REFERENCES closures(id),
            step TEXT NOT NULL,
            plan_id INTEGER REFERENCES plans(id),
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            started_at REAL,
            finished_at REAL,
            next_check_at REAL,
            checks INTEGER NOT NULL DEFAULT 0,
            detail TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (closure_id, step)
        );

        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            closure_id TEXT NOT NULL REFERENCES closures(id),
            step TEXT NOT NULL,
            plan_id INTEGER NOT NULL REFERENCES plans(id),
            plan_hash TEXT NOT NULL,
            channel TEXT,
            ts TEXT,
            quorum INTEGER NOT NULL,
            expires_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'approved', 'rejected', 'expired', 'void')),
            created_at REAL NOT NULL,
            UNIQUE (channel, ts)
        );
        -- At most one open approval request per closure and step.
        CREATE UNIQUE INDEX one_open_request ON requests(closure_id, step)
            WHERE status = 'open';

        CREATE TABLE votes (
            request_id INTEGER NOT NULL REFERENCES requests(id),
            approver TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('approve', 'veto')),
            event_id TEXT,
            at REAL NOT NULL,
            PRIMARY KEY (request_id, approver)
        );

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            closure_id TEXT NOT NULL REFERENCES closures(id),
            step TEXT,
            kind TEXT NOT NULL,
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            thread_ts TEXT,
            created_at REAL NOT NULL,
            UNIQUE (channel, ts)
        );

        CREATE TABLE slack_events (
            event_id TEXT PRIMARY KEY,
            received_at REAL NOT NULL
        );

        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            closure_id TEXT REFERENCES closures(id),
            tenant TEXT NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            step TEXT,
            plan_hash TEXT,
            event_id TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_by_tenant ON audit(tenant, id);
        -- The audit trail is append-only.
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
        """
    )


def open_db(path: Path | str) -> Database:
    """Open (creating if needed) and migrate the database with durable settings."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    db = Database(conn)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the audit trail and step progress must survive a power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    migrations.apply(db)
    return db


def open_readonly(path: Path | str) -> Database:
    """Open the database to read only: no migration, no journal-mode change, nothing written, so
    `audit` is safe beside a running bot of another version and on a read-only backup copy."""
    target = urllib.parse.quote(str(Path(path).resolve()))
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # A WAL database in a read-only directory cannot get its -shm file: read the file as it
        # is (a backup copy, or a database no bot is writing).
        conn = sqlite3.connect(f"file:{target}?immutable=1", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    return Database(conn)


@migrations()
def m002_identities(db: Database) -> None:
    db.executescript(
        """
        -- Emails given for admins and approvers, resolved to Slack user IDs and kept.
        CREATE TABLE identities (
            ref TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            resolved_at REAL NOT NULL
        );
        """
    )


@migrations()
def m003_reminders(db: Database) -> None:
    # When the last reminder was posted, so a reminder fires once per interval across restarts.
    db.executescript(
        """
        ALTER TABLE requests ADD COLUMN reminded_at REAL;
        ALTER TABLE steps ADD COLUMN reminded_at REAL;
        """
    )


@migrations()
def m004_outbox(db: Database) -> None:
    db.executescript(
        """
        -- Thread posts, written in the same transaction as the state change they report and
        -- posted in order; `sending_at` marks an attempt so a crash mid-post is reconciled
        -- against Slack instead of posting twice.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            closure_id TEXT NOT NULL REFERENCES closures(id),
            step TEXT,
            kind TEXT NOT NULL,
            text TEXT NOT NULL,
            blocks TEXT,
            metadata TEXT,
            request_id INTEGER REFERENCES requests(id),
            created_at REAL NOT NULL,
            sending_at REAL,
            ts TEXT
        );
        CREATE INDEX outbox_pending ON outbox(closure_id, id) WHERE ts IS NULL;
        ALTER TABLE closures ADD COLUMN status_sending_at REAL;
        """
    )


@migrations()
def m005_shown(db: Database) -> None:
    # What Slack shows, so a restart can bring a stale status message or request up to date.
    db.executescript(
        """
        ALTER TABLE closures ADD COLUMN status_state TEXT;
        ALTER TABLE requests ADD COLUMN marked_status TEXT;
        """
    )


@migrations()
def m006_request_index(db: Database) -> None:
    db.executescript(
        "CREATE INDEX IF NOT EXISTS requests_by_closure ON requests(closure_id, step);"
    )


@migrations()
def m007_typed_columns(db: Database) -> None:
    """Flags that change behaviour leave the JSON columns for columns of their own: the closure's
    display name, pending plan changes, disable-sync and rollback requests; a step's outstanding
    admin work and whether it deleted the bot's own access. Stored blockers get codes."""
    db.executescript(
        """
        ALTER TABLE closures ADD COLUMN display_name TEXT;
        ALTER TABLE closures ADD COLUMN changes TEXT;
        ALTER TABLE closures ADD COLUMN sync_action INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE closures ADD COLUMN rollback_requester TEXT;
        UPDATE closures SET
            display_name = json_extract(extra, '$.display_name'),
            changes = json_extract(extra, '$.changes'),
            sync_action = coalesce(json_extract(extra, '$.sync_action'), 0) != 0,
            rollback_requester = json_extract(extra, '$.rollback_requester');
        ALTER TABLE closures DROP COLUMN extra;

        ALTER TABLE steps ADD COLUMN remaining TEXT;
        ALTER TABLE steps ADD COLUMN access_gone INTEGER NOT NULL DEFAULT 0;
        UPDATE steps SET
            remaining = json_extract(detail, '$.remaining'),
            access_gone = coalesce(json_extract(detail, '$.own_app_gone'), 0) != 0;
        ALTER TABLE steps DROP COLUMN detail;
        """
    )
    # Blockers were stored as text; step 1's directory-sync blocker is the one code acted on.
    for plan_id, content in db.execute("SELECT id, content FROM plans").fetchall():
        plan = json.loads(content)
        blockers = plan.get("blockers") or []
        if not any(isinstance(b, str) for b in blockers):
            continue
        plan["blockers"] = [
            b
            if not isinstance(b, str)
            else {
                "code": "directory_sync_on"
                if b.startswith("Directory synchronization")
                else "recorded_before_codes",
                "text": b,
            }
            for b in blockers
        ]
        db.execute(
            "UPDATE plans SET content = ? WHERE id = ?", [json.dumps(plan, sort_keys=True), plan_id]
        )


@migrations()
def m008_slack_refusals(db: Database) -> None:
    """A thread post Slack refuses for good is recorded (and no longer holds up later posts);
    a closure that cannot talk to Slack keeps the error until a call succeeds again."""
    db.executescript(
        """
        ALTER TABLE outbox ADD COLUMN refused TEXT;
        DROP INDEX IF EXISTS outbox_pending;
        CREATE INDEX outbox_pending ON outbox(closure_id, id) WHERE ts IS NULL AND refused IS NULL;
        CREATE TABLE slack_trouble (
            closure_id TEXT PRIMARY KEY REFERENCES closures(id),
            error TEXT NOT NULL,
            since REAL NOT NULL
        );
        """
    )


@migrations()
def m009_sync_requester(db: Database) -> None:
    """Who asked the bot to turn directory sync off: like a rollback's requester, their approval
    of that action never counts."""
    db.execute("ALTER TABLE closures ADD COLUMN sync_requester TEXT")


@migrations()
def m010_learned_from_microsoft(db: Database) -> None:
    """What the bot learned from Microsoft that Microsoft does not show again, so a restart
    during a wait of days keeps it: when an Azure subscription was cancelled (Resource Manager
    shows no cancellation time) and what Partner Center or Resource Manager refused."""
    db.executescript(
        """
        CREATE TABLE azure_cancellations (
            tenant_id TEXT NOT NULL,
            subscription_id TEXT NOT NULL,
            at REAL NOT NULL,
            -- 1: the bot saw Resource Manager cancel it at `at`; 0: first seen cancelled at
            -- `at`, cancelled earlier at a time no one showed the bot.
            by_bot INTEGER NOT NULL CHECK (by_bot IN (0, 1)),
            PRIMARY KEY (tenant_id, subscription_id)
        );
        CREATE TABLE cancel_refusals (
            tenant_id TEXT NOT NULL,
            subscription_id TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('partner', 'arm')),
            status INTEGER NOT NULL,
            code TEXT NOT NULL,
            reason TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (tenant_id, subscription_id, source)
        );
        """
    )
