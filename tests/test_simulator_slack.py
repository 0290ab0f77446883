"""The simulated Slack workspace, driven by the real slack_sdk and a real signed receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from simulator.slack.server import (
    DEFAULT_BOT_SCOPES,
    SimMessage,
    SimUser,
    SlackSimulator,
    render_channel,
    render_message,
)

CHANNEL = "C0PROGRESS"
ALICE = SimUser("U0ALICE", "alice", "alice@contoso.example")
BOB = SimUser("U0BOB", "bob", "bob@contoso.example")
STATUS_META = {
    "event_type": "close_account_status",
    "event_payload": {"closure_id": 7, "tenant": "contoso", "state": "delete_users.planning"},
}


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    async with SlackSimulator(users=[ALICE, BOB]) as s:
        yield s


@pytest.fixture
def client(sim: SlackSimulator) -> AsyncWebClient:
    return AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)


async def api_error(call: Any) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as info:
        await call
    data: dict[str, Any] = info.value.response.data
    return data


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    valid: bool

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A stand-in for the bot's Request URL: checks the signature as Bolt does, records, answers."""

    verifier: SignatureVerifier
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[Received], web.StreamResponse] | None = None
    hold: asyncio.Event | None = None  # when set, requests wait for it (an unresponsive bot)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = Received(
            dict(request.headers),
            body,
            self.verifier.is_valid(
                body=body,
                timestamp=request.headers.get("X-Slack-Request-Timestamp"),
                signature=request.headers.get("X-Slack-Signature"),
            ),
        )
        self.requests.append(received)
        if self.hold is not None:
            await self.hold.wait()
        if not received.valid:
            return web.Response(status=401, text="invalid request")
        return self.answer(received) if self.answer else web.Response(status=200)


