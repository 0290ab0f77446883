"""The Slack simulator plays Slack's failures: deleted messages, a bot removed from its channel,
text and block limits, shortened reaction lists, upload sizes, and other apps in the thread."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from simulator.slack.server import DEFAULT_BOT_SCOPES, SimMessage, SimUser, SlackSimulator
from simulator.slack.webapi import (
    MAX_POST_TEXT,
    MAX_SNIPPET_BYTES,
    MAX_UPDATE_TEXT,
    MAX_UPLOAD_BYTES,
    REACTIONS_SHORT_USERS,
)

CHANNEL = "C0PROGRESS"
ALICE = SimUser("U0ALICE", "alice", "alice@contoso.example")
BOB = SimUser("U0BOB", "bob", "bob@contoso.example")
CAROL = SimUser("U0CAROL", "carol", "carol@contoso.example")
REQUEST_META = {
    "event_type": "close_account_request",
    "event_payload": {"closure_id": 7, "tenant": "contoso", "step": "delete_users"},
}


@pytest.fixture
async def sim() -> AsyncIterator[SlackSimulator]:
    async with SlackSimulator(users=[ALICE, BOB, CAROL]) as s:
        s.request_url = "http://127.0.0.1:9/slack/events"  # never reached by these tests
        yield s


@pytest.fixture
def client(sim: SlackSimulator) -> AsyncWebClient:
    return AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as info:
        await call
    return str(info.value.response["error"])


async def post(client: AsyncWebClient, text: str = "hello", **kwargs: Any) -> str:
    resp = await client.chat_postMessage(channel=CHANNEL, text=text, **kwargs)
    return str(resp["ts"])


# -- deleted messages -----------------------------------------------------------------------


async def test_a_deleted_message_is_not_found_by_any_method(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """After chat.delete every method on that ts answers the error its reference lists."""
    ts = await post(client)
    assert (await client.chat_delete(channel=CHANNEL, ts=ts))["ts"] == ts
    not_found = {
        "reactions.get": client.reactions_get(channel=CHANNEL, timestamp=ts, full=True),
        "reactions.add": client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes"),
        "chat.update": client.chat_update(channel=CHANNEL, ts=ts, text="edit"),
        "chat.getPermalink": client.chat_getPermalink(channel=CHANNEL, message_ts=ts),
        "chat.delete": client.chat_delete(channel=CHANNEL, ts=ts),
        "conversations.replies": client.conversations_replies(channel=CHANNEL, ts=ts),
    }
    errors = {method: await error_of(call) for method, call in not_found.items()}
    assert errors == {
        "reactions.get": "message_not_found",
        "reactions.add": "message_not_found",
        "chat.update": "message_not_found",
        "chat.getPermalink": "message_not_found",
        "chat.delete": "message_not_found",
        "conversations.replies": "thread_not_found",
    }
    history = await client.conversations_history(channel=CHANNEL)
    assert history["messages"] == []
    assert [m.ts for m in sim.deleted] == [ts]


async def test_the_bot_cannot_delete_what_others_posted(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """chat.delete with the bot token answers cant_delete_message for a person's message."""
    said = sim.say(ALICE.id, CHANNEL, "my own words")
    assert await error_of(client.chat_delete(channel=CHANNEL, ts=said.ts)) == (
        "cant_delete_message"
    )
    assert sim.message(CHANNEL, said.ts) is said


@pytest.mark.parametrize("by", ["U0ADMIN", "retention"])
async def test_an_admin_or_a_retention_policy_deletes_and_reactions_stop(
    sim: SlackSimulator, client: AsyncWebClient, by: str
) -> None:
    """A deletion by an admin or a retention policy ends the message: no more reactions."""
    ts = await post(client, "request", metadata=REQUEST_META)
    sim.delete_message(CHANNEL, ts, by=by)
    with pytest.raises(ValueError, match="deleted"):
        await sim.react(user_id=ALICE.id, channel=CHANNEL, ts=ts, name="white_check_mark")
    assert await error_of(client.reactions_get(channel=CHANNEL, timestamp=ts)) == (
        "message_not_found"
    )
    assert sim.find(event_type="close_account_request") == []


