"""What a simulated Global Administrator does by hand in the Azure portal (the demo's admin)."""

from __future__ import annotations

import datetime as dt

from simulator.microsoft.azure import AzureEstate


def cancel_named(estate: AzureEstate, text: str, now: dt.datetime) -> None:
    """Remove the resources of each active Azure subscription `text` names and cancel it in the
    portal (MicrosoftDocs/azure-docs articles/cost-management-billing/manage/
    cancel-azure-subscription.md: the resources are shown, then Cancel subscription)."""
    for sub in estate.subscriptions:
        sid = str(sub["subscriptionId"])
        if sid in text and sub["state"] == "Enabled":
            estate.resources.pop(sid, None)
            sub["state"] = "Disabled"
            estate.cancelled_at[sid] = now
