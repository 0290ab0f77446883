"""Arbitrary slash-command text and malformed (but signed) event envelopes, through the real HTTP
endpoint: never a server error, never a state change, and the bot keeps working.

Hypothesis runs in a worker thread and hands each example to the test's event loop, so one World
serves every example and the test can check what must hold after the last one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.world import ADMIN, APPROVERS, CHANNEL, OUTSIDER, World
from simulator.slack.server import EventResult, SimMessage, SlashResult
from tests.conftest import MakeWorld
from tests.test_security import graph_writes, table

T = TypeVar("T")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
VOTES = ("white_check_mark", "x")
# The simulator's aiohttp client warns when it posts more than 1 MiB from bytes; the bodies over
# the bot's 1 MiB limit are meant to be that big.
LARGE_BODIES = pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")


def on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on the test's loop from Hypothesis' thread and wait for its result."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    return run


async def in_thread(examples: Callable[[], None]) -> None:
    await asyncio.to_thread(examples)


FOREIGN = "foreign_request_refused"


def state(world: World, *, audit: bool = True) -> dict[str, Any]:
    """Everything a request could change: closures, approvals, audit, Slack, the tenant.
    (`audit=False`: a refused command may well be audited; that is not a change of state.)"""
    return {
        "closures": table(world, "closures"),
        "requests": table(world, "requests"),
        "votes": table(world, "votes"),
        # A request for another team, app or enterprise is refused and audited (issue 12): that
        # record is the refusal, not a change of state.
        "audit": len([r for r in table(world, "audit") if r["action"] != FOREIGN])
        if audit
        else None,
        "slack_events": len(table(world, "slack_events")),
        "messages": [
            (m.channel, m.ts, m.thread_ts, len(m.versions), m.text, dict(m.reactions))
            for m in world.slack.messages
        ],
        "graph_writes": graph_writes(world),
    }


# --- (a) slash command text ---------------------------------------------------------------------

WORDS = [
    "start",
    "abort",
    "retry",
    "status",
    "list",
    "help",
    "audit",
    "rollback",
    "contoso",
    "CONTOSO",
    "Contoso",
    "fabrikam",
    "contoso.onmicrosoft.com",
    "<@U0ADMIN1>",
    "<@U0APPR1|blake.approver>",
    "<#C0PROGRESS|closures>",
    "<!channel>",
    "`",
    "```",
    "*bold*",
    "--force",
    "💣",
    "ǅ",
    "\x00",
    "\u202e",
    "\ufeff",
    "\uff43\uff4f\uff4e\uff54\uff4f\uff53\uff4f",  # fullwidth
    "'; DROP TABLE closures;--",
    "%s%n",
    "{0}",
    "${HOME}",
    "../etc/passwd",
    "a" * 63,
    "a" * 64,
]
SEPARATORS = [" ", "  ", "\n", "\t", "\u2003", "\r\n", ""]
phrases = st.lists(
    st.tuples(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), st.sampled_from(SEPARATORS)),
    max_size=8,
).map(lambda parts: "".join(w + s for w, s in parts))
long_texts = st.builds(
    operator.mul,
    st.sampled_from(["a", "`", "<@U0ADMIN1> ", "é", "💣", "\n", "contoso ", "start "]),
    st.integers(500, 20_000),
)
command_texts = st.one_of(st.text(max_size=300), phrases, long_texts)


def starts_tenant(text: str, tenant: str) -> bool:
    """`<tenant>` or `start <tenant>` (case-insensitive): the one legitimate state change."""
    words = [w.lower() for w in text.split()]
    return words == [tenant] or words == ["start", tenant]


def replies(result: SlashResult) -> list[str]:
    """What the user saw: the immediate answer's text (if any) and each later response."""
    shown = [str(result.ack.get("text") or "")] if result.ack else []
    return shown + [str(r.get("text") or "") for r in result.responses]


