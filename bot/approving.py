"""The awaiting-approval phase: the request's votes, read back from Slack once per request,
decided by `statemachine.approvals` (veto, expiry, quorum); the plan re-read right before a step
is approved; reminders to the approvers still needed."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlite_utils import Database

from bot import blocks, inventory, messages, reminders
from bot.approvers import Approvers
from bot.config import Settings
from bot.outbox import Outbox, Post
from bot.planner import Planner
from bot.reactions import Reactions
from bot.slackapi import slack_error
from bot.transitions import Transitions
from statemachine import approvals as rules
from statemachine.plan import Plan, diff
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage.approvals import RequestRow
from storage.closures import ClosureRow

log = logging.getLogger("close_account_bot.approving")


@dataclass(eq=False, kw_only=True)
class Approving:
    settings: Settings
    db: Database
    clock: Callable[[], float]
    planner: Planner
    reactions: Reactions
    approvers: Approvers
    transitions: Transitions
    outbox: Outbox
    _reconciled: set[int] = field(default_factory=set, init=False, repr=False)
    _looked: dict[int, float] = field(default_factory=dict, init=False, repr=False)

    async def run(self, row: ClosureRow, step: str) -> float | None:
        req = requests_db.open_request(self.db, row.id, step)
        if req is None:  # a crash between the state change and the request: plan again
            await self.transitions.transition(
                row.id, row.state, "replan", detail={"why": "no request"}
            )
            return None
        plan_row = closures_db.get_plan(self.db, req.plan_id)
        assert plan_row is not None
        if req.ts is not None and req.id not in self._reconciled:
            # Once per request and process: reactions made while the bot was down count too.
            await self.reactions.reconcile(row, req)
            await self._attach_plan(row, req, plan_row.plan)
            self._reconciled.add(req.id)
            self._looked[req.id] = self.clock()
        await self._look(req)
        tally = await self.reactions.tally(row, req)
        now = self.clock()
        decision = rules.decide(tally, expires_at=req.expires_at, now=now)
        if decision is rules.Decision.VETO:
            await self._end(row, req, "veto", "rejected", tally=tally)
        elif decision is rules.Decision.EXPIRE:
            await self._end(row, req, "replan", "expired", tally=tally)
        elif decision is rules.Decision.APPROVE:
            await self._approve(row, req, plan_row.plan, tally)
        else:
            # Back each poll_interval at the latest: a deleted request is noticed while waiting.
            poll = now + self.settings.timing.poll_interval
            return min(float(req.expires_at), await self._remind(row, req, tally), poll) - now
        return None

    async def _look(self, req: RequestRow) -> None:
        """Is the request message still in Slack? One reactions.get at most once per
        poll_interval per request; message_not_found goes up to the runner, which voids the
        request and plans again (a new request with a fresh expiry)."""
        if req.channel is None or req.ts is None:
            return
        now = self.clock()
        if now - self._looked.get(req.id, -math.inf) < self.settings.timing.poll_interval:
            return
        self._looked[req.id] = now
        try:
            await self.reactions.client.reactions_get(
                channel=req.channel, timestamp=req.ts, full=True
            )
        except SlackApiError as exc:
            if slack_error(exc) == "message_not_found":
                raise
            log.warning("request %s: could not read it back: %s", req.id, slack_error(exc))

    async def _end(
        self,
        row: ClosureRow,
        req: RequestRow,
        trigger: str,
        status: requests_db.RequestStatus,
        *,
        tally: rules.Tally,
    ) -> None:
        """A veto rejects the step; an expiry asks again with a fresh plan."""

        def close() -> None:
            requests_db.set_request_status(self.db, req.id, status)

        if status == "rejected":
            reason: str | None = messages.vetoed_reason(tally.vetoes)
            text = messages.vetoed(req.step, row.tenant, reason or "")
            detail = None
        else:
            reason, text, detail = None, messages.expired(req.step, tally.missing), {"why": status}
        await self.transitions.transition(
            row.id,
            row.state,
            trigger,
            tally=tally,
            reason=reason,
            plan_hash=req.plan_hash,
            also=close,
            detail=detail,
            posts=[Post(text, req.step)],
        )

    async def _approve(
        self, row: ClosureRow, req: RequestRow, plan: Plan, tally: rules.Tally
    ) -> None:
        # The message's reactions are the truth: a removal or a veto Slack never delivered.
        if await self.reactions.reconcile(row, req):
            return
        # Rule 3: re-read the inventory right before acting.
        fresh = await self.planner.plan(row)
        now = self.clock()
        if fresh.hash != req.plan_hash or fresh.blockers:
            lines = messages.plan_changes(diff(plan, fresh), fresh.blocker_texts())

            def void() -> None:
                requests_db.set_request_status(self.db, req.id, "void")
                closures_db.save_closure(self.db, row.id, at=now, changes=lines)

            await self.transitions.transition(
                row.id,
                row.state,
                "replan",
                plan_hash=req.plan_hash,
                also=void,
                detail={"why": "plan changed", "changes": lines},
                posts=[Post(messages.plan_changed(req.step, lines), req.step)],
            )
            return

        def approve() -> None:
            requests_db.set_request_status(self.db, req.id, "approved")
            closures_db.update_step(
                self.db,
                row.id,
                req.step,
                plan_id=req.plan_id,
                done=0,
                total=len(plan.items),
                started_at=now,
                checks=0,
                next_check_at=None,
            )

        await self.transitions.transition(
            row.id,
            row.state,
            "approve",
            tally=tally,
            recount=lambda: self.reactions.tally_now(row, req),
            plan_hash=req.plan_hash,
            also=approve,
            detail={"approvers": list(tally.approvals)},
            posts=[Post(messages.approved(req.step, tally.approvals, req.plan_hash), req.step)],
        )

    async def _attach_plan(self, row: ClosureRow, req: RequestRow, plan: Plan) -> None:
        """Every request's full inventory as a CSV file in the thread (kind, ID, name, what
        happens to it), and a checklist too long for its message as text, once per request.
        A refused upload is audited, said once in the thread with the command that prints the
        file, and never holds the request up: its blocks still list the items and say how many
        they leave out."""
        long_checklist = blocks.checklist_needs_file(plan)
        if not (plan.items or long_checklist) or req.channel is None:
            return
        if audit.answered(self.db, row.id, "bot", "plan_file_posted", req.id):
            return
        # Built off the loop: a 20,000-item CSV must not hold up Slack's 3 s acks.
        files = await asyncio.to_thread(self._plan_files, plan, long_checklist)
        names = [f["filename"] for f in files]
        try:
            await self.reactions.client.files_upload_v2(
                channel=req.channel,
                thread_ts=row.status_ts,
                initial_comment=messages.inventory_posted(
                    req.step, len(plan.items), plan.hash, checklist=long_checklist
                ),
                file_uploads=files,
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            error = slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("could not attach %s: %s", ", ".join(names), error)
            said = audit.answered(self.db, row.id, "bot", "plan_file_refused", req.id)
            detail = {"request_id": req.id, "files": names, "error": error}
            audit.record(
                self.db,
                row,
                "plan_file_refused",
                at=self.clock(),
                step=req.step,
                plan_hash=req.plan_hash,
                detail=detail,
            )
            if not said:  # the approvers are told once per request, not at each restart
                text = messages.inventory_refused(req.step, row.tenant, error)
                await self.outbox.say(row.id, text, step=req.step)
            return
        audit.record(
            self.db,
            row,
            "plan_file_posted",
            at=self.clock(),
            step=req.step,
            plan_hash=req.plan_hash,
            detail={"request_id": req.id, "files": names, "items": len(plan.items)},
        )

    @staticmethod
    def _plan_files(plan: Plan, long_checklist: bool) -> list[dict[str, str]]:
        files = []
        if plan.items:
            name = inventory.csv_name(plan)
            files.append(
                {"content": inventory.inventory_csv(plan), "filename": name, "title": name}
            )
        if long_checklist:
            name = inventory.checklist_name(plan)
            files.append(
                {"content": inventory.checklist_text(plan), "filename": name, "title": name}
            )
        return files

    async def _remind(self, row: ClosureRow, req: RequestRow, tally: rules.Tally) -> float:
        """Nudge the approvers still needed on `bot.reminders`' schedule (every
        reminder_interval, then a last call before expiry); returns the next time to look."""
        interval = self.settings.timing.reminder_interval
        created, expires = float(req.created_at), float(req.expires_at)
        now = self.clock()
        due = reminders.due(created, expires, interval, req.reminded_at, now)
        if due is None:
            upcoming = reminders.next_reminder(created, expires, interval, req.reminded_at)
            return math.inf if upcoming is None or now >= expires else upcoming.at
        requests_db.set_reminded(self.db, req.id, now)  # first: a reminder fires once
        waiting = [a for a in await self.approvers.eligible(row) if a not in tally.approvals]
        audit.record(
            self.db,
            row,
            "reminder",
            at=now,
            step=req.step,
            plan_hash=req.plan_hash,
            detail={"waiting_on": waiting, "missing": tally.missing, "last_call": due.last_call},
        )
        text = (
            messages.last_call_approvers(req.step, tally.missing, waiting, expires, now)
            if due.last_call
            else messages.remind_approvers(req.step, tally.missing, waiting, expires)
        )
        await self.outbox.say(row.id, text, step=req.step)
        after = reminders.next_reminder(created, expires, interval, now)
        return math.inf if after is None else after.at
