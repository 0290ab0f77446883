"""The bot lists Azure subscriptions with the api-version of the spec it cites, and the
simulator refuses another (Microsoft.Resources/stable/2022-12-01/subscriptions.json)."""

from __future__ import annotations

from bot.microsoft import azure as bot_azure
from simulator.microsoft.azure import AzureEstate
from simulator.microsoft.azure import handle as azure_handle

SPEC = "Microsoft.Resources/stable/2022-12-01/subscriptions.json"


def test_the_bot_lists_subscriptions_with_the_cited_specs_version() -> None:
    """The listing's api-version is the version of the spec the module cites."""
    assert bot_azure.LIST_API == "2022-12-01"
    assert SPEC in (bot_azure.__doc__ or "")


def test_the_simulated_list_accepts_only_the_documented_version() -> None:
    """Subscriptions_List answers the 2022-12-01 version and refuses 2020-01-01 with
    InvalidApiVersionParameter."""
    estate = AzureEstate()
    status, body = azure_handle(estate, "GET", ["subscriptions"], {"api-version": "2022-12-01"})
    assert status == 200 and "value" in body
    status, body = azure_handle(estate, "GET", ["subscriptions"], {"api-version": "2020-01-01"})
    assert status == 400 and body["error"]["code"] == "InvalidApiVersionParameter"
