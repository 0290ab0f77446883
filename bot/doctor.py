"""`close-account-bot check`: is every token, permission, role, account and Slack scope in place?"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.doctor_lines import Line as Line
from bot.doctor_lines import app_setup_line, retained_lines
from bot.microsoft import tenant as ms
from bot.microsoft.graph import GraphError
from bot.microsoft.permissions import OPTIONAL_ROLES as OPTIONAL_ROLES
from bot.microsoft.permissions import REQUIRED_ROLES as REQUIRED_ROLES
from bot.microsoft.permissions import Need as Need
from bot.microsoft.tokens import TokenError, jwt_claims
from bot.settings import TenantSettings

PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"
# The bot scopes manifest.yml asks for (a test keeps the two equal).
BOT_SCOPES: tuple[str, ...] = (
    "commands",
    "chat:write",
    "reactions:read",
    "users:read",
    "users:read.email",
    "files:write",
    "im:write",
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
)


async def check_slack(client: AsyncWebClient, settings: Settings) -> list[Line]:
    """The bot token works, carries the manifest's scopes, and reaches the progress channel."""
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        return [
            Line("slack", "bot token", False, str(error), "reinstall the app; set SLACK_BOT_TOKEN")
        ]
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        where = settings.slack.api_url or "https://slack.com/api/"
        return [
            Line(
                "slack",
                "reachable",
                False,
                f"cannot reach {where}: {str(exc) or type(exc).__name__}",
                "check the network, the proxy and [slack] api_url",
            )
        ]
    lines = [Line("slack", "bot token", True, f"{auth.get('user')} in {auth.get('team')}")]
    granted = {s.strip() for s in str(auth.headers.get("x-oauth-scopes", "")).split(",") if s}
    missing = [s for s in BOT_SCOPES if s not in granted]
    lines.append(
        Line(
            "slack",
            "scopes",
            not missing,
            "as in manifest.yml" if not missing else "missing " + ", ".join(missing),
            "update the app from manifest.yml and reinstall it to the workspace",
        )
    )
    channel = settings.slack.progress_channel
    try:
        info = await client.conversations_info(channel=channel)
        member = bool((info.get("channel") or {}).get("is_member"))
        lines.append(
            Line(
                "slack",
                "progress channel",
                member,
                f"{channel} " + ("joined" if member else "not joined"),
                f"invite the bot: /invite @close-account-bot in {channel}",
            )
        )
    except SlackApiError as exc:
        lines.append(
            Line(
                "slack",
                "progress channel",
                False,
                f"{channel}: {exc.response.get('error')}",
                "check slack.progress_channel and invite the bot to it",
            )
        )
    for tenant in settings.tenants:
        lines.append(await check_retained_ping(client, tenant))
    return lines


async def check_retained_ping(client: AsyncWebClient, tenant: TenantSettings) -> Line:
    """Who the tenant's admin-center checklists will ping: `retain_slack_user` or the retained
    UPN looked up by email. Never a failure (the checklist then names the account), but said."""
    subject = f"tenant {tenant.name}"
    account = tenant.retain[0] if tenant.retain else None
    ref = tenant.retain_slack_user or (account if account and "@" in account else None)
    if ref is None:
        why = "the retained account is an object ID and retain_slack_user is not set"
        return Line(subject, "checklist ping", True, f"nobody will be pinged: {why}")
    try:
        if "@" in ref:
            user = (await client.users_lookupByEmail(email=ref)).get("user") or {}
        else:
            user = (await client.users_info(user=ref)).get("user") or {}
    except SlackApiError as exc:
        error = exc.response.get("error")
        detail = f"nobody will be pinged: Slack has no user {ref} ({error})"
        return Line(subject, "checklist ping", True, detail + "; set retain_slack_user")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        detail = f"could not look up {ref}: {str(exc) or type(exc).__name__}"
        return Line(subject, "checklist ping", True, detail)
    if user.get("deleted"):
        detail = f"nobody will be pinged: the Slack account for {ref} is deactivated"
        return Line(subject, "checklist ping", True, detail)
    name = user.get("name") or user.get("id")
    return Line(subject, "checklist ping", True, f"checklists mention @{name} ({user.get('id')})")


async def check_tenant(tenant: ms.Tenant) -> list[Line]:
    name = tenant.settings.name
    lines: list[Line] = []
    try:
        token = await tenant.graph.tokens.token()
    except (TokenError, ValueError) as exc:
        fix = (
            "check the network, the proxy, the cloud and authority_host"
            if "cannot reach" in str(exc)
            else "check client_id and the secret or certificate"
        )
        return [Line(name, "token", False, str(exc), fix)]
    claims = jwt_claims(token)
    lines.append(Line(name, "token", True, f"app {claims.get('appid', '?')}"))
    tid = claims.get("tid")
    lines.append(
        Line(
            name,
            "token tenant",
            tid == tenant.tenant_id,
            f"tid {tid}",
            "tenant_id in the config is not the tenant the credentials reach",
        )
    )
    roles = set(claims.get("roles") or [])
    lines += permission_lines(name, roles)
    try:
        org = await ms.organization(tenant)
        lines.append(
            Line(
                name,
                "organization",
                org["id"] == tenant.tenant_id,
                f"{org['display_name']} · {org['primary_domain']}",
                "the token reaches another tenant",
            )
        )
        lines.append(
            Line(
                name,
                "directory sync",
                not org["sync_enabled"],
                "on" if org["sync_enabled"] else "off",
                "turn off Entra Connect sync before step 1 (it can take up to 72 h)",
            )
        )
        lines.append(await _directory_role(tenant))
        lines.append(app_setup_line(name, await ms.app_setup(tenant)))
        lines += await retained_lines(tenant)
    except (GraphError, ms.StepError, TokenError) as exc:
        lines.append(Line(name, "graph", False, str(exc), "see the error"))
    lines += await _subscription_apis(tenant)
    return lines


