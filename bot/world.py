"""The test world: both simulators on 127.0.0.1 with the real bot between them, scripted
approvers and a scripted admin. The demo and the tests build on it, so they run the same code
path as `run`: only Slack and Microsoft are simulated."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import Settings, load_settings
from bot.doctor import BOT_SCOPES
from bot.service import Service, start_service
from simulator.microsoft import portal
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES
from simulator.microsoft.server import MicrosoftSimulator, SimTenant
from simulator.slack.server import (
    RateLimits,
    SimMessage,
    SimUser,
    SlackSimulator,
    render_message,
)
from simulator.tls import create_client_certificate

ADMIN = "U0ADMIN1"
APPROVERS = ("U0APPR1", "U0APPR2", "U0APPR3")
OUTSIDER = "U0OTHER"
CHANNEL = "C0PROGRESS"
GUID_IN_PARENS = re.compile(r"\(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\)")


def people() -> list[SimUser]:
    return [
        SimUser(ADMIN, "avery.admin", "avery@msp.example"),
        SimUser(APPROVERS[0], "blake.approver", "blake@msp.example"),
        SimUser(APPROVERS[1], "casey.approver", "casey@msp.example"),
        SimUser(APPROVERS[2], "drew.approver", "drew@msp.example"),
        SimUser(OUTSIDER, "emery.watcher", "emery@msp.example"),
    ]


def config_text(
    *,
    slack: SlackSimulator,
    microsoft: MicrosoftSimulator,
    tenant: SimTenant,
    db_path: Path,
    timing: Mapping[str, str | int],
    quorum: int = 2,
    approvers: tuple[str, ...] = APPROVERS,
    admins: tuple[str, ...] = (ADMIN,),
    certificate_file: Path | None = None,
    partner: SimTenant | None = None,
) -> str:
    def strings(values: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    credential = (
        f'certificate_file = "{certificate_file}"'
        if certificate_file is not None
        else 'client_secret_env = "SIM_TENANT_SECRET"'
    )
    partner_table = (
        f"""
[tenants.partner_center]
tenant_id = "{partner.tenant_id}"
client_id = "{partner.client_id}"
client_secret_env = "SIM_PARTNER_SECRET"
api_url = "{microsoft.base_url}/partnercenter"
"""
        if partner is not None
        else ""
    )
    timing_lines = "\n".join(
        f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in timing.items()
    )
    return f"""
[slack]
progress_channel = "{CHANNEL}"
admins = {strings(admins)}
api_url = "{slack.api_url}"

[storage]
path = "{db_path}"

[tls]
ca_file = "{microsoft.ca_file}"

[timing]
{timing_lines}

