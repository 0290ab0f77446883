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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from bot.config import load_settings
from bot.microsoft.pacing import WritePacer
from bot.service import serve_forever, start_service


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
