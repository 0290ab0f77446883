"""Step 4, disable multi-factor authentication: security defaults, conditional access policies
that require MFA (a built-in `mfa` control or an authentication strength), per-user MFA of
every account but the retained Global Administrator. Its undo puts each setting back to the
state its plan recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.microsoft.graph import GraphError
from bot.microsoft.steps.base import Progress, Step, StepContext
from bot.microsoft.steps.delete_users import is_retained
from bot.microsoft.tenant import StepError, Tenant, facts, list_users
from statemachine.plan import Item, Plan

SECURITY_DEFAULTS = "/policies/identitySecurityDefaultsEnforcementPolicy"
CA_POLICIES = "/identity/conditionalAccess/policies"
# What each undo item puts back, and the step 4 item it undoes.
RESTORES = {
    "restore_security_defaults": "security_defaults",
    "restore_ca_policy": "ca_policy",
    "restore_per_user_mfa": "per_user_mfa",
}


def _requirements(user_id: str) -> str:
    return f"/users/{user_id}/authentication/requirements"


def requires_mfa(policy: dict[str, Any]) -> str | None:
    """Why a conditional access policy requires MFA, or None. Its grant controls require MFA
    through the built-in `mfa` control, or through an authentication strength that grants the
    MFA claim. The strength is the grant controls' `authenticationStrength` relationship, an
    authenticationStrengthPolicy (learn.microsoft.com/graph/api/resources/
    conditionalaccessgrantcontrols, v1.0, Relationships), which Graph returns with the policy;
    its `requirementsSatisfied` is `mfa` or `none`: "An authentication strength may be
    built-in or custom ... and may or may not fulfill the requirements to grant an MFA claim"
    (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/resources/
    authenticationstrengthpolicy.md). A strength that says `none` (or a future value) leaves
    the policy alone; one returned without `requirementsSatisfied` is taken as MFA, since
    disabling a policy is undone by a rollback while a missed one keeps MFA on."""
    grant = policy.get("grantControls") or {}
    reasons = []
    if "mfa" in (grant.get("builtInControls") or []):
        reasons.append("requires MFA")
    strength = grant.get("authenticationStrength")
    if isinstance(strength, dict) and strength.get("requirementsSatisfied", "mfa") == "mfa":
        name = strength.get("displayName") or strength.get("id") or "an authentication strength"
        reasons.append(f"requires the authentication strength {name}")
    return " and ".join(reasons) or None


async def _mfa_items(tenant: Tenant, kept: list[str] | None = None) -> list[Item]:
    """Every MFA setting step 4 turns off; the retained accounts it spares go in `kept`."""
    items: list[Item] = []
    defaults = await tenant.graph.get(SECURITY_DEFAULTS)
    if defaults.get("isEnabled"):
        items.append(
            Item(
                "security_defaults",
                "security_defaults",
                "Security defaults (require MFA registration for everyone)",
            )
        )
    for policy in await tenant.graph.get_all(CA_POLICIES):
        why = requires_mfa(policy)
        if why and policy.get("state") != "disabled":
            items.append(
                Item(
                    "ca_policy",
                    str(policy["id"]),
                    f"{policy.get('displayName', '')} ({why})",
                    {"state": policy.get("state"), "why": why},
                )
            )
    # Microsoft's close-your-account page, step 4: "disable all accounts except for the global
    # admin account that you're currently using" (MicrosoftDocs/microsoft-365-docs
    # microsoft-365/commerce/close-your-account.md): the retained administrator keeps its MFA.
    retain = tenant.settings.retain
    for user in await list_users(tenant):
        if is_retained(retain, user):
            if kept is not None:
                kept.append(str(user.get("userPrincipalName", "")))
            continue
        body = await tenant.graph.get(_requirements(user["id"]), beta=True)
        state = body.get("perUserMfaState")
        if state and state != "disabled":
            items.append(
                Item(
                    "per_user_mfa",
                    str(user["id"]),
                    str(user.get("userPrincipalName", "")),
                    {"perUserMfaState": state},
                )
            )
    return items


async def _live(tenant: Tenant, items: Sequence[Item]) -> dict[tuple[str, str], Any]:
    """The current value of every MFA setting among `items` (step 4's kinds)."""
    graph = tenant.graph
    live: dict[tuple[str, str], Any] = {}
    if any(i.kind == "security_defaults" for i in items):
        live[("security_defaults", "security_defaults")] = (await graph.get(SECURITY_DEFAULTS)).get(
            "isEnabled"
        )
    if any(i.kind == "ca_policy" for i in items):
        for policy in await graph.get_all(CA_POLICIES):
            live[("ca_policy", str(policy["id"]))] = policy.get("state")
    for item in items:
        if item.kind == "per_user_mfa":
            body = await graph.get(_requirements(item.id), beta=True)
            live[("per_user_mfa", item.id)] = body.get("perUserMfaState")
    return live


class RestoreMfa:
    """Undo: every MFA setting step 4 changed, back to its recorded state."""

    kinds = frozenset(RESTORES)

    async def plan(
        self, tenant: Tenant, done: Plan
    ) -> tuple[list[Item], list[str], dict[str, Any]]:
        live = await _live(tenant, done.items)
        items: list[Item] = []
        for item in done.items:
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
        return items, [], {}

    async def execute(
        self, tenant: Tenant, items: Sequence[Item], progress: Progress, start: int
    ) -> None:
        for index, item in enumerate(items):
            await progress(index, len(items))
            if item.kind == "restore_security_defaults":
                await tenant.graph.patch(SECURITY_DEFAULTS, {"isEnabled": True})
            elif item.kind == "restore_ca_policy":
                await tenant.graph.patch(
                    f"{CA_POLICIES}/{item.id}", {"state": item.detail["state"]}
                )
            elif item.kind == "restore_per_user_mfa":
                await tenant.graph.patch(
                    _requirements(item.id),
                    {"perUserMfaState": item.detail["perUserMfaState"]},
                    beta=True,
                )
            await progress(index + 1, len(items))

    async def outstanding(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        return []

    async def verify(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        if not items:
            return []
        live = await _live(tenant, [Item(RESTORES[i.kind], i.id, i.name) for i in items])
        problems = []
        for item in items:
            key = (RESTORES[item.kind], item.id)
            if item.kind == "restore_security_defaults":
                ok = live.get(key) is True
            elif item.kind == "restore_ca_policy":
                ok = live.get(key) == item.detail["state"]
            else:
                ok = live.get(key) == item.detail["perUserMfaState"]
            if not ok:
                problems.append(f"{item.name} is not back to its recorded state")
        return problems


class DisableMfa(Step):
    name = "disable_mfa"
    undo = RestoreMfa()

    async def plan(self, ctx: StepContext) -> Plan:
        kept: list[str] = []
        items = await _mfa_items(ctx.tenant, kept)
        checklist = (
            "If the tenant still uses a legacy MFA provider, delete it: Entra admin center >"
            " Protection > Multifactor authentication > Providers (no API exists for this).",
        )
        # The request says whose MFA stays (bot.messages.mfa_why_note): a fact, not an item.
        known = {**facts(dict(ctx.org)), "mfa_kept": sorted(kept)}
        return Plan(self.name, ctx.tenant.tenant_id, tuple(items), (), checklist, known)

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        actions: list[tuple[str, str, dict[str, Any], bool]] = []
        for item in plan.items:
            if item.kind == "security_defaults":
                actions.append(("PATCH", SECURITY_DEFAULTS, {"isEnabled": False}, False))
            elif item.kind == "ca_policy":
                actions.append(("PATCH", f"{CA_POLICIES}/{item.id}", {"state": "disabled"}, False))
            elif item.kind == "per_user_mfa":
                actions.append(
                    ("PATCH", _requirements(item.id), {"perUserMfaState": "disabled"}, True)
                )
        for index in range(start, len(actions)):
            await progress(index, len(actions))  # also the check that the closure still runs
            method, path, body, beta = actions[index]
            try:
                await ctx.tenant.graph.request(method, path, body=body, beta=beta)
            except GraphError as exc:
                if exc.status != 404:
                    raise StepError(
                        f"{method} {path}: {exc.status} {exc.code}: {exc.message}"
                    ) from exc
            await progress(index + 1, len(actions))

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        still = [f"{i.name} is still on" for i in await _mfa_items(ctx.tenant)]
        if still:
            raise StepError("verification failed: " + "; ".join(still))
        return []


STEP = DisableMfa()
