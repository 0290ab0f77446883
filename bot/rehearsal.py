"""Rehearsal with the operator's own config: `close-account-bot demo --config FILE [--tenant NAME]`.

The config is read and validated as `run` reads it, but with simulated secrets: the rehearsal
never needs or reads the real ones, and never opens the real database. It builds a simulated
Slack workspace (the configured admins and approvers, the progress channel) and a simulated
Microsoft tenant that match the config (name, tenant ID, app's client ID, the retained Global
Administrator by UPN or object ID, a Partner Center partner if one is configured), then runs the
real bot with a derived config (the same values; Slack's URL, a temporary database, a simulated
client secret and compressed timings) while the configured approvers approve each step and one
configured admin starts the closure and works the admin-center checklists.

The tenant's cloud is kept: the bot signs in and calls Graph on that cloud's real host names,
which an HTTPS proxy on 127.0.0.1 (simulator/proxy.py) tunnels to the Microsoft simulator, so
nothing leaves the machine (as tests/test_clouds_process.py does).

Config mistakes that only show in a run are found before it starts: a quorum the approvers who
may vote cannot reach (the admin who starts the closure never counts), an approver who is also
an admin, and more than one retained account (Microsoft deletes a directory only when a single
Global Administrator is left: MicrosoftDocs/entra-docs,
docs/identity/users/directory-delete-howto.md).
"""

from __future__ import annotations

import copy
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from bot.config import Settings, TenantSettings
from bot.demo import Printer, wait_final
from bot.doctor import BOT_SCOPES
from bot.rehearsal_config import (
    PARTNER_SECRET_ENV,
    TENANT_SECRET_ENV,
    check_config,
    derived_config,
    eligible_approvers,
    pick_tenant,
    quorum_steps,
    requester_of,
)
from bot.rehearsal_config import RehearsalError as RehearsalError
from bot.rehearsal_config import read_config as read_config
from bot.world import World
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES
from simulator.microsoft.hosts import HOST_ROLES
from simulator.microsoft.server import MicrosoftSimulator, SimTenant
from simulator.proxy import ConnectProxy
from simulator.slack.server import SimUser, SlackSimulator


# The placeholder every secret the config names gets while it is validated: never a real value.
def slack_people(
    settings: Settings, tenant: TenantSettings
) -> tuple[list[SimUser], dict[str, str]]:
    """A workspace member for every configured admin, approver and retained administrator's
    Slack user (Slack user IDs as given, emails as members with that email) and each configured
    name's Slack user ID."""
    users: list[SimUser] = []
    ids: dict[str, str] = {}
    admin = (tenant.retain_slack_user,) if tenant.retain_slack_user else ()
    for person in (*settings.slack.admins, *tenant.approvers, *admin):
        if person.lower() in ids:
            continue
        if "@" in person:
            user_id = f"U0RH{len(users) + 1:04d}"
            users.append(SimUser(user_id, person.split("@")[0], person))
        else:
            user_id = person
            users.append(SimUser(person, person.lower(), f"{person.lower()}@rehearsal.example"))
        ids[person.lower()] = user_id
    return users, ids


def build_tenant(
    microsoft: MicrosoftSimulator, tenant: TenantSettings, *, users: int, seed: int
) -> tuple[SimTenant, SimTenant | None]:
    """The tenant as configured: name, tenant ID, the bot app's client ID, each retained
    account a Global Administrator (a UPN as that UPN, an object ID as that ID); and the
    partner's tenant when [tenants.partner_center] is set."""
    first = tenant.retain[0]
    sim = microsoft.add_tenant(
        name=tenant.name,
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        client_secret=secrets.token_urlsafe(24),
        retained_upn=first if "@" in first else f"admin@{tenant.name}.onmicrosoft.com",
        users=users,
        seed=seed,
        # As the README asks operators to grant it: the optional Reports.Read.All too, so the
        # rehearsal's step 1 shows the data that dies.
        app_roles=DEFAULT_APP_ROLES | {"Reports.Read.All"},
    )
    if "@" not in first:
        _rekey(sim, sim.retained_upn, first)
    for extra in tenant.retain[1:]:
        _add_global_admin(sim, extra if "@" in extra else None, None if "@" in extra else extra)
    partner = None
    if tenant.partner_center is not None:
        pc = tenant.partner_center
        partner = microsoft.add_tenant(
            name=f"{tenant.name}-partner",
            tenant_id=pc.tenant_id,
            client_id=pc.client_id,
            client_secret=secrets.token_urlsafe(24),
            users=2,
            seed=seed + 1000,
        )
        for sub in sim.subscriptions:
            if sub.get("ownerTenantId") not in (None, sim.tenant_id):
                sub["ownerTenantId"] = partner.tenant_id
    return sim, partner