[[tenants]]
name = "{tenant.name}"
tenant_id = "{tenant.tenant_id}"
client_id = "{tenant.client_id}"
{credential}
retain = ["{tenant.retained_upn}"]
approvers = {strings(approvers)}
quorum = {quorum}
authority_host = "{microsoft.base_url}"
graph_url = "{microsoft.base_url}"
arm_url = "{microsoft.base_url}/arm"
{partner_table}"""


DEMO_TIMING: dict[str, str | int] = {
    "poll_interval": "200ms",
    "approval_ttl": "1h",
    "reminder_interval": "12h",
    "tenant_gone_checks": 3,
    "status_edit_interval": "0s",
}


@dataclass
class World:
    """Simulated Slack + Microsoft with the real bot wired between them."""

    microsoft: MicrosoftSimulator
    slack: SlackSimulator
    tenant: SimTenant
    directory: Path
    config_path: Path
    environ: dict[str, str]
    service: Service | None = None
    owns_directory: bool = True
    channel: str = CHANNEL  # the progress channel the config names
    admin_works_azure: bool = False  # the scripted admin deletes/reactivates Azure subscriptions
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def create(
        cls,
        *,
        users: int = 250,
        seed: int = 1,
        directory: Path | None = None,
        db_path: Path | None = None,
        timing: Mapping[str, str | int] | None = None,
        tenant: Mapping[str, Any] | None = None,
        quorum: int = 2,
        approvers: tuple[str, ...] = APPROVERS,
        start: bool = True,
        microsoft: Mapping[str, Any] | None = None,
        slack_limits: RateLimits | None = None,
        certificate: bool = False,
        partner: bool = False,
    ) -> World:
        owns = directory is None
        directory = (
            Path(tempfile.mkdtemp(prefix="close-account-")) if directory is None else directory
        )
        ms = MicrosoftSimulator(**{"retry_after": 0.02, **(microsoft or {})})
        certificate_file = None
        tenant_kwargs: dict[str, Any] = {}
        if certificate:
            key_pem, cert_pem = create_client_certificate()
            certificate_file = directory / "app-credential.pem"
            certificate_file.write_bytes(key_pem + cert_pem)
            certificate_file.chmod(0o600)
            tenant_kwargs["client_certificate"] = cert_pem
        # The least-privileged set plus the optional Reports.Read.All the README tells operators
        # to grant (step 1's data-loss figures); a test passing app_roles gets exactly those.
        tenant_kwargs["app_roles"] = DEFAULT_APP_ROLES | {"Reports.Read.All"}
        sim_tenant = ms.add_tenant(
            **{"name": "contoso", "users": users, "seed": seed, **tenant_kwargs, **(tenant or {})}
        )
        partner_tenant = None
        if partner:  # the partner that sold the customer's partner-bought subscription
            partner_tenant = ms.add_tenant(name="partner", users=2, seed=seed + 1000)
            partner_tenant.client_secret = "sim-partner-secret"
            for sub in sim_tenant.subscriptions:
                if sub.get("ownerTenantId") not in (None, sim_tenant.tenant_id):
                    sub["ownerTenantId"] = partner_tenant.tenant_id
        await ms.start()
        # The simulated install grants exactly the manifest's scopes: a call needing any other
        # scope fails with missing_scope, as it would in a real workspace.
        slack = SlackSimulator(
            users=people(), bot_scopes=frozenset(BOT_SCOPES), rate_limits=slack_limits
        )
        await slack.start()
        config_path = directory / "close-account.toml"
        config_path.write_text(
            config_text(
                slack=slack,
                microsoft=ms,
                tenant=sim_tenant,
                db_path=db_path or directory / "close-account.db",
                timing={**DEMO_TIMING, **(timing or {})},
                quorum=quorum,
                approvers=approvers,
                certificate_file=certificate_file,
                partner=partner_tenant,
            )
        )
        environ = {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SIM_TENANT_SECRET": sim_tenant.client_secret,
            **({"SIM_PARTNER_SECRET": partner_tenant.client_secret} if partner_tenant else {}),
        }
        world = cls(ms, slack, sim_tenant, directory, config_path, environ, owns_directory=owns)
        if start:
            await world.start_bot()
        return world

    def settings(self) -> Settings:
        return load_settings(self.config_path, self.environ)

    async def start_bot(self) -> Service:
        self.service = await start_service(self.settings(), port=0, graph_backoff=0.02)
        self.slack.request_url = f"{self.service.url}/slack/events"
        return self.service

    async def stop_bot(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stop_bot()
        await self.slack.stop()
        await self.microsoft.stop()
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    # --- what the team sees ------------------------------------------------------------------

    def find_status_messages(self) -> list[SimMessage]:
        return self.slack.find(event_type="close_account_status", channel=self.channel)

    def status(self) -> SimMessage | None:
        found = self.slack.find(event_type="close_account_status", channel=self.channel)
        return found[-1] if found else None

    def status_text(self) -> str:
        """The status message as a person reads it."""
        status = self.status()
        return render_message(status) if status is not None else ""

    def state(self) -> str | None:
        status = self.status()
        if status is None or status.metadata is None:
            return None
        return str(status.metadata["event_payload"]["state"])

    def requests(self, step: str | None = None) -> list[SimMessage]:
        return [
            m
            for m in self.slack.find(event_type="close_account_approval")
            if step is None or (m.metadata or {}).get("event_payload", {}).get("step") == step
        ]

    async def wait_state(self, *states: str, timeout: float = 30.0) -> str:
        """Wait until the status message's metadata shows one of `states`."""
        return await self.slack.wait_for(
            lambda _: (s := self.state()) in states and s, timeout=timeout
        )

    async def wait_request(self, step: str, count: int = 1, timeout: float = 30.0) -> SimMessage:
        """Wait for the `count`-th approval request of `step`, and for the bot to be done with
        its inventory file (posted or refused), and return it."""
        request: SimMessage = await self.slack.wait_for(
            lambda _: len(r := self.requests(step)) >= count and r[count - 1], timeout=timeout
        )
        # The file follows the request from another task and is recorded in the database.
        await self.until(lambda: self._inventory_settled(request), timeout=timeout)
        return request

    async def until(self, condition: Callable[[], object], timeout: float = 30.0) -> None:
        """Wait for a condition on the bot's database, which has no change signal to await:
        re-checked every few milliseconds (a wait, not a timing)."""
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - nothing to await: SQLite has no signal
                await asyncio.sleep(0.005)

    def _inventory_settled(self, request: SimMessage) -> bool:
        if self.service is None:
            return True
        db = self.service.db
        found = db.execute("SELECT id, status FROM requests WHERE ts = ?", [request.ts]).fetchone()
        if found is None or found[1] != "open":  # not recorded yet, or ended before the file
            return found is not None
        return bool(
            db.execute(
                "SELECT 1 FROM audit WHERE action IN ('plan_file_posted', 'plan_file_refused')"
                " AND json_extract(detail, '$.request_id') = ? LIMIT 1",
                [found[0]],
            ).fetchone()
        )

    async def command(self, text: str, user: str = ADMIN) -> str:
        """Run a slash command and return the ephemeral reply the user sees."""
        result = await self.slack.slash_command(user_id=user, text=text, channel_id=self.channel)
        reply: dict[str, Any] = await self.slack.wait_for(
            lambda _: result.responses[0] if result.responses else None
        )
        return str(reply.get("text", ""))

    async def vote(self, request: SimMessage, user: str, name: str = "white_check_mark") -> None:
        await self.slack.react(user_id=user, channel=request.channel, ts=request.ts, name=name)

    # --- scripted people ---------------------------------------------------------------------

    def script_approvers(
        self, approvers: tuple[str, ...] = APPROVERS[:2], skip: tuple[str, ...] = ()
    ) -> None:
        """Approvers who approve every request they see (but for steps in `skip`), once each."""

        def step_of(request: SimMessage) -> str:
            return str((request.metadata or {}).get("event_payload", {}).get("step"))

        async def run() -> None:
            seen: set[str] = set()
            while True:
                request = await self.slack.wait_for(
                    lambda _: next(
                        (r for r in self.requests() if r.ts not in seen and step_of(r) not in skip),
                        None,
                    ),
                    timeout=3600,
                )
                seen.add(request.ts)
                for user in approvers:
                    with contextlib.suppress(ValueError):
                        await self.vote(request, user)

        self._tasks.append(asyncio.create_task(run()))

    def script_admin(self) -> None:
        """A Global Administrator who works each checklist in the admin centers."""

        async def run() -> None:
            done: set[str] = set()
            async with aiohttp.ClientSession() as http:
                while True:
                    checklist = await self.slack.wait_for(
                        lambda _: next(
                            (
                                m
                                for m in self.slack.messages
                                if m.ts not in done
                                and "checklist for a Global Administrator" in m.text.split("\n")[0]
                            ),
                            None,
                        ),
                        timeout=3600,
                    )
                    done.add(checklist.ts)
                    await self._work_checklist(http, checklist.text)

        self._tasks.append(asyncio.create_task(run()))

    async def _work_checklist(self, http: aiohttp.ClientSession, text: str) -> None:
        base = f"{self.microsoft.base_url}/_sim/tenants/{self.tenant.tenant_id}"
        ssl_context = ssl.create_default_context(cafile=self.microsoft.ca_file)
        first = text.split("\n")[0]
        if "Delete the directory" in first:
            for object_id in GUID_IN_PARENS.findall(text):  # the bot's own deleted app or SP
                async with http.post(
                    f"{base}/purge-deleted", json={"id": object_id}, ssl=ssl_context
                ) as resp:
                    if resp.status not in (200, 409):
                        resp.raise_for_status()
            async with http.post(f"{base}/delete", ssl=ssl_context) as resp:
                resp.raise_for_status()
            return
        if self.admin_works_azure and "Delete the Azure subscription" in text:
            self.tenant.azure.delete_when_allowed(self.tenant.now, self.tenant.advance)
        if self.admin_works_azure and "Roll back" in first:
            self.tenant.azure.reactivate_named(text)
        action = (
            "reactivate" if "Roll back" in first else "cancel" if "Cancel" in first else "delete"
        )
        if self.admin_works_azure and action == "cancel":  # resources removed, then cancelled
            portal.cancel_named(self.tenant.azure, text, self.tenant.now())
        for sub_id in GUID_IN_PARENS.findall(text):
            async with http.post(
                f"{base}/subscriptions/{sub_id}/{action}", ssl=ssl_context
            ) as resp:
                if resp.status not in (200, 204, 404, 409):
                    resp.raise_for_status()
