"""Benchmark 3: restart with 1,000 open closures: time until all are resumed, and peak RSS.

A database is filled through the storage functions with 1,000 open closures in a realistic mix
of states (each with its plan, its approval request and vote, its status message in the Slack
simulator, a few audit rows): most wait on people (approvals, admin-center checklists, blocked,
failed, rejected); one in ten has Graph work to do at once (one in twenty mid-way through
deleting users, one in twenty with an overdue subscription poll), against the Microsoft
simulator in its own process. Then `python -m bot run --config ...` starts as a subprocess and
/healthz is polled every 5 ms until it answers ready with every closure's drive task running
(the time includes the interpreter's start and imports, about half a second here). Peak RSS is
the process's VmHWM once it is idle again (the Graph work the resume started is done).

A second case has the same 1,000 closures after an outage longer than poll_interval: every
admin-center poll is overdue, so four in ten closures reach Graph at once. Baseline: 10
closures. Each case runs REPEATS times on a fresh database and simulator.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import (
    ROOT,
    TENANT_SECRET_ENV,
    Row,
    SimProcess,
    config_text,
    cpu_seconds,
    free_port,
    proc_status,
    say,
    sim_process,
    stop_process,
)
from benchmarks.resume_seed import SLOTS, USERS, does_graph_work, fake_tenant, seed
from bot.world import people
from simulator.slack.server import SlackSimulator

NAME = "resume"
TITLE = "resume 1,000 open closures at start"

N = 1000
BASELINE_N = 10
TARGET_S = 2.0
TARGET_RSS_MB = 300.0
REPEATS = 3
BOT_COMMAND = ("-m", "bot", "run")  # after the interpreter; a diagnosis may run a variant


def graph_tenant_names(count: int, outage: bool) -> tuple[list[str], list[str]]:
    """All tenant names, and those whose closures do Graph work on resume."""
    names = [f"r{i:04d}" for i in range(count)]
    return names, [n for i, n in enumerate(names) if does_graph_work(i, outage)]


def prepare(
    slack: SlackSimulator, sim: SimProcess, names: list[str], tmp: Path, outage: bool
) -> tuple[Path, dict[str, str]]:
    """The database with len(names) open closures and the config for them: (config, environ)."""
    simulated = {t["name"]: t for t in sim.tenants}
    tenants = [simulated.get(n) or fake_tenant(n) for n in names]
    label = f"{len(names)}{'-outage' if outage else ''}"
    db_path = tmp / f"resume-{label}.db"
    seed(db_path, slack, tenants, outage)
    config = tmp / f"resume-{label}.toml"
    timing: dict[str, str | int] = {
        "poll_interval": "5m",
        "approval_ttl": "24h",
        "reminder_interval": "12h",
        "tenant_gone_checks": 3,
    }
    config.write_text(
        config_text(
            slack_api_url=slack.api_url,
            sim=sim.info,
            tenants=tenants,
            db_path=db_path,
            timing=timing,
        )
    )
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        TENANT_SECRET_ENV: "sim-secret",
    }
    return config, env


async def settle(pid: int, quiet: float = 0.05, limit: float = 60.0) -> float:
    """Wait (at most `limit` s) until the process uses under `quiet` of a core over half a
    second; returns the seconds waited."""
    began = time.perf_counter()
    last = cpu_seconds(pid)
    while time.perf_counter() - began < limit:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < quiet * 0.5:
            break
        last = now
    return time.perf_counter() - began


async def _resume(
    slack: SlackSimulator, count: int, tmp: Path, outage: bool = False
) -> dict[str, Any]:
    names, graph_names = graph_tenant_names(count, outage)
    spec = {"tenants": [{"name": n, "users": USERS + 1, "list_users": True} for n in graph_names]}
    async with sim_process(spec) as sim:
        config, env = prepare(slack, sim, names, tmp, outage)
        port = free_port()
        url = f"http://127.0.0.1:{port}/healthz"
        log_path = config.with_suffix(".log")
        calls_before = len(slack.calls)
        async with aiohttp.ClientSession() as http:
            with log_path.open("wb") as log:
                started = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *BOT_COMMAND,
                    *("--config", str(config)),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                    cwd=ROOT,
                    env={**os.environ, **env},
                )
            try:
                first_answer = None
                body: dict[str, Any] = {}
                while time.perf_counter() - started < 120:
                    try:
                        async with http.get(url) as resp:
                            first_answer = first_answer or time.perf_counter() - started
                            if resp.status == 200:
                                body = await resp.json()
                                if body.get("open_closures") == count:
                                    break
                    except aiohttp.ClientConnectionError:
                        pass
                    if proc.returncode is not None:
                        raise RuntimeError(f"the bot exited: {log_path.read_text()[-2000:]}")
                    await asyncio.sleep(0.005)
                else:
                    raise RuntimeError(f"not ready in 120 s: {body}")
                ready = time.perf_counter() - started
                at_ready = proc_status(proc.pid)
                await settle(proc.pid)  # the Graph work the resume started is done
                settled = time.perf_counter() - started
                final = proc_status(proc.pid)
                cpu = cpu_seconds(proc.pid)
            finally:
                await stop_process(proc)
        users_info = sum(1 for c in slack.calls[calls_before:] if c["method"] == "users.info")
        errors = [x for x in log_path.read_text().splitlines() if x.startswith("ERROR")]
        stats = await sim.stats()
    writes = sum(c for k, c in stats["requests"].items() if k.startswith("DELETE sub 204"))
    return {
        "count": count,
        "graph": len(graph_names),
        "users_info": users_info,
        "first_answer_s": first_answer,
        "ready_s": ready,
        "rss_ready_mb": at_ready.get("VmRSS", 0) / 1024,
        "peak_mb": final.get("VmHWM", 0) / 1024,
        "settled_s": settled,
        "deleted": writes,
        "cpu_s": cpu,
        "errors": errors,
    }


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['count']:,} closures ({r['graph']} with Graph work due): /healthz first answered"
        f" after {r['first_answer_s']:.2f}s, ready with {r['count']:,} drive tasks after"
        f" {r['ready_s']:.2f}s (RSS {r['rss_ready_mb']:.0f} MB); idle again after"
        f" {r['settled_s']:.1f}s ({r['deleted']} users deleted by resumed closures); peak RSS"
        f" {r['peak_mb']:.0f} MB; CPU {r['cpu_s']:.1f}s; users.info calls {r['users_info']};"
        f" errors logged {len(r['errors'])}"
    )


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _spread(runs: list[dict[str, Any]], key: str, unit: str, fmt: str) -> str:
    values = sorted(r[key] for r in runs)
    median = format(statistics.median(values), fmt)
    if len(values) == 1:
        return f"{median} {unit}"
    return f"{median} {unit} ({format(values[0], fmt)}-{format(values[-1], fmt)})"


async def run() -> list[Row]:
    say(
        f"[{NAME}] {N:,} open closures in {len(SLOTS)} kinds of state, cycling; each case"
        f" {REPEATS} times on a fresh database and simulator (median, min-max)"
    )
    cases = {"baseline": (BASELINE_N, False), "normal": (N, False), "outage": (N, True)}
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        slack = SlackSimulator(users=people())
        await slack.start()
        try:
            for repeat in range(REPEATS):
                for case, (count, outage) in cases.items():
                    where = Path(tmp) / f"{case}-{repeat}"
                    where.mkdir()
                    result = await _resume(slack, count, where, outage)
                    runs[case].append(result)
                    label = "after an outage (every poll overdue): " if outage else ""
                    say(f"  {label}{_line(result)}")
        finally:
            await slack.stop()
    for case_runs in runs.values():
        for error in case_runs[0]["errors"][:3]:
            say(f"  bot error ({case_runs[0]['count']}): {error}")
    base, big, after = runs["baseline"], runs["normal"], runs["outage"]
    base_ready = _spread(base, "ready_s", "s", ".2f") + f", {BASELINE_N} closures"
    base_rss = _spread(base, "peak_mb", "MB", ".0f") + f", {BASELINE_N} closures"
    return [
        Row(
            NAME,
            f"start to ready, {N:,} closures ({big[0]['graph']} with Graph work due)",
            _spread(big, "ready_s", "s", ".2f"),
            f"< {TARGET_S:g} s",
            base_ready,
            _median(big, "ready_s") < TARGET_S,
        ),
        Row(
            NAME,
            "peak RSS, same",
            _spread(big, "peak_mb", "MB", ".0f"),
            f"< {TARGET_RSS_MB:.0f} MB",
            base_rss,
            _median(big, "peak_mb") < TARGET_RSS_MB,
        ),
        Row(
            NAME,
            f"start to ready, after an outage ({after[0]['graph']} with Graph work due)",
            _spread(after, "ready_s", "s", ".2f"),
            f"< {TARGET_S:g} s",
            base_ready,
            _median(after, "ready_s") < TARGET_S,
        ),
        Row(
            NAME,
            "peak RSS, after an outage",
            _spread(after, "peak_mb", "MB", ".0f"),
            f"< {TARGET_RSS_MB:.0f} MB",
            base_rss,
            _median(after, "peak_mb") < TARGET_RSS_MB,
        ),
    ]
