"""Rolling back a closure before the point of no return: plan, execute, check, verify.

The approved plans of the steps that ran record what each changed and the state before it;
the rollback plan is what of that is still changed in the tenant now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.microsoft.graph import BatchRequest
from bot.microsoft.steps import (
    ACTIVE_STATUSES,
    CA_POLICIES,
    SECURITY_DEFAULTS,
    Progress,
    StepError,
    Tenant,
    _error_text,
    subscriptions,
)
from statemachine.closure import ROLLBACK
from statemachine.plan import Item, Plan

DELETED_USERS = "/directory/deletedItems/microsoft.graph.user"


def _facts(org: dict[str, Any]) -> dict[str, Any]:
    return {
        "display_name": org["display_name"],
        "tenant_id": org["id"],
        "primary_domain": org["primary_domain"],
    }


async def _live_mfa(tenant: Tenant, plan: Plan) -> dict[tuple[str, str], Any]:
    """The current value of every MFA setting `plan` (step 4's) changed."""
    graph = tenant.graph
    live: dict[tuple[str, str], Any] = {}
    if plan.of_kind("security_defaults"):
        live[("security_defaults", "security_defaults")] = (await graph.get(SECURITY_DEFAULTS)).get(
            "isEnabled"
        )
    if plan.of_kind("ca_policy"):
        for policy in await graph.get_all(CA_POLICIES):
            live[("ca_policy", str(policy["id"]))] = policy.get("state")
    for item in plan.of_kind("per_user_mfa"):
        body = await graph.get(f"/users/{item.id}/authentication/requirements", beta=True)
        live[("per_user_mfa", item.id)] = body.get("perUserMfaState")
    return live


async def plan_rollback(tenant: Tenant, org: dict[str, Any], history: Mapping[str, Plan]) -> Plan:
    """What is still changed: deleted users to restore, MFA settings and subscriptions."""
    items: list[Item] = []
    gone: list[str] = []
    lost: list[str] = []
    users = history.get("delete_users")
    if users is not None:
        deleted = {str(u["id"]) for u in await tenant.graph.get_all(DELETED_USERS)}
        active = {str(u["id"]) for u in await tenant.graph.get_all("/users?$select=id&$top=999")}
        for user in users.of_kind("user"):
            if user.id in deleted:
                items.append(Item("restore_user", user.id, user.name))
            elif user.id not in active:
                gone.append(user.name)
    mfa = history.get("disable_mfa")
    if mfa is not None:
        live = await _live_mfa(tenant, mfa)
        for item in mfa.items:
            now = live.get((item.kind, item.id))
            if item.kind == "security_defaults" and now is False:
                items.append(Item("restore_security_defaults", item.id, item.name))
            elif item.kind == "ca_policy" and now is not None and now != item.detail["state"]:
                items.append(
                    Item("restore_ca_policy", item.id, item.name, {"state": item.detail["state"]})
                )
            elif item.kind == "per_user_mfa" and now != item.detail["perUserMfaState"]:
                items.append(
                    Item(
                        "restore_per_user_mfa",
                        item.id,
                        item.name,
                        {"perUserMfaState": item.detail["perUserMfaState"]},
                    )
                )
    cancelled = history.get("cancel_subscriptions")
    if cancelled is not None:
        status = {str(s["id"]): s.get("status") for s in await subscriptions(tenant)}
        for sub in cancelled.of_kind("subscription"):
            now = status.get(sub.id)
            if now == "Deleted" or now is None:
                lost.append(f"{sub.name} ({sub.id})")
            elif now not in ACTIVE_STATUSES:
                items.append(Item("reactivate_subscription", sub.id, sub.name))
    checklist = tuple(
        f"{i.name} ({i.id}): Microsoft 365 admin center > Billing > Your products > {i.name} >"
        " Reactivate"
        for i in items
        if i.kind == "reactivate_subscription"
    )
    facts = {**_facts(org), "gone_users": gone, "lost_subscriptions": lost}
    return Plan(ROLLBACK, tenant.tenant_id, tuple(items), (), checklist, facts)


async def execute_rollback(tenant: Tenant, plan: Plan, progress: Progress, start: int) -> None:
    """Restore users in $batch (a user already gone is reported, not a failure), then put
    every MFA setting back to its recorded state."""
    users = plan.of_kind("restore_user")
    total = len(users) + len(plan.items) - len(users)
    gone: list[str] = []
    for offset in range(start, len(users), 20):
        await progress(offset, total)  # also the check that the closure still runs
        part = users[offset : offset + 20]
        requests = [
            BatchRequest(str(i), "POST", f"/directory/deletedItems/{u.id}/restore", {})
            for i, u in enumerate(part)
        ]
        results = await tenant.graph.batch(requests, ok_statuses=(404,))
        for index, user in enumerate(part):
            resp = results[str(index)]
            if resp.status == 404:
                gone.append(user.name)
            elif not resp.ok:
                raise StepError(f"restoring {user.name}: {_error_text(resp)}")
        await progress(offset + len(part), total)
    done = len(users)
    for item in plan.items:
        await progress(done, total)
        if item.kind == "restore_security_defaults":
            await tenant.graph.patch(SECURITY_DEFAULTS, {"isEnabled": True})
        elif item.kind == "restore_ca_policy":
            await tenant.graph.patch(f"{CA_POLICIES}/{item.id}", {"state": item.detail["state"]})
        elif item.kind == "restore_per_user_mfa":
            await tenant.graph.patch(
                f"/users/{item.id}/authentication/requirements",
                {"perUserMfaState": item.detail["perUserMfaState"]},
                beta=True,
            )
        else:
            continue
        done += 1
        await progress(done, total)


async def check_rollback(tenant: Tenant, plan: Plan) -> list[str]:
    """Subscriptions still to reactivate (one deleted meanwhile can no longer be: not waited on)."""
    status = {str(s["id"]): s.get("status") for s in await subscriptions(tenant)}
    return [
        f"{i.name} ({i.id}) is {status.get(i.id)}"
        for i in plan.of_kind("reactivate_subscription")
        if status.get(i.id) not in ACTIVE_STATUSES and status.get(i.id) not in (None, "Deleted")
    ]


async def verify_rollback(tenant: Tenant, plan: Plan) -> list[str]:
    """Read everything back: restored users active, each setting at its recorded state."""
    problems: list[str] = []
    users = plan.of_kind("restore_user")
    if users:
        active = {str(u["id"]) for u in await tenant.graph.get_all("/users?$select=id&$top=999")}
        deleted = {str(u["id"]) for u in await tenant.graph.get_all(DELETED_USERS)}
        missing = [u.name for u in users if u.id not in active and u.id in deleted]
        if missing:
            problems.append(f"{len(missing)} users are still deleted, e.g. {missing[0]}")
    mfa_items = [
        i for i in plan.items if i.kind.startswith("restore_") and i.kind != "restore_user"
    ]
    if mfa_items:
        recorded = Plan(
            "disable_mfa",
            plan.tenant_id,
            tuple(
                Item(
                    {
                        "restore_security_defaults": "security_defaults",
                        "restore_ca_policy": "ca_policy",
                        "restore_per_user_mfa": "per_user_mfa",
                    }[i.kind],
                    i.id,
                    i.name,
                    i.detail,
                )
                for i in mfa_items
            ),
        )
        live = await _live_mfa(tenant, recorded)
        for item in mfa_items:
            if item.kind == "restore_security_defaults":
                ok = live.get(("security_defaults", item.id)) is True
            elif item.kind == "restore_ca_policy":
                ok = live.get(("ca_policy", item.id)) == item.detail["state"]
            else:
                ok = live.get(("per_user_mfa", item.id)) == item.detail["perUserMfaState"]
            if not ok:
                problems.append(f"{item.name} is not back to its recorded state")
    problems += await check_rollback(tenant, plan)
    return problems
