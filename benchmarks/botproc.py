"""The bot as `close-account-bot run` runs it, with every tenant's WritePacer set to a given budget.

`python -m benchmarks.botproc CONFIG PORT LIMIT WINDOW [LIMIT WINDOW ...] [--ca SECONDS]`: each
LIMIT WINDOW pair is one budget the pacer starts from (the tightest sets its starting rate; it
learns from Microsoft's answers after that); --ca the conditional-access interval (default
WINDOW / LIMIT of the first pair). The product has no setting for the
pacer's budgets (they are Microsoft's, fixed); a benchmark that compresses Microsoft's budget in
the simulator has to give the bot the same one, so this replaces each tenant's pacer after
`start_service` and before any closure starts (run it on a database with no open closure).
Prints `listening <url>` once ready; SIGINT stops it the way `run` stops. For diagnosis,
BENCH_SLOW_CALLBACK=0.05 turns on asyncio debug mode and logs every loop step over 50 ms.

`bot_process` starts it from a benchmark (budgets, ack_latency) and stops it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import ROOT, free_port, stop_process
from bot.config import load_settings
from bot.microsoft.pacing import WritePacer
from bot.service import serve_forever, start_service


def _read(path: Path) -> str:
    return path.read_text()


@dataclass(frozen=True)
class BotProcess:
    proc: asyncio.subprocess.Process
    url: str  # http://127.0.0.1:PORT, Slack's Request URL is url + "/slack/events"


@contextlib.asynccontextmanager
async def bot_process(
    config: Path,
    env: Mapping[str, str],
    log_path: Path,
    budgets: Sequence[tuple[int, float]],
    ca_interval: float | None = None,
) -> AsyncIterator[BotProcess]:
    """The bot as a process on a free port with its pacers starting from `budgets`, its stderr
    in `log_path`; yields once it listens, stops it (SIGINT, as `run` stops) after."""
    args = [str(x) for budget in budgets for x in budget]
    if ca_interval is not None:
        args += ["--ca", str(ca_interval)]
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.botproc",
            str(config),
            str(free_port()),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            env=dict(env),
        )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"the bot did not start: {_read(log_path)}")
        yield BotProcess(proc, line.split()[1])
    finally:
        await stop_process(proc)


async def main(
    config: str, port: int, budgets: tuple[tuple[int, float], ...], ca_interval: float
) -> None:
    slow = os.environ.get("BENCH_SLOW_CALLBACK")  # diagnosis: log loop steps slower than this
    if slow:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = float(slow)
    service = await start_service(load_settings(config), host="127.0.0.1", port=port)
    for tenant in service.core.tenants.values():
        tenant.graph.pacer = WritePacer(budgets, ca_interval=ca_interval)
    print(f"listening {service.url}", flush=True)
    await serve_forever(service)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:]
    ca = None
    if "--ca" in args:
        at = args.index("--ca")
        ca = float(args[at + 1])
        del args[at : at + 2]
    pairs = tuple((int(args[i]), float(args[i + 1])) for i in range(2, len(args) - 1, 2))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            main(args[0], int(args[1]), pairs, ca if ca is not None else pairs[0][1] / pairs[0][0])
        )