@pytest.mark.parametrize("user", [OUTSIDER, ADMIN])
async def test_any_command_text_gets_one_reply_and_changes_nothing(
    make_world: MakeWorld, user: str
) -> None:
    """Whatever text follows /close-account, the bot answers 200 with exactly one ephemeral
    reply and changes nothing (an admin's `<tenant>`/`start <tenant>` excluded)."""
    world = await make_world(users=8)
    run = on_loop(asyncio.get_running_loop())
    before = state(world, audit=False)
    sent: list[SlashResult] = []

    async def one(text: str) -> None:
        result = await world.slack.slash_command(user_id=user, text=text, channel_id=CHANNEL)
        sent.append(result)
        assert not result.timed_out and result.status == 200, (result.status, result.body)
        await world.slack.wait_for(lambda _: replies(result), timeout=10)
        assert len(replies(result)) == 1 and replies(result)[0].strip()
        assert all(r["response_type"] == "ephemeral" for r in result.responses)
        assert state(world, audit=False) == before

    @FUZZ
    @given(text=command_texts)
    def examples(text: str) -> None:
        if user == ADMIN:
            assume(not starts_tenant(text, world.tenant.name))
        run(one(text))

    await in_thread(examples)
    # A last command's reply came back after every earlier one: none of them answered twice.
    assert "Usage" in await world.command("help", user=user)
    assert len(sent) > 50
    assert [len(replies(r)) for r in sent] == [1] * len(sent)
    assert state(world, audit=False) == before
    assert world.service is not None and world.service.runner.running() == 0


# --- (b) malformed event envelopes --------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
EVENT_TYPES = [
    "reaction_added",
    "reaction_removed",
    "app_home_opened",
    "message",
    "app_mention",
    "member_joined_channel",
    "tokens_revoked",
    "app_uninstalled",
    "url_verification",
    "",
]
ENVELOPE_TYPES = ["event_callback", "url_verification", "app_rate_limited", "block_actions", ""]


def is_vote_on(request: SimMessage, body: Any) -> bool:
    """A well-formed vote or withdrawal on the open request: legitimate, so never generated."""
    event = body.get("event") if isinstance(body, dict) else None
    item = event.get("item") if isinstance(event, dict) else None
    return (
        isinstance(item, dict)
        and event is not None
        and event.get("type") in ("reaction_added", "reaction_removed")
        and item.get("type") == "message"
        and str(item.get("channel", "")) == request.channel
        and str(item.get("ts", "")) == request.ts
        and str(event.get("reaction", "")).split("::", 1)[0] in VOTES
    )


@st.composite
def deliveries(draw: st.DrawFn, template: dict[str, Any], request: SimMessage) -> tuple[bytes, str]:
    """A body no real Slack event looks like, with its content type (`template` is an empty
    envelope from the simulator)."""
    users = st.one_of(st.sampled_from([*APPROVERS, ADMIN, OUTSIDER, "", "U0NOBODY"]), json_values)
    reactions = st.one_of(
        st.sampled_from([*VOTES, "white_check_mark::skin-tone-3", "thumbsup", "", "x::"]),
        st.text(max_size=20),
        json_values,
    )
    ts_values = st.one_of(
        st.sampled_from([request.ts, "1.000000", "9999999999.999999", "", "not-a-ts"]),
        st.text(max_size=20),
        json_values,
    )
    items = st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.one_of(
                    st.sampled_from(["message", "file", "file_comment"]), json_values
                ),
                "channel": st.one_of(
                    st.sampled_from([CHANNEL, "C0OTHER", "D0ADMIN1"]), json_values
                ),
                "ts": ts_values,
            }
        ),
        json_values,
    )
    kind = draw(
        st.sampled_from(
            ["raw", "json", "event", "envelope", "other_event", "reaction", "reaction", "huge"]
        )
    )
    if kind == "raw":
        content_type = draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        )
        raw = draw(
            st.one_of(
                st.binary(max_size=200),
                st.text(max_size=200).map(str.encode),
                st.text(max_size=100).map(lambda t: ("payload=" + t).encode()),
                st.just(b""),
            )
        )
        return raw, content_type
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), "application/json"
    event_types = (
        st.one_of(st.sampled_from(EVENT_TYPES), st.text(max_size=15), json_values)
        if kind == "other_event"
        else st.sampled_from(["reaction_added", "reaction_removed"])
    )
    event: dict[str, Any] = {
        "type": draw(event_types),
        "user": draw(users),
        "reaction": draw(reactions),
        "item": draw(items),
        "event_ts": "1700000000.000100",
    }
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=3)):
        event.pop(key, None)
    body: dict[str, Any] = {
        **template,
        "event": event,
        "event_id": f"EvFUZZ{draw(st.integers(0, 10**9)):010d}",
    }
    if kind == "event":
        body["event"] = draw(json_values)
    elif kind == "envelope":
        for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=4)):
            body.pop(key, None)
        extra = draw(
            st.dictionaries(
                st.sampled_from([*sorted(template), "type", "challenge"]),
                st.one_of(st.sampled_from(ENVELOPE_TYPES), json_values),
                max_size=3,
            )
        )
        body.update(extra)
    elif kind == "huge":
        body["event"]["item"] = {"type": "message", "channel": CHANNEL, "ts": "1.000000"}
        body["padding"] = "x" * draw(st.integers(100_000, 1_200_000))
    if is_vote_on(request, body):
        body["event"]["reaction"] = "thumbsup"
    return json.dumps(body).encode(), "application/json"


