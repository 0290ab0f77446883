"""The sentences of the closure's thread: plans, approvals, checklists, outcomes, and what
people did: pure."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages.words import (
    code,
    duration,
    inert,
    mentions,
    plain,
    retry_command,
    slack_date,
    step_name,
    step_of_total,
)
from statemachine import steps
from statemachine.approvals import Refusal
from statemachine.plan import PlanDiff

# --- thread posts --------------------------------------------------------------------------


def blocked(step: str, tenant: str, blockers: Sequence[str], *, offer: str | None) -> str:
    """`offer`: the command that removes the one blocker as an approved action, if any."""
    text = (
        f":no_entry: {step_name(step)} ({steps.info(step).title}) is blocked:\n"
        + "\n".join(f"• {inert(b)}" for b in blockers)
        + f"\nAfter the fix, an admin runs {retry_command(tenant)}."
    )
    if offer:
        text += (
            "\nOr the bot turns sync off itself, as an approved action: "
            f"`/close-account {offer} {tenant}`."
        )
    return text


def nothing_to_do(step: str) -> str:
    return f"{step_name(step)} ({steps.info(step).title}): nothing to do; verifying."


def vetoed_reason(vetoes: Sequence[str]) -> str:
    return f"vetoed by {mentions(vetoes)}"


def vetoed(step: str, tenant: str, reason: str) -> str:
    return (
        f":x: {step_name(step)} was {reason}. Nothing was changed. An admin can"
        f" `/close-account retry {tenant}` (re-reads the plan and asks again) or `abort` it."
    )


def and_more(shown: int, total: int, noun: str = "more") -> str | None:
    """What a shortened list says of the rest: 'and 12 more'."""
    return f"and {total - shown:,} {noun}" if total > shown else None


def plan_changes(change: PlanDiff, blockers: Sequence[str], limit: int = 10) -> list[str]:
    """What changed in a plan, `limit` names per kind and how many more of each."""
    lines: list[str] = []
    for label, items in (
        ("added", change.added),
        ("removed", change.removed),
        ("changed", change.changed),
    ):
        lines += [f"• {label}: {code(i.name or i.id)}" for i in items[:limit]]
        if (rest := and_more(limit, len(items))) is not None:
            lines.append(f"• {label}: {rest}")
    return lines + [f"• blocker: {inert(b)}" for b in blockers]


def plan_changed(step: str, lines: Sequence[str]) -> str:
    return (
        f":arrows_counterclockwise: The inventory for {step_name(step).lower()} changed since it"
        " was approved; the approvals are void and a new request follows.\n" + "\n".join(lines)
    )


def approved(step: str, approvers: Sequence[str], plan_hash: str) -> str:
    return (
        f":white_check_mark: {step_name(step)} approved by {mentions(approvers)}"
        f" (plan `{plan_hash[:12]}`); starting."
    )


def expired(step: str, missing: int) -> str:
    return (
        f":hourglass: The approval request for {step_name(step).lower()} expired ({missing}"
        " approval(s) missing); a fresh plan follows."
    )


def remind_approvers(step: str, missing: int, waiting: Sequence[str], expires_at: float) -> str:
    return (
        f":bell: Reminder: {step_name(step).lower()} still needs {missing} more approval(s) from"
        f" {mentions(waiting)}; the request expires {slack_date(expires_at)}."
    )


def executed(step: str, changes: int) -> str:
    return (
        f"{step_name(step)}: {changes:,} changes made through Graph; verifying from Microsoft's"
        " side."
    )


def external_done(step: str) -> str:
    return f"Microsoft shows {step_name(step).lower()} done; verifying."


def confirmations(seen: int, needed: int) -> str:
    return f"tenant-not-found answers: {seen}/{needed}"


def confirmations_post(step: str, line: str) -> str:
    return f"{step_name(step)}: {line}."


def seen_done(step: str, done: Sequence[str], waiting: Sequence[str]) -> str:
    lines = [f"• done: {inert(d)}" for d in done]
    lines += [f"• waiting on: {inert(r)}" for r in waiting]
    return f"{step_name(step)}:\n" + "\n".join(lines)


def remind_admin(step: str, retained: Sequence[str], waiting: Sequence[str]) -> str:
    return (
        f":bell: Reminder: {step_name(step).lower()} is still waiting on a Global Administrator"
        f" ({plain(', '.join(retained))}) in the admin center:\n"
        + "\n".join(f"• {inert(r)}" for r in waiting)
    )


def prepared(step: str) -> str:
    return f"Directory synchronization is off; planning step {steps.number(step)} itself."


def verified(step: str) -> str:
    return (
        f":white_check_mark: {step_name(step)} ({steps.info(step).title}) verified from"
        " Microsoft's side."
    )


def closed(tenant: str, tenant_id: str) -> str:
    return (
        f":checkered_flag: Tenant {tenant} ({tenant_id}) is closed: Microsoft no longer knows it."
    )


def failed(step: str | None, tenant: str, reason: str) -> str:
    return (
        f":warning: {step_name(step)} failed: {inert(reason)}\nAn admin can run"
        f" {retry_command(tenant)} to resume it, or `abort`."
    )


def shown_reason(phase: str, reason: str) -> str:
    """A closure's stored reason as mrkdwn: a veto's is the bot's own words (mentions); every
    other one may carry Microsoft's names or an error's words."""
    return reason if phase == "rejected" else inert(reason)


def checklist_title(step: str) -> str:
    return f"{step_name(step)}, {steps.info(step).title}: checklist for a Global Administrator"


def checklist_footer(retained: str | None, poll: float, *, confirmations: int | None) -> str:
    """`confirmations`: how many 'tenant not found' answers close the closure, for the step
    after which the bot's own access is gone."""
    if confirmations is not None:
        return (
            "The bot's own access is gone now. It checks Microsoft's authority every"
            f" {duration(poll)} and closes the closure after {confirmations} consecutive"
            " 'tenant not found' answers."
        )
    who = retained or "the retained Global Administrator"
    return (
        f"Sign in as {who}. The bot re-checks Microsoft every {duration(poll)} and moves on by"
        " itself."
    )


