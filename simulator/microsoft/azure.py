"""Azure Resource Manager in the simulator: the tenant's Azure subscriptions, listed and cancelled.

Served under `{base}/arm` with its own token audience (`{base}/arm`), as ARM is its own resource
in Entra: a Graph token is refused here and an ARM token on Graph.

The subscription list is paged as ARM documents it (Azure/azure-rest-api-specs,
specification/resources/resource-manager/Microsoft.Resources/stable/2022-12-01/subscriptions.json:
`Subscriptions_List` is `x-ms-pageable` with `nextLinkName: nextLink`, and
`SubscriptionListResult.nextLink` is "The URL to get the next set of results"). ARM does not
document the page size; the simulator's is small (`AzureEstate.page_size`, 2) so tests page.

What a subscription still holds: `Resources_List`, `GET /subscriptions/{id}/resources`
(Azure/azure-rest-api-specs, specification/resources/resource-manager/Microsoft.Resources/stable/
2022-12-01/resources.json: `ResourceListResult` with `value` of `GenericResourceExpanded` (id,
name, type, location) and `nextLink`).

Cancelling: `Subscription_Cancel`, `POST /subscriptions/{id}/providers/Microsoft.Subscription/
cancel?api-version=2021-10-01` (specification/subscription/resource-manager/
Microsoft.Subscription/stable/2021-10-01/subscriptions.json; its example
examples/cancelSubscription.json answers 200 `{"value": "<subscriptionId>"}`; errors are
`ErrorResponseBody` `{"error": {"code", "message"}}`). The spec documents no error example; ARM
refuses while resources exist with 400 `ResourcesExistingOnSubscription`, "There are existing
resources associated with subscription. Delete them before cancelling the subscription" (as
reported in Azure/terraform-azurerm-lz-vending issue 405 and Azure/azure-sdk-for-python issue
10814; by design per Azure/azure-rest-api-specs issue 9042). A cancelled subscription lists as
"Disabled" (the `state` enum of Microsoft.Resources subscriptions.json: Enabled, Warned, PastDue,
Disabled, Deleted). ARM shows no cancellation time: `Subscription` in that file has none
(id, subscriptionId, displayName, tenantId, state, subscriptionPolicies, authorizationSource,
managedByTenants, tags), and the cancel answers only `CanceledSubscriptionId`
(Microsoft.Subscription/Subscription/models.tsp). The simulator keeps one (`cancelled_at`) for
its portal's Delete rule only and serves it nowhere; the bot keeps its own.

Deleting: MicrosoftDocs/entra-docs, docs/identity/users/directory-delete-howto.md, "Delete an
Azure subscription": an active or cancelled Azure subscription blocks the tenant's deletion; a
free trial or pay-as-you-go subscription can be deleted in the Azure portal three days after it
was cancelled, any other seven days after. The admin's portal deletion is the `/_sim` control
`POST /_sim/tenants/{tenant}/subscriptions/{id}/delete` (`AzureEstate.delete`); the subscription
then lists as "Deleted".
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

ARM_RESOURCES = ("https://management.azure.com", "https://management.core.windows.net")
# Subscriptions_List as Microsoft.Resources/stable/2022-12-01/subscriptions.json documents it;
# another api-version is refused (strictest plausible: the simulator follows this one spec).
LIST_API = "2022-12-01"
CANCEL_API = "2021-10-01"
RESOURCES_API = "2022-12-01"
ACTIVE_STATES = frozenset({"Enabled", "PastDue", "Warned"})
# quotaId prefixes (SubscriptionPolicies.quotaId) of the offers deletable 3 days after cancelling.
SHORT_WAIT_OFFERS = ("FreeTrial", "PayAsYouGo")


def delete_wait(quota_id: str) -> dt.timedelta:
    """How long after cancelling the admin may delete the subscription (directory-delete-howto)."""
    return dt.timedelta(days=3 if quota_id.startswith(SHORT_WAIT_OFFERS) else 7)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AzureRefused(Exception):
    """The admin's portal action is not possible (yet)."""


