"""Every sentence people read in the closure's thread and in the bot's replies, and a state in
words: pure functions of plain data. Block Kit layout is `bot.blocks`'; the Home tab's is
`bot.home`'."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

from statemachine import steps
from statemachine.approvals import Refusal
from statemachine.closure import split_state
from statemachine.plan import PlanDiff
from statemachine.steps import ROLLBACK

PHASE_LABEL = {
    "planning": "planning",
    "awaiting_approval": "waiting for approval",
    "executing": "running",
    "waiting_external": "waiting on the admin / Microsoft",
    "verifying": "verifying with Microsoft",
    "blocked": "BLOCKED",
    "rejected": "VETOED",
    "failed": "FAILED",
}
FINAL_LABEL = {"closed": "closed", "aborted": "aborted", "rolled_back": "rolled back"}

# --- text from outside ---------------------------------------------------------------------

# Slack's mrkdwn needs only &, < and > escaped ("Escaping text", docs.slack.dev/messaging/
# formatting-message-text); an `&` already starting one of those entities is left alone, so
# escaping is idempotent and text Slack escaped itself (a command's words) stays as it was.
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
# mrkdwn has no escape for a backtick: one in a name would close the code span the bot opened
# around it, so it is shown as the look-alike modifier letter grave accent.
GRAVE = "\u02cb"


def inert(text: object) -> str:
    """Text from outside (Microsoft's names, an error's words) as mrkdwn that cannot ping, link
    or start a line of its own: &, < and > as entities, line breaks as spaces. Backticks the bot
    wrote around words of its own in the same line (`retry`) still work."""
    return _LINE_BREAKS.sub(" ", _BARE_AMP.sub("&amp;", str(text)).replace("<", "&lt;")).replace(
        ">", "&gt;"
    )


def plain(text: object) -> str:
    """A name from outside, inert and with no backtick to open or close a code span."""
    return inert(text).replace("`", GRAVE)


def code(text: object) -> str:
    """A name from outside in a code span it cannot break out of."""
    return f"`{plain(text) or ' '}`"


# --- small helpers every view uses ---------------------------------------------------------


def duration(seconds: float) -> str:
    """A poll interval or an ETA in the unit a person expects: 200ms, 45s, 5m, 2h00m."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def slack_date(epoch: float) -> str:
    """A Slack date token that each reader sees in their own time zone."""
    fallback = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def mentions(users: Sequence[str]) -> str:
    return ", ".join(f"<@{u}>" for u in users) or "nobody"


def retry_command(tenant: str) -> str:
    return f"`/close-account retry {tenant}`"


# --- a step and a state in words -----------------------------------------------------------


def step_name(step: str | None) -> str:
    """'Step 2' for a step of the runbook, 'The rollback' for a rollback."""
    return f"Step {steps.number(step)}" if steps.is_step(step) and step else "The rollback"


def step_of_total(step: str) -> str:
    """'step 2/5', or 'the rollback'."""
    if step == ROLLBACK:
        return "the rollback"
    return f"step {steps.number(step)}/{len(steps.names())}"


def state_words(state: str) -> str:
    """The state as a person says it: 'step 2/5, Cancel all active subscriptions: running'."""
    step, phase = split_state(state)
    if step is None:
        return FINAL_LABEL.get(phase, phase.replace("_", " "))
    label = PHASE_LABEL.get(phase, phase.replace("_", " "))
    if step == ROLLBACK:
        return f"rollback, {steps.info(ROLLBACK).title}: {label}"
    if steps.is_step(step):
        return f"{step_of_total(step)}, {steps.info(step).title}: {label}"
    return f"{step}: {label}"


def status_summary(tenant: str, tenant_id: str, state: str) -> str:
    """The status message's notification text."""
    return f"Closure of {tenant} ({tenant_id}): {state}"


def approvals_so_far(votes: Sequence[str], quorum: int) -> str:
    return f"Approvals: {len(votes)}/{quorum}" + (f" ({mentions(votes)})" if votes else "")


def rollback_note(possible: bool | None) -> str | None:
    """What the status message says of a rollback."""
    if possible is None:
        return None
    if not possible:
        return "Point of no return passed: this closure can no longer be undone."
    last = steps.point_of_no_return()
    until = f" until step {steps.number(last)} starts purging" if last else ""
    return (
        ":leftwards_arrow_with_hook: Rollback is still possible"
        f" (`/close-account rollback`{until})."
    )


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


def plan_file_posted(step: str, items: int, plan_hash: str) -> str:
    return (
        f"Every item of the plan for {step_of_total(step)} ({items:,} items, plan"
        f" `{plan_hash[:12]}`), and its checklist: more than one message can show."
    )


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


