"""Benchmark 1: delete and purge 20,000 users under Microsoft's write budget, compressed 100x.

The real step 1 (`delete_users.STEP.execute`) and step 5's purge (`delete_directory.STEP.execute`)
run through a real `Graph` + `MsalTokens` over TLS against the simulator in its own process.
Microsoft's budgets are compressed 100x in time: 3,000 writes per 1.5 s (2,000 writes/s) instead
of per 150 s, resource units per 0.1 s instead of per 10 s; the bot's WritePacer is given the
same compressed budgets. Each progress callback does what the runner's does per batch of 20
(read the closure, upsert the step row in SQLite with synchronous=FULL); the Slack status edit
every 2 s is left out.

Baseline (same run, same simulator): one request at a time, as a script piping Get-MgUser into
Remove-MgUser does: list the users, DELETE each, list the deleted users, DELETE each, no $batch
and no pacing, waiting out each 429's Retry-After. It runs on 2,000 users and is extrapolated
linearly to 20,000 (it stays under the budget, so its rate does not depend on N).

Both run twice: over loopback as it is (~0.1 ms), and with 1 ms added before each Graph request,
which is a 100 ms Graph round trip compressed 100x like the budget.
"""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import ADMIN, CHANNEL, Row, SimProcess, Stopwatch, say, sim_process
from benchmarks.common import tenant_settings as settings_for
from bot.microsoft.graph import Graph
from bot.microsoft.pacing import WritePacer
from bot.microsoft.steps import delete_directory, delete_users
from bot.microsoft.steps.base import Progress, StepContext
from bot.microsoft.tenant import Tenant, organization
from bot.microsoft.tokens import MsalTokens
from statemachine.plan import Plan
from storage import closures as closures_db
from storage.db import open_db

NAME = "delete_purge"
TITLE = "delete + purge 20,000 users at a compressed write budget"

N = 20_000
BASELINE_N = 2_000
COMPRESS = 100.0  # Microsoft's windows shortened 100x
LIMIT, WINDOW = 3000, 150.0 / COMPRESS  # 3,000 writes per 1.5 s: 2,000 writes/s
TENANT_BUDGET = (18000, 300.0 / COMPRESS)  # across apps; not the binding one
RATE = LIMIT / WINDOW
REAL_RTT = 0.100  # seconds; the modelled Graph round trip
TARGET_RATIO = 1.10
CASES = (("big", N), ("big-rtt", N), ("small", BASELINE_N), ("small-rtt", BASELINE_N))
TARGET_THROTTLED = 0.01


def _count(stats: dict[str, Any], method: str, where: str) -> tuple[int, int]:
    """(all, 429) requests with `method`, top level ("top") or in a $batch ("sub")."""
    total = throttled = 0
    for key, count in stats["requests"].items():
        m, w, status = key.split()
        if m == method and w == where:
            total += count
            throttled += count if status == "429" else 0
    return total, throttled


def _tenant(
    session: aiohttp.ClientSession, sim: SimProcess, name: str, pacer: WritePacer
) -> tuple[Tenant, MsalTokens]:
    settings = settings_for(sim.info, next(t for t in sim.tenants if t["name"] == name))
    tokens = MsalTokens(settings, ca_bundle=sim.info["ca_file"])
    graph = Graph(
        session,
        graph_url=sim.info["base_url"],
        tokens=tokens,
        ssl_context=ssl.create_default_context(cafile=sim.info["ca_file"]),
        pacer=pacer,
    )
    return Tenant(settings, graph), tokens


async def _bot(
    session: aiohttp.ClientSession, sim: SimProcess, name: str, db_dir: Path
) -> dict[str, Any]:
    pacer = WritePacer(((LIMIT, WINDOW), TENANT_BUDGET), ca_interval=1.0 / COMPRESS)
    tenant, tokens = _tenant(session, sim, name, pacer)
    db = open_db(db_dir / f"{name}.db")
    closures_db.create_closure(
        db,
        closure_id="bench",
        tenant=name,
        tenant_id=tenant.tenant_id,
        requester=ADMIN,
        state="delete_users.executing",
        channel=CHANNEL,
        at=time.time(),
    )

    def progress_for(step: str) -> Progress:
        async def progress(done: int, total: int) -> None:  # what the runner does per batch
            closures_db.get_closure(db, "bench")
            closures_db.update_step(db, "bench", step, done=done, total=total)

        return progress

    try:
        org = await organization(tenant)
        context = StepContext(tenant, session, None, org=org)
        watch = Stopwatch()
        plan = await delete_users.STEP.plan(context)
        plan_users_s = watch()
        await sim.reset()
        graph = tenant.graph
        throttled0 = graph.throttled
        watch = Stopwatch()
        await delete_users.STEP.execute(context, plan, progress_for("delete_users"), 0)
        delete_s = watch()
        delete_stats = await sim.stats()
        say(
            f"    planned {len(plan.items):,} deletes in {plan_users_s:.2f}s; deleted in"
            f" {delete_s:.2f}s ({len(plan.items) / delete_s:,.0f} writes/s)"
        )
        watch = Stopwatch()
        directory = await delete_directory.STEP.plan(context)
        list_deleted_s = watch()
        purge_plan = Plan(
            "delete_directory", tenant.tenant_id, tuple(directory.of_kind("deleted_user"))
        )
        await sim.reset()
        watch = Stopwatch()
        await delete_directory.STEP.execute(
            context, purge_plan, progress_for("delete_directory"), 0
        )
        purge_s = watch()
        purge_stats = await sim.stats()
        say(
            f"    listed {len(purge_plan.items):,} deleted users in {list_deleted_s:.2f}s;"
            f" purged in {purge_s:.2f}s ({len(purge_plan.items) / purge_s:,.0f} writes/s)"
        )
        client_throttled = graph.throttled - throttled0
    finally:
        tokens.close()
        db.conn.close()
    d_all, d_429 = _count(delete_stats, "DELETE", "sub")
    p_all, p_429 = _count(purge_stats, "DELETE", "sub")
    return {
        "writes": len(plan.items) + len(purge_plan.items),
        "listing_s": plan_users_s + list_deleted_s,
        "elapsed": delete_s + purge_s,
        "sub_requests": d_all + p_all,
        "throttled": d_429 + p_429,
        "client_throttled": client_throttled,
        "pacer_waited_s": pacer.waited,
        "users_left": purge_stats["users_left"][name],
        "deleted_left": purge_stats["deleted_left"][name],
    }


