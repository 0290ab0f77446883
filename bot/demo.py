"""The embedded demo: both simulators, the real bot in between, scripted approvers and admin.

`World` is also what the tests build on, so the demo and the tests run the same code path
as `run`: only Slack and Microsoft are simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bot.config import Settings, load_settings
from bot.doctor import BOT_SCOPES
from bot.service import Service, start_service
from bot.simulator.microsoft import MicrosoftSimulator, SimTenant
from bot.simulator.slack import (
    RateLimits,
    SimMessage,
    SimUser,
    SlackSimulator,
    render_message,
)
from bot.simulator.tls import create_client_certificate

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
        return self.slack.find(event_type="close_account_status", channel=CHANNEL)

    def status(self) -> SimMessage | None:
        found = self.slack.find(event_type="close_account_status", channel=CHANNEL)
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
        """Wait for the `count`-th approval request of `step` and return it."""
        return await self.slack.wait_for(
            lambda _: len(r := self.requests(step)) >= count and r[count - 1], timeout=timeout
        )

    async def command(self, text: str, user: str = ADMIN) -> str:
        """Run a slash command and return the ephemeral reply the user sees."""
        result = await self.slack.slash_command(user_id=user, text=text, channel_id=CHANNEL)
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
            async with http.post(f"{base}/delete", ssl=ssl_context) as resp:
                resp.raise_for_status()
            return
        action = (
            "reactivate" if "Roll back" in first else "cancel" if "Cancel" in first else "delete"
        )
        for sub_id in GUID_IN_PARENS.findall(text):
            async with http.post(
                f"{base}/subscriptions/{sub_id}/{action}", ssl=ssl_context
            ) as resp:
                if resp.status not in (200, 204, 404, 409):
                    resp.raise_for_status()


class Printer:
    """Prints the channel as the team sees it: each status version and every thread reply."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started

    def __call__(self, kind: str, message: SimMessage) -> None:
        elapsed = time.monotonic() - self.started
        is_status = (message.metadata or {}).get("event_type") == "close_account_status"
        if is_status:
            head = (
                "STATUS (posted)"
                if kind == "posted"
                else f"STATUS (edit {len(message.versions) - 1})"
            )
            self.out.write(f"\n[{elapsed:6.2f}s] ━━ {head} ━━\n")
            self.out.write(_indent(render_message(message), "  ") + "\n")
        elif kind == "posted":
            self.out.write(f"[{elapsed:6.2f}s]   ↳ thread\n")
            self.out.write(_indent(render_message(message), "     ") + "\n")
        self.out.flush()


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


async def run_demo(
    *,
    users: int = 250,
    seed: int = 1,
    db_path: str | None = None,
    out: TextIO = sys.stdout,
    timeout: float = 55.0,
    on_world: Callable[[World], None] | None = None,
    rollback: bool = False,
) -> int:
    started = time.monotonic()
    # The demo paces status edits as production does; tests see every edit at once.
    world = await World.create(
        users=users,
        seed=seed,
        db_path=Path(db_path) if db_path else None,
        timing={"status_edit_interval": "2s"},
    )
    if on_world is not None:
        on_world(world)
    try:
        world.slack.subscribe(Printer(out, started))
        out.write(
            f"close-account-bot demo: tenant '{world.tenant.name}' ({world.tenant.tenant_id}),"
            f" {users} users; admin <@{ADMIN}>, approvers {', '.join(APPROVERS)} (quorum 2)\n"
            f"> {ADMIN} types: /close-account {world.tenant.name}\n"
        )
        # With --rollback, nobody approves step 3: the admin rolls back while it waits.
        world.script_approvers(skip=("delete_disabled_subscriptions",) if rollback else ())
        world.script_admin()
        reply = await world.command(world.tenant.name)
        out.write(f"(only {ADMIN} sees) {reply}\n")
        if rollback:
            return await _rollback_demo(world, out, started, timeout)
        try:
            final = await world.slack.wait_for(
                lambda _: (
                    (s := world.state()) is not None
                    and (
                        s in ("closed", "aborted")
                        or s.endswith((".failed", ".blocked", ".rejected"))
                    )
                    and s
                ),
                timeout=timeout,
            )
        except TimeoutError:
            out.write(f"\nThe demo did not finish in {timeout:.0f}s (state {world.state()}).\n")
            return 1
        gone = world.tenant.deleted
        out.write(
            f"\nFinal state: {final}; Microsoft tenant deleted: {gone};"
            f" {time.monotonic() - started:.1f}s\n"
        )
        return 0 if final == "closed" and gone else 1
    finally:
        await world.close()


async def _rollback_demo(world: World, out: TextIO, started: float, timeout: float) -> int:
    """The admin changes their mind after step 2: users come back, subscriptions reactivate."""
    before = len(world.tenant.users)
    try:
        await world.wait_state("delete_disabled_subscriptions.awaiting_approval", timeout=timeout)
        out.write(f"\n> {ADMIN} types: /close-account rollback {world.tenant.name}\n")
        reply = await world.command(f"rollback {world.tenant.name}")
        out.write(f"(only {ADMIN} sees) {reply}\n")
        final = await world.slack.wait_for(
            lambda _: (
                (s := world.state()) is not None
                and (s == "rolled_back" or s.endswith((".failed", ".blocked", ".rejected")))
                and s
            ),
            timeout=timeout,
        )
    except TimeoutError:
        out.write(f"\nThe rollback demo did not finish (state {world.state()}).\n")
        return 1
    active = sum(s["status"] in ("Enabled", "Warning") for s in world.tenant.subscriptions)
    restored = len(world.tenant.users)
    out.write(
        f"\nFinal state: {final}; users {restored}/{before};"
        f" active subscriptions {active}; {time.monotonic() - started:.1f}s\n"
    )
    return 0 if final == "rolled_back" and restored == before else 1
