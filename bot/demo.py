"""The embedded demo: a World (both simulators and the real bot), printed as the team sees it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.world import ADMIN, APPROVERS, World
from simulator.slack.server import SimMessage, SimUser, render_message

RETAINED_ADMIN = "U0GALE"


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
        # Two Azure subscriptions: step 2 cancels the first through Resource Manager, step 3
        # asks to delete them in the Azure portal 3 days later (the admin does, on that day).
        tenant={"azure_subscriptions": 2},
    )
    # The second still holds a storage account: Resource Manager refuses to cancel it, so step
    # 2's checklist names the resource, and the simulated admin removes it and cancels by hand.
    world.tenant.azure.add_resource(
        str(world.tenant.azure.subscriptions[1]["subscriptionId"]), "stcontosologs"
    )
    # The retained Global Administrator is a workspace member too: checklists ping them.
    world.slack.add_user(SimUser(RETAINED_ADMIN, "gale.global", world.tenant.retained_upn))
    world.admin_works_azure = True
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
        final = await wait_final(world, timeout)
        if final is None:
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


async def wait_final(world: World, timeout: float) -> str | None:
    """The closure's state once it ends (closed, aborted, failed, blocked or rejected), or None
    when it has not ended within `timeout` seconds."""
    try:
        final: str = await world.slack.wait_for(
            lambda _: (
                (s := world.state()) is not None
                and (s in ("closed", "aborted") or s.endswith((".failed", ".blocked", ".rejected")))
                and s
            ),
            timeout=timeout,
        )
    except TimeoutError:
        return None
    return final


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