async def settled_state(world: World) -> dict[str, Any]:
    """The state, read on the bot's loop (Hypothesis' thread must not read SQLite itself)."""
    await asyncio.sleep(0)
    return state(world)


async def open_request(world: World) -> SimMessage:
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    await world.slack.wait_for(lambda _: "Approvals: 0/2" in world.status_text())
    return request


async def fuzz_events(
    world: World, request: SimMessage, check: Callable[[EventResult], None]
) -> None:
    """Deliver each generated body, signed, and `check` the bot's answer."""
    run = on_loop(asyncio.get_running_loop())
    template = world.slack.envelope({})

    @FUZZ
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        raw, content_type = data.draw(deliveries(template, request))
        check(run(world.slack.deliver(raw, content_type=content_type)))

    await in_thread(examples)


@LARGE_BODIES
async def test_malformed_events_change_nothing_and_the_bot_still_works(
    make_world: MakeWorld,
) -> None:
    """Signed envelopes no real event looks like (wrong types, missing or unknown events,
    reactions on unknown messages, huge or non-JSON bodies) are answered in time and change
    nothing; afterwards an approver's vote still counts."""
    world = await make_world(users=8)
    request = await open_request(world)
    before = state(world)
    statuses: list[int] = []
    run = on_loop(asyncio.get_running_loop())

    def check(result: EventResult) -> None:
        statuses.append(result.status)
        assert not result.timed_out, "no answer within Slack's 3 seconds"
        assert run(settled_state(world)) == before

    await fuzz_events(world, request, check)
    assert len(statuses) > 50
    await world.vote(request, APPROVERS[0])
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    after = state(world)
    assert [(v["approver"], v["kind"]) for v in after["votes"]] == [(APPROVERS[0], "approve")]
    assert after["closures"] == before["closures"] and after["requests"] == before["requests"]
    assert after["audit"] == before["audit"] + 1 and after["graph_writes"] == []
    assert world.state() == "delete_users.awaiting_approval"


@LARGE_BODIES
async def test_malformed_events_never_get_a_server_error(make_world: MakeWorld) -> None:
    """No signed body, however malformed, is answered with a 5xx."""
    world = await make_world(users=8)
    request = await open_request(world)

    def check(result: EventResult) -> None:
        assert result.status < 500, (result.status, result.body[:200])

    await fuzz_events(world, request, check)


# --- what the fuzzer found, pinned as plain examples ------------------------------------------

SERVER_ERRORS = [
    pytest.param(b"null", "application/json", id="json-null"),
    pytest.param(b"[1, 2]", "application/json", id="json-array"),
    pytest.param(b"not json", "application/json", id="not-json"),
    pytest.param(b"\xff\xfe", "application/json", id="not-utf8"),
    pytest.param(b"payload=not-json", "application/x-www-form-urlencoded", id="form-payload"),
    pytest.param(
        json.dumps({"type": "event_callback", "event": "type"}).encode(),
        "application/json",
        id="event-is-a-string",
    ),
    pytest.param(
        json.dumps({"type": "event_callback", "event": ["type"]}).encode(),
        "application/json",
        id="event-is-a-list",
    ),
    pytest.param(
        json.dumps({"type": "event_callback", "team_id": 5, "authorizations": "x"}).encode(),
        "application/json",
        id="authorizations-not-a-list",
    ),
]


@pytest.mark.parametrize(("body", "content_type"), SERVER_ERRORS)
async def test_signed_malformed_body_is_not_a_server_error(
    world: World, body: bytes, content_type: str
) -> None:
    """A signed body that is not a usable event is refused with a 4xx (or ignored), not a 5xx."""
    result = await world.slack.deliver(body, content_type=content_type)
    assert not result.timed_out and result.status < 500, (result.status, result.body)


@pytest.mark.parametrize("item", ["x", ["message"], 5], ids=["string", "list", "number"])
async def test_reaction_with_malformed_item_is_ignored_quietly(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture, item: Any
) -> None:
    """A reaction event whose `item` is not an object is ignored without an exception."""
    world = await make_world(users=8)
    request = await open_request(world)
    caplog.set_level(logging.ERROR)
    event = {"type": "reaction_added", "user": APPROVERS[0], "reaction": "x", "item": item}
    envelope = world.slack.envelope(event)
    assert (await world.slack.deliver(envelope)).status == 200
    await world.vote(request, APPROVERS[1])  # processed after the malformed event
    await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