async def test_a_deleted_thread_parent_stays_as_a_tombstone(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """A deleted parent with replies is "This message was deleted." and its thread lives on."""
    parent = await post(client, "request", metadata=REQUEST_META)
    reply = await post(client, "a reply", thread_ts=parent)
    deleted: list[tuple[str, str]] = []
    sim.subscribe(lambda kind, msg: deleted.append((kind, msg.ts)), deletions=True)
    sim.delete_message(CHANNEL, parent)
    assert deleted == [("deleted", parent)]
    thread = (await client.conversations_replies(channel=CHANNEL, ts=parent))["messages"]
    assert [m["ts"] for m in thread] == [parent, reply]
    tombstone = thread[0]
    assert tombstone["subtype"] == "tombstone" and tombstone["hidden"] is True
    assert tombstone["user"] == "USLACKBOT"
    assert tombstone["text"] == "This message was deleted."
    assert "metadata" not in tombstone and "bot_id" not in tombstone
    assert await error_of(client.chat_update(channel=CHANNEL, ts=parent, text="x")) == (
        "message_not_found"
    )
    assert await error_of(client.reactions_get(channel=CHANNEL, timestamp=parent)) == (
        "message_not_found"
    )
    assert sim.deleted[0].text == "request" and sim.deleted[0].metadata == REQUEST_META


# -- the bot removed from its channel -------------------------------------------------------


async def test_a_bot_removed_from_a_public_channel_gets_the_documented_errors(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """Removed from a public channel: not_in_channel where listed, else channel_not_found."""
    ts = await post(client)
    sim.kick_bot(CHANNEL)
    errors = {
        "chat.postMessage": await error_of(client.chat_postMessage(channel=CHANNEL, text="x")),
        "chat.update": await error_of(client.chat_update(channel=CHANNEL, ts=ts, text="x")),
        "reactions.get": await error_of(client.reactions_get(channel=CHANNEL, timestamp=ts)),
        "conversations.history": await error_of(client.conversations_history(channel=CHANNEL)),
        "conversations.replies": await error_of(
            client.conversations_replies(channel=CHANNEL, ts=ts)
        ),
    }
    assert errors == {
        "chat.postMessage": "not_in_channel",
        "chat.update": "channel_not_found",
        "reactions.get": "channel_not_found",
        "conversations.history": "not_in_channel",
        "conversations.replies": "channel_not_found",
    }
    info = await client.conversations_info(channel=CHANNEL)
    assert info["channel"]["is_member"] is False
    assert (await client.chat_getPermalink(channel=CHANNEL, message_ts=ts))["permalink"]
    sim.invite_bot(CHANNEL)
    assert (await client.conversations_history(channel=CHANNEL))["messages"]


async def test_a_private_channel_vanishes_for_a_removed_bot(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """Removed from a private channel, the bot gets channel_not_found for everything."""
    ts = await post(client)
    sim.kick_bot(CHANNEL, private=True)
    calls = [
        client.chat_postMessage(channel=CHANNEL, text="x"),
        client.chat_update(channel=CHANNEL, ts=ts, text="x"),
        client.reactions_get(channel=CHANNEL, timestamp=ts),
        client.conversations_history(channel=CHANNEL),
        client.conversations_info(channel=CHANNEL),
        client.chat_getPermalink(channel=CHANNEL, message_ts=ts),
    ]
    assert {await error_of(call) for call in calls} == {"channel_not_found"}


async def test_chat_write_public_posts_without_membership() -> None:
    """With chat:write.public a removed bot may still post in a public channel, as documented."""
    async with SlackSimulator(bot_scopes=DEFAULT_BOT_SCOPES | {"chat:write.public"}) as sim:
        client = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
        sim.kick_bot(CHANNEL)
        assert (await client.chat_postMessage(channel=CHANNEL, text="still here"))["ok"]


async def test_reactions_in_a_channel_the_bot_left_are_not_delivered(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """A reaction where the bot is no longer a member stays on the message but sends no event."""
    ts = await post(client)
    sim.kick_bot(CHANNEL)
    result = await sim.react(user_id=ALICE.id, channel=CHANNEL, ts=ts, name="white_check_mark")
    assert result.delivered is False and result.event_id is None
    msg = sim.message(CHANNEL, ts)
    assert msg is not None and msg.reactions == {"white_check_mark": [ALICE.id]}


# -- limits ---------------------------------------------------------------------------------


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


BLOCK_LIMITS = [
    pytest.param([section("x")] * 51, id="51 blocks"),
    pytest.param([section("x" * 3001)], id="section text 3001"),
    pytest.param(
        [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], id="header 151"
    ),
    pytest.param(
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "x" * 3001}]}],
        id="context element 3001",
    ),
]


