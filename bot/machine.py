"""Firing the machine's triggers for a closure: load -> trigger -> save under the tenant's lock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import logs
from bot.microsoft import steps as ms
from bot.microsoft.tokens import jwt_claims
from bot.thread import ClosureOutput, Post
from statemachine import approvals as rules
from statemachine.closure import (
    Closure,
    attach,
    detach,
    fire,
    split_state,
)
from storage import approvals as requests_db
from storage import closures as closures_db
from storage.closures import Row

log = logging.getLogger("close_account_bot.runner")


class ClosureMachine(ClosureOutput):
    def spawn(self, closure_id: str) -> None:
        task = self._tasks.get(closure_id)
        if task is None or task.done():
            self._wakers.setdefault(closure_id, asyncio.Event())
            row = closures_db.get_closure(self.db, closure_id)  # every line it logs names it
            context = logs.closure_context(closure_id, row["tenant"], row["state"]) if row else None
            self._tasks[closure_id] = asyncio.create_task(
                self._drive(closure_id), name=f"closure-{closure_id}", context=context
            )

    def wake(self, closure_id: str) -> None:
        self._wakers.setdefault(closure_id, asyncio.Event()).set()

    def lock(self, tenant: str) -> asyncio.Lock:
        return self._locks.setdefault(tenant, asyncio.Lock())

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
        also: Callable[[], list[Post] | None] | None = None,
        posts: Sequence[Post] = (),
        recount: Callable[[], rules.Tally] | None = None,
    ) -> Row | None:
        """Load, fire, save; in the same transaction run `also` and queue `posts` (and the posts
        `also` returns). Then send the posts and edit the status. None if it didn't apply."""
        row = closures_db.get_closure(self.db, closure_id)
        if row is None:
            return None
        async with self.lock(row["tenant"]):
            row = closures_db.get_closure(self.db, closure_id)
            if row is None:  # final states move only where the machine allows (rollback)
                return None
            if expected is not None and row["state"] not in (
                (expected,) if isinstance(expected, str) else expected
            ):
                return None
            if recount is not None:  # the votes as they are now, under the lock
                tally = recount()
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
                self.record(
                    row,
                    trigger,
                    actor=actor,
                    step=split_state(row["state"])[0],
                    plan_hash=plan_hash,
                    event_id=event_id,
                    detail={"from": row["state"], "to": model.state, **(detail or {})},
                )
                queued = list(posts)
                if also is not None:
                    queued += also() or []
                for post in queued:
                    self.enqueue(closure_id, post)
            new = closures_db.get_closure(self.db, closure_id)
        logs.note_state(closure_id, model.state)
        log.info(
            "closure %s: %s -> %s (%s by %s)",
            closure_id,
            row["state"],
            model.state,
            trigger,
            actor,
            extra={
                "closure_id": closure_id,
                "tenant": row["tenant"],
                "state": model.state,
                "from_state": row["state"],
                "trigger": trigger,
                "actor": actor,
            },
        )
        self.wake(closure_id)
        try:
            await self.flush(closure_id)
            await self.refresh_status(closure_id)
        except SlackApiError as exc:  # the drive loop sends what is queued once Slack is back
            log.warning("closure %s: Slack error %s", closure_id, exc.response.get("error"))
        return new

    async def _fail(self, row: Row, reason: str) -> bool:
        """Record a failure the runner could not retry away; False if it could not apply."""
        step, _ = split_state(row["state"])
        return None is not await self.transition(
            row["id"],
            row["state"],
            "fail",
            reason=reason,
            detail={"error": reason},
            posts=[
                Post(
                    f":warning: {self._name(step)} failed: {reason}\nAn admin can run"
                    f" `/close-account retry {row['tenant']}` to resume it, or `abort`.",
                    step,
                )
            ],
        )

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

    async def _tally(self, row: Row, req: Row) -> rules.Tally:
        """Rule 2 over the stored votes; a vote by an account deactivated since no longer counts."""
        for vote in requests_db.votes_for(self.db, req["id"]):
            await self.directory.active(vote["approver"])  # refresh what the cache knows
        return self.tally_now(row, req)

    def tally_now(self, row: Row, req: Row) -> rules.Tally:
        """The tally from the database as it is now, with no I/O: called under the tenant's
        lock right before a step is approved, so a veto cast meanwhile is never missed."""
        votes = [
            rules.Vote(v["approver"], v["kind"], req["plan_hash"])
            for v in requests_db.votes_for(self.db, req["id"])
            if not self.directory.known_inactive(v["approver"])
        ]
        return rules.tally(
            votes,
            approvers=self.approver_ids(row),
            requester=self.requester_of(row),
            quorum=req["quorum"],
            plan_hash=req["plan_hash"],
        )

    async def reconcile_votes(self, row: Row, req: Row) -> bool:
        """Make the stored votes match the reactions on the request message (Slack may not
        have delivered a reaction: the bot was down, retries ran out). True if anything changed."""
        resp = await self.client.reactions_get(
            channel=req["channel"], timestamp=req["ts"], full=True
        )
        present: set[tuple[str, str]] = set()
        for reaction in (resp.get("message") or {}).get("reactions") or []:
            kind = rules.reaction_kind(str(reaction.get("name", "")))
            if kind is not None:
                present.update((str(u), kind) for u in reaction.get("users") or [])
        approvers = self.approver_ids(row)
        requester = self.requester_of(row)
        eligible = {
            u
            for u, _ in present
            if rules.refusal(u, approvers=approvers, requester=requester) is None
            and u != row["requester"]
            and await self.directory.active(u)
        }
        changed = False
        now = self.clock()
        async with self.lock(row["tenant"]):
            current = requests_db.get_request(self.db, req["id"])
            if current is None or current["status"] != "open":
                return False
            stored = {v["approver"]: v["kind"] for v in requests_db.votes_for(self.db, req["id"])}
            with self.db.atomic():
                for approver, kind in stored.items():
                    if (approver, kind) not in present:
                        requests_db.withdraw_vote(
                            self.db, request_id=req["id"], approver=approver, kind=kind
                        )
                        self.record(
                            row,
                            "withdrawal_reconciled",
                            actor=approver,
                            step=req["step"],
                            plan_hash=req["plan_hash"],
                            detail={"kind": kind},
                        )
                        changed = True
                for approver in eligible:
                    kinds = {k for u, k in present if u == approver}
                    kind = "veto" if "veto" in kinds else "approve"  # a veto stands
                    if stored.get(approver) != kind and (approver, kind) in present:
                        requests_db.cast_vote(
                            self.db,
                            request_id=req["id"],
                            approver=approver,
                            kind=kind,
                            event_id=None,
                            at=now,
                        )
                        self.record(
                            row,
                            f"{'veto' if kind == 'veto' else 'vote'}_reconciled",
                            actor=approver,
                            step=req["step"],
                            plan_hash=req["plan_hash"],
                        )
                        changed = True
        if changed:
            self.wake(row["id"])
            await self.refresh_status(row["id"])
        return changed

    async def _drive(self, closure_id: str) -> None:  # pragma: no cover - Runner defines it
        raise NotImplementedError
