"""Slack messages linked to closures and steps, and the Slack event IDs already processed."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database

from storage.closures import Row, _row, _rows


def record_message(
    db: Database,
    *,
    closure_id: str,
    step: str | None,
    kind: str,
    channel: str,
    ts: str,
    thread_ts: str | None,
    at: float,
) -> None:
    with db.atomic():
        db.execute(
            "INSERT OR IGNORE INTO messages (closure_id, step, kind, channel, ts, thread_ts,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [closure_id, step, kind, channel, ts, thread_ts, at],
        )


def messages_of(db: Database, closure_id: str) -> list[Row]:
    return _rows(
        db.execute("SELECT * FROM messages WHERE closure_id = ? ORDER BY id", [closure_id])
    )


def message_at(db: Database, channel: str, ts: str) -> Row | None:
    return _row(db.execute("SELECT * FROM messages WHERE channel = ? AND ts = ?", [channel, ts]))


def claim_event(db: Database, event_id: str, at: float) -> bool:
    """True the first time an event ID is seen; False for every redelivery."""
    try:
        with db.atomic():
            db.execute(
                "INSERT INTO slack_events (event_id, received_at) VALUES (?, ?)", [event_id, at]
            )
    except sqlite3.IntegrityError:
        return False
    return True
