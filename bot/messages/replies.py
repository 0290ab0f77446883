"""Replies to a command, and the sentences about step 5's preconditions and the bot's own
access: pure."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages.words import step_name
from statemachine import steps
from statemachine.steps import ROLLBACK

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


def app_setup(multi_tenant: bool, home_tenant_id: str | None, *, consented: bool = True) -> str:
    """`check`'s line on where the bot's own app is registered."""
    if not consented:
        return "not consented (no service principal for the app in this tenant)"
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