@pytest.mark.parametrize("blocks", BLOCK_LIMITS)
async def test_blocks_over_slacks_limits_are_invalid_on_post_and_update(
    client: AsyncWebClient, blocks: list[dict[str, Any]]
) -> None:
    """Over a Block Kit limit chat.postMessage and chat.update both answer invalid_blocks."""
    assert await error_of(client.chat_postMessage(channel=CHANNEL, text="t", blocks=blocks)) == (
        "invalid_blocks"
    )
    ts = await post(client)
    assert await error_of(client.chat_update(channel=CHANNEL, ts=ts, text="t", blocks=blocks)) == (
        "invalid_blocks"
    )


async def test_blocks_at_slacks_limits_are_accepted(client: AsyncWebClient) -> None:
    """Exactly at each limit (50 blocks, 3,000-character section, 150-character header) the
    post goes through."""
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}
    blocks = [header, section("x" * 3000)] + [section("y")] * 48
    assert (await client.chat_postMessage(channel=CHANNEL, text="t", blocks=blocks))["ok"]


async def test_text_limits_count_code_points_as_sent(client: AsyncWebClient) -> None:
    """Text counts code points of the field as sent: 40,000 to post, 4,000 to update."""
    assert MAX_POST_TEXT == 40_000 and MAX_UPDATE_TEXT == 4_000
    assert await error_of(client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)) == (
        "msg_too_long"
    )
    ts = await post(client, "é" * 40_000)  # 80,000 bytes of UTF-8, 40,000 characters
    assert await error_of(client.chat_update(channel=CHANNEL, ts=ts, text="x" * 4_001)) == (
        "msg_too_long"
    )
    # The sender's escaping counts: 800 escaped ampersands are 4,000 characters, 801 too many.
    assert (await client.chat_update(channel=CHANNEL, ts=ts, text="&amp;" * 800))["ok"]
    assert await error_of(client.chat_update(channel=CHANNEL, ts=ts, text="&amp;" * 801)) == (
        "msg_too_long"
    )


# -- reactions.get ----------------------------------------------------------------------------


