"""Block Kit for the status message, approval requests and checklists: pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.messages import (
    FINAL_LABEL,
    PHASE_LABEL,
    duration,
    mentions,
    rollback_note,
    slack_date,
    step_of_total,
)
from statemachine import steps
from statemachine.closure import split_state
from statemachine.plan import Plan
from statemachine.steps import ROLLBACK

Block = dict[str, Any]
SAMPLE = 10
KIND_LABEL = {
    "user": "users",
    "subscription": "subscriptions",
    "azure_subscription": "Azure subscriptions to cancel through Azure Resource Manager",
    "security_defaults": "security defaults",
    "ca_policy": "conditional access policies requiring MFA",
    "per_user_mfa": "per-user MFA settings",
    "deleted_user": "soft-deleted users to purge (irreversible)",
    "application": "app registrations",
    "service_principal": "enterprise applications (service principals)",
    "disable_sync": "directory synchronization to turn off (Microsoft can take up to 72 h)",
    "restore_user": "deleted users to restore",
    "restore_security_defaults": "security defaults to turn back on",
    "restore_ca_policy": "conditional access policies to put back to their recorded state",
    "restore_per_user_mfa": "per-user MFA settings to put back",
    "reactivate_subscription": "cancelled subscriptions to reactivate (checklist follows)",
}


def _text(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rate: float | None = None  # items per second
    eta_seconds: float | None = None

    def line(self) -> str:
        pct = 100 * self.done // self.total if self.total else 100
        parts = [f"{self.done:,}/{self.total:,} ({pct}%)"]
        if self.rate:
            parts.append(f"{self.rate:,.1f}/s")
        if self.eta_seconds is not None and self.done < self.total:
            parts.append(f"ETA {duration(self.eta_seconds)}")
        return " · ".join(parts)


@dataclass(frozen=True)
class StatusView:
    closure_id: str
    tenant: str
    tenant_id: str
    state: str
    requester: str
    display_name: str | None = None
    note: str | None = None
    approvals: Mapping[str, Sequence[str]] = field(default_factory=dict)  # step -> approvers
    progress: Progress | None = None
    rollback_possible: bool | None = None  # None: not worth saying (finished, rolled back)


def status_blocks(view: StatusView) -> list[Block]:
    current, phase = split_state(view.state)
    title = FINAL_LABEL.get(phase, "rolling back" if current == ROLLBACK else "in progress")
    name = f"{view.display_name} · " if view.display_name else ""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Closing {view.tenant}"[:150]}},
        _context(
            f"{name}tenant `{view.tenant_id}` · requested by <@{view.requester}> · "
            f"closure `{view.closure_id}` · *{title}*"
        ),
    ]
    lines = []
    closed = current is None and phase == "closed"
    names = steps.names()
    index = names.index(current) if current in names else len(names)
    undone = current == ROLLBACK or phase in ("rolled_back", "aborted")
    for n, step in enumerate(names, start=1):
        approved = view.approvals.get(step)
        if step == current:
            mark = {
                "blocked": ":no_entry:",
                "rejected": ":x:",
                "failed": ":warning:",
            }.get(phase, ":arrow_forward:")
            label = PHASE_LABEL.get(phase, phase)
        elif closed or (n - 1 < index and not undone):
            mark, label = ":white_check_mark:", "done"
        elif undone and approved:
            mark = ":leftwards_arrow_with_hook:" if phase != "aborted" else ":black_circle:"
            label = {"rolled_back": "undone", "aborted": "done before the abort"}.get(
                phase, "being undone"
            )
        elif undone:
            mark, label = ":black_circle:", "not run"
        else:
            mark, label = ":white_circle:", "pending"
        extra = f" · approved by {mentions(approved)}" if approved else ""
        if step == current and view.progress and phase == "executing":
            extra += f" · {view.progress.line()}"
        lines.append(f"{mark} {n}. {steps.info(step).title} — {label}{extra}")
    if current == ROLLBACK or phase == "rolled_back":
        label = "done" if phase == "rolled_back" else PHASE_LABEL.get(phase, phase)
        extra = f" · {view.progress.line()}" if view.progress and phase == "executing" else ""
        lines.append(f":leftwards_arrow_with_hook: {steps.info(ROLLBACK).title} — {label}{extra}")
    blocks.append(_text("\n".join(lines)))
    if view.note:
        blocks.append(_context(view.note))
    note = rollback_note(view.rollback_possible)
    if note and (view.rollback_possible is False or current not in (None, ROLLBACK)):
        blocks.append(_context(note))
    return blocks


def approval_blocks(
    plan: Plan,
    *,
    approvers: Sequence[str],
    quorum: int,
    expires_at: float,
    changes: Sequence[str] = (),
    outcome: str | None = None,
) -> list[Block]:
    facts = plan.facts
    blocks: list[Block] = [_text(f"*{outcome}*")] if outcome else []
    blocks += [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": f"Approve {step_of_total(plan.step)}: {steps.info(plan.step).title}"[:150],
            },
        },
        _text(
            f"*Tenant:* {facts.get('display_name')} · `{facts.get('tenant_id')}` · "
            f"{facts.get('primary_domain')}"
        ),
    ]
    if changes:
        blocks.append(_text("*The plan changed since the last request:*\n" + "\n".join(changes)))
    counts = plan.counts()
    if counts:
        guests = sum(1 for i in plan.items if i.detail.get("userType") == "Guest")
        summary = "\n".join(
            f"• *{n:,}* {KIND_LABEL.get(kind, kind)}"
            + (f" ({n - guests:,} members, {guests:,} guests)" if kind == "user" else "")
            for kind, n in sorted(counts.items())
        )
        verb = (
            "will be turned off first" if "disable_sync" in counts else steps.info(plan.step).verb
        )
        blocks.append(_text(f"*What {verb}:*\n{summary}"))
        sample = [
            f"`{i.name or i.id}`" + (f" ({i.detail['userType']})" if "userType" in i.detail else "")
            for i in plan.items[:SAMPLE]
        ]
        more = len(plan.items) - len(sample)
        blocks.append(
            _context("Sample: " + ", ".join(sample) + (f" and {more:,} more" if more > 0 else ""))
        )
    if not steps.info(plan.step).reversible:
        blocks.append(
            _text(
                ":rotating_light: *Point of no return.* Approving this step makes the closure"
                " irreversible: soft-deleted users are purged, applications removed, and the bot"
                " deletes its own access last."
            )
        )
    blocks.append(
        _text(
            f"*Who may approve:* {mentions(approvers)} · *needed:* {quorum} · "
            f"*expires:* {slack_date(expires_at)}\n"
            "React with :white_check_mark: to approve or :x: to veto. "
            "The requester's reaction never counts."
        )
    )
    blocks.append(_context(f"plan `{plan.hash[:12]}` · approvals bind to this exact plan"))
    return blocks


def checklist_blocks(title: str, lines: Sequence[str], footer: str) -> list[Block]:
    body = "\n".join(f"{n}. {line}" for n, line in enumerate(lines, start=1))
    return [_text(f"*{title}*"), _text(body or "(nothing)"), _context(footer)]
