"""The database the resume benchmark starts the bot on: its open closures in every kind of
state (`SLOTS`), with their plans, requests, votes, step rows, audit and status messages."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ADMIN,
    APPROVERS,
    CHANNEL,
)
from simulator.slack.server import SlackSimulator
from statemachine.plan import Item, Plan
from storage import approvals as requests_db
from storage import audit
from storage import closures as closures_db
from storage.db import open_db

USERS = 20  # per simulated tenant (plus the retained admin)
# One slot per closure, cycling: (state, what it needs). "graph" states act at once on resume.
SLOTS: tuple[str, ...] = (
    "delete_users.executing",  # graph: deletes its 20 users, verifies, plans step 2
    "delete_users.awaiting_approval",
    "delete_users.awaiting_approval",
    "delete_users.awaiting_approval",
    "delete_users.awaiting_approval",
    "cancel_subscriptions.awaiting_approval",
    "cancel_subscriptions.waiting_external",
    "cancel_subscriptions.waiting_external",
    "cancel_subscriptions.waiting_external",
    "delete_disabled_subscriptions.waiting_external",
    "cancel_subscriptions.waiting_external:overdue",  # graph: its poll is due now
    "delete_disabled_subscriptions.waiting_external",
    "disable_mfa.awaiting_approval",
    "disable_mfa.awaiting_approval",
    "delete_directory.awaiting_approval",
    "delete_directory.waiting_external",
    "delete_users.blocked",
    "delete_users.rejected",
    "disable_mfa.failed",
    "delete_users.awaiting_approval",
)


def slot(i: int, outage: bool) -> tuple[str, bool]:
    """Closure i's state, and whether its Graph work is due at once on resume. After an outage
    longer than poll_interval every admin-center poll is overdue."""
    state, _, flavour = SLOTS[i % len(SLOTS)].partition(":")
    phase = state.split(".")[1]
    overdue = flavour == "overdue" or (outage and phase == "waiting_external")
    return state, overdue


def does_graph_work(i: int, outage: bool) -> bool:
    state, overdue = slot(i, outage)
    return overdue or state.endswith(".executing")


def _users(tenant: dict[str, Any]) -> tuple[Item, ...]:
    return tuple(
        Item("user", u["id"], u["upn"], {"userType": "Member"}) for u in tenant.get("users", [])
    )


def fake_tenant(name: str) -> dict[str, Any]:
    ids = uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{name}")
    return {
        "name": name,
        "tenant_id": str(ids),
        "client_id": str(uuid.uuid5(ids, "client")),
        "client_secret": "sim-secret",
        "retained_upn": f"admin@{name}.onmicrosoft.com",
        "users": [
            {"id": str(uuid.uuid5(ids, f"user{k}")), "upn": f"user{k}@{name}.example"}
            for k in range(USERS)
        ],
    }


def seed(db_path: Path, slack: SlackSimulator, tenants: list[dict[str, Any]], outage: bool) -> None:
    """The open closures, their plans, requests, votes, step rows, audit and status messages."""
    db = open_db(db_path)
    now = time.time()
    # Newer schemas record what the status message shows, and refresh it on resume if it differs.
    shown = getattr(closures_db, "set_status_shown", None)
    try:
        for i, tenant in enumerate(tenants):
            state, overdue = slot(i, outage)
            step, phase = state.split(".")
            cid = f"c{i:05d}"
            closures_db.create_closure(
                db,
                closure_id=cid,
                tenant=tenant["name"],
                tenant_id=tenant["tenant_id"],
                requester=ADMIN,
                state=state,
                channel=CHANNEL,
                at=now - 3600,
            )
            audit.append(
                db,
                tenant=tenant["name"],
                closure_id=cid,
                at=now - 3600,
                actor=ADMIN,
                action="start",
            )
            payload = {
                "closure_id": cid,
                "tenant": tenant["name"],
                "tenant_id": tenant["tenant_id"],
                "state": state,
            }
            status = slack.post(
                channel=CHANNEL,
                user=slack.bot_user_id,
                text=f"Closing {tenant['name']}: {state}",
                metadata={"event_type": "close_account_status", "event_payload": payload},
            )
            closures_db.save_closure(
                db,
                cid,
                at=now - 3000,
                status_ts=status.ts,
                failed_phase="executing" if phase == "failed" else None,
                reason="Directory synchronization is on." if phase == "blocked" else None,
                display_name=tenant["name"].capitalize() + " Ltd",
            )
            if shown is not None:  # the status message shows this state: nothing to refresh
                shown(db, cid, state)
            plan = Plan(step, tenant["tenant_id"], _users(tenant) if step == "delete_users" else ())
            plan_id = closures_db.save_plan(db, closure_id=cid, plan=plan, at=now)
            audit.append(
                db,
                tenant=tenant["name"],
                closure_id=cid,
                at=now - 3000,
                actor="bot",
                action="plan",
                step=step,
                plan_hash=plan.hash,
                detail={"counts": plan.counts(), "plan_id": plan_id},
            )
            if phase == "awaiting_approval":
                request_id = requests_db.create_request(
                    db,
                    closure_id=cid,
                    step=step,
                    plan_id=plan_id,
                    plan_hash=plan.hash,
                    quorum=2,
                    expires_at=now + 86400,
                    at=now - 600,
                )
                message = slack.post(
                    channel=CHANNEL,
                    user=slack.bot_user_id,
                    text=f"Approval needed for {step}",
                    thread_ts=status.ts,
                )
                requests_db.set_request_message(db, request_id, CHANNEL, message.ts)
                if i % 2:
                    requests_db.cast_vote(
                        db,
                        request_id=request_id,
                        approver=APPROVERS[0],
                        kind="approve",
                        event_id=f"Ev{i:06d}",
                        at=now - 300,
                    )
            if phase in ("executing", "waiting_external"):
                closures_db.update_step(
                    db,
                    cid,
                    step,
                    plan_id=plan_id,
                    done=0,
                    total=len(plan.items),
                    started_at=now - 600,
                    next_check_at=now - 1 if overdue else now + 3600,
                )
    finally:
        db.conn.close()
