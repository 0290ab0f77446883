"""What the benchmarks share: result rows, the simulator subprocess, configs, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.config import TenantSettings

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "U0ADMIN1"
APPROVERS = ("U0APPR1", "U0APPR2", "U0APPR3")
OUTSIDER = "U0OTHER"
CHANNEL = "C0PROGRESS"
TENANT_SECRET_ENV = "SIM_TENANT_SECRET"


@dataclass(frozen=True)
class Row:
    """One line of the results table: what was measured against its target and baseline."""

    benchmark: str
    metric: str
    measured: str
    target: str
    baseline: str
    ok: bool | None = None  # None: informational, no target


def say(text: str) -> None:
    print(text, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS (kB) of a live process, from /proc."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tenant_settings(sim: Mapping[str, Any], tenant: Mapping[str, Any]) -> TenantSettings:
    """What the bot's config would give for one simulated tenant."""
    return TenantSettings(
        name=tenant["name"],
        tenant_id=tenant["tenant_id"],
        client_id=tenant["client_id"],
        retain=(tenant["retained_upn"],),
        approvers=APPROVERS,
        quorum=2,
        quorum_by_step=MappingProxyType({}),
        cloud="global",
        authority_host=sim["base_url"],
        graph_url=sim["base_url"],
        client_secret_env=TENANT_SECRET_ENV,
        client_secret=tenant["client_secret"],
        certificate_file=None,
    )


def config_text(
    *,
    slack_api_url: str,
    sim: Mapping[str, Any],
    tenants: Sequence[Mapping[str, Any]],
    db_path: Path,
    timing: Mapping[str, str | int],
) -> str:
    """A config with many tenants, modelled on bot/world.py's `config_text`."""

    def strings(values: Sequence[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    timing_lines = "\n".join(
        f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in timing.items()
    )
    parts = [
        f"""
[slack]
progress_channel = "{CHANNEL}"
admins = {strings([ADMIN])}
api_url = "{slack_api_url}"

[storage]
path = "{db_path}"

[tls]
ca_file = "{sim["ca_file"]}"

[timing]
{timing_lines}
"""
    ]
    for tenant in tenants:
        parts.append(
            f"""
[[tenants]]
name = "{tenant["name"]}"
tenant_id = "{tenant["tenant_id"]}"
client_id = "{tenant["client_id"]}"
client_secret_env = "{TENANT_SECRET_ENV}"
retain = ["{tenant["retained_upn"]}"]
approvers = {strings(APPROVERS)}
quorum = 2
authority_host = "{sim["base_url"]}"
graph_url = "{sim["base_url"]}"
"""
        )
    return "".join(parts)


class SimProcess:
    """benchmarks.simserver in its own process (its own core): the simulated Microsoft cloud.

    `info` is what it printed once listening: base_url, ca_file and the tenants' credentials.
    """

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info

    @property
    def tenants(self) -> list[dict[str, Any]]:
        tenants: list[dict[str, Any]] = self.info["tenants"]
        return tenants

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stats(self) -> dict[str, Any]:
        return await self.ask("stats")

    async def reset(self) -> None:
        await self.ask("reset")

    async def latency(self, seconds: float) -> None:
        await self.ask(f"latency {seconds}")


@contextlib.asynccontextmanager
async def sim_process(spec: Mapping[str, Any]) -> AsyncIterator[SimProcess]:
    """Start the Microsoft simulator subprocess with `spec` (see simserver) and stop it after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.simserver",
        json.dumps(spec),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        limit=64 * 1024 * 1024,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        if not line:
            raise RuntimeError("the simulator subprocess exited before listening")
        yield SimProcess(proc, json.loads(line))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError, ConnectionResetError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 15.0) -> None:
    """SIGINT (the bot's own shutdown path), then SIGKILL if it does not exit in `grace` s."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