# --- replies to a command ------------------------------------------------------------------

REPLIES = {
    "only_admins": "Only the configured admins may {what}.",
    "already_open": "A closure of {tenant} is already open ({state}).",
    "started": "Closure of {tenant} started; follow it in <#{channel}>.",
    "no_open_closure": "No open closure for `{tenant}`.",
    "abort_done": "Closure of {tenant} aborted.",
    "abort_missed": "The closure of {tenant} could not be aborted now.",
    "nothing_to_retry": "Nothing to retry: the closure is {state}.",
    "retrying": "Retrying {tenant}: {what}.",
    "retry_missed": "Retry did not apply; try `status`.",
    "no_preparation": "Only a closure blocked on directory sync in step 1 needs this.",
    "preparing": "Planning to turn directory sync off; approvals follow.",
    "changed_state": "The closure changed state; try `status`.",
    "audit_readers": "Only the admins and this tenant's approvers may read its audit trail.",
    "nothing_to_roll_back": "{tenant} has no closure to roll back.",
    "rolling_back_already": "{tenant} is already rolling back ({state}).",
    "rolled_back_already": "The last closure of {tenant} is already rolled back.",
    "another_open": "Another closure of {tenant} is open; finish or abort it first.",
    "rollback_missed": "The closure of {tenant} changed state; try again.",
    "rolling_back": "Rolling back {tenant}: the plan and approval request follow.",
    "no_thread": "{tenant} has no closure yet, so no thread to post in.",
    "audit_done": "Posted the audit trail of {tenant} ({entries} entries) in its thread.",
}


def reply(key: str, **fields: object) -> str:
    """A reply to a command, by name (`REPLIES`), with its fields filled in."""
    return REPLIES[key].format(**fields)


def unknown_tenant(name: str, configured: Sequence[str] = ()) -> str:
    more = f" Configured tenants: {', '.join(configured)}." if configured else ""
    return f"Unknown tenant `{name}`.{more}"


def too_few_approvers(step: str, quorum: int, eligible: int, unknown: int) -> str:
    if step == ROLLBACK:
        return (
            f"Refused: the rollback needs {quorum} approvals but only {eligible} eligible"
            " approvers remain (the requester never counts)."
        )
    gone = (
        f", and {unknown} configured approver(s) are deactivated or unknown in Slack"
        if unknown
        else ""
    )
    return (
        f"Refused: {step_name(step).lower()} needs {quorum} approvals but only {eligible}"
        f" eligible approvers remain: the requester never counts{gone}."
    )


def past_point_of_no_return(tenant: str) -> str:
    last = steps.point_of_no_return()
    step = f"step {steps.number(last)}" if last else "the last step"
    return (
        f"Refused: {step} of {tenant} has started purging and deleting (the point of no"
        " return); nothing can be rolled back now."
    )


# --- step 5: Microsoft's preconditions and the bot's own access ------------------------------


def app_setup(multi_tenant: bool, home_tenant_id: str | None) -> str:
    """`check`'s line on where the bot's own app is registered."""
    if multi_tenant:
        return f"multi-tenant (service principal only; application in tenant {home_tenant_id})"
    return "single-tenant (application in this tenant)"


def several_retained(upns: Sequence[str]) -> str:
    return (
        f"{len(upns)} retained accounts still exist ({', '.join(upns)}); Microsoft deletes a"
        " tenant only when one user is left, the Global Administrator who deletes it. Fix:"
        " keep one in `retain` in the config, delete the others (Microsoft 365 admin center >"
        " Users > Active users > select > Delete user), then retry."
    )


def retained_not_global_admin(upn: str | None) -> str:
    if upn is None:
        return (
            "No retained account is left: one Global Administrator must remain to delete the"
            " tenant. Fix: check `retain` in the config, then retry."
        )
    return (
        f"{upn} holds no active Global Administrator role, and only a Global Administrator can"
        " delete the tenant. Fix: Entra admin center > Roles & admins > Global Administrator >"
        " add an active assignment, then retry."
    )


def azure_subscriptions_remain(names: Sequence[str]) -> str:
    return (
        f"{len(names)} Azure subscriptions are not deleted ({', '.join(names)}); an active or"
        " cancelled Azure subscription blocks the tenant's deletion. Fix: Azure portal >"
        " Subscriptions > select > Delete subscription (3 days after cancelling a free trial or"
        " pay-as-you-go, 7 days for the rest) or transfer it to another tenant, then retry."
    )


