"""Step 3's item for a cancelled Azure subscription: the day Microsoft allows its deletion,
counted from the cancellation time the bot kept, or the latest such day when someone else
cancelled it at a time Azure Resource Manager does not show."""

from __future__ import annotations

import datetime as dt

__all__ = ["azure_delete_after", "azure_delete_unknown_time"]


def _where(name: object) -> str:
    return f"Azure portal > Subscriptions > {name} > Delete; or transfer it to another directory."


def azure_delete_after(name: object, sid: str, when: dt.datetime, days: int) -> str:
    return (
        f"Delete the Azure subscription {name} ({sid}) on or after {when:%Y-%m-%d %H:%M} UTC"
        f" ({days} days after cancelling): {_where(name)}"
    )


def azure_delete_unknown_time(
    name: object, sid: str, first_seen: dt.datetime, latest: dt.datetime, days: int
) -> str:
    return (
        f"Delete the Azure subscription {name} ({sid}) once the Azure portal offers Delete,"
        f" {days} days after it was cancelled: someone cancelled it before the bot first saw it"
        f" cancelled ({first_seen:%Y-%m-%d %H:%M} UTC), at a time Azure Resource Manager does"
        f" not show, so at the latest on {latest:%Y-%m-%d %H:%M} UTC. {_where(name)}"
    )
