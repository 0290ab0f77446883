"""What step 1's approval request says of the data that dies and of the accounts kept: the
usage figures (bot/microsoft/reports.py), Microsoft's advice to back up first, what approving
confirms, and the retained accounts, from the plan's facts. Step 5's request (the point of no
return) says the figures and the advice again: when step 1 had nothing to do it asked no one,
yet the retained accounts' mailboxes and OneDrive and every SharePoint site die at step 5."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.messages.words import code, plain

__all__ = [
    "BACKUP_ADVICE",
    "BACKUP_CONFIRMED",
    "BACKUP_CONFIRMED_STEP_5",
    "data_loss_lines",
    "human_size",
    "retained_lines",
    "step_five_text",
    "step_one_plain",
    "step_one_text",
]

# MicrosoftDocs/microsoft-365-docs, microsoft-365/commerce/close-your-account.md, "Before you
# begin" (an IMPORTANT note), word for word.
BACKUP_ADVICE = (
    "Microsoft: “Before you start this process, make sure to back up any data that you want to"
    " preserve.” (<https://learn.microsoft.com/microsoft-365/commerce/close-your-account|"
    "Close your Microsoft business account>)"
)
BACKUP_CONFIRMED = ":floppy_disk: *Approving this step confirms the data is backed up.*"
BACKUP_CONFIRMED_STEP_5 = ":floppy_disk: *Approving step 5 confirms the data is backed up.*"
_LABELS = (
    ("mailboxes", "mailboxes", "mailbox"),
    ("onedrive", "OneDrive accounts", "OneDrive account"),
    ("sharepoint", "SharePoint sites", "SharePoint site"),
)
_PERIOD = {"D7": "7", "D30": "30", "D90": "90", "D180": "180"}


def human_size(n: int) -> str:
    """Bytes as a person reads them, in 1024s as Microsoft's admin center counts (its 50 GB
    mailbox quota is 50 * 1024^3 bytes): 0 B, 980 KB, 1.5 GB, 12.3 TB."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def data_loss_lines(data: Mapping[str, Any], *, step: int = 1) -> list[str]:
    """The usage figures as lines: counts and sizes, or 'size unknown' and why; the last line
    says when the data goes, as step 1's or step 5's request says it."""
    days = _PERIOD.get(str(data.get("period", "")), "")
    known = [data[k] for k, _, _ in _LABELS if "unknown" not in (data.get(k) or {"unknown": ""})]
    dates = sorted({str(f["refreshed"]) for f in known if f.get("refreshed")})
    source = "Microsoft 365 usage reports" + (f", last {days} days" if days else "")
    source += f", as of {plain(dates[-1])}" if dates else ""
    lines = [f"*Data that dies with the tenant* ({source}):"]
    reasons = {str((data.get(k) or {}).get("unknown", "not read")) for k, _, _ in _LABELS}
    if not known and len(reasons) == 1:
        lines.append(
            "• mailboxes, OneDrive and SharePoint: *size unknown*: " + plain(reasons.pop())
        )
    else:
        for key, many, one in _LABELS:
            figure = data.get(key) or {"unknown": "not read"}
            if "unknown" in figure:
                lines.append(f"• {many}: *size unknown*: {plain(figure['unknown'])}")
            else:
                count = int(figure.get("count") or 0)
                size = human_size(int(figure.get("bytes") or 0))
                lines.append(f"• *{count:,}* {one if count == 1 else many} · *{size}*")
    lines.append(
        "Deleted users keep their data only until step 5 purges them with the tenant; after"
        " that nothing can be recovered."
        if step == 1
        else "Step 5 purges the deleted users and ends the tenant: the kept accounts' mailboxes"
        " and OneDrive and every SharePoint site go with it; after that nothing can be"
        " recovered."
    )
    return lines


def retained_lines(retained: Sequence[Mapping[str, Any]], limit: int = 10) -> list[str]:
    """The accounts step 1 keeps, by UPN and display name (an entry naming nobody says so)."""
    lines = ["*Kept (not deleted):*"]
    for entry in retained[:limit]:
        if entry.get("upn"):
            name = f" ({plain(entry['name'])})" if entry.get("name") else ""
            lines.append(f"• {code(entry['upn'])}{name}")
        else:
            lines.append(f"• {code(entry.get('entry'))}: no such account (see the blocker)")
    if len(retained) > limit:
        lines.append(f"• and {len(retained) - limit:,} more")
    if len(lines) == 1:
        lines.append("• nobody: `retain` is empty")
    return lines


def step_one_text(facts: Mapping[str, Any]) -> str | None:
    """Step 1's own part of its approval request, or None for a plan without these facts."""
    data, retained = facts.get("data"), facts.get("retained")
    if not isinstance(data, Mapping) and not isinstance(retained, list):
        return None
    lines: list[str] = []
    if isinstance(retained, list):
        lines += retained_lines(retained)
    if isinstance(data, Mapping):
        lines += [*data_loss_lines(data), BACKUP_ADVICE, BACKUP_CONFIRMED]
    return "\n".join(lines)


def step_five_text(facts: Mapping[str, Any]) -> str | None:
    """Step 5's part of its approval request: the data that dies with the tenant, Microsoft's
    advice and what approving confirms, or None for a plan without the figures."""
    data = facts.get("data")
    if not isinstance(data, Mapping):
        return None
    return "\n".join([*data_loss_lines(data, step=5), BACKUP_ADVICE, BACKUP_CONFIRMED_STEP_5])


def step_one_plain(facts: Mapping[str, Any]) -> list[str]:
    """The same as plain text lines (a terminal or a file: no mrkdwn), for `plan` previews."""
    text = step_one_text(facts)
    if text is None:
        return []
    text = text.replace(BACKUP_ADVICE, _ADVICE_PLAIN).replace(BACKUP_CONFIRMED, _CONFIRMED_PLAIN)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return [line.replace("*", "").replace("`", "") for line in text.split("\n")]


_ADVICE_PLAIN = (
    "Microsoft: \u201cBefore you start this process, make sure to back up any data that you want"
    " to preserve.\u201d (https://learn.microsoft.com/microsoft-365/commerce/close-your-account)"
)
_CONFIRMED_PLAIN = "Approving this step confirms the data is backed up."