async def test_reactions_get_shortens_users_unless_full(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """Without full=true each reaction lists only its first users; with it, everyone."""
    ts = await post(client, "request")
    msg = sim.message(CHANNEL, ts)
    assert msg is not None
    voters = [ALICE.id, BOB.id, CAROL.id]
    for user in voters:
        sim.add_reaction(msg, "white_check_mark", user)
    short = (await client.reactions_get(channel=CHANNEL, timestamp=ts))["message"]["reactions"]
    assert short == [
        {"name": "white_check_mark", "users": voters[:REACTIONS_SHORT_USERS], "count": 3}
    ]
    full = await client.reactions_get(channel=CHANNEL, timestamp=ts, full=True)
    assert full["message"]["reactions"] == [
        {"name": "white_check_mark", "users": voters, "count": 3}
    ]


async def test_reactions_add_reacts_once(sim: SlackSimulator, client: AsyncWebClient) -> None:
    """reactions.add adds the bot's reaction; again is already_reacted; a bad name invalid_name."""
    ts = await post(client)
    assert (await client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes"))["ok"]
    assert await error_of(client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes")) == (
        "already_reacted"
    )
    assert await error_of(client.reactions_add(channel=CHANNEL, timestamp=ts, name=":x:")) == (
        "invalid_name"
    )
    msg = sim.message(CHANNEL, ts)
    assert msg is not None and msg.reactions == {"eyes": [sim.bot_user_id]}


# -- uploads ----------------------------------------------------------------------------------


async def test_upload_sizes_as_slack_allows(client: AsyncWebClient) -> None:
    """Over 1 GB (or a snippet over 1 MB) files.getUploadURLExternal refuses the upload."""
    ok = await client.files_getUploadURLExternal(filename="big.bin", length=MAX_UPLOAD_BYTES)
    assert ok["upload_url"]
    too_big = client.files_getUploadURLExternal(filename="big.bin", length=MAX_UPLOAD_BYTES + 1)
    assert await error_of(too_big) == "file_upload_size_restricted"
    snippet = client.files_getUploadURLExternal(
        filename="a.py", length=MAX_SNIPPET_BYTES + 1, snippet_type="python"
    )
    assert await error_of(snippet) == "snippet_too_large"


async def test_the_uploaded_bytes_must_match_the_declared_length(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """A POST to the upload URL with other than the declared length fails; nothing is stored."""
    ticket = await client.files_getUploadURLExternal(filename="audit.txt", length=10)
    async with aiohttp.ClientSession() as http:
        async with http.post(ticket["upload_url"], data=b"short") as resp:
            assert resp.status == 400
    complete = client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"]}], channel_id=CHANNEL
    )
    assert await error_of(complete) == "file_not_found"
    async with aiohttp.ClientSession() as http:
        async with http.post(ticket["upload_url"], data=b"0123456789") as resp:
            assert resp.status == 200
    assert (
        await client.files_completeUploadExternal(
            files=[{"id": ticket["file_id"]}], channel_id=CHANNEL
        )
    )["ok"]
    assert sim.files[0]["content"] == b"0123456789"


async def test_sharing_an_upload_needs_channel_membership(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """files.completeUploadExternal answers not_in_channel once the bot was removed."""
    ticket = await client.files_getUploadURLExternal(filename="audit.txt", length=2)
    async with aiohttp.ClientSession() as http:
        await http.post(ticket["upload_url"], data=b"ok")
    sim.kick_bot(CHANNEL)
    complete = client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"]}], channel_id=CHANNEL
    )
    assert await error_of(complete) == "not_in_channel"


# -- other apps in the thread -----------------------------------------------------------------


async def test_another_app_posts_a_look_alike_in_the_thread(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    """Another app's message carries the bot's metadata but its own user, bot_id and app_id."""
    parent = await post(client, "request", metadata=REQUEST_META)
    planted = sim.post_as_app("A0OTHER", CHANNEL, parent, "approved!", REQUEST_META)
    assert isinstance(planted, SimMessage)
    thread = await client.conversations_replies(
        channel=CHANNEL, ts=parent, include_all_metadata=True
    )
    ours, theirs = thread["messages"]
    assert ours["bot_id"] == sim.bot_id and ours["user"] == sim.bot_user_id
    assert theirs["metadata"] == REQUEST_META and theirs["thread_ts"] == parent
    assert (theirs["user"], theirs["bot_id"], theirs["app_id"]) == ("U0OTHER", "B0OTHER", "A0OTHER")
    assert theirs["bot_profile"]["app_id"] == "A0OTHER"
    assert theirs["bot_profile"]["id"] == "B0OTHER"
    assert "subtype" not in theirs
    user = (await client.users_info(user="U0OTHER"))["user"]
    assert user["is_bot"] is True
    assert await error_of(client.chat_update(channel=CHANNEL, ts=theirs["ts"], text="x")) == (
        "cant_update_message"
    )
    assert await error_of(client.chat_delete(channel=CHANNEL, ts=theirs["ts"])) == (
        "cant_delete_message"
    )
    top = sim.post_as_app("A0OTHER", CHANNEL, None, "top level", None, name="lookalike")
    history = (await client.conversations_history(channel=CHANNEL))["messages"]
    assert history[0]["ts"] == top.ts and history[0]["bot_profile"]["name"] == "lookalike"


async def test_another_app_cannot_be_the_bot(sim: SlackSimulator) -> None:
    """post_as_app refuses the bot's own app, bot or bot user: those go through the Web API."""
    with pytest.raises(ValueError):
        sim.post_as_app(sim.app_id, CHANNEL, None, "x")
    with pytest.raises(ValueError):
        sim.post_as_app("A0OTHER", CHANNEL, None, "x", bot_id=sim.bot_id)


def test_the_bot_reads_votes_in_full() -> None:
    """Every reactions.get the bot makes passes full=True, since Slack may shorten lists."""
    calls = []
    for path in Path(__file__).parent.parent.joinpath("bot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "reactions_get"
            ):
                full = next((k.value for k in node.keywords if k.arg == "full"), None)
                calls.append((path.name, isinstance(full, ast.Constant) and full.value is True))
    assert calls and all(ok for _, ok in calls), calls
