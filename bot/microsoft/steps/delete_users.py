"""Step 1, delete users: every user but the retained Global Administrator (a soft delete, which
its undo restores until step 5 purges them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.config_table import GUID
from bot.microsoft.graph import BatchRequest
from bot.microsoft.reports import data_figures
from bot.microsoft.steps import disable_sync
from bot.microsoft.steps.base import BATCH, Progress, Step, StepContext, batched, deletes
from bot.microsoft.tenant import StepError, Tenant, facts, global_admins, list_users
from statemachine.plan import Blocker, Item, Plan

DELETED_USERS = "/directory/deletedItems/microsoft.graph.user"
RETAINED_MISSING = "retained_missing"
RETAINED_NOT_ADMIN = "retained_not_admin"


def keeps(entry: str, user: Mapping[str, Any]) -> bool:
    """Whether a `retain` entry names this user: an object ID (a GUID) by the user's `id`, any
    other entry by its user principal name, both case-insensitively."""
    key = entry.strip().lower()
    if GUID.fullmatch(key):
        return str(user.get("id", "")).lower() == key
    return str(user.get("userPrincipalName", "")).lower() == key


def is_retained(retain: Iterable[str], user: Mapping[str, Any]) -> bool:
    return any(keeps(entry, user) for entry in retain)


def retained_users(
    retain: Iterable[str], users: Sequence[Mapping[str, Any]]
) -> dict[str, Mapping[str, Any] | None]:
    """Each `retain` entry (as configured) and the user it names, or None if none."""
    return {entry: next((u for u in users if keeps(entry, u)), None) for entry in retain}


def retained_facts(
    retain: Iterable[str], users: Sequence[Mapping[str, Any]]
) -> list[dict[str, str | None]]:
    """The accounts step 1 keeps, as its request names them: each `retain` entry and the user
    it resolves to (UPN, display name, object ID; None when it names nobody)."""
    out: list[dict[str, str | None]] = []
    for entry, user in retained_users(retain, users).items():
        out.append(
            {
                "entry": entry,
                "upn": str(user.get("userPrincipalName") or "") if user else None,
                "name": str(user.get("displayName") or "") if user else None,
                "id": str(user.get("id") or "") if user else None,
            }
        )
    return out


class RestoreUsers:
    """Undo: restore the deleted users that are still in the recycle bin."""

    kinds = frozenset({"restore_user"})

    async def plan(
        self, tenant: Tenant, done: Plan
    ) -> tuple[list[Item], list[str], dict[str, Any]]:
        deleted = {str(u["id"]) for u in await tenant.graph.get_all(DELETED_USERS)}
        active = {str(u["id"]) for u in await tenant.graph.get_all("/users?$select=id&$top=999")}
        items: list[Item] = []
        gone: list[str] = []
        for user in done.of_kind("user"):
            if user.id in deleted:
                items.append(Item("restore_user", user.id, user.name))
            elif user.id not in active:
                gone.append(user.name)
        return items, [], {"gone_users": gone}

    async def execute(
        self, tenant: Tenant, items: Sequence[Item], progress: Progress, start: int
    ) -> None:
        """Restore in `$batch`; a user already gone for good is not a failure."""
        for offset in range(start, len(items), BATCH):
            await progress(offset, len(items))  # also the check that the closure still runs
            part = items[offset : offset + BATCH]
            requests = [
                BatchRequest(str(i), "POST", f"/directory/deletedItems/{u.id}/restore", {})
                for i, u in enumerate(part)
            ]
            results = await tenant.graph.batch(requests, ok_statuses=(404,))
            for index, user in enumerate(part):
                resp = results[str(index)]
                if not resp.ok and resp.status != 404:
                    raise StepError(f"restoring {user.name}: {resp.error_text()}")
            await progress(offset + len(part), len(items))

    async def outstanding(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        return []

    async def verify(self, tenant: Tenant, items: Sequence[Item]) -> list[str]:
        if not items:
            return []
        active = {str(u["id"]) for u in await tenant.graph.get_all("/users?$select=id&$top=999")}
        deleted = {str(u["id"]) for u in await tenant.graph.get_all(DELETED_USERS)}
        missing = [u.name for u in items if u.id not in active and u.id in deleted]
        return [f"{len(missing)} users are still deleted, e.g. {missing[0]}"] if missing else []


class DeleteUsers(Step):
    name = "delete_users"
    undo = RestoreUsers()
    preparation = disable_sync.STEP
    clears = disable_sync.SYNC_ON

    async def plan(self, ctx: StepContext) -> Plan:
        tenant, org = ctx.tenant, ctx.org
        users = await list_users(tenant)
        retain = tenant.settings.retain
        admins = await global_admins(tenant)
        blockers = []
        for entry, user in sorted(retained_users(retain, users).items()):
            upn = str(user.get("userPrincipalName", "")) if user else ""
            if user is None:
                blockers.append(
                    Blocker(
                        RETAINED_MISSING,
                        f"The retained account {entry} does not exist. Fix: correct `retain` in"
                        " the config, or create the account and make it a Global Administrator.",
                    )
                )
            elif upn.lower() not in admins:
                named = upn if upn.lower() == entry.lower() else f"{entry} ({upn})"
                blockers.append(
                    Blocker(
                        RETAINED_NOT_ADMIN,
                        f"The retained account {named} holds no active Global Administrator"
                        " assignment. Fix: Entra admin center > Roles & admins > Global"
                        " Administrator > Add assignments (active, not eligible), then `retry`.",
                    )
                )
        if org["sync_enabled"]:
            blockers.append(disable_sync.blocker())
        items = tuple(
            Item(
                "user",
                str(u["id"]),
                str(u.get("userPrincipalName", "")),
                {"userType": u.get("userType") or "Member"},
            )
            for u in users
            if not is_retained(retain, u)
        )
        # Facts, not items: the usage figures drift daily and must not change the plan's hash.
        plan_facts = {
            **facts(dict(org)),
            "retained": retained_facts(retain, users),
            "data": await data_figures(tenant),
        }
        return Plan(self.name, tenant.tenant_id, items, tuple(blockers), facts=plan_facts)

    async def execute(self, ctx: StepContext, plan: Plan, progress: Progress, start: int) -> None:
        paths = [f"/users/{i.id}" for i in plan.of_kind("user")]
        refusals = await batched(ctx.tenant, deletes(paths), progress, start)
        if refusals:
            raise StepError(f"{len(refusals)} deletes refused; first: {refusals[0].text('delete')}")

    async def verify(self, ctx: StepContext, plan: Plan) -> list[str]:
        retain = ctx.tenant.settings.retain
        users = await list_users(ctx.tenant)
        extra = [str(u.get("userPrincipalName")) for u in users if not is_retained(retain, u)]
        problems = [f"{len(extra)} users still exist, e.g. {', '.join(extra[:3])}"] if extra else []
        missing = [e for e, u in retained_users(retain, users).items() if u is None]
        if missing:
            problems.append(f"retained accounts missing: {', '.join(sorted(missing))}")
        if problems:
            raise StepError("verification failed: " + "; ".join(problems))
        return []


STEP = DeleteUsers()