@dataclass
class AzureEstate:
    """A tenant's Azure subscriptions and whether the bot's app may cancel them (Owner)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    app_is_owner: bool = True
    # Subscriptions on which the app holds only the built-in Reader role (actions `*/read`): it
    # lists them, and ARM refuses their cancel (Microsoft.Subscription/cancel/action, which Reader
    # does not grant) with 403 AuthorizationFailed (MicrosoftDocs/azure-docs, articles/
    # role-based-access-control/built-in-roles.md; cost-management-billing/manage/
    # cancel-azure-subscription.md: the subscription's Owner cancels it).
    readers: set[str] = field(default_factory=set)
    page_size: int = 2
    now: Callable[[], dt.datetime] = _utcnow  # the tenant's clock
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by subscription
    cancelled_at: dict[str, dt.datetime] = field(default_factory=dict)

    def seed(self, tenant_id: str, count: int, seed: int) -> None:
        base = uuid.uuid5(uuid.NAMESPACE_URL, f"sim-azure:{tenant_id}:{seed}")
        for n in range(count):
            sid = str(uuid.uuid5(base, str(n)))
            self.subscriptions.append(
                {
                    "id": f"/subscriptions/{sid}",
                    "subscriptionId": sid,
                    "tenantId": tenant_id,
                    "displayName": ["Production", "Dev/Test", "Sandbox"][n % 3] + f" {n + 1}",
                    "state": "Enabled",
                    "authorizationSource": "RoleBased",
                    "subscriptionPolicies": {"quotaId": "PayAsYouGo_2014-09-01"},
                }
            )

    def find(self, sid: str) -> dict[str, Any] | None:
        return next((s for s in self.subscriptions if s["subscriptionId"] == sid), None)

    def add_resource(
        self, sid: str, name: str, rtype: str = "Microsoft.Storage/storageAccounts"
    ) -> None:
        """A resource in resource group `rg-sim` of subscription `sid`."""
        self.resources.setdefault(sid, []).append(
            {
                "id": f"/subscriptions/{sid}/resourceGroups/rg-sim/providers/{rtype}/{name}",
                "name": name,
                "type": rtype,
                "location": "westeurope",
            }
        )

    def set_offer(self, sid: str, quota_id: str) -> None:
        """The subscription's offer, as ARM shows it (`subscriptionPolicies.quotaId`)."""
        sub = self.find(sid)
        if sub is None:
            raise KeyError(sid)
        sub.setdefault("subscriptionPolicies", {})["quotaId"] = quota_id

    def deletable_from(self, sid: str) -> dt.datetime | None:
        sub, at = self.find(sid), self.cancelled_at.get(sid)
        if sub is None or at is None:
            return None
        return at + delete_wait(str(sub.get("subscriptionPolicies", {}).get("quotaId", "")))

    def delete(self, sid: str) -> dict[str, Any]:
        """The admin deletes a cancelled subscription in the Azure portal (Subscriptions > select >
        Delete), allowed 3 or 7 days after it was cancelled; it then lists as "Deleted"."""
        sub = self.find(sid)
        if sub is None:
            raise KeyError(sid)
        if sub["state"] == "Deleted":
            return sub
        when = self.deletable_from(sid)
        if sub["state"] != "Disabled" or when is None:
            raise AzureRefused(f"Azure subscription {sid} is {sub['state']}: cancel it first.")
        if self.now() < when:
            raise AzureRefused(
                f"Azure subscription {sid} can be deleted from {when.isoformat()} on."
            )
        sub["state"] = "Deleted"
        return sub

    def reactivate(self, sid: str) -> dict[str, Any]:
        """The admin reactivates a cancelled subscription: in the Azure portal for pay-as-you-go,
        through Microsoft support within 90 days for other offers (MicrosoftDocs/azure-docs
        articles/cost-management-billing/manage/cancel-azure-subscription.md, "Reactivate a
        subscription"); a deleted one cannot come back."""
        sub = self.find(sid)
        if sub is None:
            raise KeyError(sid)
        if sub["state"] == "Deleted":
            raise AzureRefused(f"Azure subscription {sid} is deleted: it cannot be reactivated.")
        sub["state"] = "Enabled"
        self.cancelled_at.pop(sid, None)
        return sub

    def delete_when_allowed(
        self, now: Callable[[], dt.datetime], advance: Callable[[float], None]
    ) -> None:
        """A simulated admin deletes each cancelled subscription in the Azure portal on the day
        Azure allows it, the tenant's clock moved on to that day (timings compressed)."""
        for sub in self.subscriptions:
            when = self.deletable_from(str(sub["subscriptionId"]))
            if sub["state"] != "Disabled" or when is None:
                continue
            wait = (when - now()).total_seconds()
            if wait > 0:
                advance(wait + 60)
            self.delete(str(sub["subscriptionId"]))

    def reactivate_named(self, text: str) -> None:
        """A simulated admin reactivates each cancelled subscription a checklist names."""
        for sub in self.subscriptions:
            if sub["state"] == "Disabled" and str(sub["subscriptionId"]) in text:
                self.reactivate(str(sub["subscriptionId"]))


