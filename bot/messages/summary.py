"""What the closure's end says in its thread: the summary of each step (what it did, counts,
who approved it and when), the time it took and what is left for the admin; the comment on the
file that lists every object changed. Pure."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from bot.messages.requests import kind_title
from bot.messages.words import FINAL_LABEL, duration, inert, step_name
from statemachine import steps

__all__ = [
    "changed_list_posted",
    "summary_approvals",
    "summary_counts",
    "summary_text",
    "utc",
]

_END_ICON = {"closed": ":checkered_flag:", "aborted": ":octagonal_sign:", "rolled_back": ":rewind:"}


def utc(epoch: float) -> str:
    """A time every reader reads the same way: 2024-05-01 12:00:05 UTC."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary_counts(counts: Mapping[str, int]) -> str:
    """'Users: 120, App registrations: 2'."""
    return ", ".join(f"{kind_title(kind)}: {n:,}" for kind, n in counts.items()) or "no items"


def summary_approvals(approvals: Sequence[tuple[str, float]]) -> str:
    """'approved by <@U1> (2024-05-01 12:00:05 UTC), <@U2> (...)'."""
    if not approvals:
        return "no approval"
    return "approved by " + ", ".join(f"<@{user}> ({utc(at)})" for user, at in approvals)


def _step_title(step: str) -> str:
    return f"{step_name(step)} ({steps.info(step).title})"


def _step_line(
    step: str,
    outcome: str,
    counts: Mapping[str, int],
    done: int,
    total: int,
    approvals: Sequence[tuple[str, float]],
) -> str:
    title = _step_title(step)
    if outcome == "not_reached":
        return f"• {title}: not reached."
    if outcome == "nothing":
        return f"• {title}: nothing to do."
    if outcome == "planned":
        return f"• {title}: planned, not approved; nothing changed."
    approved = summary_approvals(approvals)
    if outcome == "done":
        return (
            f"• {title}: done, {done:,} of {total:,} changes ({summary_counts(counts)});"
            f" {approved}."
        )
    return (
        f"• {title}: stopped after {done:,} of {total:,} changes ({summary_counts(counts)}"
        f" approved); {approved}."
    )


def summary_text(
    *,
    tenant: str,
    tenant_id: str,
    end: str,
    reason: str | None,
    started_at: float,
    ended_at: float,
    lines: Sequence[tuple[str, str, Mapping[str, int], int, int, Sequence[tuple[str, float]]]],
    left: Sequence[str],
    changed: int,
) -> str:
    """The closure's record at its end. `lines` holds, per step, (step, outcome, counts by
    kind, done, total, approvals as (user, time)); outcome is done, stopped, planned, nothing
    or not_reached."""
    head = (
        f"{_END_ICON.get(end, '')} *Summary of the closure of {inert(tenant)} ({tenant_id}):"
        f" {FINAL_LABEL.get(end, end)}.*"
    )
    when = (
        f"Started {utc(started_at)}, ended {utc(ended_at)}: took"
        f" {duration(max(0.0, ended_at - started_at))}."
    )
    out = [head, when]
    if reason and end == "aborted":
        out.append(f"Why: {inert(reason)}")
    out += [_step_line(*line) for line in lines]
    out.append(
        f"{changed:,} object(s) in the approved plans of the steps that ran: each is in the file"
        " that follows, with what happened to it."
        if changed
        else "No object was changed."
    )
    if left:
        out.append("*Left for the admin:*")
        out += [f"• {inert(line)}" for line in left]
    else:
        out.append("Nothing is left for the admin.")
    return "\n".join(out)


def changed_list_posted(tenant: str, rows: int, end: str) -> str:
    """The comment on the 'what was deleted' file."""
    return (
        f":page_facing_up: Every object the closure of {inert(tenant)} changed ({rows:,}), as"
        f" CSV: step, kind, ID, name, what happened to it, who approved it and when it ran"
        f" (closure {FINAL_LABEL.get(end, end)})."
    )
