"""The append-only audit trail: every plan, vote, action and decision, with who and when."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from storage.closures import Row, _rows


def append(
    db: Database,
    *,
    tenant: str,
    closure_id: str | None,
    at: float,
    actor: str,
    action: str,
    step: str | None = None,
    plan_hash: str | None = None,
    event_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    with db.atomic():
        db.execute(
            "INSERT INTO audit (closure_id, tenant, at, actor, action, step, plan_hash, event_id,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                closure_id,
                tenant,
                at,
                actor,
                action,
                step,
                plan_hash,
                event_id,
                json.dumps(detail or {}, sort_keys=True),
            ],
        )


def trail(db: Database, tenant: str) -> list[Row]:
    return _rows(db.execute("SELECT * FROM audit WHERE tenant = ? ORDER BY id", [tenant]))
