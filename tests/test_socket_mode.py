"""Socket Mode in the simulated Slack workspace, driven by slack_sdk's client, a raw websocket,
and the real bot connected through Bolt's AsyncSocketModeHandler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.world import APPROVERS, World
from simulator.slack.server import SimUser, SlackSimulator, render_message

CHANNEL = "C0PROGRESS"
ALICE = SimUser("U0ALICE", "alice", "alice@contoso.example")
BOB = SimUser("U0BOB", "bob", "bob@contoso.example")


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    async with SlackSimulator(users=[ALICE, BOB], socket_mode=True) as s:
        yield s


@pytest.fixture
def client(sim: SlackSimulator) -> AsyncWebClient:
    return AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)


async def open_url(sim: SlackSimulator) -> str:
    response = await AsyncWebClient(base_url=sim.api_url).apps_connections_open(
        app_token=sim.app_token
    )
    return str(response["url"])


async def api_error(sim: SlackSimulator, token: str, method: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(sim.api_url + method, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        body: dict[str, Any] = await resp.json()
    assert body["ok"] is False
    return str(body["error"])


@dataclass
class SdkApp:
    """slack_sdk's aiohttp Socket Mode client, acking every request with an empty payload."""

    client: SocketModeClient
    received: list[SocketModeRequest] = field(default_factory=list)

    async def ack(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        self.received.append(req)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


@pytest.fixture
async def sdk_app(sim: SlackSimulator) -> AsyncIterator[SdkApp]:
    web_client = AsyncWebClient(base_url=sim.api_url)
    app = SdkApp(SocketModeClient(app_token=sim.app_token, web_client=web_client))
    app.client.socket_mode_request_listeners.append(app.ack)
    try:
        await app.client.connect()  # type: ignore[no-untyped-call]
        yield app
    finally:
        await app.client.close()  # type: ignore[no-untyped-call]


# -- apps.connections.open and the websocket -----------------------------------------------


async def test_connections_open_wants_the_app_level_token(sim: SlackSimulator) -> None:
    """Only the app-level token opens a connection, and it may call nothing else."""
    assert await api_error(sim, sim.bot_token, "apps.connections.open") == "not_allowed_token_type"
    assert await api_error(sim, "xapp-1-other", "apps.connections.open") == "invalid_auth"
    assert await api_error(sim, sim.app_token, "chat.postMessage") == "not_allowed_token_type"
    async with (
        aiohttp.ClientSession() as http,
        http.post(sim.api_url + "apps.connections.open") as r,
    ):
        assert (await r.json())["error"] == "not_authed"
    url = await open_url(sim)
    assert url.startswith(sim.base_url.replace("http://", "ws://") + "/link/?ticket=")
    with pytest.raises(ValueError, match="xapp-"):
        SlackSimulator(app_token="xoxb-not-an-app-token")


async def test_a_url_connects_once_and_says_hello_first(sim: SlackSimulator) -> None:
    """The websocket greets with hello and the app's ID; its URL cannot be used again."""
    url = await open_url(sim)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            hello = await ws.receive_json()
            assert hello["type"] == "hello"
            assert hello["connection_info"] == {"app_id": sim.app_id}
            assert hello["num_connections"] == 1
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 401


async def test_slack_sdk_client_receives_an_event_and_acks(
    sim: SlackSimulator, client: AsyncWebClient, sdk_app: SdkApp
) -> None:
    """slack_sdk's client gets reaction_added in an events_api envelope; its ack answers 200."""
    posted = await client.chat_postMessage(channel=CHANNEL, text="approve?")
    result = await sim.react(user_id=ALICE.id, channel=CHANNEL, ts=posted["ts"], name="x")
    assert (result.status, result.timed_out, result.body) == (200, False, "")
    [req] = sdk_app.received
    assert (req.type, req.envelope_id, req.accepts_response_payload) == (
        "events_api",
        result.envelope_id,
        False,
    )
    assert (req.retry_attempt, req.retry_reason) == (0, "")
    assert req.payload == result.envelope
    assert req.payload["event"]["type"] == "reaction_added"
    assert req.payload["event_id"] == result.event_id
    assert sim.messages[0].reactions == {"x": [ALICE.id]}
    assert sim.sockets.log[0]["frame"]["type"] == "hello"
    assert sim.sockets.errors == []


async def test_redelivery_and_reconnect_after_disconnect(
    sim: SlackSimulator, client: AsyncWebClient, sdk_app: SdkApp
) -> None:
    """A redelivery carries retry_attempt/reason; after Slack's disconnect the client reconnects
    and later envelopes arrive on the new connection."""
    posted = await client.chat_postMessage(channel=CHANNEL, text="approve?")
    first = await sim.react(user_id=ALICE.id, channel=CHANNEL, ts=posted["ts"], name="x")
    assert first.envelope is not None
    again = await sim.deliver(first.envelope, retry_num=1)
    retried = sdk_app.received[1]
    assert (retried.retry_attempt, retried.retry_reason) == (1, "timeout")
    assert (again.event_id, again.status) == (first.event_id, 200)
    [old] = sim.sockets.usable()
    await sim.sockets.disconnect()
    new = await sim.wait_for(lambda s: [c for c in s.sockets.usable() if c.id != old.id])
    await sim.react(user_id=BOB.id, channel=CHANNEL, ts=posted["ts"], name="x")
    assert new[0].envelopes == 1
    assert len(sdk_app.received) == 3
    assert sim.sockets.errors == []


async def test_slash_command_ack_payload_is_the_immediate_answer(sim: SlackSimulator) -> None:
    """A slash_commands envelope carries Slack's fields; the ack's payload shows to the user and
    the response_url still takes later answers."""
    async with aiohttp.ClientSession() as http, http.ws_connect(await open_url(sim)) as ws:
        await ws.receive_json()  # hello

        async def answer() -> dict[str, Any]:
            envelope: dict[str, Any] = await ws.receive_json()
            ack = {"envelope_id": envelope["envelope_id"], "payload": {"text": "Starting…"}}
            await ws.send_str(json.dumps(ack))
            return envelope

        answered = asyncio.create_task(answer())
        result = await sim.slash_command(user_id=ALICE.id, text="start contoso")
        envelope = await answered
        assert (envelope["type"], envelope["accepts_response_payload"]) == ("slash_commands", True)
        assert "retry_attempt" not in envelope
        payload = envelope["payload"]
        assert (payload["command"], payload["text"], payload["user_id"]) == (
            "/close-account",
            "start contoso",
            ALICE.id,
        )
        assert payload["response_url"] == result.response_url
        assert (result.status, result.ack, result.envelope_id) == (
            200,
            {"text": "Starting…"},
            envelope["envelope_id"],
        )
        assert sim.ephemerals[-1]["source"] == "ack"
        async with http.post(result.response_url, json={"text": "planned"}) as resp:
            assert resp.status == 200
        assert [r["text"] for r in result.responses] == ["planned"]


async def test_unacked_envelopes_time_out_and_late_acks_are_refused(sim: SlackSimulator) -> None:
    """An envelope the app does not ack in time times out; its late ack is an error, and with no
    connection at all a delivery raises."""
    sim.ack_timeout = 0.2
    with pytest.raises(ConnectionError, match="no Socket Mode connection"):
        await sim.open_home(ALICE.id)
    async with aiohttp.ClientSession() as http, http.ws_connect(await open_url(sim)) as ws:
        await ws.receive_json()  # hello
        result = await sim.open_home(ALICE.id)
        assert (result.status, result.timed_out) == (0, True)
        envelope = await ws.receive_json()
        await ws.send_str(json.dumps({"envelope_id": envelope["envelope_id"]}))
        await ws.send_str("not json")
        errors = await sim.wait_for(lambda s: len(s.sockets.errors) == 2 and s.sockets.errors)
    assert "unknown or expired" in errors[0]
    assert "not JSON" in errors[1]


async def test_http_only_options_are_refused_in_socket_mode(sim: SlackSimulator) -> None:
    """Signing, headers and raw non-JSON bodies mean nothing over a socket, so deliver() refuses."""
    body = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
    with pytest.raises(ValueError, match="HTTP-only"):
        await sim.deliver(body, sign=False)
    with pytest.raises(ValueError, match="JSON objects only"):
        await sim.deliver(b"[]")
    with pytest.raises(ValueError, match="url_verification"):
        await sim.deliver({"type": "url_verification", "challenge": "x"})


# -- the real bot over Socket Mode ---------------------------------------------------------


async def test_the_bot_works_over_socket_mode(tmp_path: Path) -> None:
    """With an app-level token and no Request URL, the bot answers commands, starts a closure
    and counts a reaction, all delivered over its Socket Mode connection."""
    world = await World.create(users=40, directory=tmp_path, start=False)
    try:
        world.environ["SLACK_APP_TOKEN"] = "xapp-1-sim"
        assert world.slack.app_token == "xapp-1-sim"
        world.slack.socket_mode = True
        await world.start_bot()
        world.slack.request_url = None  # anything sent over HTTP would now raise
        assert "closes a Microsoft 365 tenant" in await world.command("help")
        await world.command("contoso")
        request = await world.wait_request("delete_users")
        await world.vote(request, APPROVERS[0])
        await world.slack.wait_for(
            lambda _: (s := world.status()) is not None and "Approvals: 1/2" in render_message(s)
        )
        kinds = [f["frame"]["type"] for f in world.slack.sockets.log if f["direction"] == "sent"]
        assert kinds[0] == "hello"
        assert kinds.count("slash_commands") == 2 and "events_api" in kinds
        assert world.slack.sockets.errors == []
    finally:
        await world.close()


async def test_socket_mode_serves_no_unsigned_http_endpoint(tmp_path: Path) -> None:
    """In Socket Mode nothing is verified over HTTP, so /slack/events does not exist (404)."""
    world = await World.create(users=10, directory=tmp_path, start=False)
    try:
        world.environ["SLACK_APP_TOKEN"] = "xapp-1-sim"
        world.slack.socket_mode = True
        service = await world.start_bot()
        async with aiohttp.ClientSession() as http:
            forged = "command=/close-account&text=contoso&user_id=U0ADMIN1"
            async with http.post(
                f"{service.url}/slack/events",
                data=forged,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as resp:
                assert resp.status == 404
            async with http.get(f"{service.url}/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["ok"] is True
        assert world.slack.messages == []
    finally:
        await world.close()
