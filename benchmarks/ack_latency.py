"""Benchmark 2: Slack ack latency while 50 closures delete users at once.

Three processes, as in production the bot has its own: the Slack simulator and the measuring
client here, the Microsoft simulator (50 tenants of 3,000-3,400 users) in benchmarks.simserver,
the bot in benchmarks.botproc (`run` with each tenant's WritePacer set to the simulator's budget).
Each tenant's write budget is 20 writes per 1 s: Microsoft's rate of 20 writes/s without the
3,000-write burst, so each closure's step 1 lasts 150-170 s: longer than the ~2 min the bot takes
to approve 50 requests posted at once (each approval reads the request's reactions twice, and
reactions.get is paced at Slack's Tier 3, 50 a minute), so all 50 delete users at once.

Signed slash commands (`status <tenant>` and `list`, 3 to 1) go out open-loop at a fixed rate,
each on its own task so that a slow answer does not delay the next; a command's ack time is the
wall time of the simulator's `slash_command`: the signed POST to the bot's Request URL until its
HTTP answer. Its reply time is until the bot's ephemeral answer reaches the response_url.

1. Baseline: 300 commands to the idle bot.
2. The admin starts the 50 closures (2 a second); two approvers approve each step-1 request a
   second after it appears (an instant reaction can be lost, see BENCHMARKS.md); commands go on
   meanwhile, until all 50 closures are deleting users at the same time (sampled from the bot's
   database). A vote counts as lost only if the bot has not stored it 10 s later.
3. The measurement: 300 commands while the 50 closures delete users.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from benchmarks.ack_people import Approvers, TimedSlack
from benchmarks.botproc import bot_process
from benchmarks.common import (
    ADMIN,
    CHANNEL,
    OUTSIDER,
    TENANT_SECRET_ENV,
    Row,
    config_text,
    cpu_seconds,
    percentile,
    say,
    sim_process,
)
from bot.world import people
from storage.closures import open_closures

NAME = "ack_latency"
TITLE = "Slack ack latency with 50 closures executing"

TENANTS = 50
BUDGET = (20, 1.0)  # writes per window (s), per tenant, in the simulator and the bot's pacer
COMMANDS = 300
COMMAND_RATE = 40.0  # per second, open loop
# /close-account <tenant> per second while starting the 50: at 10 a second, 50 plans of 3,000
# users at once held the bot's loop past Slack's 3 s for a start or a reaction (BENCHMARKS.md 2).
START_RATE = 2.0
TARGET_P99 = 0.100
EXECUTING = "delete_users.executing"
BEFORE = ("delete_users.planning", "delete_users.awaiting_approval")


def users_for(i: int) -> int:
    # 3,000..3,400, spread: step 1 lasts 150-170 s at 20 writes/s, longer than the ~2 min the
    # bot takes to approve 50 requests posted at once (two reactions.get each, paced at Slack's
    # Tier 3, 50 a minute), so the first approved still deletes users when the last begins.
    return 3000 + (i * 67) % 401


@dataclass
class Burst:
    acks: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)
    failures: int = 0
    executing: list[int] = field(default_factory=list)  # closures executing at each send
    elapsed: float = 0.0
    bot_cpu: float = 0.0


class States:
    """Samples each closure's state from the bot's database (read-only: WAL lets it read while
    the bot writes). Not from the status messages: with 50 closures they share Slack's edit
    budget, so by design they show a state some seconds late."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.executing = 0
        self.states: dict[str, str] = {}
        self.reached: set[str] = set()  # at step 1's execution or past it
        self.began: dict[str, float] = {}  # tenant: when first seen deleting users
        self.ended: dict[str, float] = {}  # tenant: when first seen past it
        self.voted: set[str] = set()  # both approvals stored, the closure not yet executing
        self._db: Database | None = None

    def sample(self) -> None:
        try:
            if self._db is None:
                self._db = Database(
                    sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, isolation_level=None)
                )
            rows = open_closures(self._db)
        except sqlite3.OperationalError:  # not created yet, or busy: the next sample
            return
        self.states = {r.tenant: r.state for r in rows}
        running = {t for t, s in self.states.items() if s == EXECUTING}
        self.executing = len(running)
        self.reached = {t for t, s in self.states.items() if s not in BEFORE}
        self.voted = {
            str(t)
            for (t,) in self._db.conn.execute(
                "SELECT c.tenant FROM votes v JOIN requests r ON r.id = v.request_id"
                " JOIN closures c ON c.id = r.closure_id WHERE r.status = 'open'"
                " AND r.step = 'delete_users' AND v.kind = 'approve'"
                " GROUP BY c.tenant HAVING COUNT(*) >= 2"
            )
        }
        now = time.perf_counter()
        for tenant in running:
            self.began.setdefault(tenant, now)
        for tenant in self.reached - running:
            self.ended.setdefault(tenant, now)

    def approval(self, tenant: str) -> str | None:
        """The state the approvers go by: awaiting approval only while the bot has not stored
        both votes (a stored vote waits for the bot's reactions.get, it is not lost)."""
        state = self.states.get(tenant)
        return "counted" if tenant in self.voted else state

    async def run(self) -> None:
        try:
            while True:
                self.sample()
                await asyncio.sleep(0.1)
        finally:
            if self._db is not None:
                self._db.conn.close()


