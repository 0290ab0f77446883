"""What the bot learned from Microsoft and Microsoft does not show again, kept across restarts:
when each Azure subscription was cancelled, and what Partner Center or Azure Resource Manager
answered when it refused to cancel one (rows of `azure_cancellations` and `cancel_refusals`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlite_utils import Database

from storage.db import fetch, fetch_one

Source = Literal["partner", "arm"]


@dataclass(frozen=True)
class Cancellation:
    """When an Azure subscription was cancelled: exactly (`by_bot`, the bot saw Resource Manager
    cancel it then), or at the latest (someone else cancelled it before the bot first saw it
    cancelled at `at`)."""

    tenant_id: str
    subscription_id: str
    at: float  # seconds since the epoch, UTC
    by_bot: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Cancellation:
        return cls(row["tenant_id"], row["subscription_id"], row["at"], bool(row["by_bot"]))


@dataclass(frozen=True)
class Refusal:
    """What Partner Center or Resource Manager answered when it refused to cancel a
    subscription (HTTP status, the service's own code, its message)."""

    tenant_id: str
    subscription_id: str
    source: Source
    status: int
    code: str
    reason: str
    at: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Refusal:
        return cls(
            row["tenant_id"],
            row["subscription_id"],
            row["source"],
            row["status"],
            row["code"],
            row["reason"],
            row["at"],
        )


def record_cancellation(db: Database, cancellation: Cancellation) -> Cancellation:
    """Keep the first time known for a subscription (a later sighting says nothing new);
    returns the one kept."""
    with db.atomic():
        db.execute(
            "INSERT INTO azure_cancellations (tenant_id, subscription_id, at, by_bot)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, subscription_id) DO NOTHING",
            [
                cancellation.tenant_id,
                cancellation.subscription_id,
                cancellation.at,
                int(cancellation.by_bot),
            ],
        )
    kept = cancellation_of(db, cancellation.tenant_id, cancellation.subscription_id)
    return kept if kept is not None else cancellation


def cancellation_of(db: Database, tenant_id: str, subscription_id: str) -> Cancellation | None:
    return fetch_one(
        db,
        Cancellation.from_row,
        "SELECT * FROM azure_cancellations WHERE tenant_id = ? AND subscription_id = ?",
        [tenant_id, subscription_id],
    )


def forget_cancellation(db: Database, tenant_id: str, subscription_id: str) -> None:
    """The subscription is active again (reactivated): a later cancellation is a new one."""
    with db.atomic():
        db.execute(
            "DELETE FROM azure_cancellations WHERE tenant_id = ? AND subscription_id = ?",
            [tenant_id, subscription_id],
        )


def record_refusal(db: Database, refusal: Refusal) -> None:
    """The latest refusal for a subscription and service replaces the one before."""
    with db.atomic():
        db.execute(
            "INSERT INTO cancel_refusals (tenant_id, subscription_id, source, status, code,"
            " reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, subscription_id, source) DO UPDATE SET"
            " status = excluded.status, code = excluded.code, reason = excluded.reason,"
            " at = excluded.at",
            [
                refusal.tenant_id,
                refusal.subscription_id,
                refusal.source,
                refusal.status,
                refusal.code,
                refusal.reason,
                refusal.at,
            ],
        )


def clear_refusal(db: Database, tenant_id: str, subscription_id: str, source: Source) -> None:
    """The service accepted the cancellation after all: its earlier refusal no longer holds."""
    with db.atomic():
        db.execute(
            "DELETE FROM cancel_refusals WHERE tenant_id = ? AND subscription_id = ?"
            " AND source = ?",
            [tenant_id, subscription_id, source],
        )


def refusals(db: Database, tenant_id: str, source: Source) -> dict[str, Refusal]:
    """Each refused subscription of the tenant by ID, for one service."""
    rows = fetch(
        db,
        Refusal.from_row,
        "SELECT * FROM cancel_refusals WHERE tenant_id = ? AND source = ?",
        [tenant_id, source],
    )
    return {r.subscription_id: r for r in rows}
