"""The `Step` protocol every step module implements, what it is given, and the `$batch` deletes
the steps share.

A step does its Graph work and returns plain data; the phases (`bot.phases`) decide what the
outcome means for the closure's state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from bot.microsoft.graph import BatchRequest, Response
from bot.microsoft.tenant import Tenant
from statemachine.plan import Item, Plan

Progress = Callable[[int, int], Awaitable[None]]
BATCH = 20  # Graph's $batch limit


@dataclass(frozen=True)
class StepContext:
    """What a step may use: the tenant's clients, and what the closure recorded so far."""

    tenant: Tenant
    session: aiohttp.ClientSession  # for calls without credentials (the authority)
    ssl_context: Any
    org: Mapping[str, Any] = field(default_factory=dict)  # the live organization (planning)
    history: Mapping[str, Plan] = field(default_factory=dict)  # approved plans of started steps
    checks: int = 0  # consecutive confirmations recorded so far (a step that counts them)
    checks_needed: int = 1  # how many confirmations prove the step done


@dataclass(frozen=True)
class Outstanding:
    """What a person still has to do, as Microsoft shows it now (empty: done)."""

    lines: tuple[str, ...] = ()
    # A step that counts consecutive confirmations instead of listing items: (seen, needed).
    counter: tuple[int, int] | None = None

    @property
    def done(self) -> bool:
        return not self.lines and (self.counter is None or self.counter[0] >= self.counter[1])


class Undo(Protocol):
    """How a rollback puts back what one step changed (its approved plan says from what)."""

    kinds: frozenset[str]  # the rollback plan's item kinds this part owns

    async def plan(
        self, tenant: Tenant, done: Plan
    ) -> tuple[list[Item], list[str], dict[str, Any]]:
        """Items still to put back, checklist lines for a person, facts for the plan."""
        ...

    async def execute(
        self, tenant: Tenant, items: Sequence[Item], progress: Progress, start: int
    ) -> None: ...

    async def outstanding(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        """What a person has still to put back (empty: nothing)."""
        return []

    async def verify(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        """Read everything back; what is not at its recorded state."""
        ...


class Step(Protocol):
    """One step of the runbook (or the rollback, or a step's preparation): plan, execute, what
    the admin must do, verify, and how to undo it. Step modules subclass this protocol for its
    defaults."""

    name: str  # the step of `statemachine.steps` it acts for
    writes: bool = True  # whether `execute` changes anything through Microsoft's APIs
    undo: Undo | None = None  # None: a rollback leaves what this step did as it is
    # A preparatory action offered when the step is blocked by `preparation.clears` alone.
    preparation: Step | None = None
    clears: str = ""  # the blocker code a preparation removes
    command: str = ""  # a preparation's `/close-account` verb
    # Waits on consecutive confirmations (`checks_needed`) rather than on a checklist's items.
    counts_confirmations: bool = False

    async def plan(self, ctx: StepContext) -> Plan: ...

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        """Make the approved plan's changes from item `start` on, calling `progress` as it goes
        (which also raises if the closure stopped meanwhile)."""
        return None

    def handed_off(self, plan: Plan) -> bool:
        """Whether a person finishes the step in an admin center after `execute` (a checklist)."""
        return False

    async def outstanding(self, ctx: StepContext, plan: Plan) -> Outstanding:
        """While handed off: what is still to do (re-checked every poll interval)."""
        return Outstanding()

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        """Read the result back from Microsoft: what is still pending on a person (the step
        waits again), or raise `StepError` when the step itself did not do what it should."""
        ...

    def access_may_be_gone(self, done: int, total: int) -> bool:
        """Whether, `done` of `total` writes in, the step may have deleted the bot's own access."""
        return False


@dataclass(frozen=True)
class Refusal:
    """A write Graph refused in a `$batch`: the path and Graph's answer."""

    path: str
    response: Response

    def text(self, what: str) -> str:
        return f"{what} {self.path}: {self.response.error_text()}"


async def batched(
    tenant: Tenant,
    requests: Sequence[tuple[str, str, dict[str, Any] | None]],
    progress: Progress,
    start: int,
    *,
    total: int | None = None,
) -> list[Refusal]:
    """Send (method, path, body) requests in `$batch` chunks from `start`; a 404 counts as done.
    Returns what Graph refused."""
    refusals: list[Refusal] = []
    count = total if total is not None else len(requests)
    for offset in range(start, len(requests), BATCH):
        await progress(offset, count)  # also the check that the closure still runs
        part = [
            BatchRequest(str(i), method, path, body)
            for i, (method, path, body) in enumerate(requests[offset : offset + BATCH])
        ]
        results = await tenant.graph.batch(part, ok_statuses=(404,))
        for req in part:
            resp = results[req.id]
            if not (resp.ok or resp.status == 404):
                refusals.append(Refusal(req.url, resp))
        await progress(offset + len(part), count)
    return refusals


def deletes(paths: Sequence[str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [("DELETE", path, None) for path in paths]