async def burst(
    slack: TimedSlack,
    names: list[str],
    states: States,
    pid: int,
    until: Callable[[], bool] | None = None,
) -> Burst:
    """COMMANDS slash commands at COMMAND_RATE (fewer if `until()` turns true), open loop;
    the ack and reply time of each."""
    out = Burst()
    sent: list[tuple[str, float]] = []  # response_url key, send time

    async def one(i: int) -> None:
        text = "list" if i % 4 == 0 else f"status {names[i % len(names)]}"
        out.executing.append(states.executing)
        t0 = time.perf_counter()
        result = await slack.slash_command(user_id=OUTSIDER, text=text, channel_id=CHANNEL)
        out.acks.append(time.perf_counter() - t0)
        if result.status != 200 or result.timed_out:
            out.failures += 1
            return
        sent.append((result.response_url.rsplit("/", 1)[1], t0))

    cpu0 = cpu_seconds(pid)
    start = time.perf_counter()
    tasks = []
    for i in range(COMMANDS):
        if until is not None and until():
            break
        delay = start + i / COMMAND_RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    out.elapsed = time.perf_counter() - start
    out.bot_cpu = cpu_seconds(pid) - cpu0
    with contextlib.suppress(TimeoutError):  # the replies that never came count as failures
        await slack.wait_for(lambda _: all(k in slack.reply_at for k, _ in sent), timeout=30)
    out.replies = [slack.reply_at[k] - t0 for k, t0 in sent if k in slack.reply_at]
    out.failures += len(sent) - len(out.replies)
    return out


def timeline(states: States, started: float, measured: float) -> str:
    """When the closures began deleting users and how long it took them, from the samples."""
    began = sorted(t - started for t in states.began.values())
    lasted = sorted(states.ended[k] - t for k, t in states.began.items() if k in states.ended)
    early = sum(1 for t in states.ended.values() if t < measured)
    span = f"{min(lasted):.0f}-{max(lasted):.0f}s" if lasted else "-"
    return (
        f"step 1 began {began[0]:.1f}-{began[-1]:.1f}s after the first start (median"
        f" {percentile(began, 50):.1f}s); deleting lasted {span} for the {len(lasted)} done;"
        f" {early} were done before the measured burst began"
    )


def summary(b: Burst) -> str:
    return (
        f"p50 {percentile(b.acks, 50) * 1000:.1f} ms, p99 {percentile(b.acks, 99) * 1000:.1f} ms,"
        f" max {max(b.acks) * 1000:.1f} ms over {len(b.acks)} commands in {b.elapsed:.1f}s;"
        f" reply p50 {percentile(b.replies, 50) * 1000:.0f} ms,"
        f" p99 {percentile(b.replies, 99) * 1000:.0f} ms; failures {b.failures};"
        f" bot CPU {b.bot_cpu / b.elapsed:.0%} of a core;"
        f" closures executing at send: min {min(b.executing)}, mean"
        f" {sum(b.executing) / len(b.executing):.1f}"
    )


