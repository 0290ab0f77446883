"""Votes: reactions on approval requests -> `statemachine.approvals` -> storage, and reading the
request message's reactions back when Slack may not have delivered one. The tally the phases
act on is counted here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot import messages
from bot.approvers import Approvers
from bot.identity import Directory
from bot.outbox import Outbox
from bot.status import Status
from bot.transitions import Transitions
from statemachine import approvals as rules
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage import slack as slack_db
from storage.approvals import RequestRow
from storage.closures import ClosureRow
from storage.db import transaction

log = logging.getLogger("close_account_bot.reactions")


@dataclass(eq=False, kw_only=True)
class Reactions:
    db: Database
    client: AsyncWebClient
    clock: Callable[[], float]
    approvers: Approvers
    directory: Directory
    transitions: Transitions
    outbox: Outbox
    status: Status
    # Slack-facing work after Slack has its answer.
    background: Callable[[Coroutine[Any, Any, None]], None]

    async def reaction(
        self, *, user: str, reaction: str, channel: str, ts: str, added: bool, event_id: str
    ) -> None:
        """A reaction on a message: a vote, veto or withdrawal when it is on an open request.
        Nothing here waits on a send lock or on Slack's rate limits: Slack has its answer
        first, and what the reactor is told goes after it."""
        kind = rules.reaction_kind(reaction)
        req = requests_db.request_at(self.db, channel, ts)
        if kind is None:
            if added and req is not None and rules.looks_like_veto(reaction):
                self._hint(req, user, reaction, event_id)
            return
        if req is None:
            # The request may be posted already but its ts not yet recorded: look again once
            # the posts under way are recorded, after Slack has its answer (the bot reads the
            # request's reactions back before it acts, should this one be lost).
            self.background(
                self._after_posts(
                    user=user,
                    reaction=reaction,
                    channel=channel,
                    ts=ts,
                    added=added,
                    event_id=event_id,
                )
            )
            return
        await self._on_request(req, user, reaction, kind, added=added, event_id=event_id)

    async def _after_posts(
        self, *, user: str, reaction: str, channel: str, ts: str, added: bool, event_id: str
    ) -> None:
        await self.outbox.settled()
        req = requests_db.request_at(self.db, channel, ts)
        kind = rules.reaction_kind(reaction)
        if req is not None and kind is not None:
            await self._on_request(req, user, reaction, kind, added=added, event_id=event_id)

    def _hint(self, req: RequestRow, user: str, reaction: str, event_id: str) -> None:
        """A veto-looking emoji on an open request: say once per person and request how to
        veto, to that person only."""
        row = closures_db.get_closure(self.db, req.closure_id)
        if row is None or req.status != "open":
            return
        with transaction(self.db):
            if not slack_db.claim_event(self.db, event_id, self.clock()):
                return
            if audit.answered(self.db, row.id, user, "veto_hint", req.id):
                return
            self._record(
                row,
                req,
                user,
                "veto_hint",
                event_id=event_id,
                detail={"reaction": reaction, "request_id": req.id},
            )
        self.background(self._tell(row, req, user, messages.veto_hint(reaction)))

    async def _tell(self, row: ClosureRow, req: RequestRow, user: str, text: str) -> None:
        """A word to one person about their reaction: ephemeral in the request's thread; a
        thread post only when Slack refuses the ephemeral."""
        try:
            await self.client.chat_postEphemeral(
                channel=req.channel or row.channel,
                user=user,
                text=text,
                thread_ts=row.status_ts,
            )
        except SlackApiError as exc:
            log.info("ephemeral to %s refused (%s); posting in the thread", user, exc)
            await self.outbox.say(row.id, text, step=req.step)

    async def _on_request(
        self,
        req: RequestRow,
        user: str,
        reaction: str,
        kind: rules.VoteKind,
        *,
        added: bool,
        event_id: str,
    ) -> None:
        row = closures_db.get_closure(self.db, req.closure_id)
        if row is None:
            return
        now = self.clock()
        action = ("veto" if kind == "veto" else "vote") if added else "withdrawal"
        refusal = self.approvers.refusal(row, user)
        if refusal is None and added and not await self.directory.active(user, fresh=True):
            refusal = rules.Refusal.DEACTIVATED
        async with self.transitions.lock(row.tenant):
            current = requests_db.get_request(self.db, req.id)
            assert current is not None
            previous = next(
                (v.kind for v in requests_db.votes_for(self.db, req.id) if v.approver == user),
                None,
            )
            refusal = refusal or rules.vote_refusal(
                status=current.status,
                expired=rules.expired(current.expires_at, now),
                added=added,
                kind=kind,
                previous=previous,
            )
            why = None if refusal is None else messages.refusal(refusal, current.status)
            with transaction(self.db):
                if not slack_db.claim_event(self.db, event_id, now):
                    return  # a redelivery of an event already processed
                if refusal is None:
                    self._store(
                        row,
                        req,
                        (user, kind),
                        cast=added,
                        event_id=event_id,
                        action=action,
                        detail={"reaction": reaction},
                    )
                else:
                    self._record(
                        row,
                        req,
                        user,
                        f"{action}_ignored",
                        event_id=event_id,
                        detail={"reaction": reaction, "why": why},
                    )
                # A refusal is answered once per person and request, so reactions cannot
                # flood the thread (or hold up what it says next).
                answer = (
                    refusal is not None
                    and added
                    and current.status == "open"
                    and not audit.answered(self.db, row.id, user, "refusal_answered", req.id)
                )
                if answer:
                    self._record(
                        row,
                        req,
                        user,
                        "refusal_answered",
                        event_id=event_id,
                        detail={"why": why, "request_id": req.id},
                    )
        # Slack has its answer once the vote is stored; what Slack is told of it goes after.
        if refusal is None:
            self.transitions.wake(row.id)
            self.status.request(row.id)
        elif answer and why is not None:
            self.background(self._tell(row, req, user, messages.reaction_refused(user, why)))

    def _record(
        self,
        row: ClosureRow,
        req: RequestRow,
        user: str,
        action: str,
        *,
        event_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        audit.record(
            self.db,
            row,
            action,
            at=self.clock(),
            actor=user,
            step=req.step,
            plan_hash=req.plan_hash,
            event_id=event_id,
            detail=detail,
        )

    def _store(
        self,
        row: ClosureRow,
        req: RequestRow,
        vote: tuple[str, rules.VoteKind],
        *,
        cast: bool,
        event_id: str | None,
        action: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Cast or withdraw one approver's vote, and audit it."""
        user, kind = vote
        if cast:
            requests_db.cast_vote(
                self.db,
                request_id=req.id,
                approver=user,
                kind=kind,
                event_id=event_id,
                at=self.clock(),
            )
        else:
            requests_db.withdraw_vote(self.db, request_id=req.id, approver=user, kind=kind)
        self._record(row, req, user, action, event_id=event_id, detail=detail)

    async def tally(self, row: ClosureRow, req: RequestRow) -> rules.Tally:
        """Rule 2 over the stored votes; a vote by an account deactivated since no longer counts."""
        for vote in requests_db.votes_for(self.db, req.id):
            await self.directory.active(vote.approver)  # refresh what the cache knows
        return self.tally_now(row, req)

    def tally_now(self, row: ClosureRow, req: RequestRow) -> rules.Tally:
        """The tally from the database as it is now, with no I/O: called under the tenant's
        lock right before a step is approved, so a veto cast meanwhile is never missed."""
        votes = [
            rules.Vote(v.approver, v.kind, req.plan_hash)
            for v in requests_db.votes_for(self.db, req.id)
            if not self.directory.known_inactive(v.approver)
        ]
        return rules.tally(
            votes,
            approvers=self.approvers.ids(row),
            requesters=self.approvers.requesters(row),
            quorum=req.quorum,
            plan_hash=req.plan_hash,
        )

    async def reconcile(self, row: ClosureRow, req: RequestRow) -> bool:
        """Make the stored votes match the reactions on the request message (Slack may not
        have delivered a reaction: the bot was down, retries ran out). True if anything changed."""
        assert req.channel is not None and req.ts is not None
        resp = await self.client.reactions_get(channel=req.channel, timestamp=req.ts, full=True)
        present: set[tuple[str, rules.VoteKind]] = set()
        for reaction in (resp.get("message") or {}).get("reactions") or []:
            kind = rules.reaction_kind(str(reaction.get("name", "")))
            if kind is not None:
                present.update((str(u), kind) for u in reaction.get("users") or [])
        eligible = [
            u
            for u in dict.fromkeys(u for u, _ in present)
            if self.approvers.refusal(row, u) is None and await self.directory.active(u)
        ]
        async with self.transitions.lock(row.tenant):
            current = requests_db.get_request(self.db, req.id)
            if current is None or current.status != "open":
                return False
            stored = {v.approver: v.kind for v in requests_db.votes_for(self.db, req.id)}
            changes = rules.reconcile(stored, present, eligible)
            with transaction(self.db):
                for vote in changes.withdrawn:
                    self._store(
                        row,
                        req,
                        vote,
                        cast=False,
                        event_id=None,
                        action="withdrawal_reconciled",
                        detail={"kind": vote[1]},
                    )
                for vote in changes.cast:
                    action = f"{'veto' if vote[1] == 'veto' else 'vote'}_reconciled"
                    self._store(row, req, vote, cast=True, event_id=None, action=action)
        if changes:
            self.transitions.wake(row.id)
            await self.status.refresh(row.id)
        return bool(changes)
