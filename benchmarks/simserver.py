"""The simulated Microsoft cloud in its own process, so it does not share a core with the bot.

`python -m benchmarks.simserver '<json spec>'`; the spec:

    {"time_scale": 1.0, "retry_after": 0.05,
     "tenants": [{"name": "big", "users": 20001, "seed": 0,
                  "write_budget": [3000, 1.5], "read_budget": null, "list_users": false,
                  "write_policy": {"model": "bucket", "app": [3000, 1.5],
                                   "tenant": [18000, 3.0], "others": 0.0}}]}

`write_policy` sets the throttler's `WritePolicy` for the tenant (simulator/microsoft/
graph_throttle.py: sliding window or token bucket, per app and across apps, other apps' spend).

Once listening it prints one JSON line (base_url, ca_file, each tenant's credentials and, with
`list_users`, its users), then answers commands read from stdin, one JSON line each:
`stats` (requests seen, by method, top level or $batch sub-request, and status; CPU seconds
used), `reset` (forget the request log) and `latency <seconds>` (wait that long before serving
each Graph HTTP request, a stand-in for the network round trip). EOF stops it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import resource
import shutil
import sys
from typing import Any

from aiohttp import web

from simulator.microsoft.server import MicrosoftSimulator


class LatentSimulator(MicrosoftSimulator):
    """The simulator with a fixed delay before each Graph request (not the token endpoint)."""

    latency = 0.0

    async def _graph_entry(self, request: web.Request) -> web.StreamResponse:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return await super()._graph_entry(request)


def _stats(sim: MicrosoftSimulator) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    for r in sim.requests:
        counts[f"{r.method} {'sub' if r.batch else 'top'} {r.status}"] += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    deletes = [r for r in sim.requests if r.method == "DELETE" and r.batch]
    admitted = [r.time for r in deletes if 200 <= r.status < 300]
    return {
        "requests": dict(counts),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
        "users_left": {t.name: len(t.users) for t in sim.tenants.values()},
        "deleted_left": {t.name: len(t.deleted_users) for t in sim.tenants.values()},
        # $batch DELETE sub-requests, on the simulator's clock: the first sent, the last admitted
        "deletes_first": min((r.time for r in deletes), default=None),
        "deletes_last_ok": max(admitted, default=None),
    }


async def main(spec: dict[str, Any]) -> None:
    sim = LatentSimulator(
        time_scale=float(spec.get("time_scale", 1.0)),
        retry_after=float(spec.get("retry_after", 0.05)),
    )
    described = []
    for t in spec["tenants"]:
        tenant = sim.add_tenant(name=t["name"], users=int(t["users"]), seed=int(t.get("seed", 0)))
        if t.get("write_budget"):
            tenant.write_budget = (int(t["write_budget"][0]), float(t["write_budget"][1]))
        if t.get("read_budget"):
            tenant.read_budget = (int(t["read_budget"][0]), float(t["read_budget"][1]))
        if t.get("write_policy"):
            wp = t["write_policy"]
            policy = sim.throttler.policy(tenant)
            policy.model = wp.get("model", "window")
            policy.app = (int(wp["app"][0]), float(wp["app"][1])) if wp.get("app") else None
            policy.tenant = (
                (int(wp["tenant"][0]), float(wp["tenant"][1])) if wp.get("tenant") else None
            )
            policy.others = float(wp.get("others", 0.0))
        info: dict[str, Any] = {
            "name": tenant.name,
            "tenant_id": tenant.tenant_id,
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
            "retained_upn": tenant.retained_upn,
        }
        if t.get("list_users"):
            info["users"] = [
                {"id": u["id"], "upn": u["userPrincipalName"]}
                for u in tenant.users.values()
                if u["userPrincipalName"] != tenant.retained_upn
            ]
        described.append(info)
    await sim.start()
    out = sys.stdout
    out.write(
        json.dumps({"base_url": sim.base_url, "ca_file": sim.ca_file, "tenants": described}) + "\n"
    )
    out.flush()
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            command = line.strip()
            if command == "stats":
                answer: dict[str, Any] = _stats(sim)
            elif command.startswith("latency "):
                sim.latency = float(command.split()[1])
                answer = {"ok": True}
            elif command == "reset":
                sim.requests.clear()
                answer = {"ok": True}
            else:
                answer = {"error": f"unknown command {command!r}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        await sim.stop()
        # The simulator leaves its throwaway CA in a sim-tls-* temporary directory.
        directory = os.path.dirname(sim.ca_file)
        if os.path.basename(directory).startswith("sim-tls-"):
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
