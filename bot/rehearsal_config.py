"""The rehearsal's side of the operator's config: read and validated as `run` reads it (with
placeholder secrets), checked for the mistakes only a run would show, and turned into the config
the real bot runs with against the simulators."""

from __future__ import annotations

import copy
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bot.config import Settings, TenantSettings, load_settings, settings_from_mapping
from bot.world import DEMO_TIMING
from simulator.microsoft.hosts import HOST_ROLES
from simulator.microsoft.server import MicrosoftSimulator
from simulator.proxy import ConnectProxy
from simulator.slack.server import SlackSimulator
from statemachine import approvals as rules
from statemachine import steps


def quorum_steps() -> tuple[str, ...]:
    return (*steps.names(), steps.ROLLBACK)


PLACEHOLDER = "rehearsal-placeholder"
TENANT_SECRET_ENV = "REHEARSAL_TENANT_SECRET"
PARTNER_SECRET_ENV = "REHEARSAL_PARTNER_SECRET"
# Compressed timings, the demo's, with status edits paced as production paces them.
REHEARSAL_TIMING: dict[str, str | int] = {**DEMO_TIMING, "status_edit_interval": "2s"}
RETAIN_DOC = "MicrosoftDocs/entra-docs docs/identity/users/directory-delete-howto.md"


class RehearsalError(Exception):
    """An argument problem (which tenant to rehearse): one line, exit 2."""


