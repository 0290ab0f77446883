"""The append-only audit trail: every plan, vote, action and decision, with who and when."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from storage.closures import ClosureRow
from storage.db import fetch


@dataclass(frozen=True)
class AuditRow:
    id: int
    closure_id: str | None
    tenant: str
    at: float
    actor: str  # a Slack user ID, "bot" or "microsoft"
    action: str
    step: str | None
    plan_hash: str | None
    event_id: str | None
    detail: Mapping[str, Any]

    @staticmethod
    def load(row: Mapping[str, Any]) -> AuditRow:
        return AuditRow(**{**row, "detail": json.loads(row["detail"])})


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


def trail(db: Database, tenant: str) -> list[AuditRow]:
    return fetch(db, AuditRow.load, "SELECT * FROM audit WHERE tenant = ? ORDER BY id", [tenant])


def record(
    db: Database,
    closure: ClosureRow,
    action: str,
    *,
    at: float,
    actor: str = "bot",
    step: str | None = None,
    plan_hash: str | None = None,
    event_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append to the audit trail of `closure`."""
    append(
        db,
        tenant=closure.tenant,
        closure_id=closure.id,
        at=at,
        actor=actor,
        action=action,
        step=step,
        plan_hash=plan_hash,
        event_id=event_id,
        detail=detail,
    )


def answered(db: Database, closure_id: str, actor: str, action: str, request_id: int) -> bool:
    """Whether `actor` was already told `action` about approval request `request_id` (a
    refusal or a hint is said once per person and request)."""
    return bool(
        db.execute(
            "SELECT 1 FROM audit WHERE closure_id = ? AND actor = ? AND action = ?"
            " AND json_extract(detail, '$.request_id') = ? LIMIT 1",
            [closure_id, actor, action, request_id],
        ).fetchone()
    )


FOREIGN = ""  # the tenant of a request refused before it could name one


def foreign_refused(db: Database, *, at: float, actor: str, detail: dict[str, Any]) -> None:
    """Audit an event or command refused for naming another team, app or enterprise: no tenant
    or closure is its (tenant `FOREIGN`); `detail` holds the IDs it named."""
    append(
        db,
        tenant=FOREIGN,
        closure_id=None,
        at=at,
        actor=actor,
        action="foreign_request_refused",
        detail=detail,
    )
