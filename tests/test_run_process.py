"""`close-account-bot run` as an operator starts it: a process, in every documented
configuration, answering /healthz and stopping cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bot.world import World
from tests.conftest import MakeWorld

LISTENING = re.compile(r"listening on (http://[^/\s]+)")
START_TIMEOUT = 60.0  # seconds for the process to say it is listening (a slow CI machine)


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    url: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    async def health(self) -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as resp:
            return resp.status, await resp.json()

    async def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        out, err = await asyncio.wait_for(self.proc.communicate(), 60)
        self.stdout += out.decode().splitlines()
        self.stderr += err.decode().splitlines()
        assert self.proc.returncode is not None
        return self.proc.returncode


def run_env(world: World, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The operator's environment: the machine's, the World's secrets, minus `drop`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(world.environ)
    env.update(extra)
    for name in drop:
        env.pop(name, None)
    return env


@asynccontextmanager
async def bot_process(
    config: Path, env: Mapping[str, str], *args: str
) -> AsyncIterator[BotProcess]:
    """Start `python -m bot run` and wait for its "listening" line; kill it if a test fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    bot = BotProcess(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            while not bot.url:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    _, err = await proc.communicate()
                    pytest.fail(f"run exited {proc.returncode} before listening: {err.decode()}")
                bot.stdout.append(line.rstrip("\n"))
                if found := LISTENING.search(line):
                    bot.url = found.group(1)
        yield bot
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def no_traceback(bot: BotProcess) -> None:
    assert not [line for line in bot.stderr if "Traceback" in line or "Error" in line], bot.stderr


async def socket_mode_world(make_world: MakeWorld, **kwargs: object) -> World:
    world = await make_world(start=False, **kwargs)
    world.slack.socket_mode = True  # the app's "Enable Socket Mode"; no Request URL
    world.environ["SLACK_APP_TOKEN"] = world.slack.app_token
    del world.environ["SLACK_SIGNING_SECRET"]  # deploy/README's env file has none
    return world


async def test_socket_mode_with_only_bot_and_app_tokens_starts_and_works(
    make_world: MakeWorld,
) -> None:
    """Socket Mode, the documented default, starts with no signing secret at all, answers
    /healthz, takes a command over the websocket, and stops on SIGTERM with exit 0."""
    world = await socket_mode_world(make_world)
    assert "SLACK_SIGNING_SECRET" not in run_env(world)
    async with bot_process(world.config_path, run_env(world)) as bot:
        assert "Socket Mode" in bot.stdout[-1] and "/slack/events" not in bot.stdout[-1]
        status, body = await bot.health()
        assert status == 200 and body["ok"] is True
        assert "closes a Microsoft 365 tenant" in await world.command("help")
        assert await bot.stop(signal.SIGTERM) == 0
    no_traceback(bot)


async def test_http_mode_with_the_signing_secret_starts_and_works(make_world: MakeWorld) -> None:
    """HTTP mode answers /healthz, takes a signed command on /slack/events, and stops on SIGINT
    with exit 0."""
    world = await make_world(start=False)
    async with bot_process(world.config_path, run_env(world)) as bot:
        world.slack.request_url = f"{bot.url}/slack/events"
        status, body = await bot.health()
        assert status == 200 and body["ok"] is True
        assert "closes a Microsoft 365 tenant" in await world.command("help")
        assert await bot.stop(signal.SIGINT) == 0
    no_traceback(bot)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_certificate_credential_starts_a_closure_and_stops_cleanly(
    make_world: MakeWorld, signum: int
) -> None:
    """With a certificate instead of a client secret the bot gets a token and opens a closure;
    either signal stops it with exit 0 and releases the database for the next start."""
    world = await make_world(start=False, certificate=True)
    env = run_env(world, drop=("SIM_TENANT_SECRET",))
    async with bot_process(world.config_path, env) as bot:
        world.slack.request_url = f"{bot.url}/slack/events"
        await world.command("contoso")
        await world.wait_request("delete_users")
        assert await bot.stop(signum) == 0
    no_traceback(bot)
    async with bot_process(world.config_path, env) as again:  # the lock was released
        assert (await again.health())[0] == 200
        assert await again.stop(signal.SIGTERM) == 0