def _rekey(sim: SimTenant, upn: str, object_id: str) -> None:
    """Give the user `upn` the object ID `object_id`, keeping its roles and MFA state."""
    user = sim.find_user(upn)
    assert user is not None, upn
    old = user["id"]
    user["id"] = object_id
    others = {k: v for k, v in sim.users.items() if k != old}
    sim.users = dict(sorted({**others, object_id: user}.items()))
    sim.roles[object_id] = sim.roles.pop(old, set())
    sim.per_user_mfa[object_id] = sim.per_user_mfa.pop(old, "enforced")


def _add_global_admin(sim: SimTenant, upn: str | None, object_id: str | None) -> None:
    """Another Global Administrator, copied from the retained one (retain's later entries)."""
    retained = sim.retained_user
    assert retained is not None
    user = copy.deepcopy(retained)
    user["id"] = object_id or sim.guid()
    user["userPrincipalName"] = user["mail"] = upn or f"admin{len(sim.users)}@{sim.initial_domain}"
    sim.users[user["id"]] = user
    sim.roles[user["id"]] = set(sim.roles.get(retained["id"], set()))
    sim.per_user_mfa[user["id"]] = "enforced"


async def run_rehearsal(
    config: Path | str,
    tenant_name: str | None = None,
    *,
    users: int = 12,
    seed: int = 1,
    out: TextIO = sys.stdout,
    limit: float = 55.0,
) -> int:
    """Rehearse closing the configured tenant within `limit` seconds; 0 once the simulated
    tenant is closed, 1 on a config mistake or a closure that does not close."""
    started = time.monotonic()
    settings = read_config(config)
    tenant = pick_tenant(settings, tenant_name)
    findings = check_config(settings, tenant)
    for line in findings.warnings:
        out.write(f"warning: {line}\n")
    for line in findings.errors:
        out.write(f"config mistake: {line}\n")
    if findings.errors:
        out.write(
            f"The rehearsal of {tenant.name} did not run: {len(findings.errors)} config"
            " mistake(s) above.\n"
        )
        return 1
    requester = requester_of(settings, tenant)
    microsoft = MicrosoftSimulator(retry_after=0.02)
    sim, partner = build_tenant(microsoft, tenant, users=max(users, 2), seed=seed)
    people, ids = slack_people(settings, tenant)
    channel = settings.slack.progress_channel
    slack = SlackSimulator(
        users=people, channels={channel: "closures"}, bot_scopes=frozenset(BOT_SCOPES)
    )
    proxy = ConnectProxy({})
    directory = Path(tempfile.mkdtemp(prefix="close-account-rehearsal-"))
    world: World | None = None
    try:
        await microsoft.start()
        await slack.start()
        await proxy.start()
        port = int(microsoft.base_url.rsplit(":", 1)[1])
        proxy.routes.update(dict.fromkeys(HOST_ROLES, port))
        config_path = directory / "close-account.toml"
        config_path.write_text(
            derived_config(
                settings,
                tenant,
                slack=slack,
                microsoft=microsoft,
                proxy=proxy,
                db_path=directory / "close-account.db",
            )
        )
        environ = {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            TENANT_SECRET_ENV: sim.client_secret,
            **({PARTNER_SECRET_ENV: partner.client_secret} if partner else {}),
        }
        world = World(microsoft, slack, sim, directory, config_path, environ, owns_directory=False)
        world.channel = channel
        await world.start_bot()
        slack.subscribe(Printer(out, started))
        voters = [ids[a.lower()] for a in eligible_approvers(tenant, requester)]
        needed = max(tenant.quorum_for(step) for step in quorum_steps())
        out.write(
            f"close-account-bot rehearsal of {settings.file}: tenant '{tenant.name}'"
            f" ({tenant.tenant_id}), cloud {tenant.cloud}, {len(sim.users)} simulated users;"
            f" retained {', '.join(tenant.retain)}; admin {requester} starts it; approvers"
            f" {', '.join(tenant.approvers)} ({_quorum_text(tenant)})\n"
            f"> {requester} types: /close-account {tenant.name}\n"
        )
        world.script_approvers(tuple(voters[:needed]))
        world.script_admin()
        reply = await world.command(tenant.name, user=ids[requester.lower()])
        out.write(f"(only {requester} sees) {reply}\n")
        final = await wait_final(world, limit)
        elapsed = time.monotonic() - started
        if final is None:
            out.write(f"\nThe rehearsal did not finish in {limit:.0f}s (state {world.state()}).\n")
            return 1
        out.write(
            f"\nFinal state: {final}; simulated tenant deleted: {sim.deleted}; {elapsed:.1f}s\n"
        )
        if final == "closed" and sim.deleted:
            out.write(f"The rehearsal closed the simulated {tenant.name}.\n")
            return 0
        out.write(f"The rehearsal did not close the simulated {tenant.name}: it ended {final}.\n")
        return 1
    finally:
        if world is not None:
            await world.close()
        else:
            await slack.stop()
            await microsoft.stop()
        await proxy.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _quorum_text(tenant: TenantSettings) -> str:
    steps: Mapping[str, int] = tenant.quorum_by_step
    extra = "".join(f", {step} {n}" for step, n in steps.items())
    return f"quorum {tenant.quorum}{extra}"
