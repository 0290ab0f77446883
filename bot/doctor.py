"""`close-account-bot check`: is every token, permission, role and account in place per tenant?"""

from __future__ import annotations

from dataclasses import dataclass

from bot.microsoft import steps as ms
from bot.microsoft.graph import GraphError
from bot.microsoft.tokens import TokenError, jwt_claims

# Application permissions each step needs (steps.md); either of a tuple's names will do.
REQUIRED_ROLES: tuple[tuple[str, ...], ...] = (
    ("User.ReadWrite.All", "User.DeleteRestore.All"),
    ("RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory"),
    ("Organization.Read.All", "Organization.ReadWrite.All"),
    ("Directory.Read.All", "Directory.ReadWrite.All"),
    ("Policy.ReadWrite.SecurityDefaults",),
    ("Policy.ReadWrite.ConditionalAccess",),
    ("Policy.Read.All",),
    ("Policy.ReadWrite.AuthenticationMethod",),
    ("Application.ReadWrite.All",),
)


@dataclass(frozen=True)
class Line:
    tenant: str
    check: str
    ok: bool
    detail: str
    fix: str = ""


async def check_tenant(tenant: ms.Tenant) -> list[Line]:
    name = tenant.settings.name
    lines: list[Line] = []
    try:
        token = await tenant.graph.tokens.token()
    except TokenError as exc:
        return [Line(name, "token", False, str(exc), "check client_id, the secret or certificate")]
    claims = jwt_claims(token)
    lines.append(Line(name, "token", True, f"app {claims.get('appid', '?')}"))
    tid = claims.get("tid")
    lines.append(
        Line(
            name,
            "token tenant",
            tid == tenant.tenant_id,
            f"tid {tid}",
            "tenant_id in the config does not match the token",
        )
    )
    roles = set(claims.get("roles") or [])
    for options in REQUIRED_ROLES:
        ok = bool(roles.intersection(options))
        lines.append(
            Line(
                name,
                f"permission {options[0]}",
                ok,
                "granted" if ok else "missing",
                f"Entra admin center > App registrations > API permissions > add {options[0]}"
                " (Application) and grant admin consent",
            )
        )
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
                "turn off Entra Connect sync before step 1 (up to 72 h)",
            )
        )
        admins = await ms.global_admins(tenant)
        for upn in tenant.settings.retain:
            ok = upn.lower() in admins
            lines.append(
                Line(
                    name,
                    f"retained {upn}",
                    ok,
                    "active Global Administrator" if ok else "not an active Global Administrator",
                    "assign the Global Administrator role (active)",
                )
            )
    except (GraphError, ms.StepError, TokenError) as exc:
        lines.append(Line(name, "graph", False, str(exc), "see the error"))
    return lines


def table(lines: list[Line]) -> str:
    rows = [("tenant", "check", "result", "detail", "fix")]
    rows += [
        (ln.tenant, ln.check, "ok" if ln.ok else "FAIL", ln.detail, "" if ln.ok else ln.fix)
        for ln in lines
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:4]))
        + ("  " + r[4] if r[4] else "")
        for r in rows
    )