@dataclass
class Findings:
    """What the config's shape gets wrong: errors stop the rehearsal, warnings do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_config(path: Path | str) -> Settings:
    """The operator's config validated by bot.config as `run` validates it, except for what a
    rehearsal does not use: every secret variable it names gets a placeholder, a certificate
    credential stands in as a secret, and [storage], [tls] and [network] are replaced (the real
    database is never opened; the simulators need no CA or proxy of the operator's)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        load_settings(file, {})  # raises the ConfigError `run` would show
        raise  # pragma: no cover - load_settings raised already
    patched = copy.deepcopy(data)
    environ = {"SLACK_BOT_TOKEN": PLACEHOLDER, "SLACK_SIGNING_SECRET": PLACEHOLDER}
    tenants = patched.get("tenants")
    for table in tenants if isinstance(tenants, list) else []:
        if not isinstance(table, dict):
            continue
        if table.get("certificate_file") is not None and table.get("client_secret_env") is None:
            del table["certificate_file"]
            table["client_secret_env"] = TENANT_SECRET_ENV
        names = [table.get("client_secret_env")]
        partner = table.get("partner_center")
        if isinstance(partner, dict):
            names.append(partner.get("client_secret_env"))
        environ.update({name: PLACEHOLDER for name in names if isinstance(name, str) and name})
    scratch = tempfile.mkdtemp(prefix="close-account-rehearsal-")
    try:
        patched["storage"] = {"path": str(Path(scratch) / "validate.db")}
        patched.pop("tls", None)
        patched.pop("network", None)
        return settings_from_mapping(patched, file=file, environ=environ)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pick_tenant(settings: Settings, name: str | None) -> TenantSettings:
    """--tenant NAME, or the config's only tenant."""
    names = ", ".join(t.name for t in settings.tenants)
    if name is not None:
        tenant = settings.tenant(name)
        if tenant is None:
            raise RehearsalError(f"{settings.file}: tenants: no tenant named {name!r} ({names})")
        return tenant
    if len(settings.tenants) > 1:
        raise RehearsalError(
            f"{settings.file}: {len(settings.tenants)} tenants ({names}): choose one with --tenant"
        )
    return settings.tenants[0]


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def requester_of(settings: Settings, tenant: TenantSettings) -> str:
    """The admin who starts the closure: the first admin who is not an approver, so that as
    many approvers as possible may vote; else the first admin."""
    admins = settings.slack.admins
    return next((a for a in admins if not any(_same(a, p) for p in tenant.approvers)), admins[0])


def eligible_approvers(tenant: TenantSettings, requester: str) -> list[str]:
    """The approvers who may vote on a closure `requester` started (rule 1 of
    `statemachine.approvals`; the config's emails compared case-blind)."""
    named = {a.lower(): a for a in tenant.approvers}
    return [named[a] for a in rules.eligible_approvers(named, (requester.lower(),))]


def check_config(settings: Settings, tenant: TenantSettings) -> Findings:
    """The mistakes a run would show, found from the config's shape."""
    found = Findings()
    key = f"tenants[{settings.tenants.index(tenant)}]"
    requester = requester_of(settings, tenant)
    eligible = eligible_approvers(tenant, requester)
    for approver in tenant.approvers:
        if any(_same(approver, a) for a in settings.slack.admins):
            found.warnings.append(
                f"{key}.approvers: {approver} is also an admin: they cannot approve a closure"
                " they start"
            )
    short = [s for s in quorum_steps() if tenant.quorum_for(s) > len(eligible)]
    if short:
        needs = ", ".join(f"{s} needs {tenant.quorum_for(s)}" for s in short)
        only = (
            f"{requester} is an approver and the only admin who could start it, and the"
            " requester never counts"
            if len(eligible) < len(tenant.approvers)
            else "the requester never counts"
        )
        found.errors.append(
            f"{key}.quorum: unreachable: {needs} approvals but only {len(eligible)} approvers"
            f" may vote ({only})"
        )
    if len(tenant.retain) > 1:
        found.errors.append(
            f"{key}.retain: lists {len(tenant.retain)} accounts: Microsoft deletes a directory"
            " only when exactly one Global Administrator is left (every other user deleted), so"
            f" keep one ({RETAIN_DOC})"
        )
    return found


def _string(value: str) -> str:
    """A TOML basic string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _strings(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_string(v) for v in values) + "]"


def _simulated_endpoint(url: str) -> bool:
    """Whether the simulator answers on `url`'s host (a Microsoft host the proxy tunnels)."""
    return (urlsplit(url).hostname or "") in HOST_ROLES


def derived_config(
    settings: Settings,
    tenant: TenantSettings,
    *,
    slack: SlackSimulator,
    microsoft: MicrosoftSimulator,
    proxy: ConnectProxy,
    db_path: Path,
) -> str:
    """The operator's config for the simulators: same values, Slack's URL, the simulator's CA,
    the proxy, a temporary database, a simulated secret, compressed timings."""
    timing = {**REHEARSAL_TIMING, "tenant_gone_checks": settings.timing.tenant_gone_checks}
    timing_lines = "\n".join(
        f"{k} = {_string(v)}" if isinstance(v, str) else f"{k} = {v}" for k, v in timing.items()
    )
    endpoints = ""
    for key in ("authority_host", "graph_url", "arm_url"):
        url = str(getattr(tenant, key))
        if _simulated_endpoint(url):
            endpoints += f"{key} = {_string(url)}\n"
    by_step = ", ".join(f"{k} = {v}" for k, v in tenant.quorum_by_step.items())
    admin_user = tenant.retain_slack_user
    slack_user = f"retain_slack_user = {_string(admin_user)}\n" if admin_user else ""
    partner = ""
    if tenant.partner_center is not None:
        pc = tenant.partner_center
        api = f"api_url = {_string(pc.api_url)}\n" if _simulated_endpoint(pc.api_url) else ""
        partner = (
            "\n[tenants.partner_center]\n"
            f"tenant_id = {_string(pc.tenant_id)}\n"
            f"client_id = {_string(pc.client_id)}\n"
            f'client_secret_env = "{PARTNER_SECRET_ENV}"\n{api}'
        )
    return f"""# Derived by `close-account-bot demo --config {settings.file}` for a rehearsal.
[slack]
progress_channel = {_string(settings.slack.progress_channel)}
admins = {_strings(settings.slack.admins)}
api_url = {_string(slack.api_url)}

[storage]
path = {_string(str(db_path))}

[tls]
ca_file = {_string(microsoft.ca_file)}

[network]
https_proxy = {_string(proxy.url)}
no_proxy = ["127.0.0.1"]

[timing]
{timing_lines}

[[tenants]]
name = {_string(tenant.name)}
tenant_id = {_string(tenant.tenant_id)}
client_id = {_string(tenant.client_id)}
client_secret_env = "{TENANT_SECRET_ENV}"
retain = {_strings(tenant.retain)}
{slack_user}approvers = {_strings(tenant.approvers)}
quorum = {tenant.quorum}
quorum_by_step = {{ {by_step} }}
cloud = {_string(tenant.cloud)}
{endpoints}{partner}"""