@pytest.fixture
async def receiver(sim: SlackSimulator) -> AsyncIterator[Receiver]:
    recv = Receiver(SignatureVerifier(sim.signing_secret))
    app = web.Application()
    app.router.add_post("/slack/events", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sim.request_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield recv
    if recv.hold is not None:
        recv.hold.set()
    await runner.cleanup()


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


# -- Web API: messages ---------------------------------------------------------------------


async def test_post_message_keeps_blocks_and_metadata_and_answers_like_slack(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """chat.postMessage stores text, blocks and metadata and answers with channel, ts, message."""
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Closing contoso"}}]
    resp = await client.chat_postMessage(
        channel=CHANNEL, text="Closing contoso", blocks=blocks, metadata=STATUS_META
    )
    assert resp["channel"] == CHANNEL
    assert resp["message"]["metadata"] == STATUS_META
    assert resp["message"]["bot_id"] == "B0BOT"
    [msg] = sim.messages
    assert (msg.ts, msg.user, msg.blocks, msg.metadata) == (
        resp["ts"],
        "U0BOT",
        blocks,
        STATUS_META,
    )
    assert sim.find(event_type="close_account_status") == [msg]
    assert sim.calls[-1] == {
        "method": "chat.postMessage",
        "args": {"channel": CHANNEL, "text": "Closing contoso", "blocks": blocks}
        | {"metadata": STATUS_META},
        "ok": True,
        "error": None,
        "status": 200,
    }


async def test_history_returns_metadata_only_when_asked(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """conversations.history includes message metadata only with include_all_metadata."""
    await client.chat_postMessage(channel=CHANNEL, text="status", metadata=STATUS_META)
    plain = await client.conversations_history(channel=CHANNEL)
    full = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert "metadata" not in plain["messages"][0]
    assert full["messages"][0]["metadata"] == STATUS_META


async def test_history_is_newest_first_paginated_and_hides_unbroadcast_replies(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """History lists top-level messages and broadcast replies newest first, page by cursor."""
    first = await client.chat_postMessage(channel=CHANNEL, text="one")
    await client.chat_postMessage(channel=CHANNEL, text="hidden", thread_ts=first["ts"])
    await client.chat_postMessage(
        channel=CHANNEL, text="shown", thread_ts=first["ts"], reply_broadcast=True
    )
    await client.chat_postMessage(channel=CHANNEL, text="two")
    page1 = await client.conversations_history(channel=CHANNEL, limit=2)
    assert [m["text"] for m in page1["messages"]] == ["two", "shown"]
    assert page1["has_more"] is True
    page2 = await client.conversations_history(
        channel=CHANNEL, limit=2, cursor=page1["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in page2["messages"]] == ["one"]
    assert page2["messages"][0]["reply_count"] == 2
    assert page1["messages"][1]["subtype"] == "thread_broadcast"


async def test_update_keeps_every_version(sim: SlackSimulator, client: AsyncWebClient) -> None:
    """chat.update edits in place, keeps each version, and retains metadata unless given."""
    posted = await client.chat_postMessage(
        channel=CHANNEL, text="v1", blocks=[section("v1")], metadata=STATUS_META
    )
    new_meta = {"event_type": "close_account_status", "event_payload": {"state": "closed"}}
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="v2", blocks=[section("v2")])
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="v3", metadata=new_meta)
    [msg] = sim.messages
    assert msg.edited and msg.text == "v3" and msg.blocks is None  # text alone drops blocks
    assert msg.versions == [
        {"text": "v1", "blocks": [section("v1")], "metadata": STATUS_META},
        {"text": "v2", "blocks": [section("v2")], "metadata": STATUS_META},
        {"text": "v3", "blocks": None, "metadata": new_meta},
    ]


async def test_update_refuses_other_authors_and_unknown_messages(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """chat.update answers cant_update_message for a person's message, message_not_found else."""
    mine = sim.say(ALICE.id, CHANNEL, "hello")
    theirs = await api_error(client.chat_update(channel=CHANNEL, ts=mine.ts, text="x"))
    missing = await api_error(client.chat_update(channel=CHANNEL, ts="1.000100", text="x"))
    assert (theirs["error"], missing["error"]) == ("cant_update_message", "message_not_found")


async def test_replies_list_parent_then_replies_even_from_a_reply_ts(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """conversations.replies returns the parent first, also when asked with a reply's ts."""
    parent = await client.chat_postMessage(channel=CHANNEL, text="parent", metadata=STATUS_META)
    reply = await client.chat_postMessage(channel=CHANNEL, text="r1", thread_ts=parent["ts"])
    # Slack threads a reply to a reply under the parent.
    await client.chat_postMessage(channel=CHANNEL, text="r2", thread_ts=reply["ts"])
    resp = await client.conversations_replies(
        channel=CHANNEL, ts=reply["ts"], include_all_metadata=True
    )
    assert [m["text"] for m in resp["messages"]] == ["parent", "r1", "r2"]
    assert resp["messages"][0]["metadata"] == STATUS_META
    assert [m.text for m in sim.thread(CHANNEL, parent["ts"])] == ["parent", "r1", "r2"]
    missing = await api_error(client.conversations_replies(channel=CHANNEL, ts="1.000100"))
    assert missing["error"] == "thread_not_found"


async def test_post_ephemeral_is_recorded_for_the_user(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """chat.postEphemeral lands in sim.ephemerals, not in the channel."""
    resp = await client.chat_postEphemeral(channel=CHANNEL, user=ALICE.id, text="only you")
    assert sim.messages == []
    assert sim.ephemerals[0] | {"message_ts": None} == {
        "user": ALICE.id,
        "channel": CHANNEL,
        "text": "only you",
        "blocks": None,
        "response_type": "ephemeral",
        "thread_ts": None,
        "message_ts": None,
        "source": "chat.postEphemeral",
    }
    assert resp["message_ts"]
    sim.deactivate(BOB.id)
    gone = await api_error(client.chat_postEphemeral(channel=CHANNEL, user=BOB.id, text="x"))
    assert gone["error"] == "user_not_in_channel"


async def test_permalink_channel_info_and_reactions_get(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """getPermalink links a message that the sim serves; reactions.get lists who reacted."""
    posted = await client.chat_postMessage(channel=CHANNEL, text="approve me")
    sim.add_reaction(sim.messages[0], "white_check_mark", ALICE.id)
    link = await client.chat_getPermalink(channel=CHANNEL, message_ts=posted["ts"])
    async with aiohttp.ClientSession() as http, http.get(link["permalink"]) as page:
        assert await page.text() == "approve me"
    info = await client.conversations_info(channel=CHANNEL)
    assert (info["channel"]["id"], info["channel"]["name"]) == (CHANNEL, "closures")
    got = await client.reactions_get(channel=CHANNEL, timestamp=posted["ts"])
    assert got["message"]["reactions"] == [
        {"name": "white_check_mark", "users": [ALICE.id], "count": 1}
    ]
    nothing = await api_error(client.reactions_get())
    assert nothing["error"] == "no_item_specified"


# -- Web API: strictness -------------------------------------------------------------------


async def test_missing_scope_names_needed_and_provided() -> None:
    """A method whose scope the app lacks answers missing_scope with needed and provided."""
    async with SlackSimulator(bot_scopes=frozenset({"chat:write"})) as sim:
        client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
        error = await api_error(client.users_info(user="U0BOT"))
    assert error == {
        "ok": False,
        "error": "missing_scope",
        "needed": "users:read",
        "provided": "chat:write",
    }
    assert "users:read.email" in DEFAULT_BOT_SCOPES


async def test_tokens_are_checked(sim: SlackSimulator) -> None:
    """No token answers not_authed, a wrong one invalid_auth, a form-field token is accepted."""
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.api_url + "auth.test") as resp:
            assert (await resp.json())["error"] == "not_authed"
        async with http.post(sim.api_url + "auth.test", data={"token": sim.bot_token}) as resp:
            assert (await resp.json())["user_id"] == "U0BOT"
        async with http.post(
            sim.api_url + "auth.test", json={"token": sim.bot_token}
        ) as resp:  # a JSON body's token does not count: Slack wants the header
            assert (await resp.json())["error"] == "not_authed"
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=sim.api_url)
    assert (await api_error(wrong.auth_test()))["error"] == "invalid_auth"


async def test_metadata_must_be_well_formed(sim: SlackSimulator, client: AsyncWebClient) -> None:
    """Metadata that is not a JSON object is a format error; one missing its keys a schema one."""
    async with aiohttp.ClientSession() as http:
        form = {"token": sim.bot_token, "channel": CHANNEL, "text": "x", "metadata": "{nope"}
        async with http.post(sim.api_url + "chat.postMessage", data=form) as resp:
            assert (await resp.json())["error"] == "invalid_metadata_format"
        form["metadata"] = json.dumps(STATUS_META)
        async with http.post(sim.api_url + "chat.postMessage", data=form) as resp:
            assert (await resp.json())["message"]["metadata"] == STATUS_META
    assert sim.calls[-1]["args"]["metadata"] == STATUS_META  # recorded decoded
    schema = await api_error(
        client.chat_postMessage(channel=CHANNEL, text="x", metadata={"event_type": "a"})
    )
    assert schema["error"] == "invalid_metadata_schema"


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([section("x")] * 51, "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"),
        (
            [section("x" * 3001)],
            "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "[ERROR] must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [section("a", "same"), section("b", "same")],
            "[ERROR] duplicate block_id: same [json-pointer:/blocks/1/block_id]",
        ),
        ([{"type": "banner"}], "[ERROR] unsupported type: banner [json-pointer:/blocks/0/type]"),
        (
            [section("")],
            "[ERROR] must be more than 0 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}],
            "[ERROR] must be one of: plain_text [json-pointer:/blocks/0/text/type]",
        ),
    ],
)
async def test_invalid_blocks_are_refused_with_slack_messages(
    sim: SlackSimulator, client: AsyncWebClient, blocks: list[dict[str, Any]], message: str
) -> None:
    """Blocks Slack would refuse answer invalid_blocks with its [ERROR] message and post nothing."""
    error = await api_error(client.chat_postMessage(channel=CHANNEL, text="x", blocks=blocks))
    assert error["error"] == "invalid_blocks"
    assert message in error["response_metadata"]["messages"]
    assert sim.messages == []


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        ("chat.postMessage", {"channel": CHANNEL}, "no_text"),
        ("chat.postMessage", {"channel": CHANNEL, "text": "x" * 40_001}, "msg_too_long"),
        ("chat.postMessage", {"channel": "C0NOPE", "text": "x"}, "channel_not_found"),
        ("chat.postMessage", {"text": "x"}, "invalid_arguments"),
        ("chat.update", {"channel": CHANNEL, "text": "x"}, "invalid_arguments"),
        ("users.info", {"user": "U0NOPE"}, "user_not_found"),
        ("users.lookupByEmail", {"email": "nobody@example.com"}, "users_not_found"),
        ("conversations.history", {"channel": CHANNEL, "cursor": "junk"}, "invalid_cursor"),
        ("conversations.history", {"channel": CHANNEL, "oldest": "soon"}, "invalid_ts_oldest"),
    ],
)
async def test_bad_calls_answer_slack_errors(
    client: AsyncWebClient, method: str, args: dict[str, Any], error: str
) -> None:
    """Each malformed call answers HTTP 200 ok:false with Slack's error code."""
    data = await api_error(client.api_call(method, json=args))
    assert data["error"] == error


async def test_missing_arguments_are_named(client: AsyncWebClient) -> None:
    """A call without a required argument says which one, in response_metadata."""
    data = await api_error(client.api_call("chat.update", json={"channel": CHANNEL}))
    assert data["response_metadata"]["messages"] == ["[ERROR] missing required field: ts"]


async def test_unknown_method(client: AsyncWebClient) -> None:
    """A method the workspace does not have answers unknown_method."""
    assert (await api_error(client.api_call("chat.teleport")))["error"] == "unknown_method"


async def test_post_accepts_a_channel_name(client: AsyncWebClient) -> None:
    """chat.postMessage takes "#name" as Slack does and answers with the channel ID."""
    resp = await client.chat_postMessage(channel="#closures", text="hi")
    assert resp["channel"] == CHANNEL


# -- fault injection -----------------------------------------------------------------------


async def test_rate_limit_is_retried_by_slack_sdk(sim: SlackSimulator) -> None:
    """fail_next answers HTTP 429 with Retry-After, which slack_sdk's handler retries."""
    client = AsyncWebClient(
        token=sim.bot_token,
        base_url=sim.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    sim.fail_next("chat.postMessage", retry_after=0)
    resp = await client.chat_postMessage(channel=CHANNEL, text="after the limit")
    assert resp["ok"]
    assert [(c["status"], c["error"]) for c in sim.calls] == [(429, "ratelimited"), (200, None)]
    assert len(sim.messages) == 1


async def test_rate_limit_without_retry_surfaces_429(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """A client that does not retry sees status 429 and the Retry-After header."""
    client.retry_handlers = []
    sim.fail_next("conversations.history", retry_after=7)
    with pytest.raises(SlackApiError) as info:
        await client.conversations_history(channel=CHANNEL)
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "7"


async def test_fail_next_errors_and_server_errors(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """fail_next can answer ok:false with a chosen error, or a 5xx, for `count` calls."""
    client.retry_handlers = []
    sim.fail_next("chat.update", error="edit_window_closed")
    sim.fail_next("auth.test", status=503, count=2)
    assert (await api_error(client.chat_update(channel=CHANNEL, ts="1.0", text="x")))[
        "error"
    ] == "edit_window_closed"
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            await client.auth_test()
        assert info.value.response.status_code == 503
    assert (await client.auth_test())["ok"]
    with pytest.raises(ValueError, match="does not implement"):
        sim.fail_next("chat.teleport")


# -- users, files, Home tab ----------------------------------------------------------------


async def test_users_info_shows_deactivation_and_email(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """users.info carries deleted and profile.email; lookupByEmail skips deactivated users."""
    found = await client.users_lookupByEmail(email="Alice@Contoso.example")
    assert found["user"]["id"] == ALICE.id
    sim.deactivate(ALICE.id)
    info = await client.users_info(user=ALICE.id)
    assert info["user"]["deleted"] is True
    assert info["user"]["profile"]["email"] == ALICE.email
    gone = await api_error(client.users_lookupByEmail(email=ALICE.email))
    assert gone["error"] == "users_not_found"


async def test_email_needs_the_email_scope() -> None:
    """Without users:read.email, users.info leaves the email out, as Slack does."""
    async with SlackSimulator(users=[ALICE], bot_scopes=frozenset({"users:read"})) as sim:
        client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
        info = await client.users_info(user=ALICE.id)
    assert "email" not in info["user"]["profile"]


async def test_files_upload_v2_shares_the_file_in_the_thread(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """files_upload_v2 goes through the upload URL and completes into the thread."""
    parent = await client.chat_postMessage(channel=CHANNEL, text="status")
    resp = await client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=parent["ts"],
        content="when,who\n1,alice\n",
        filename="audit.csv",
        title="Audit trail",
        initial_comment="The audit trail",
    )
    assert resp["file"]["title"] == "Audit trail"
    [uploaded] = sim.files
    assert uploaded | {"id": None} == {
        "id": None,
        "name": "audit.csv",
        "title": "Audit trail",
        "content": b"when,who\n1,alice\n",
        "length": 17,
        "channel": CHANNEL,
        "thread_ts": parent["ts"],
        "initial_comment": "The audit trail",
    }
    [share] = sim.replies(CHANNEL, parent["ts"])
    assert share.text == "The audit trail"
    assert share.files[0]["name"] == "audit.csv"


async def test_complete_upload_needs_the_bytes(sim: SlackSimulator, client: AsyncWebClient) -> None:
    """Completing an upload whose bytes never arrived answers file_not_found."""
    url = await client.files_getUploadURLExternal(filename="a.txt", length=3)
    error = await api_error(
        client.files_completeUploadExternal(files=[{"id": url["file_id"]}], channel_id=CHANNEL)
    )
    assert error["error"] == "file_not_found"


async def test_views_publish_then_app_home_opened_carries_the_view(
    sim: SlackSimulator, client: AsyncWebClient, receiver: Receiver
) -> None:
    """views.publish stores the Home tab; app_home_opened then carries it to the bot."""
    view = {"type": "home", "blocks": [section("*Open closures*: none")]}
    await client.views_publish(user_id=ALICE.id, view=view)
    bad = await api_error(client.views_publish(user_id=ALICE.id, view={"type": "modal"}))
    assert bad["error"] == "invalid_arguments"
    result = await sim.open_home(ALICE.id)
    assert result.status == 200
    event = receiver.requests[0].json["event"]
    assert (event["type"], event["user"], event["tab"]) == ("app_home_opened", ALICE.id, "home")
    assert event["view"]["blocks"] == view["blocks"]


# -- delivery to the bot's Request URL -----------------------------------------------------


async def test_slash_command_is_a_signed_form_like_slacks(
    sim: SlackSimulator, receiver: Receiver
) -> None:
    """A slash command arrives form-encoded with Slack's fields and a valid signature."""
    receiver.answer = lambda _: web.json_response({"text": "Starting…"})
    result = await sim.slash_command(user_id=ALICE.id, text="start contoso")
    [req] = receiver.requests
    assert req.valid
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = req.form
    assert set(form) == {
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id",
        "user_name", "command", "text", "api_app_id", "is_enterprise_install",
        "response_url", "trigger_id",
    }  # fmt: skip
    assert (form["command"], form["text"], form["user_id"], form["user_name"]) == (
        "/close-account",
        "start contoso",
        ALICE.id,
        "alice",
    )
    assert (form["channel_id"], form["channel_name"], form["team_id"]) == (
        CHANNEL,
        "closures",
        "T0SIM",
    )
    assert form["response_url"] == result.response_url
    assert (result.status, result.ack) == (200, {"text": "Starting…"})
    assert sim.ephemerals[-1]["source"] == "ack"


async def test_response_url_delivers_ephemeral_and_in_channel_answers(
    sim: SlackSimulator, receiver: Receiver
) -> None:
    """Answers at response_url show to the user or the channel; a sixth use is refused."""
    result = await sim.slash_command(user_id=ALICE.id, text="status")
    assert (result.status, result.ack) == (200, None)
    hook = AsyncWebhookClient(result.response_url)
    await hook.send(text="contoso: delete_users.planning")
    await hook.send(text="Closing contoso", response_type="in_channel")
    assert [r["response_type"] for r in result.responses] == ["ephemeral", "in_channel"]
    assert sim.ephemerals[-1]["text"] == "contoso: delete_users.planning"
    assert sim.messages[-1].text == "Closing contoso"
    for _ in range(3):
        assert (await hook.send(text="again")).status_code == 200
    refused = await hook.send(text="too many")
    assert (refused.status_code, refused.body) == (404, "used_url")
    assert (await AsyncWebhookClient(result.response_url).send()).status_code == 404


async def test_response_url_refuses_a_message_without_text(
    sim: SlackSimulator, receiver: Receiver
) -> None:
    """A response with neither text nor blocks is refused with no_text."""
    result = await sim.slash_command(user_id=ALICE.id, text="help")
    refused = await AsyncWebhookClient(result.response_url).send(response_type="ephemeral")
    assert (refused.status_code, refused.body) == (400, "no_text")


async def test_react_delivers_a_signed_reaction_envelope(
    sim: SlackSimulator, client: AsyncWebClient, receiver: Receiver
) -> None:
    """react() records the reaction and delivers reaction_added in an event_callback envelope."""
    posted = await client.chat_postMessage(channel=CHANNEL, text="approve?")
    result = await sim.react(
        user_id=ALICE.id, channel=CHANNEL, ts=posted["ts"], name="white_check_mark"
    )
    assert sim.messages[0].reactions == {"white_check_mark": [ALICE.id]}
    [req] = receiver.requests
    assert req.valid and req.headers["Content-Type"] == "application/json"
    envelope = req.json
    assert set(envelope) == {
        "token", "team_id", "api_app_id", "event", "type", "event_id", "event_time",
        "authorizations", "is_ext_shared_channel", "event_context",
    }  # fmt: skip
    assert envelope["type"] == "event_callback"
    assert envelope["event_id"] == result.event_id
    assert str(result.event_id).startswith("Ev")
    event = envelope["event"]
    assert {k: v for k, v in event.items() if k != "event_ts"} == {
        "type": "reaction_added",
        "user": ALICE.id,
        "reaction": "white_check_mark",
        "item": {"type": "message", "channel": CHANNEL, "ts": posted["ts"]},
        "item_user": "U0BOT",
    }
    await sim.react(
        user_id=ALICE.id, channel=CHANNEL, ts=posted["ts"], name="white_check_mark", remove=True
    )
    assert receiver.requests[1].json["event"]["type"] == "reaction_removed"
    assert sim.messages[0].reactions == {}


async def test_react_refuses_what_a_click_cannot_do(
    sim: SlackSimulator, client: AsyncWebClient, receiver: Receiver
) -> None:
    """Reacting twice, removing an absent reaction, or reacting as a deactivated user raises."""
    posted = await client.chat_postMessage(channel=CHANNEL, text="approve?")
    await sim.react(user_id=ALICE.id, channel=CHANNEL, ts=posted["ts"], name="x")
    with pytest.raises(ValueError, match="already has"):
        await sim.react(user_id=ALICE.id, channel=CHANNEL, ts=posted["ts"], name="x")
    with pytest.raises(ValueError, match="has no"):
        await sim.react(user_id=BOB.id, channel=CHANNEL, ts=posted["ts"], name="x", remove=True)
    sim.deactivate(BOB.id)
    with pytest.raises(ValueError, match="not an active member"):
        await sim.react(user_id=BOB.id, channel=CHANNEL, ts=posted["ts"], name="x")
    assert len(receiver.requests) == 1


async def test_redelivery_carries_retry_headers_and_the_same_event_id(
    sim: SlackSimulator, client: AsyncWebClient, receiver: Receiver
) -> None:
    """deliver() resends an envelope with X-Slack-Retry-Num and -Reason, signed afresh."""
    posted = await client.chat_postMessage(channel=CHANNEL, text="approve?")
    first = await sim.react(user_id=BOB.id, channel=CHANNEL, ts=posted["ts"], name="x")
    assert first.envelope is not None
    again = await sim.deliver(first.envelope, retry_num=1, retry_reason="http_timeout")
    assert again.event_id == first.event_id
    retried = receiver.requests[1]
    assert retried.valid
    assert retried.headers["X-Slack-Retry-Num"] == "1"
    assert retried.headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert "X-Slack-Retry-Num" not in receiver.requests[0].headers


async def test_bad_signatures_stale_timestamps_and_missing_headers_fail_verification(
    sim: SlackSimulator, receiver: Receiver
) -> None:
    """Unsigned, stale, tampered and header-less deliveries all fail Slack's verification."""
    body = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
    unsigned = await sim.deliver(body, sign=False)
    stale = await sim.deliver(body, timestamp=int(time.time()) - 600)
    tampered = await sim.deliver(body, headers={"X-Slack-Signature": "v0=" + "0" * 64})
    no_ts = await sim.deliver(body, headers={"X-Slack-Request-Timestamp": None})
    good = await sim.deliver(body)
    assert [r.status for r in (unsigned, stale, tampered, no_ts, good)] == [401] * 4 + [200]
    assert "X-Slack-Signature" not in receiver.requests[0].headers
    assert "X-Slack-Request-Timestamp" not in receiver.requests[3].headers


async def test_an_unanswered_delivery_times_out_like_slack(
    sim: SlackSimulator, receiver: Receiver
) -> None:
    """A bot that does not answer within ack_timeout gets status 0 and timed_out."""
    sim.ack_timeout = 0.2
    receiver.hold = asyncio.Event()
    result = await sim.slash_command(user_id=ALICE.id, text="status")
    assert (result.status, result.timed_out) == (0, True)


async def test_commands_need_an_active_user_and_a_request_url(sim: SlackSimulator) -> None:
    """Slash commands from deactivated users raise, and nothing is sent without a Request URL."""
    with pytest.raises(RuntimeError, match="request_url"):
        await sim.slash_command(user_id=ALICE.id, text="help")
    sim.deactivate(BOB.id)
    with pytest.raises(ValueError, match="not an active member"):
        await sim.slash_command(user_id=BOB.id, text="help")


async def test_a_real_bolt_app_accepts_what_the_simulator_sends(sim: SlackSimulator) -> None:
    """Bolt verifies the sim's signatures, acks its slash command, and gets its reactions."""
    app = AsyncApp(
        signing_secret=sim.signing_secret,
        client=AsyncWebClient(token=sim.bot_token, base_url=sim.api_url),
    )
    reactions: list[str] = []

    @app.command("/close-account")
    async def command(ack: Any, respond: Any, command: dict[str, Any], client: Any) -> None:
        await ack()
        await respond(text=f"planning {command['text']}")
        await client.chat_postMessage(channel=command["channel_id"], text="status")

    @app.event("reaction_added")
    async def reaction(event: dict[str, Any]) -> None:
        reactions.append(event["reaction"])

    runner = web.AppRunner(app.web_app(path="/slack/events"), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sim.request_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        result = await sim.slash_command(user_id=ALICE.id, text="contoso")
        assert result.status == 200
        [status] = await sim.wait_for(lambda s: s.messages)
        [answer] = await sim.wait_for(lambda s: result.responses)
        assert answer["text"] == "planning contoso"
        await sim.react(user_id=BOB.id, channel=CHANNEL, ts=status.ts, name="white_check_mark")
        await sim.wait_for(lambda s: reactions)
        unsigned = await sim.deliver(b"{}", sign=False)
        assert unsigned.status == 401
    finally:
        await runner.cleanup()


# -- waiting, subscribing, timestamps ------------------------------------------------------


async def test_wait_for_wakes_on_the_change_it_waits_for(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """wait_for returns the predicate's first truthy value once a change produces it."""
    waiter = asyncio.create_task(
        sim.wait_for(lambda s: s.find(event_type="close_account_status"), timeout=5)
    )
    await client.chat_postMessage(channel=CHANNEL, text="noise")
    await client.chat_postMessage(channel=CHANNEL, text="status", metadata=STATUS_META)
    found = await waiter
    assert [m.text for m in found] == ["status"]


async def test_wait_for_timeout_explains_what_it_saw(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """A wait_for that times out says what it waited for and lists the last messages and calls."""
    await client.chat_postMessage(channel=CHANNEL, text="the only message")
    with pytest.raises(TimeoutError) as info:
        await sim.wait_for(lambda s: s.find(event_type="never"), timeout=0.05)
    text = str(info.value)
    assert "never" in text and "the only message" in text and "chat.postMessage" in text


async def test_subscribers_see_posts_and_updates(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """subscribe() callbacks get ("posted", msg) and ("updated", msg) as they happen."""
    seen: list[tuple[str, str]] = []
    sim.subscribe(lambda kind, msg: seen.append((kind, msg.text)))
    posted = await client.chat_postMessage(channel=CHANNEL, text="a")
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="b")
    sim.add_reaction(sim.messages[0], "eyes", ALICE.id)  # reactions only when asked for
    assert seen == [("posted", "a"), ("updated", "b")]


async def test_timestamps_strictly_increase_even_on_a_frozen_clock() -> None:
    """Message ts strings are Slack-shaped and strictly increasing, whatever the clock says."""
    async with SlackSimulator(clock=lambda: 1_732_800_000.0) as sim:
        client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
        stamps = [(await client.chat_postMessage(channel=CHANNEL, text="x"))["ts"] for _ in "abc"]
    assert stamps == ["1732800000.000000", "1732800000.000100", "1732800000.000200"]


# -- rendering -----------------------------------------------------------------------------


def test_render_message_turns_block_kit_into_readable_text() -> None:
    """Header, section text and fields, context, divider, actions and rich text read cleanly."""
    msg = {
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Closing contoso"}},
            section("*Step 1* :white_check_mark: by <@U0ALICE> — <https://x.example|plan>"),
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Users*\n42"},
                    {"type": "mrkdwn", "text": "*Quorum*\n2"},
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "expires _soon_"}]},
            {"type": "divider"},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Approve"}},
                ],
            },
            {
                "type": "rich_text",
                "elements": [
                    {
                        "type": "rich_text_list",
                        "style": "bullet",
                        "elements": [
                            {
                                "type": "rich_text_section",
                                "elements": [
                                    {"type": "emoji", "name": "x"},
                                    {"type": "text", "text": " vetoed by "},
                                    {"type": "user", "user_id": "U0BOB"},
                                ],
                            }
                        ],
                    }
                ],
            },
        ]
    }
    text = render_message(msg, width=40, users={"U0ALICE": "alice", "U0BOB": "bob"})
    assert text.splitlines() == [
        "Closing contoso",
        "━━━━━━━━━━━━━━━",
        "Step 1 ✅ by @alice — plan",
        "(https://x.example)",
        "Users                Quorum",
        "42                   2",
        "expires soon",
        "─" * 40,
        "[ Approve ]",
        "• ❌ vetoed by @bob",
    ]


def test_render_message_handles_plain_mrkdwn() -> None:
    """Text-only messages lose mrkdwn markers but keep code, entities and names."""
    msg = SimMessage(
        channel=CHANNEL,
        ts="1.000100",
        user="U0BOT",
        text="*Done* in <#C0PROGRESS>: `delete_users` &amp; <!here> :tada: :custom:",
    )
    assert (
        render_message(msg, channels={CHANNEL: "closures"})
        == "Done in #closures: `delete_users` & @here 🎉 :custom:"
    )


async def test_render_channel_shows_messages_reactions_and_indented_threads(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """render_channel lists each top-level message, its reactions, then its replies indented."""
    status = await client.chat_postMessage(channel=CHANNEL, text="*Closing* contoso")
    await client.chat_update(channel=CHANNEL, ts=status["ts"], text="*Closing* contoso: step 1")
    await client.chat_postMessage(channel=CHANNEL, text="Approve step 1?", thread_ts=status["ts"])
    sim.add_reaction(sim.messages[1], "white_check_mark", ALICE.id)
    sim.add_reaction(sim.messages[1], "white_check_mark", BOB.id)
    lines = render_channel(sim, CHANNEL).splitlines()
    assert lines[0] == "#closures"
    assert lines[2].endswith("@close-account-bot  (edited)")
    assert lines[3] == "  Closing contoso: step 1"
    assert lines[4] == "  ┆ 1 reply"
    assert lines[5].startswith("  ┆ ") and lines[5].endswith("@close-account-bot")
    assert lines[6] == "  ┆   Approve step 1?"
    assert lines[7] == "  ┆   ✅ 2 (@alice, @bob)"
