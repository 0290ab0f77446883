"""Moves closures: runs each phase's Graph and Slack work, then fires the trigger that records it.

One asyncio task drives each open closure; it sleeps until woken (a vote, a command) or until
its next timer (an expiry, a poll). State changes happen under one lock per tenant around
load -> trigger -> save; Graph and Slack I/O happen outside it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import blocks
from bot.config import Settings, TenantSettings
from bot.microsoft import steps as ms
from bot.microsoft.graph import GraphError
from bot.microsoft.tokens import TokenError, jwt_claims
from statemachine import approvals as rules
from statemachine.closure import (
    STEP_TITLES,
    STEPS,
    Closure,
    attach,
    detach,
    fire,
    is_final,
    split_state,
    state_name,
)
from statemachine.plan import Plan, diff
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage import slack as slack_db

log = logging.getLogger("close_account_bot.runner")
Row = dict[str, Any]
PlanFn = Callable[[ms.Tenant, dict[str, Any]], Awaitable[Plan]]
ExecFn = Callable[[ms.Tenant, Plan, ms.Progress, int], Awaitable[None]]

PLANNERS: dict[str, PlanFn] = {
    "delete_users": ms.plan_delete_users,
    "cancel_subscriptions": ms.plan_cancel_subscriptions,
    "delete_disabled_subscriptions": ms.plan_delete_disabled_subscriptions,
    "disable_mfa": ms.plan_disable_mfa,
    "delete_directory": ms.plan_delete_directory,
}
EXECUTORS: dict[str, ExecFn] = {
    "delete_users": ms.execute_delete_users,
    "disable_mfa": ms.execute_disable_mfa,
    "delete_directory": ms.execute_delete_directory,
}
# Steps whose last part is done by a person in an admin center and re-checked by polling.
HANDED_OFF = frozenset(
    {"cancel_subscriptions", "delete_disabled_subscriptions", "delete_directory"}
)
PROGRESS_EVERY = 2.0  # seconds between status-message edits for progress (Slack tier 3)


class Interrupted(Exception):
    """The closure left the phase being worked on (an abort, say) while I/O was under way."""


@dataclass
class Reply:
    ok: bool
    text: str


class Runner:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        client: AsyncWebClient,
        tenants: dict[str, ms.Tenant],
        session: aiohttp.ClientSession,
        ssl_context: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.tenants = tenants
        self.session = session
        self.ssl_context = ssl_context
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_progress: dict[str, float] = {}
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Resume every open closure from the database; returns how many."""
        rows = closures_db.open_closures(self.db)
        for row in rows:
            self.spawn(row["id"])
        return len(rows)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def spawn(self, closure_id: str) -> None:
        task = self._tasks.get(closure_id)
        if task is None or task.done():
            self._wakers.setdefault(closure_id, asyncio.Event())
            self._tasks[closure_id] = asyncio.create_task(
                self._drive(closure_id), name=f"closure-{closure_id}"
            )

    def wake(self, closure_id: str) -> None:
        self._wakers.setdefault(closure_id, asyncio.Event()).set()

    def running(self) -> int:
        return sum(1 for t in self._tasks.values() if not t.done())

    async def idle(self) -> None:
        """Wait until no closure task is running (tests and the demo use it)."""
        while tasks := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.wait(tasks)

    def lock(self, tenant: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant, asyncio.Lock())

    # --- the drive loop ----------------------------------------------------------------------

    async def _drive(self, closure_id: str) -> None:
        waker = self._wakers.setdefault(closure_id, asyncio.Event())
        while not self._stopping:
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:
                return
            if row["status_ts"] is None:
                await self.refresh_status(closure_id)
            if is_final(row["state"]):
                return
            waker.clear()
            try:
                delay = await self._phase(row)
            except asyncio.CancelledError:
                raise
            except Interrupted:
                delay = None
            except SlackApiError as exc:
                log.warning("closure %s: Slack error %s", closure_id, exc.response.get("error"))
                delay = min(self.settings.timing.poll_interval, 30.0)
            except (GraphError, TokenError, ms.StepError, aiohttp.ClientError) as exc:
                await self._fail(row, str(exc))
                delay = None
            except Exception as exc:  # a bug must not kill the task silently
                log.exception("closure %s: unexpected error", closure_id)
                await self._fail(row, f"internal error: {type(exc).__name__}: {exc}")
                delay = None
            if delay is None:
                continue
            try:
                await asyncio.wait_for(waker.wait(), None if math.isinf(delay) else delay)
            except TimeoutError:
                pass

    async def _phase(self, row: Row) -> float | None:
        step, phase = split_state(row["state"])
        assert step is not None
        handler = {
            "planning": self._planning,
            "awaiting_approval": self._awaiting,
            "executing": self._executing,
            "waiting_external": self._waiting,
            "verifying": self._verifying,
        }.get(phase)
        if handler is None:
            return math.inf  # blocked, rejected, failed: wait for a person
        return await handler(row, step)

    # --- transitions -------------------------------------------------------------------------

    async def transition(
        self,
        closure_id: str,
        expected: str | tuple[str, ...] | None,
        trigger: str,
        *,
        actor: str = "bot",
        tally: rules.Tally | None = None,
        reason: str | None = None,
        event_id: str | None = None,
        plan_hash: str | None = None,
        detail: dict[str, Any] | None = None,
        also: Callable[[], None] | None = None,
    ) -> Row | None:
        """Load, fire, save (and run `also` in the same transaction); None if it didn't apply."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return None
        async with self.lock(row["tenant"]):
            row = closures_db.get_closure(self.db, closure_id)
            if row is None or is_final(row["state"]):
                return None
            if expected is not None and row["state"] not in (
                (expected,) if isinstance(expected, str) else expected
            ):
                return None
            model = attach(
                Closure(
                    id=row["id"],
                    tenant=row["tenant"],
                    tenant_id=row["tenant_id"],
                    requester=row["requester"],
                    state=row["state"],
                    failed_phase=row["failed_phase"],
                    tally=tally,
                )
            )
            try:
                if not getattr(model, f"may_{trigger}")() or not fire(model, trigger):
                    return None
            finally:
                detach(model)
            now = self.clock()
            with self.db.atomic():
                closures_db.save_closure(
                    self.db,
                    closure_id,
                    at=now,
                    state=model.state,
                    failed_phase=model.failed_phase,
                    clear_failure=model.failed_phase is None,
                    reason=reason,
                )
                audit.append(
                    self.db,
                    tenant=row["tenant"],
                    closure_id=closure_id,
                    at=now,
                    actor=actor,
                    action=trigger,
                    step=split_state(row["state"])[0],
                    plan_hash=plan_hash,
                    event_id=event_id,
                    detail={"from": row["state"], "to": model.state, **(detail or {})},
                )
                if also is not None:
                    also()
            new = closures_db.get_closure(self.db, closure_id)
        self.wake(closure_id)
        return new

    async def _fail(self, row: Row, reason: str) -> None:
        step, _ = split_state(row["state"])
        if await self.transition(
            row["id"], row["state"], "fail", reason=reason, detail={"error": reason}
        ):
            await self.say(
                row["id"],
                f":warning: Step {self._no(step)} failed: {reason}\nAn admin can run"
                f" `/close-account retry {row['tenant']}` to resume it, or `abort`.",
                step=step,
            )
            await self.refresh_status(row["id"])

    # --- Slack output ------------------------------------------------------------------------

    def _no(self, step: str | None) -> int:
        return STEPS.index(step) + 1 if step else 0

    async def say(
        self,
        closure_id: str,
        text: str,
        *,
        step: str | None = None,
        kind: str = "reply",
        blocks_: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str | None:
        """Post in the closure's thread; returns the message ts."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return None
        if row["status_ts"] is None:
            await self.refresh_status(closure_id)
            row = closures_db.get_closure(self.db, closure_id)
            assert row is not None
        kwargs: dict[str, Any] = {
            "channel": row["channel"],
            "text": text[:39000],
            "thread_ts": row["status_ts"],
        }
        if blocks_ is not None:
            kwargs["blocks"] = blocks_
        if metadata is not None:
            kwargs["metadata"] = metadata
        resp = await self.client.chat_postMessage(**kwargs)
        ts = str(resp["ts"])
        slack_db.record_message(
            self.db,
            closure_id=closure_id,
            step=step,
            kind=kind,
            channel=str(resp["channel"]),
            ts=ts,
            thread_ts=row["status_ts"],
            at=self.clock(),
        )
        return ts

    def status_view(self, row: Row, progress: blocks.Progress | None = None) -> blocks.StatusView:
        approved: dict[str, list[str]] = {}
        for req in requests_db.requests_of(self.db, row["id"]):
            if req["status"] == "approved":
                approved[req["step"]] = [
                    v["approver"]
                    for v in requests_db.votes_for(self.db, req["id"])
                    if v["kind"] == "approve"
                ]
        step, phase = split_state(row["state"])
        note = row["reason"] if phase in ("blocked", "failed", "rejected", "aborted") else None
        if step and phase == "awaiting_approval":
            open_req = requests_db.open_request(self.db, row["id"], step)
            if open_req is not None:
                votes = [
                    v["approver"]
                    for v in requests_db.votes_for(self.db, open_req["id"])
                    if v["kind"] == "approve"
                ]
                note = f"Approvals: {len(votes)}/{open_req['quorum']}" + (
                    f" ({blocks.mentions(votes)})" if votes else ""
                )
        if step and phase == "executing" and progress is None:
            info = closures_db.get_step(self.db, row["id"], step)
            if info["total"]:
                progress = blocks.Progress(info["done"], info["total"])
        return blocks.StatusView(
            closure_id=row["id"],
            tenant=row["tenant"],
            tenant_id=row["tenant_id"],
            state=row["state"],
            requester=row["requester"],
            display_name=row["extra"].get("display_name"),
            note=note,
            approvals=approved,
            progress=progress,
        )

    async def refresh_status(
        self, closure_id: str, progress: blocks.Progress | None = None
    ) -> None:
        """Post the status message once, then edit it in place."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return
        view = self.status_view(row, progress)
        metadata = {
            "event_type": "close_account_status",
            "event_payload": {
                "closure_id": row["id"],
                "tenant": row["tenant"],
                "tenant_id": row["tenant_id"],
                "state": row["state"],
            },
        }
        text = blocks.status_text(view)
        body = blocks.status_blocks(view)
        if row["status_ts"] is None:
            resp = await self.client.chat_postMessage(
                channel=row["channel"], text=text, blocks=body, metadata=metadata
            )
            ts = str(resp["ts"])
            closures_db.save_closure(self.db, closure_id, at=self.clock(), status_ts=ts)
            slack_db.record_message(
                self.db,
                closure_id=closure_id,
                step=None,
                kind="status",
                channel=str(resp["channel"]),
                ts=ts,
                thread_ts=None,
                at=self.clock(),
            )
        else:
            await self.client.chat_update(
                channel=row["channel"],
                ts=row["status_ts"],
                text=text,
                blocks=body,
                metadata=metadata,
            )

    # --- phases ------------------------------------------------------------------------------

    def tenant_of(self, row: Row) -> ms.Tenant:
        return self.tenants[row["tenant"]]

    def settings_of(self, row: Row) -> TenantSettings:
        return self.tenants[row["tenant"]].settings

    async def _organization(self, row: Row) -> dict[str, Any]:
        """The live organization, refusing to go on if it is not the configured tenant."""
        tenant = self.tenant_of(row)
        org = await ms.organization(tenant)
        claims = jwt_claims(await tenant.graph.tokens.token())
        tid = claims.get("tid")
        if org["id"] != row["tenant_id"] or (tid is not None and tid != row["tenant_id"]):
            raise ms.StepError(
                f"wrong tenant: the token reaches {tid or org['id']}, the config says"
                f" {row['tenant_id']}; nothing was changed"
            )
        if org.get("display_name") and row["extra"].get("display_name") != org["display_name"]:
            extra = {**row["extra"], "display_name": org["display_name"]}
            closures_db.save_closure(self.db, row["id"], at=self.clock(), extra=extra)
        return org

    async def _planning(self, row: Row, step: str) -> float | None:
        tenant = self.tenant_of(row)
        org = await self._organization(row)
        plan = await PLANNERS[step](tenant, org)
        now = self.clock()
        settings = self.settings_of(row)
        plan_id = closures_db.save_plan(
            self.db,
            closure_id=row["id"],
            step=step,
            plan_hash=plan.hash,
            content=plan.as_dict(),
            at=now,
        )
        audit.append(
            self.db,
            tenant=row["tenant"],
            closure_id=row["id"],
            at=now,
            actor="bot",
            action="plan",
            step=step,
            plan_hash=plan.hash,
            detail={"counts": plan.counts(), "blockers": list(plan.blockers), "plan_id": plan_id},
        )
        no = self._no(step)
        if plan.blockers:
            reason = " ".join(plan.blockers)
            if await self.transition(
                row["id"], row["state"], "block", reason=reason, plan_hash=plan.hash
            ):
                await self.say(
                    row["id"],
                    f":no_entry: Step {no} ({STEP_TITLES[step]}) is blocked:\n"
                    + "\n".join(f"• {b}" for b in plan.blockers)
                    + f"\nAfter the fix, an admin runs `/close-account retry {row['tenant']}`.",
                    step=step,
                )
                await self.refresh_status(row["id"])
            return None
        if not plan.items:
            if await self.transition(row["id"], row["state"], "nothing_to_do", plan_hash=plan.hash):
                await self.say(
                    row["id"],
                    f"Step {no} ({STEP_TITLES[step]}): nothing to do; verifying.",
                    step=step,
                )
                await self.refresh_status(row["id"])
            return None
        quorum = settings.quorum_for(step)
        expires_at = now + self.settings.timing.approval_ttl
        created: list[int] = []

        def open_request() -> None:
            created.append(
                requests_db.create_request(
                    self.db,
                    closure_id=row["id"],
                    step=step,
                    plan_id=plan_id,
                    plan_hash=plan.hash,
                    quorum=quorum,
                    expires_at=expires_at,
                    at=now,
                )
            )

        changes = row["extra"].get("changes") or []
        if await self.transition(
            row["id"], row["state"], "plan_ready", plan_hash=plan.hash, also=open_request
        ):
            await self._post_request(row["id"], created[0], plan, changes)
            if changes:
                extra = {k: v for k, v in row["extra"].items() if k != "changes"}
                fresh = closures_db.get_closure(self.db, row["id"])
                if fresh is not None:
                    extra["display_name"] = fresh["extra"].get("display_name")
                closures_db.save_closure(self.db, row["id"], at=self.clock(), extra=extra)
            await self.refresh_status(row["id"])
        return None

    async def _post_request(
        self, closure_id: str, request_id: int, plan: Plan, changes: list[str]
    ) -> None:
        row = closures_db.get_closure(self.db, closure_id)
        req = requests_db.get_request(self.db, request_id)
        if row is None or req is None:
            return
        settings = self.settings_of(row)
        eligible = rules.eligible_approvers(settings.approvers, row["requester"])
        body = blocks.approval_blocks(
            plan,
            approvers=eligible,
            quorum=req["quorum"],
            expires_at=req["expires_at"],
            changes=changes,
        )
        metadata = {
            "event_type": "close_account_approval",
            "event_payload": {
                "closure_id": closure_id,
                "tenant": row["tenant"],
                "step": plan.step,
                "plan_hash": plan.hash,
                "quorum": req["quorum"],
                "expires_at": int(req["expires_at"]),
            },
        }
        ts = await self.say(
            closure_id,
            blocks.approval_text(plan, self._no(plan.step)),
            step=plan.step,
            kind="approval",
            blocks_=body,
            metadata=metadata,
        )
        if ts is not None:
            requests_db.set_request_message(self.db, request_id, row["channel"], ts)

    def _tally(self, row: Row, req: Row) -> rules.Tally:
        settings = self.settings_of(row)
        votes = [
            rules.Vote(v["approver"], v["kind"], req["plan_hash"])
            for v in requests_db.votes_for(self.db, req["id"])
        ]
        return rules.tally(
            votes,
            approvers=settings.approvers,
            requester=row["requester"],
            quorum=req["quorum"],
            plan_hash=req["plan_hash"],
        )

    async def _awaiting(self, row: Row, step: str) -> float | None:
        req = requests_db.open_request(self.db, row["id"], step)
        if req is None:  # a crash between the state change and the request: plan again
            await self.transition(row["id"], row["state"], "replan", detail={"why": "no request"})
            return None
        plan_row = closures_db.get_plan(self.db, req["plan_id"])
        assert plan_row is not None
        plan = Plan.from_dict(plan_row["content"])
        if req["ts"] is None:
            await self._post_request(row["id"], req["id"], plan, [])
        tally = self._tally(row, req)
        now = self.clock()
        if tally.vetoed:

            def reject() -> None:
                requests_db.set_request_status(self.db, req["id"], "rejected")

            reason = f"vetoed by {blocks.mentions(tally.vetoes)}"
            if await self.transition(
                row["id"],
                row["state"],
                "veto",
                tally=tally,
                reason=reason,
                plan_hash=req["plan_hash"],
                also=reject,
            ):
                await self.say(
                    row["id"],
                    f":x: Step {self._no(step)} was {reason}. Nothing was changed. An admin can"
                    f" `/close-account retry {row['tenant']}` (re-reads the plan and asks again)"
                    " or `abort` it.",
                    step=step,
                )
                await self.refresh_status(row["id"])
            return None
        if tally.met:
            # Rule 3: re-read the inventory right before acting.
            org = await self._organization(row)
            fresh = await PLANNERS[step](self.tenant_of(row), org)
            if fresh.hash != req["plan_hash"] or fresh.blockers:
                change = diff(plan, fresh)
                lines = [f"• added: `{i.name or i.id}`" for i in change.added[:10]]
                lines += [f"• removed: `{i.name or i.id}`" for i in change.removed[:10]]
                lines += [f"• changed: `{i.name or i.id}`" for i in change.changed[:10]]
                lines += [f"• blocker: {b}" for b in fresh.blockers]

                def void() -> None:
                    requests_db.set_request_status(self.db, req["id"], "void")
                    closures_db.save_closure(
                        self.db, row["id"], at=now, extra={**row["extra"], "changes": lines}
                    )

                if await self.transition(
                    row["id"],
                    row["state"],
                    "replan",
                    plan_hash=req["plan_hash"],
                    also=void,
                    detail={"why": "plan changed", "changes": lines},
                ):
                    await self.say(
                        row["id"],
                        f":arrows_counterclockwise: The inventory for step {self._no(step)} changed"
                        " since it was approved; the approvals are void and a new request follows."
                        "\n" + "\n".join(lines),
                        step=step,
                    )
                return None

            def approve() -> None:
                requests_db.set_request_status(self.db, req["id"], "approved")
                closures_db.update_step(
                    self.db,
                    row["id"],
                    step,
                    plan_id=req["plan_id"],
                    done=0,
                    total=len(plan.items),
                    started_at=now,
                    checks=0,
                    next_check_at=None,
                )

            if await self.transition(
                row["id"],
                row["state"],
                "approve",
                tally=tally,
                plan_hash=req["plan_hash"],
                also=approve,
                detail={"approvers": list(tally.approvals)},
            ):
                await self.say(
                    row["id"],
                    f":white_check_mark: Step {self._no(step)} approved by"
                    f" {blocks.mentions(tally.approvals)} (plan `{req['plan_hash'][:12]}`);"
                    " starting.",
                    step=step,
                )
                await self.refresh_status(row["id"])
            return None
        if rules.expired(req["expires_at"], now):

            def expire() -> None:
                requests_db.set_request_status(self.db, req["id"], "expired")

            if await self.transition(
                row["id"],
                row["state"],
                "replan",
                plan_hash=req["plan_hash"],
                also=expire,
                detail={"why": "expired"},
            ):
                await self.say(
                    row["id"],
                    f":hourglass: The approval request for step {self._no(step)} expired"
                    f" ({tally.missing} approval(s) missing); a fresh plan follows.",
                    step=step,
                )
            return None
        return float(req["expires_at"] - now)

    async def _executing(self, row: Row, step: str) -> float | None:
        info = closures_db.get_step(self.db, row["id"], step)
        plan_row = closures_db.get_plan(self.db, info["plan_id"]) if info["plan_id"] else None
        if plan_row is None:
            raise ms.StepError("no approved plan recorded for this step")
        plan = Plan.from_dict(plan_row["content"])
        executor = EXECUTORS.get(step)
        if executor is not None:
            await self._organization(row)  # the right tenant, right before destroying
            started = self.clock()
            first = info["done"]

            async def progress(done: int, total: int) -> None:
                now = self.clock()
                current = closures_db.get_closure(self.db, row["id"])
                closures_db.update_step(self.db, row["id"], step, done=done, total=total)
                if current is None or current["state"] != row["state"]:
                    raise Interrupted()
                if now - self._last_progress.get(row["id"], 0.0) >= PROGRESS_EVERY or done == total:
                    self._last_progress[row["id"]] = now
                    rate = (done - first) / (now - started) if now > started else None
                    eta = (total - done) / rate if rate else None
                    await self.refresh_status(row["id"], blocks.Progress(done, total, rate, eta))

            await executor(self.tenant_of(row), plan, progress, info["done"])
            audit.append(
                self.db,
                tenant=row["tenant"],
                closure_id=row["id"],
                at=self.clock(),
                actor="bot",
                action="graph_writes",
                step=step,
                plan_hash=plan.hash,
                detail={"counts": plan.counts(), "elapsed_s": round(self.clock() - started, 3)},
            )
        if step in HANDED_OFF:
            if await self.transition(row["id"], row["state"], "hand_off", plan_hash=plan.hash):
                await self._post_checklist(row, step, plan)
                await self.refresh_status(row["id"])
            return None
        if await self.transition(row["id"], row["state"], "executed", plan_hash=plan.hash):
            await self.say(
                row["id"],
                f"Step {self._no(step)}: {len(plan.items):,} changes made through Graph;"
                " verifying from Microsoft's side.",
                step=step,
            )
            await self.refresh_status(row["id"])
        return None

    async def _post_checklist(self, row: Row, step: str, plan: Plan) -> None:
        settings = self.settings_of(row)
        retained = settings.retain[0] if settings.retain else "the retained Global Administrator"
        footer = (
            f"Sign in as {retained}. The bot re-checks Microsoft every"
            f" {blocks._duration(self.settings.timing.poll_interval)} and moves on by itself."
        )
        if step == "delete_directory":
            footer = (
                "The bot's own access is gone now. It checks Microsoft's authority every"
                f" {blocks._duration(self.settings.timing.poll_interval)} and closes the closure"
                f" after {self.settings.timing.tenant_gone_checks} consecutive"
                " 'tenant not found' answers."
            )
        title = f"Step {self._no(step)}, {STEP_TITLES[step]}: checklist for a Global Administrator"
        await self.say(
            row["id"],
            title + "\n" + "\n".join(plan.checklist),
            step=step,
            kind="checklist",
            blocks_=blocks.checklist_blocks(title, plan.checklist, footer),
        )

    async def _waiting(self, row: Row, step: str) -> float | None:
        info = closures_db.get_step(self.db, row["id"], step)
        now = self.clock()
        poll = self.settings.timing.poll_interval
        if info["next_check_at"] and now < info["next_check_at"]:
            return float(info["next_check_at"] - now)
        if step == "delete_directory":
            settings = self.settings_of(row)
            gone = await ms.tenant_gone(self.session, settings, self.ssl_context)
            checks = info["checks"] + 1 if gone else 0
            closures_db.update_step(
                self.db, row["id"], step, checks=checks, next_check_at=now + poll
            )
            remaining = (
                []
                if checks >= self.settings.timing.tenant_gone_checks
                else [
                    f"tenant-not-found answers: {checks}/{self.settings.timing.tenant_gone_checks}"
                ]
            )
        else:
            check = (
                ms.check_cancel_subscriptions
                if step == "cancel_subscriptions"
                else ms.check_delete_disabled_subscriptions
            )
            remaining = await check(self.tenant_of(row))
            closures_db.update_step(self.db, row["id"], step, next_check_at=now + poll)
        if not remaining:
            if await self.transition(row["id"], row["state"], "external_done"):
                await self.say(
                    row["id"],
                    f"Microsoft shows step {self._no(step)} done; verifying.",
                    step=step,
                )
                await self.refresh_status(row["id"])
            return None
        if remaining != info["detail"].get("remaining"):
            closures_db.update_step(self.db, row["id"], step, detail={"remaining": remaining})
            if step != "delete_directory" or (
                info["checks"] == 0
                and not remaining[0].endswith(f" 0/{self.settings.timing.tenant_gone_checks}")
            ):
                await self.say(
                    row["id"],
                    f"Step {self._no(step)} is waiting on:\n"
                    + "\n".join(f"• {r}" for r in remaining),
                    step=step,
                )
        return poll

    async def _verifying(self, row: Row, step: str) -> float | None:
        tenant = self.tenant_of(row)
        problems: list[str]
        if step == "delete_users":
            problems = await ms.verify_delete_users(tenant)
        elif step == "disable_mfa":
            problems = await ms.verify_disable_mfa(tenant)
        elif step == "cancel_subscriptions":
            problems = await ms.check_cancel_subscriptions(tenant)
        elif step == "delete_disabled_subscriptions":
            problems = await ms.check_delete_disabled_subscriptions(tenant)
        else:
            info = closures_db.get_step(self.db, row["id"], step)
            needed = self.settings.timing.tenant_gone_checks
            problems = [] if info["checks"] >= needed else [f"{info['checks']}/{needed} checks"]
        if problems:
            if step in HANDED_OFF:
                closures_db.update_step(self.db, row["id"], step, next_check_at=None)
                await self.transition(
                    row["id"], row["state"], "not_yet", detail={"problems": problems}
                )
                return None
            raise ms.StepError("verification failed: " + "; ".join(problems))

        def finish() -> None:
            closures_db.update_step(self.db, row["id"], step, finished_at=self.clock())

        new = await self.transition(row["id"], row["state"], "verified", also=finish)
        if new:
            await self.say(
                row["id"],
                f":white_check_mark: Step {self._no(step)} ({STEP_TITLES[step]}) verified from"
                " Microsoft's side.",
                step=step,
            )
            if new["state"] == "closed":
                await self.say(
                    row["id"],
                    f":checkered_flag: Tenant {row['tenant']} ({row['tenant_id']}) is closed:"
                    " Microsoft no longer knows it.",
                )
            await self.refresh_status(row["id"])
        return None

    # --- what people do ----------------------------------------------------------------------

    def is_admin(self, user: str) -> bool:
        return user in self.settings.slack.admins

    async def start_closure(self, tenant_name: str, user: str) -> Reply:
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may start a closure.")
        tenant = self.settings.tenant(tenant_name)
        if tenant is None:
            names = ", ".join(t.name for t in self.settings.tenants)
            return Reply(False, f"Unknown tenant `{tenant_name}`. Configured tenants: {names}.")
        for step in STEPS:
            if not rules.quorum_reachable(tenant.approvers, user, tenant.quorum_for(step)):
                return Reply(
                    False,
                    f"Refused: step {self._no(step)} needs {tenant.quorum_for(step)} approvals but"
                    f" only {len(rules.eligible_approvers(tenant.approvers, user))} approvers"
                    " other than you are configured (the requester never counts).",
                )
        closure_id = uuid.uuid4().hex[:12]
        now = self.clock()
        try:
            with self.db.atomic():
                closures_db.create_closure(
                    self.db,
                    closure_id=closure_id,
                    tenant=tenant.name,
                    tenant_id=tenant.tenant_id,
                    requester=user,
                    state=state_name(STEPS[0], "planning"),
                    channel=self.settings.slack.progress_channel,
                    at=now,
                )
                audit.append(
                    self.db,
                    tenant=tenant.name,
                    closure_id=closure_id,
                    at=now,
                    actor=user,
                    action="start",
                    detail={},
                )
        except closures_db.OpenClosureExists:
            open_row = closures_db.open_closure_for(self.db, tenant.name)
            state = open_row["state"] if open_row else "unknown"
            return Reply(False, f"A closure of {tenant.name} is already open ({state}).")
        await self.refresh_status(closure_id)
        self.spawn(closure_id)
        return Reply(
            True,
            f"Closure of {tenant.name} started; follow it in"
            f" <#{self.settings.slack.progress_channel}>.",
        )

    async def abort(self, tenant_name: str, user: str, reason: str) -> Reply:
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may abort a closure.")
        row = self._open(tenant_name)
        if row is None:
            return Reply(False, f"No open closure for `{tenant_name}`.")
        why = reason or "no reason given"
        if await self.transition(
            row["id"], None, "abort", actor=user, reason=f"aborted: {why}", detail={"reason": why}
        ):
            await self.say(row["id"], f":octagonal_sign: Aborted by <@{user}>: {why}")
            await self.refresh_status(row["id"])
            return Reply(True, f"Closure of {row['tenant']} aborted.")
        return Reply(False, f"The closure of {row['tenant']} could not be aborted now.")

    async def retry(self, tenant_name: str, user: str) -> Reply:
        if not self.is_admin(user):
            return Reply(False, "Only the configured admins may retry a closure.")
        row = self._open(tenant_name)
        if row is None:
            return Reply(False, f"No open closure for `{tenant_name}`.")
        step, phase = split_state(row["state"])
        if phase not in ("blocked", "rejected", "failed"):
            return Reply(False, f"Nothing to retry: the closure is {row['state']}.")
        if await self.transition(row["id"], row["state"], "retry", actor=user):
            what = "resuming" if phase == "failed" else "planning again"
            await self.say(
                row["id"], f":repeat: <@{user}> retried step {self._no(step)}; {what}.", step=step
            )
            await self.refresh_status(row["id"])
            self.spawn(row["id"])
            return Reply(True, f"Retrying {row['tenant']}: {what}.")
        return Reply(False, "Retry did not apply; try `status`.")

    def _open(self, tenant_name: str) -> Row | None:
        tenant = self.settings.tenant(tenant_name)
        return closures_db.open_closure_for(self.db, tenant.name) if tenant else None

    async def reaction(
        self, *, user: str, reaction: str, channel: str, ts: str, added: bool, event_id: str
    ) -> None:
        """A reaction on a message: a vote, veto or withdrawal when it is on an open request."""
        kind = rules.reaction_kind(reaction)
        req = requests_db.request_at(self.db, channel, ts)
        if kind is None or req is None:
            return
        row = closures_db.get_closure(self.db, req["closure_id"])
        if row is None:
            return
        settings = self.settings_of(row)
        now = self.clock()
        action = ("veto" if kind == "veto" else "vote") if added else "withdrawal"
        refused = rules.refusal(user, approvers=settings.approvers, requester=row["requester"])
        counted = False
        async with self.lock(row["tenant"]):
            current = requests_db.get_request(self.db, req["id"])
            assert current is not None
            if current["status"] != "open":
                refused = refused or f"the request is {current['status']}; the step has moved on"
            with self.db.atomic():
                if not slack_db.claim_event(self.db, event_id, now):
                    return  # a redelivery of an event already processed
                if refused is None:
                    if added:
                        requests_db.cast_vote(
                            self.db,
                            request_id=req["id"],
                            approver=user,
                            kind=kind,
                            event_id=event_id,
                            at=now,
                        )
                    else:
                        requests_db.withdraw_vote(
                            self.db, request_id=req["id"], approver=user, kind=kind
                        )
                    counted = True
                audit.append(
                    self.db,
                    tenant=row["tenant"],
                    closure_id=row["id"],
                    at=now,
                    actor=user,
                    action=action if counted else f"{action}_ignored",
                    step=req["step"],
                    plan_hash=req["plan_hash"],
                    event_id=event_id,
                    detail={"reaction": reaction, **({"why": refused} if refused else {})},
                )
        if counted:
            self.wake(row["id"])
            await self.refresh_status(row["id"])
        elif added and current["status"] == "open":
            await self.say(
                row["id"], f"<@{user}>'s reaction does not count: {refused}.", step=req["step"]
            )
