"""Emails of admins and approvers resolved to Slack user IDs, kept across restarts."""

from __future__ import annotations

from sqlite_utils import Database


def remember(db: Database, ref: str, user_id: str, at: float) -> None:
    with db.atomic():
        db.execute(
            "INSERT INTO identities (ref, user_id, resolved_at) VALUES (?, ?, ?)"
            " ON CONFLICT (ref) DO UPDATE SET user_id = excluded.user_id,"
            " resolved_at = excluded.resolved_at",
            [ref.lower(), user_id, at],
        )


def known(db: Database) -> dict[str, str]:
    return {ref: uid for ref, uid in db.execute("SELECT ref, user_id FROM identities").fetchall()}