async def _baseline(session: aiohttp.ClientSession, sim: SimProcess, name: str) -> dict[str, Any]:
    tenant, tokens = _tenant(session, sim, name, WritePacer(()))  # no budgets: 429 pauses only
    graph = tenant.graph
    retained = tenant.settings.retain[0].lower()
    try:
        await graph.get("/organization")  # the token, outside the timing
        await sim.reset()
        watch = Stopwatch()
        users = await graph.get_all("/users?$select=id,userPrincipalName")
        doomed = [u for u in users if str(u["userPrincipalName"]).lower() != retained]
        for user in doomed:
            await graph.request("DELETE", f"/users/{user['id']}", ok_statuses=(404,))
        deleted = await graph.get_all("/directory/deletedItems/microsoft.graph.user")
        for item in deleted:
            path = f"/directory/deletedItems/{item['id']}"
            await graph.request("DELETE", path, ok_statuses=(404,))
        elapsed = watch()
        stats = await sim.stats()
    finally:
        tokens.close()
    requests, throttled = _count(stats, "DELETE", "top")
    writes = len(doomed) + len(deleted)
    say(f"    {writes:,} writes in {elapsed:.2f}s ({writes / elapsed:,.0f} writes/s)")
    return {"writes": writes, "elapsed": elapsed, "requests": requests, "throttled": throttled}


async def run() -> list[Row]:
    spec = {
        "time_scale": COMPRESS,  # read budgets: 8,000 units per 0.1 s
        "tenants": [
            {"name": name, "users": users + 1, "write_budget": [LIMIT, WINDOW]}
            for name, users in CASES
        ],
    }
    say(
        f"[{NAME}] {N:,} users; write budget {LIMIT:,} per {WINDOW:g}s ({RATE:,.0f} writes/s):"
        f" Microsoft's 3,000 per 150 s compressed {COMPRESS:g}x"
    )
    ideal = 2 * N / RATE
    rows: list[Row] = []
    latency = REAL_RTT / COMPRESS
    with tempfile.TemporaryDirectory(prefix="bench-delete-") as tmp:
        async with sim_process(spec) as sim, aiohttp.ClientSession() as session:
            results = {}
            for suffix, extra in (("", 0.0), ("-rtt", latency)):
                await sim.latency(extra)
                where = "loopback" if not extra else f"+{extra * 1000:g} ms per request"
                say(f"  {where}: bot ($batch of 20, WritePacer with the same budget)")
                bot = await _bot(session, sim, "big" + suffix, Path(tmp))
                say(f"  {where}: baseline (one request at a time, {BASELINE_N:,} users)")
                base = await _baseline(session, sim, "small" + suffix)
                results[where] = (bot, base)

    for where, (bot, base) in results.items():
        ratio = bot["elapsed"] / ideal
        share = bot["throttled"] / bot["sub_requests"]
        base_rate = base["writes"] / base["elapsed"]
        base_projected = 2 * N / base_rate
        base_share = base["throttled"] / base["requests"]
        say(
            f"  {where}: bot {bot['writes']:,} writes in {bot['elapsed']:.2f}s"
            f" = {bot['writes'] / bot['elapsed']:,.0f}/s; minimum 2N/rate = {ideal:.2f}s;"
            f" ratio {ratio:.3f} (target <= {TARGET_RATIO:.2f}); throttled"
            f" {bot['throttled']}/{bot['sub_requests']:,} = {share:.2%} (target <"
            f" {TARGET_THROTTLED:.0%}; client saw {bot['client_throttled']}); pacer waited"
            f" {bot['pacer_waited_s']:.1f}s; listing users + deleted users {bot['listing_s']:.2f}s"
            f" more; left {bot['users_left']} user, {bot['deleted_left']} deleted"
        )
        say(
            f"  {where}: baseline {base['writes']:,} writes in {base['elapsed']:.2f}s ="
            f" {base_rate:,.0f}/s, throttled {base_share:.2%}; extrapolated to {N:,} users:"
            f" {base_projected:.1f}s = {base_projected / ideal:.2f}x the minimum"
        )
        label = "" if where == "loopback" else f" [{where}]"
        rows.append(
            Row(
                NAME,
                f"elapsed / (2N / write rate){label}",
                f"{ratio:.3f} ({bot['elapsed']:.1f}s vs {ideal:.1f}s)",
                f"<= {TARGET_RATIO:.2f}",
                f"{base_projected / ideal:.2f} ({base_projected:.0f}s, from {BASELINE_N:,} x10)",
                ratio <= TARGET_RATIO,
            )
        )
        rows.append(
            Row(
                NAME,
                f"429 share of sub-requests{label}",
                f"{share:.2%} ({bot['throttled']}/{bot['sub_requests']:,})",
                f"< {TARGET_THROTTLED:.0%}",
                f"{base_share:.2%} (of {base['requests']:,} single DELETEs)",
                share < TARGET_THROTTLED,
            )
        )
    return rows