def permission_lines(subject: str, roles: set[str]) -> list[Line]:
    """One line per step: ok, or each call the token's roles do not allow and what would; a
    group of optional calls (the data-loss figures) says "not granted" and does not fail."""
    lines: list[Line] = []
    every = (*REQUIRED_ROLES, *OPTIONAL_ROLES)
    steps = dict.fromkeys(n.step for n in every)
    for step in steps:
        needs = [n for n in every if n.step == step]
        missing = [n for n in needs if not n.allows(roles)]
        optional = all(n.optional for n in needs)
        detail = "; ".join(f"{n.call}: needs {' or '.join(n.accepted)}" for n in missing)
        add = sorted({n.least for n in missing})
        lines.append(
            Line(
                subject,
                f"permissions {step}",
                not missing or optional,
                ("granted" if not missing else f"not granted ({detail})")
                if optional
                else ("granted" if not missing else detail),
                f"App registrations > API permissions > add {', '.join(add)} (Application),"
                " then grant admin consent",
            )
        )
    return lines


async def _subscription_apis(tenant: ms.Tenant) -> list[Line]:
    """Azure Resource Manager visibility and the partner's Partner Center sign-in."""
    name = tenant.settings.name
    lines: list[Line] = []
    azure, problem = await ms.azure_subscriptions(tenant)
    if tenant.arm is not None:
        lines.append(
            Line(
                name,
                "azure subscriptions",
                problem is None,
                f"{len(azure)} visible through Azure Resource Manager"
                if problem is None
                else problem.split(" (")[0],
                "give the app the Owner role on each Azure subscription (or cancel them in"
                " the Azure portal)",
            )
        )
    if tenant.partner is not None:
        try:
            await tenant.partner.tokens.token(
                scopes=[f"{tenant.partner.settings.api_url}/.default"]
            )
            lines.append(
                Line(
                    name,
                    "partner center",
                    True,
                    f"signed in as the partner {tenant.partner.tenant_id}",
                )
            )
        except TokenError as exc:
            lines.append(
                Line(
                    name,
                    "partner center",
                    False,
                    str(exc),
                    "check [tenants.partner_center] and the partner's secret",
                )
            )
    return lines


async def _directory_role(tenant: ms.Tenant) -> Line:
    """The app's service principal holds Privileged Authentication Administrator."""
    name = tenant.settings.name
    sps = await tenant.graph.get_all(
        f"/servicePrincipals?$filter=appId eq '{tenant.settings.client_id}'"
    )
    if not sps:
        return Line(
            name,
            "directory role",
            False,
            "no service principal for the app",
            "grant admin consent to create the enterprise application",
        )
    assignments = await tenant.graph.get_all(
        f"/roleManagement/directory/roleAssignments?$filter=principalId eq '{sps[0]['id']}'"
    )
    ok = any(
        a.get("roleDefinitionId") == PRIVILEGED_AUTHENTICATION_ADMINISTRATOR for a in assignments
    )
    return Line(
        name,
        "directory role",
        ok,
        "Privileged Authentication Administrator" if ok else "missing",
        "Roles & admins > Privileged Authentication Administrator > add the app"
        " (needed to delete other administrators)",
    )


def table(lines: Sequence[Line]) -> str:
    rows = [("subject", "check", "result", "detail", "fix")]
    rows += [
        (ln.subject, ln.check, "ok" if ln.ok else "FAIL", ln.detail, "" if ln.ok else ln.fix)
        for ln in lines
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:4])).rstrip()
        + (f"  -> {r[4]}" if r[4] else "")
        for r in rows
    )


def check_storage(path: Path) -> Line:
    """The database is SQLite's and its directory writable, or `run` can create it there: a
    mistyped or unusable path is caught before the start. Reads only."""
    directory = path.parent
    writable = os.access(directory, os.W_OK) and not os.statvfs(directory).f_flag & os.ST_RDONLY
    fix = "make the directory writable by the bot's user (uid 10001 in the image)"
    if path.exists() and not path.is_file():
        return Line("storage", "database", False, f"{path} is not a file", "fix [storage] path")
    if path.is_file():
        with path.open("rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\x00":
            return Line(
                "storage",
                "database",
                False,
                f"{path} is not a SQLite database",
                "fix [storage] path, or restore the file from a backup",
            )
    if not writable:
        return Line("storage", "database", False, f"{directory} is not writable", fix)
    if path.is_file():
        return Line("storage", "database", True, f"{path}")
    return Line("storage", "database", True, f"{path} (created by the first run)")


async def check_tenant_reachable(tenant: ms.Tenant) -> list[Line]:
    """check_tenant, with a Microsoft host that does not answer as a failed line, not a raise."""
    try:
        return await check_tenant(tenant)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return [
            Line(
                tenant.settings.name,
                "reachable",
                False,
                f"cannot reach Microsoft: {str(exc) or type(exc).__name__}",
                "check the network, the proxy, the cloud and any endpoint overrides",
            )
        ]
