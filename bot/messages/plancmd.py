"""What `/close-account plan <tenant>` says to the person who asked: the preview's summary, where
its inventory file went (or why it could not be sent), and its refusals: pure."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages.slack import slack_fix
from bot.messages.words import code, plain

__all__ = [
    "PLAN_SUMMARY_LIMIT",
    "plan_busy",
    "plan_file_comment",
    "plan_file_failed",
    "plan_file_sent",
    "plan_readers",
    "plan_reading",
    "plan_summary",
    "plan_unreadable",
]

# A response_url answer is a message: Slack asks to keep `text` within 4,000 characters ("for
# best results", chat.postMessage's reference); the preview's lines stop short of it with room
# for the notes after them, the rest is in a second file.
PLAN_SUMMARY_LIMIT = 3_500


def plan_reading(tenant: str) -> str:
    """The immediate answer while the tenant is read (it can take longer than Slack's 3 s)."""
    return (
        f"Reading {plain(tenant)} from Microsoft for a preview; only you will see it."
        " Nothing is opened or changed."
    )


def plan_readers() -> str:
    return "Only the admins and this tenant's approvers may preview its closure."


def plan_busy(tenant: str) -> str:
    return f"A preview of {plain(tenant)} is being read; try again in a moment."


def plan_unreadable(tenant: str, error: str) -> str:
    return (
        f"The preview of {plain(tenant)} could not be read from Microsoft: {code(error)}."
        " Nothing was opened or changed; `close-account-bot check` says what is missing."
    )


def plan_summary(lines: Sequence[str], limit: int = PLAN_SUMMARY_LIMIT) -> tuple[str, bool]:
    """The preview's lines (from outside: made inert) as a preformatted block, cut at whole
    lines under `limit` characters (a first line longer than that is itself cut, at a whole
    character, never inside an escape); True when anything was left out."""
    shown: list[str] = []
    size = 0
    cut_line = False
    for line in lines:
        safe = plain(line)
        if shown and size + len(safe) + 1 > limit:
            break
        if len(safe) > limit:  # the first line alone is over the limit
            safe, cut_line = _cut(line, limit), True
        shown.append(safe)
        size += len(safe) + 1
    left = len(lines) - len(shown)
    more = f"\n… and {left} more line(s): every line is in the file." if left else ""
    if cut_line and not left:
        more = "\n… the line was cut: it is whole in the file."
    return "```" + "\n".join(shown) + "```" + more, left > 0 or cut_line


def _cut(line: str, limit: int) -> str:
    """The longest start of `line` whose inert form, with an ellipsis, fits `limit`."""
    low, high = 0, len(line)
    while low < high:
        mid = (low + high + 1) // 2
        if len(plain(line[:mid])) + 1 <= limit:
            low = mid
        else:
            high = mid - 1
    return plain(line[:low]) + "…"


def plan_file_comment(tenant: str, items: int) -> str:
    return (
        f"Preview of closing {plain(tenant)}: the whole inventory, {items} item(s), one row each"
        " (step, kind, ID, name, what happens). Nothing was opened or changed."
    )


def plan_file_sent(items: int) -> str:
    return f"The whole inventory ({items} item(s)) is a file in your direct message with me."


def plan_file_failed(error: str) -> str:
    return (
        f"The inventory file could not be sent to you: Slack answered {code(error)}."
        f" To fix: {slack_fix(error)}. `close-account-bot plan --config FILE --tenant NAME"
        " --format csv` prints it too."
    )
