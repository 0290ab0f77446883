"""Opening the database: pragmas that make it durable, and the schema migrations."""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

from sqlite_utils import Database, Migrations

migrations = Migrations("close-account-bot")


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
