"""How long the bot waits on Microsoft instead of failing a step: an outage (no answer, 5xx,
429 after Graph's or Partner Center's own retries) and Entra's replicas catching up after a
write."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from bot.config import Settings
from bot.microsoft.azure import ArmError
from bot.microsoft.graph import GraphError
from bot.microsoft.partner import PartnerCenterError
from bot.microsoft.tenant import StepError
from bot.microsoft.tokens import TokenError
from storage.closures import ClosureRow

log = logging.getLogger("close_account_bot.runner")

# Entra's reads are eventually consistent: a read right after a write may reach a replica that
# has not caught up, and replication "might take several minutes" (MicrosoftDocs/
# SupportArticles-docs support/entra/entra-id/app-integration/
# 404-not-found-error-manage-objects-microsoft-graph.md: wait, then retry). A verification
# that finds the step's writes not (yet) visible re-reads for this long before the step fails.
SETTLE = 120.0
SETTLE_FIRST = 1.0  # the first re-read's delay; it doubles, capped at poll_interval
OUTAGE_FIRST = 1.0  # after a Microsoft outage: the first wait; doubles, capped at poll_interval
log = logging.getLogger("close_account_bot.runner")


def retry_can_fix(exc: BaseException) -> bool:
    """Whether an error from Microsoft is one that trying again later can fix: Microsoft did
    not answer (a dropped connection, a timeout), answered 5xx, or throttled (429). Graph's
    (and Partner Center's) own bounded retries were spent already. `throttledTooLong` is not
    one: after 30 minutes of 429s with nothing admitted a person should know (the step fails
    and says so); nor is a refusal from Partner Center (PartnerCenterRefused, status 409)."""
    if isinstance(exc, GraphError):
        if exc.code == "throttledTooLong":
            return False
        return exc.code == "connectionError" or exc.status == 429 or exc.status >= 500
    if isinstance(exc, PartnerCenterError):
        return exc.transient
    if isinstance(exc, ArmError):
        return exc.status in (0, 429) or exc.status >= 500
    if isinstance(exc, TokenError):  # the authority did not answer
        return isinstance(exc.__cause__, requests.RequestException)
    return False


@dataclass(eq=False)
class Patience:
    """Per closure: the outages seen in a row, and since when a verification has been waiting
    for Entra to show the step's writes."""

    settings: Settings
    clock: Callable[[], float]
    settle: float = SETTLE  # how long a verification re-reads before the step fails
    _outages: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    # (state, first failed verification, re-reads) per closure
    _settling: dict[str, tuple[str, float, int]] = field(
        default_factory=dict, init=False, repr=False
    )

    def answered(self, row: ClosureRow) -> None:
        """Microsoft answered this closure's phase: the next outage counts from one."""
        self._outages.pop(row.id, None)

    def verified(self, row: ClosureRow) -> None:
        """The step's writes are visible: the next wait for Entra starts afresh."""
        self._settling.pop(row.id, None)

    def outage(self, row: ClosureRow, exc: Exception) -> float:
        """Microsoft is down or overloaded: the step does not fail for it. Wait (exponential,
        capped at poll_interval) and do the phase again; say so in the log each time."""
        count = self._outages[row.id] = self._outages.get(row.id, 0) + 1
        wait = float(
            min(self.settings.timing.poll_interval, OUTAGE_FIRST * 2 ** min(count - 1, 30))
        )
        log.warning(
            "closure %s: Microsoft did not answer in %s (%s); trying again in %.1f s"
            " (%d in a row), the step does not fail for this",
            row.id,
            row.state,
            exc,
            wait,
            count,
            extra={"closure_id": row.id, "tenant": row.tenant, "state": row.state},
        )
        return wait

    def not_caught_up(self, row: ClosureRow, exc: StepError) -> float:
        """A verification found the step's writes not visible: Entra may not have caught up.
        Re-read (the first after SETTLE_FIRST, doubling, capped at poll_interval) for up to
        `settle` seconds since the first such read; then the step fails with what is wrong."""
        now = self.clock()
        state, since, tries = self._settling.get(row.id, (row.state, now, 0))
        if state != row.state:
            since, tries = now, 0
        waited = now - since
        if waited >= self.settle:
            self._settling.pop(row.id, None)
            raise StepError(f"{exc} (still so after re-reading for {waited:.0f} s)") from exc
        self._settling[row.id] = (row.state, since, tries + 1)
        poll = self.settings.timing.poll_interval
        wait = float(min(poll, SETTLE_FIRST * 2 ** min(tries, 30), self.settle - waited))
        log.info(
            "closure %s: %s; Entra may not have caught up yet, reading again in %.1f s",
            row.id,
            exc,
            wait,
            extra={"closure_id": row.id, "tenant": row.tenant, "state": row.state},
        )
        return wait