def arm_error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


def handle(
    estate: AzureEstate,
    method: str,
    segments: list[str],
    query: dict[str, str],
    base: str = "https://management.azure.com",
) -> tuple[int, dict[str, Any]]:
    """Answer an ARM request (path segments after /arm) as Azure Resource Manager does; `base`
    is the ARM root the client used, for the absolute `nextLink`."""
    version = query.get("api-version")
    if not version:
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if method == "GET" and segments == ["subscriptions"]:
        if version != LIST_API:
            return arm_error(
                400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid."
            )
        visible = estate.subscriptions if estate.app_is_owner else []
        token = query.get("$skiptoken", "0")
        if not token.isdigit() or int(token) > len(visible):
            return arm_error(400, "InvalidSkipToken", f"The skip token '{token}' is invalid.")
        start = int(token)
        end = start + max(1, estate.page_size)
        body: dict[str, Any] = {
            "value": visible[start:end],
            "count": {"type": "Total", "value": len(visible)},
        }
        if end < len(visible):
            link_query = urlencode({"api-version": version, "$skiptoken": str(end)})
            body["nextLink"] = f"{base}/subscriptions?{link_query}"
        return 200, body
    if method == "GET" and len(segments) == 3 and segments[::2] == ["subscriptions", "resources"]:
        if estate.find(segments[1]) is None or not estate.app_is_owner:
            return arm_error(
                404, "SubscriptionNotFound", f"The subscription '{segments[1]}' could not be found."
            )
        return 200, {"value": list(estate.resources.get(segments[1], []))}
    if (
        method == "POST"
        and len(segments) == 5
        and segments[0] == "subscriptions"
        and segments[2:] == ["providers", "Microsoft.Subscription", "cancel"]
    ):
        if version != CANCEL_API:
            return arm_error(
                400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid."
            )
        sub = estate.find(segments[1])
        if sub is None:
            return arm_error(
                404, "SubscriptionNotFound", f"The subscription '{segments[1]}' could not be found."
            )
        if not estate.app_is_owner or sub["subscriptionId"] in estate.readers:
            return arm_error(
                403,
                "AuthorizationFailed",
                "The client does not have authorization to perform action"
                " 'Microsoft.Subscription/cancel/action'.",
            )
        if sub["state"] not in ACTIVE_STATES:
            return arm_error(
                400, "SubscriptionNotActive", f"The subscription is {sub['state']}, not active."
            )
        if estate.resources.get(sub["subscriptionId"]):
            return arm_error(
                400,
                "ResourcesExistingOnSubscription",
                "There are existing resources associated with subscription. Delete them before"
                " cancelling the subscription",
            )
        sub["state"] = "Disabled"
        estate.cancelled_at[sub["subscriptionId"]] = estate.now()
        return 200, {"value": sub["subscriptionId"]}
    return arm_error(404, "NotFound", "The requested resource was not found.")
