"""What the bot learned from Microsoft during a closure and Microsoft does not show again: when an
Azure subscription was cancelled (Resource Manager keeps no cancellation time: the `Subscription`
of Azure/azure-rest-api-specs, specification/resources/resource-manager/Microsoft.Resources/
stable/2022-12-01/subscriptions.json has none, and `Subscription_Cancel` answers only the ID), and
what Partner Center or Resource Manager answered when it refused to cancel one.

The Activity Log (`ActivityLogs_List`, Microsoft.Insights/stable/2015-04-01/activityLogs_API.json)
records write operations, but only for 90 days (MicrosoftDocs/azure-docs, includes/
resource-manager-audit-limitations.md), needs a time range in its filter, and no document says
which event a subscription's cancellation writes or that a cancelled subscription's log stays
readable: the bot does not rely on it. The strictest reading instead: a subscription someone else
cancelled was cancelled at the latest when the bot first saw it so; the admin's checklist says the
time is unknown, and the portal's Delete and ARM's listing (Deleted) decide.

Kept in the database (`storage.learned`), so the checklists of a closure that waits days on
people still name the right date and the right refusal after a restart; without a database (the
`plan` and `check` commands, unit tests) kept in memory only. A preview (`/close-account plan`)
reads through a `reader()`: what the database knows, and what the preview itself learns kept in
memory for that preview only, so a preview's sighting never becomes a closure's cancellation
time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlite_utils import Database

from storage import learned as store
from storage.learned import Cancellation, Refusal, Source


@dataclass
class Learned:
    db: Database | None = None
    clock: Callable[[], float] = time.time
    # Reads the database but never writes it: what it learns stays in the memory below.
    read_only: bool = False
    _cancellations: dict[tuple[str, str], Cancellation] = field(default_factory=dict)
    _refusals: dict[tuple[str, str, Source], Refusal] = field(default_factory=dict)
    # Read-only: database rows this instance has seen forgotten (reactivated, accepted).
    _forgotten: set[tuple[str, str]] = field(default_factory=set)
    _cleared: set[tuple[str, str, Source]] = field(default_factory=set)

    def reader(self) -> Learned:
        """A fresh read-only view of the same database (for one preview)."""
        return Learned(self.db, self.clock, read_only=True)

    def _store(self) -> Database | None:
        """The database to write through, or None (none, or read-only: memory only)."""
        return None if self.read_only else self.db

    def cancelled(self, tenant_id: str, subscription_id: str, *, by_bot: bool) -> Cancellation:
        """Record that the subscription is cancelled as of now: the bot saw Resource Manager
        cancel it (`by_bot`), or first sees it cancelled by someone else. The first record
        stands; returns it."""
        seen = Cancellation(tenant_id, subscription_id, self.clock(), by_bot)
        if (db := self._store()) is not None:
            return store.record_cancellation(db, seen)
        known = self.cancellation(tenant_id, subscription_id)
        if known is not None:
            return known
        self._forgotten.discard((tenant_id, subscription_id))
        return self._cancellations.setdefault((tenant_id, subscription_id), seen)

    def cancellation(self, tenant_id: str, subscription_id: str) -> Cancellation | None:
        key = (tenant_id, subscription_id)
        if (db := self._store()) is not None:
            return store.cancellation_of(db, tenant_id, subscription_id)
        if key in self._cancellations:
            return self._cancellations[key]
        if self.db is None or key in self._forgotten:
            return None
        return store.cancellation_of(self.db, tenant_id, subscription_id)

    def reactivated(self, tenant_id: str, subscription_id: str) -> None:
        """The subscription is active again: forget when it was cancelled."""
        if (db := self._store()) is not None:
            store.forget_cancellation(db, tenant_id, subscription_id)
        self._cancellations.pop((tenant_id, subscription_id), None)
        self._forgotten.add((tenant_id, subscription_id))

    def refused(
        self,
        tenant_id: str,
        subscription_id: str,
        source: Source,
        *,
        status: int,
        code: str,
        reason: str,
    ) -> None:
        refusal = Refusal(tenant_id, subscription_id, source, status, code, reason, self.clock())
        if (db := self._store()) is not None:
            store.record_refusal(db, refusal)
        else:
            self._refusals[(tenant_id, subscription_id, source)] = refusal
            self._cleared.discard((tenant_id, subscription_id, source))

    def accepted(self, tenant_id: str, subscription_id: str, source: Source) -> None:
        """The service cancelled it after all: an earlier refusal no longer holds."""
        if (db := self._store()) is not None:
            store.clear_refusal(db, tenant_id, subscription_id, source)
        self._refusals.pop((tenant_id, subscription_id, source), None)
        self._cleared.add((tenant_id, subscription_id, source))

    def refusals(self, tenant_id: str, source: Source) -> dict[str, Refusal]:
        """Each subscription of the tenant that `source` refused to cancel, by ID."""
        if (db := self._store()) is not None:
            return store.refusals(db, tenant_id, source)
        kept = store.refusals(self.db, tenant_id, source) if self.db is not None else {}
        out = {sid: r for sid, r in kept.items() if (tenant_id, sid, source) not in self._cleared}
        out.update(
            {
                sid: r
                for (tid, sid, src), r in self._refusals.items()
                if (tid, src) == (tenant_id, source)
            }
        )
        return out
