"""Approval request messages: the post that asks for a step's plan to be approved, and the edit
that shows how it ended (after a crash too, since what each message shows is recorded)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import blocks, messages
from bot.approvers import Approvers
from bot.outbox import Post
from bot.slackapi import slack_error
from statemachine.plan import Plan
from storage import approvals as requests_db
from storage import closures as closures_db
from storage.approvals import RequestRow
from storage.closures import ClosureRow


@dataclass(eq=False, kw_only=True)
class ApprovalRequests:
    db: Database
    client: AsyncWebClient
    approvers: Approvers

    async def post(
        self,
        row: ClosureRow,
        plan: Plan,
        *,
        quorum: int,
        expires_at: float,
        changes: Sequence[str],
    ) -> Post:
        """The approval request for `plan`, to queue with the request row it belongs to."""
        body, metadata = await self._message(
            row, plan, quorum=quorum, expires_at=expires_at, changes=changes
        )
        text = messages.approval_summary(plan.step, plan.hash)
        return Post(text, plan.step, "approval", body, metadata)

    async def mark_all(self, closure_id: str) -> None:
        """Edit each finished request in place to show how it ended."""
        for req in requests_db.unmarked(self.db, closure_id):
            await self.mark(req)
            requests_db.set_marked(self.db, req.id, req.status)

    async def mark(self, req: RequestRow) -> None:
        """Show how the request ended; a message deleted meanwhile has nothing to show it."""
        votes = requests_db.votes_for(self.db, req.id)
        row = closures_db.get_closure(self.db, req.closure_id)
        plan_row = closures_db.get_plan(self.db, req.plan_id)
        if row is None or plan_row is None or req.channel is None or req.ts is None:
            return
        if req.status == "void" and row.state == "aborted":  # closed by `abort`
            outcome = messages.REQUEST_ABORTED
        else:
            outcome = messages.request_outcome(
                req.status,
                [v.approver for v in votes if v.kind == "approve"],
                [v.approver for v in votes if v.kind == "veto"],
            )
        plan = plan_row.plan
        body, metadata = await self._message(
            row, plan, quorum=req.quorum, expires_at=req.expires_at, outcome=outcome
        )
        try:
            await self.client.chat_update(
                channel=req.channel,
                ts=req.ts,
                text=f"{outcome}: " + messages.approval_summary(plan.step, plan.hash),
                blocks=body,
                metadata=metadata,
            )
        except SlackApiError as exc:
            if slack_error(exc) != "message_not_found":
                raise

    async def _message(
        self,
        row: ClosureRow,
        plan: Plan,
        *,
        quorum: int,
        expires_at: float,
        changes: Sequence[str] = (),
        outcome: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        body = blocks.approval_blocks(
            plan,
            approvers=await self.approvers.eligible(row),
            quorum=quorum,
            expires_at=expires_at,
            changes=changes,
            outcome=outcome,
        )
        metadata = {
            "event_type": "close_account_approval",
            "event_payload": {
                "closure_id": row.id,
                "tenant": row.tenant,
                "step": plan.step,
                "plan_hash": plan.hash,
                "quorum": quorum,
                "expires_at": int(expires_at),
            },
        }
        return body, metadata