async def run() -> list[Row]:
    tenants: list[dict[str, Any]] = [
        {"name": f"t{i:02d}", "users": users_for(i), "seed": i, "write_budget": list(BUDGET)}
        for i in range(1, TENANTS + 1)
    ]
    total_users = sum(int(t["users"]) for t in tenants)
    say(
        f"[{NAME}] {TENANTS} tenants, {total_users:,} users; write budget {BUDGET[0]} per"
        f" {BUDGET[1]:g}s per tenant; {COMMANDS} commands at {COMMAND_RATE:g}/s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        slack = TimedSlack(users=people())
        await slack.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with sim_process({"tenants": tenants}) as sim:
                config = Path(tmp) / "close-account.toml"
                config.write_text(
                    config_text(
                        slack_api_url=slack.api_url,
                        sim=sim.info,
                        tenants=sim.tenants,
                        db_path=Path(tmp) / "close-account.db",
                        timing={
                            "poll_interval": "5m",
                            "approval_ttl": "1h",
                            "reminder_interval": "12h",
                            "tenant_gone_checks": 3,
                        },
                    )
                )
                env = {
                    **os.environ,
                    "SLACK_BOT_TOKEN": slack.bot_token,
                    "SLACK_SIGNING_SECRET": slack.signing_secret,
                    TENANT_SECRET_ENV: sim.tenants[0]["client_secret"],
                }
                log_path = Path(tmp) / "bot.log"
                async with bot_process(config, env, log_path, [BUDGET]) as bot:
                    slack.request_url = bot.url + "/slack/events"
                    names = [t["name"] for t in sim.tenants]
                    states = States(Path(tmp) / "close-account.db")
                    tasks.append(asyncio.create_task(states.run()))

                    idle = await burst(slack, names, states, bot.proc.pid)
                    say(f"  baseline, no closure running: {summary(idle)}")

                    approvers = Approvers(slack, states.approval)
                    tasks.append(asyncio.create_task(approvers.run()))
                    started = time.perf_counter()
                    start_acks: list[float] = []

                    async def start(name: str) -> None:
                        t0 = time.perf_counter()
                        result = await slack.slash_command(user_id=ADMIN, text=name)
                        start_acks.append(time.perf_counter() - t0)
                        if result.status != 200:
                            raise RuntimeError(f"/close-account {name}: {result}")

                    def all_started() -> bool:
                        return states.executing == TENANTS

                    ramping = asyncio.create_task(
                        burst(slack, names, states, bot.proc.pid, until=all_started)
                    )
                    starts = []
                    for i, name in enumerate(names):
                        await asyncio.sleep(
                            max(0.0, started + i / START_RATE - time.perf_counter())
                        )
                        starts.append(asyncio.create_task(start(name)))
                    await asyncio.gather(*starts)
                    try:
                        async with asyncio.timeout(300):
                            while not all_started():  # noqa: ASYNC110 (sampled from the database)
                                await asyncio.sleep(0.1)
                    except TimeoutError:
                        raise RuntimeError(
                            f"not all {TENANTS} deleting users: {states.states}"
                        ) from None
                    ramp_s = time.perf_counter() - started
                    ramp = await ramping
                    say(
                        f"  {TENANTS} starts at {START_RATE:g}/s: acks p50"
                        f" {percentile(start_acks, 50) * 1000:.1f} ms, p99"
                        f" {percentile(start_acks, 99) * 1000:.1f} ms; all {TENANTS} deleting users"
                        f" after {ramp_s:.1f}s; step-1 approvals not counted (cast again):"
                        f" {approvers.lost}"
                    )
                    say(f"  meanwhile (planning, approvals): {summary(ramp)}")
                    await sim.reset()
                    measured = time.perf_counter()
                    loaded = await burst(slack, names, states, bot.proc.pid)
                    say(f"  {TENANTS} closures executing: {summary(loaded)}")
                    say(f"  {timeline(states, started, measured)}")
                    stats = await sim.stats()
                warnings = [
                    x
                    for x in log_path.read_text().splitlines()
                    if x.startswith(("WARNING", "ERROR"))
                ]
                if warnings:
                    say(f"  bot log: {len(warnings)} warnings/errors, first: {warnings[0]}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await slack.stop()
    subs = sum(c for k, c in stats["requests"].items() if k.startswith("DELETE sub"))
    throttled = stats["requests"].get("DELETE sub 429", 0)
    say(
        f"  during the loaded burst the simulator answered {subs:,} user deletes"
        f" ({subs / loaded.elapsed:,.0f}/s), {throttled} of them 429"
    )
    p99, base_p99 = percentile(loaded.acks, 99), percentile(idle.acks, 99)
    p50, base_p50 = percentile(loaded.acks, 50), percentile(idle.acks, 50)
    ramp_p99 = percentile(ramp.acks + start_acks, 99)
    return [
        Row(
            NAME,
            "ack p50",
            f"{p50 * 1000:.1f} ms",
            "-",
            f"{base_p50 * 1000:.1f} ms (idle)",
        ),
        Row(
            NAME,
            f"ack p99 ({COMMANDS} commands, {TENANTS} executing)",
            f"{p99 * 1000:.1f} ms",
            f"< {TARGET_P99 * 1000:.0f} ms",
            f"{base_p99 * 1000:.1f} ms (idle)",
            p99 < TARGET_P99 and loaded.failures == 0,
        ),
        Row(
            NAME,
            f"ack p99 while the {TENANTS} start (plan, approve)",
            f"{ramp_p99 * 1000:.1f} ms",
            "-",
            f"{base_p99 * 1000:.1f} ms (idle)",
        ),
        Row(
            NAME,
            "reply p99 (ephemeral answer at the response_url)",
            f"{percentile(loaded.replies, 99) * 1000:.0f} ms",
            "-",
            f"{percentile(idle.replies, 99) * 1000:.0f} ms (idle)",
        ),
    ]
