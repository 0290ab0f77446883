"""Slack messages linked to closures and steps, and the Slack event IDs already processed."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database


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
