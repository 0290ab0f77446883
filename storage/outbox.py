"""Thread posts waiting to be sent: written with the state change they report, sent in order."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from storage.db import fetch, loads


@dataclass(frozen=True)
class PostRow:
    """A queued thread post; `ts` once Slack took it, `sending_at` while it may have."""

    id: int
    closure_id: str
    step: str | None
    kind: str
    text: str
    blocks: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    request_id: int | None
    created_at: float
    sending_at: float | None
    ts: str | None
    refused: str | None = None  # Slack's error, when it refused the post for good

    @staticmethod
    def load(row: Mapping[str, Any]) -> PostRow:
        return PostRow(
            **{
                **row,
                "blocks": loads(row["blocks"], None),
                "metadata": loads(row["metadata"], None),
            }
        )


def enqueue(
    db: Database,
    *,
    closure_id: str,
    step: str | None,
    kind: str,
    text: str,
    blocks: list[dict[str, Any]] | None,
    metadata: dict[str, Any] | None,
    request_id: int | None,
    at: float,
) -> int:
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO outbox (closure_id, step, kind, text, blocks, metadata, request_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                closure_id,
                step,
                kind,
                text,
                json.dumps(blocks) if blocks is not None else None,
                json.dumps(metadata) if metadata is not None else None,
                request_id,
                at,
            ],
        )
        post_id = cursor.lastrowid
    assert post_id is not None
    return post_id


def pending(db: Database, closure_id: str) -> list[PostRow]:
    return fetch(
        db,
        PostRow.load,
        "SELECT * FROM outbox WHERE closure_id = ? AND ts IS NULL AND refused IS NULL ORDER BY id",
        [closure_id],
    )


def mark_sending(db: Database, post_id: int, at: float) -> None:
    with db.atomic():
        db.execute("UPDATE outbox SET sending_at = ? WHERE id = ?", [at, post_id])


def mark_unsure(db: Database, at: float) -> None:
    """At start, count every post still queued as possibly sent: a process whose database
    this is not (the one a backup was restored over) may have posted it."""
    with db.atomic():
        db.execute("UPDATE outbox SET sending_at = ? WHERE ts IS NULL AND sending_at IS NULL", [at])


def mark_sent(db: Database, post_id: int, ts: str) -> None:
    with db.atomic():
        db.execute("UPDATE outbox SET ts = ? WHERE id = ?", [ts, post_id])


def mark_refused(db: Database, post_id: int, error: str) -> None:
    """Slack refused the post for good: it no longer holds up the posts after it."""
    with db.atomic():
        db.execute("UPDATE outbox SET refused = ? WHERE id = ?", [error, post_id])


def refused(db: Database, closure_id: str) -> list[PostRow]:
    return fetch(
        db,
        PostRow.load,
        "SELECT * FROM outbox WHERE closure_id = ? AND refused IS NOT NULL ORDER BY id",
        [closure_id],
    )


# -- a closure that cannot talk to Slack ---------------------------------------------------


@dataclass(frozen=True)
class TroubleRow:
    """Slack's error for a closure's calls (not_in_channel, invalid_auth...), since when."""

    closure_id: str
    error: str
    since: float


def set_trouble(db: Database, closure_id: str, error: str, at: float) -> bool:
    """Record that the closure cannot talk to Slack; True if this is news (a new error)."""
    with db.atomic():
        before = db.execute(
            "SELECT error FROM slack_trouble WHERE closure_id = ?", [closure_id]
        ).fetchone()
        if before is not None and before[0] == error:
            return False
        db.execute(
            "INSERT INTO slack_trouble (closure_id, error, since) VALUES (?, ?, ?)"
            " ON CONFLICT (closure_id) DO UPDATE"
            " SET error = excluded.error, since = excluded.since",
            [closure_id, error, at],
        )
    return True


def clear_trouble(db: Database, closure_id: str) -> bool:
    """Slack answers again; True if there was trouble recorded."""
    with db.atomic():
        cursor = db.execute("DELETE FROM slack_trouble WHERE closure_id = ?", [closure_id])
    return bool(cursor.rowcount)


def trouble(db: Database, closure_id: str) -> TroubleRow | None:
    rows = fetch(
        db,
        lambda r: TroubleRow(**r),
        "SELECT * FROM slack_trouble WHERE closure_id = ?",
        [closure_id],
    )
    return rows[0] if rows else None
