"""A state in words, text from outside made inert, and the small helpers every view
uses (durations, dates, mentions): pure."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

from statemachine import steps
from statemachine.closure import split_state
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


def when(epoch: float, now: float) -> str:
    """A date every reader sees in their own time zone, and how far it is from now."""
    delta = epoch - now
    rel = f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"
    return f"{slack_date(epoch)} ({rel})"
