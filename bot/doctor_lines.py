"""`close-account-bot check`'s line, and the tenant lines that resolve what the config names:
the bot's own app (consented here or not) and the retained accounts."""

from __future__ import annotations

from dataclasses import dataclass

from bot import messages
from bot.microsoft import tenant as ms
from bot.microsoft.steps.delete_users import retained_users


@dataclass(frozen=True)
class Line:
    subject: str
    check: str
    ok: bool
    detail: str
    fix: str = ""


def app_setup_line(subject: str, setup: ms.AppSetup) -> Line:
    """Where the bot's own app lives; without a service principal here it is not consented,
    and nothing the bot calls in this tenant can work."""
    return Line(
        subject,
        "app setup",
        setup.consented,
        messages.app_setup(setup.multi_tenant, setup.home_tenant_id, consented=setup.consented),
        "grant admin consent to the app in this tenant (Entra admin center > Enterprise"
        " applications, or the admin consent URL), which creates its service principal",
    )


async def retained_lines(tenant: ms.Tenant) -> list[Line]:
    """Each `retain` entry resolved as step 1 resolves it (a UPN in any case, or an object
    ID) and checked for an active Global Administrator assignment; more than one entry FAILs,
    since Microsoft deletes a directory only when exactly one Global Administrator is left
    (MicrosoftDocs/entra-docs docs/identity/users/directory-delete-howto.md)."""
    name = tenant.settings.name
    retain = tenant.settings.retain
    users = await ms.list_users(tenant)
    admins = await ms.global_admins(tenant)
    lines: list[Line] = []
    if len(retain) > 1:
        lines.append(
            Line(
                name,
                "retained accounts",
                False,
                f"{len(retain)} in `retain`: Microsoft deletes a directory only when exactly one"
                " Global Administrator is left (step 5 would refuse after steps 1-4 ran)",
                "keep exactly one account in `retain` in the config",
            )
        )
    for entry, user in retained_users(retain, users).items():
        upn = str(user.get("userPrincipalName") or "") if user else ""
        named = entry if not upn or upn.lower() == entry.lower() else f"{entry} ({upn})"
        if user is None:
            lines.append(
                Line(
                    name,
                    f"retained {entry}",
                    False,
                    "no such user (by user principal name or object ID)",
                    "correct `retain` in the config, or create the account",
                )
            )
            continue
        ok = upn.lower() in admins
        lines.append(
            Line(
                name,
                f"retained {named}",
                ok,
                "active Global Administrator" if ok else "not an active Global Administrator",
                "Roles & admins > Global Administrator > add an active assignment",
            )
        )
    return lines
