"""/healthz tells the truth (Slack and each tenant's authority reachable), cheaply; /livez only
says the process serves; both modes serve them."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.world import World
from tests.conftest import MakeWorld


class Link:
    """A TCP forwarder between the bot and a simulator that the test can cut: while down, new
    connections are refused and the open ones are closed, as when a network path fails."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.down()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._open.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()
        self._open.discard(dst)


@contextlib.asynccontextmanager
async def link_to(url: str) -> AsyncIterator[Link]:
    port = urlsplit(url).port
    assert port is not None
    link = Link(port)
    await link.up()
    try:
        yield link
    finally:
        await link.close()


def through(world: World, key: str, url: str) -> None:
    """Point the config's `key` at `url` (the bot reads it at start)."""
    text = world.config_path.read_text()
    text, count = re.subn(rf'^{key} = ".*"$', f'{key} = "{url}"', text, flags=re.M)
    assert count == 1
    world.config_path.write_text(text)


async def get(world: World, path: str) -> tuple[int, dict[str, Any]]:
    assert world.service is not None
    async with aiohttp.ClientSession() as http, http.get(f"{world.service.url}{path}") as resp:
        return resp.status, await resp.json()


async def test_healthz_is_503_while_slack_is_unreachable(make_world: MakeWorld) -> None:
    """While the path to Slack is cut /healthz answers 503 with the reason, /livez stays 200,
    and once Slack answers again /healthz is 200."""
    world = await make_world(start=False)
    async with link_to(world.slack.base_url) as link:
        through(world, "api_url", f"http://127.0.0.1:{link.port}/api/")
        service = await world.start_bot()
        assert service.health is not None
        service.health.ttl = 0  # every request probes: the test needs no waiting
        status, body = await get(world, "/healthz")
        assert status == 200 and body["ok"] is True and body["slack"]["ok"] is True
        assert body["tenants"] == {"contoso": {"authority": "ok"}}
        await link.down()
        status, body = await get(world, "/healthz")
        assert status == 503 and body["ok"] is False
        assert body["slack"]["ok"] is False and "unreachable" in body["slack"]["error"]
        assert body["reason"].startswith("Slack unreachable: ")
        assert body["tenants"] == {"contoso": {"authority": "ok"}}
        assert await get(world, "/livez") == (200, {"ok": True})
        await link.up()
        status, body = await get(world, "/healthz")
        assert status == 200 and body["ok"] is True
        await world.stop_bot()


async def test_healthz_is_503_while_a_tenants_authority_is_unreachable(
    make_world: MakeWorld,
) -> None:
    """While the tenant's authority cannot be reached /healthz answers 503 naming the tenant,
    /livez stays 200, and once the authority answers again /healthz is 200."""
    world = await make_world(start=False)
    async with link_to(world.microsoft.base_url) as link:
        through(world, "authority_host", f"https://127.0.0.1:{link.port}")
        service = await world.start_bot()
        assert service.health is not None
        service.health.ttl = 0
        assert (await get(world, "/healthz"))[0] == 200
        await link.down()
        status, body = await get(world, "/healthz")
        assert status == 503 and body["ok"] is False and body["slack"]["ok"] is True
        authority = body["tenants"]["contoso"]["authority"]
        assert authority.startswith("unreachable: ")
        assert body["reason"] == f"contoso's authority {authority}"
        assert await get(world, "/livez") == (200, {"ok": True})
        await link.up()
        status, body = await get(world, "/healthz")
        assert status == 200 and body["tenants"]["contoso"] == {"authority": "ok"}
        await world.stop_bot()


async def test_healthz_probes_at_most_once_per_ttl(world: World) -> None:
    """Within the cache time a burst of /healthz is answered from one probe: one auth.test."""
    before = sum(c["method"] == "auth.test" for c in world.slack.calls)
    answers = await asyncio.gather(*(get(world, "/healthz") for _ in range(5)))
    answers.append(await get(world, "/healthz"))
    assert all(status == 200 for status, _ in answers)
    assert sum(c["method"] == "auth.test" for c in world.slack.calls) == before + 1
    assert answers[0][1]["open_closures"] == 0


async def test_healthz_says_starting_until_ready(world: World) -> None:
    """Before the bot is ready /healthz is 503 with `starting` (probing nothing) while /livez is
    already 200."""
    assert world.service is not None
    world.service.ready = False
    before = len(world.slack.calls)
    assert await get(world, "/healthz") == (503, {"ok": False, "starting": True})
    assert await get(world, "/livez") == (200, {"ok": True})
    assert len(world.slack.calls) == before
    world.service.ready = True


async def test_socket_mode_serves_health_and_metrics(make_world: MakeWorld) -> None:
    """In Socket Mode the HTTP port serves /healthz, /livez and /metrics too."""
    world = await make_world(start=False)
    world.slack.socket_mode = True
    world.environ["SLACK_APP_TOKEN"] = world.slack.app_token
    service = await world.start_bot()
    assert service.socket_handler is not None
    assert (await get(world, "/healthz"))[0] == 200
    assert await get(world, "/livez") == (200, {"ok": True})
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/metrics") as resp:
        assert resp.status == 200 and "# TYPE close_account_closures gauge" in await resp.text()
