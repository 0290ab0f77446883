"""Who the thread pings, and when: the retained administrator on an admin-center checklist and
its reminders (the one place the bot mentions someone on purpose), and the approvers' last call
before a request expires: pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.identity import Ping
from bot.messages.words import duration, inert, mentions, plain, slack_date, step_name

__all__ = ["admin_mention", "checklist_ping", "last_call_approvers", "remind_admin_ping"]

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def admin_mention(ping: Ping) -> str | None:
    """`<@U...>` for the retained administrator's Slack user, or None (nobody to ping). Only a
    well-formed user ID becomes a mention: anything else never reaches Slack unescaped."""
    if ping.user_id is None or not _SLACK_USER.fullmatch(ping.user_id):
        return None
    return f"<@{ping.user_id}>"


def _account(ping: Ping) -> str:
    return plain(ping.account) if ping.account else "the retained Global Administrator"


def checklist_ping(ping: Ping) -> str:
    """The checklist's line for the person who does it: a mention, or why nobody is pinged
    (said here once, not again in the reminders)."""
    mention = admin_mention(ping)
    if mention is not None:
        return f":bust_in_silhouette: {mention}, this checklist is yours ({_account(ping)})."
    why = inert(ping.why_not or "no Slack user is known for the retained account")
    return f":bust_in_silhouette: Nobody is pinged for this checklist: {why}."


def remind_admin_ping(step: str, ping: Ping, waiting: Sequence[str]) -> str:
    """A reminder that a checklist is not done, mentioning the retained administrator's Slack
    user when there is one."""
    mention = admin_mention(ping)
    who = (
        f"{mention} (sign in as {_account(ping)})"
        if mention is not None
        else f"a Global Administrator ({_account(ping)})"
    )
    return (
        f":bell: Reminder: {step_name(step).lower()} is still waiting on {who} in the admin"
        " center:\n" + "\n".join(f"• {inert(r)}" for r in waiting)
    )


def last_call_approvers(
    step: str, missing: int, waiting: Sequence[str], expires_at: float, now: float
) -> str:
    """The last reminder before a request expires: how long is left, and what happens then."""
    left = duration(max(0.0, expires_at - now))
    return (
        f":hourglass_flowing_sand: Last call: {step_name(step).lower()} still needs {missing}"
        f" more approval(s) from {mentions(waiting)}; the request expires in {left}"
        f" ({slack_date(expires_at)}), then a fresh request with a fresh plan is posted and"
        " votes start over."
    )