def request_outcome(status: str, approvers: Sequence[str], vetoes: Sequence[str]) -> str:
    """How a finished approval request ended, as its message shows it."""
    return {
        "approved": f":white_check_mark: Approved by {mentions(approvers)}",
        "rejected": f":x: Vetoed by {mentions(vetoes)}",
        "void": ":arrows_counterclockwise: Void: the plan changed (see below)",
        "expired": ":hourglass: Expired: a fresh request follows",
    }.get(status, status)


def approval_summary(step: str, plan_hash: str) -> str:
    return f"Approval needed for {step_of_total(step)}, {steps.info(step).title}: {plan_hash[:12]}"


# --- what people did -----------------------------------------------------------------------


def aborted(user: str, why: str) -> str:
    return f":octagonal_sign: Aborted by <@{user}>: {why}"


def abort_reason(why: str) -> str:
    return f"aborted: {why}"


def retried(user: str, step: str | None, resuming: bool) -> str:
    what = "resuming" if resuming else "planning again"
    return f":repeat: <@{user}> retried {step_name(step).lower()}; {what}."


def preparation_asked(user: str) -> str:
    return (
        f":electric_plug: <@{user}> asked the bot to turn directory sync off; an approval"
        " request follows."
    )


def rollback_asked(user: str) -> str:
    return (
        f":leftwards_arrow_with_hook: <@{user}> asked to roll back this closure; planning what to"
        " restore."
    )


def audit_posted(tenant: str, entries: int, user: str) -> str:
    return f"Audit trail of {tenant}, {entries} entries, requested by <@{user}>."


def reaction_refused(user: str, why: str) -> str:
    return f"<@{user}>'s reaction does not count: {why}."


def veto_hint(reaction: str) -> str:
    """Said once, to the one person, when a no-looking emoji lands on an approval request."""
    return (
        f":{plain(reaction)}: does not veto. React :x: to veto (and :white_check_mark: to approve)."
    )


def refusal(code: Refusal, request_status: str) -> str:
    """Why a reaction does not count."""
    return {
        Refusal.REQUESTER: "the requester of a closure never counts as an approver",
        Refusal.NOT_APPROVER: "not a configured approver for this tenant",
        Refusal.DEACTIVATED: "the Slack account is deactivated",
        Refusal.FINISHED: f"the request is {request_status}; the step has moved on",
        Refusal.EXPIRED: "the request has expired; a fresh one follows",
        Refusal.VETO_STANDS: "your veto stands until you remove your :x:",
    }[code]
