"""Each national cloud's real host names, end to end, with the bot as a process: `run` and
`check` reach the cloud's authority and Graph only through an HTTPS proxy (simulator/proxy.py)
that tunnels the real host names to the Microsoft simulator and refuses everything else, so
nothing leaves 127.0.0.1. Slack stays on its 127.0.0.1 URL, which no_proxy covers."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from bot.microsoft.clouds import CLOUDS
from bot.world import World
from simulator.microsoft.hosts import HOST_ROLES
from simulator.proxy import ConnectProxy
from tests.conftest import MakeWorld
from tests.test_run_process import bot_process, no_traceback, run_env, socket_mode_world

OVERRIDES = re.compile(r"^(authority_host|graph_url|arm_url) = .*\n", re.MULTILINE)


def host(url: str) -> str:
    return url.removeprefix("https://")


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    """A proxy whose routes are filled in once the Microsoft simulator has its port."""
    async with ConnectProxy({}) as running:
        yield running


async def cloud_world(
    make_world: MakeWorld, proxy: ConnectProxy, cloud: str, *, socket_mode: bool = False
) -> World:
    """The World's config with the endpoint overrides replaced by `cloud` and a [network]
    table sending everything but 127.0.0.1 (Slack) through `proxy`."""
    world = await (socket_mode_world(make_world) if socket_mode else make_world(start=False))
    port = int(world.microsoft.base_url.rsplit(":", 1)[1])
    proxy.routes.update(dict.fromkeys(HOST_ROLES, port))
    text, replaced = OVERRIDES.subn("", world.config_path.read_text())
    assert replaced == 3
    text = text.replace("[[tenants]]\n", f'[[tenants]]\ncloud = "{cloud}"\n', 1)
    text = f'[network]\nhttps_proxy = "{proxy.url}"\nno_proxy = ["127.0.0.1"]\n' + text
    world.config_path.write_text(text)
    return world


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
async def test_run_reaches_the_clouds_real_hosts_through_the_proxy(
    make_world: MakeWorld, proxy: ConnectProxy, cloud: str
) -> None:
    """`run` on a tenant with only `cloud` set signs in at the cloud's authority host and reads
    its Graph host through the proxy (step 1's approval request needs both), asks the proxy
    for nothing else, and stops on SIGTERM with exit 0."""
    world = await cloud_world(make_world, proxy, cloud)
    async with bot_process(world.config_path, run_env(world)) as bot:
        world.slack.request_url = f"{bot.url}/slack/events"
        await world.command("contoso")
        await world.wait_request("delete_users")
        assert await bot.stop(signal.SIGTERM) == 0
    no_traceback(bot)
    endpoints = CLOUDS[cloud]
    assert proxy.hosts == {host(endpoints.authority_host), host(endpoints.graph_url)}
    assert all(c.allowed and c.target.endswith(":443") for c in proxy.connects)


async def test_socket_mode_behind_the_proxy_reaches_slack_directly_and_graph_through_it(
    make_world: MakeWorld, proxy: ConnectProxy
) -> None:
    """In Socket Mode with a proxy configured, the websocket to Slack's 127.0.0.1 (in no_proxy)
    opens directly while the closure's sign-in and Graph reads go through the proxy."""
    world = await cloud_world(make_world, proxy, "usgov", socket_mode=True)
    async with bot_process(world.config_path, run_env(world)) as bot:
        await world.command("contoso")
        await world.wait_request("delete_users")
        assert await bot.stop(signal.SIGTERM) == 0
    no_traceback(bot)
    assert proxy.hosts == {"login.microsoftonline.us", "graph.microsoft.us"}


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
async def test_check_reaches_the_clouds_real_hosts_through_the_proxy(
    make_world: MakeWorld, proxy: ConnectProxy, cloud: str
) -> None:
    """`check` gets its token and reads permissions on the cloud's hosts through the proxy:
    every line ok, exit 0, and the proxy was asked for the cloud's hosts only."""
    world = await cloud_world(make_world, proxy, cloud)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        "--config",
        str(world.config_path),
        env=run_env(world),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    report = out.decode()
    assert proc.returncode == 0, report + err.decode()
    assert "Traceback" not in err.decode()
    endpoints = CLOUDS[cloud]
    cloud_hosts = {host(endpoints.authority_host), host(endpoints.graph_url)}
    assert cloud_hosts <= proxy.hosts <= cloud_hosts | {host(endpoints.arm_url)}
    assert all(c.allowed for c in proxy.connects)


def test_the_proxy_hosts_are_the_clouds_hosts() -> None:
    """The proxy's and the simulator's host list is every cloud's authority, Graph and
    Resource Manager host plus Partner Center's, so no cloud's host is left untested."""
    expected = {
        host(url)
        for endpoints in CLOUDS.values()
        for url in (endpoints.authority_host, endpoints.graph_url, endpoints.arm_url)
    }
    assert set(HOST_ROLES) == expected | {"api.partnercenter.microsoft.com"}