def azure_unknown(problem: str) -> str:
    return f"{problem} Then retry."


def step5_permissions_missing(details: Sequence[str], add: Sequence[str]) -> str:
    return (
        "The bot's token lacks permissions that step 5 needs after the purge: "
        + "; ".join(details)
        + f". Fix: App registrations > API permissions > add {', '.join(add)} (Application),"
        " grant admin consent, then retry."
    )


def own_access_missing(client_id: str) -> str:
    return (
        f"Neither an application nor a service principal with appId {client_id} is in the"
        " tenant, so the bot cannot remove its own access last. Fix: check client_id, then retry."
    )


def unpaid_invoices_line() -> str:
    return (
        "Microsoft 365 admin center > Billing > Bills & payments: pay every outstanding or"
        " overdue invoice (Microsoft refuses to delete a tenant with unpaid invoices)."
    )


def self_service_products_line() -> str:
    return (
        "Microsoft 365 admin center > Billing > Your products: delete every self-service"
        " sign-up product (Power BI, Power Apps, Dynamics 365, Azure Rights Management and the"
        " like, bought by users themselves); they block the tenant's deletion."
    )


def purge_own_application_line(name: str, object_id: str) -> str:
    return (
        f"Microsoft Entra admin center > App registrations > Deleted applications > {name}"
        f" ({object_id}) > Delete permanently (the bot removed its own access last and cannot"
        " purge it itself)."
    )


def delete_tenant_line(display_name: str, tenant_id: str) -> str:
    return (
        "Microsoft Entra admin center > Identity > Overview > Manage tenants > select"
        f" {display_name} ({tenant_id}) > Delete, then follow the checks it shows."
    )


def disable_refused(count: int, first: str) -> str:
    return f"{count} service principals could not be disabled; first: {first}"


def writes_refused(count: int, first: str) -> str:
    return f"{count} deletes refused; first: {first}"


# --- when Slack refuses (issue 12) ---------------------------------------------------------

SLACK_FIXES = {
    "not_in_channel": "invite the bot to the progress channel (/invite @close-account-bot)",
    "channel_not_found": (
        "check progress_channel in the config, and invite the bot to it"
        " (/invite @close-account-bot)"
    ),
    "is_archived": "unarchive the progress channel, or set another progress_channel",
    "invalid_auth": "check SLACK_BOT_TOKEN (reinstall the app if it was revoked)",
    "not_authed": "check SLACK_BOT_TOKEN",
    "account_inactive": "reinstall the app in the workspace and update SLACK_BOT_TOKEN",
    "token_revoked": "reinstall the app in the workspace and update SLACK_BOT_TOKEN",
    "token_expired": "reinstall the app in the workspace and update SLACK_BOT_TOKEN",
    "missing_scope": "reinstall the app with the manifest's scopes (manifest.yml)",
}


def slack_fix(error: str) -> str:
    """What a person does so that the bot can talk to Slack again after `error`."""
    return SLACK_FIXES.get(
        error, "Slack is not answering or refused the call; the bot tries again by itself"
    )


def start_refused_by_slack(tenant: str, error: str) -> str:
    return (
        f"Nothing was started for {plain(tenant)}: Slack refused the status message"
        f" ({code(error)}). To fix: {slack_fix(error)}; then start again."
    )


def slack_trouble(error: str) -> str:
    """The Home tab's and the log's line for a closure that cannot talk to Slack."""
    return f":warning: The bot cannot talk to Slack ({code(error)}). To fix: {slack_fix(error)}."


def post_refused(error: str, text: str, limit: int = 2000) -> str:
    """The short post that stands in for one Slack refused (too long, bad blocks)."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return f"(Slack refused the full post, {code(error)}; in short:)\n{short}"


def post_lost(error: str) -> str:
    """The note to the requester when Slack refused a thread post and its short form."""
    return (
        f"Slack refused a post in the closure's thread ({code(error)}); it is in the audit"
        " trail (`/close-account audit <tenant>`)."
    )


def request_vanished(step: str, voters: Sequence[str]) -> str:
    votes = f" Votes on it ({mentions(voters)}) do not carry over: vote again." if voters else ""
    return (
        f"The approval request for {step_of_total(step)} was deleted in Slack; a new request"
        f" follows.{votes}"
    )


REQUEST_ABORTED = ":octagonal_sign: Closed: the closure was aborted"


def audit_upload_failed(tenant: str, error: str) -> str:
    return (
        f"The audit trail of {plain(tenant)} could not be posted: Slack answered {code(error)}."
        f" To fix: {slack_fix(error)}."
    )
