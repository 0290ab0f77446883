"""Who may do what, Slack's request signature on events, and secrets that must never leak."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import logs
from bot.world import ADMIN, APPROVERS, CHANNEL, OUTSIDER, World
from simulator.slack.server import SimMessage, slack_signature
from tests.conftest import MakeWorld

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{10,}\.")
TOKEN_PATH = re.compile(r"/oauth2/v2\.0/token")


# --- helpers -----------------------------------------------------------------------------------


def graph_writes(world: World) -> list[tuple[str, str]]:
    """Every request to the simulated tenant that could change it (token requests excluded)."""
    return [
        (r.method, r.path)
        for r in world.microsoft.requests
        if r.method not in ("GET", "HEAD", "OPTIONS") and not TOKEN_PATH.search(r.path)
    ]


def table(world: World, name: str) -> list[dict[str, Any]]:
    assert world.service is not None
    db = world.service.db
    if not db[name].exists():
        return []
    # status_state only records what the status message shows (it follows a Slack edit).
    return [{k: v for k, v in row.items() if k != "status_state"} for row in db[name].rows]


def snapshot(world: World) -> dict[str, Any]:
    """What a refused action must leave alone: closures, approvals, the channel, the tenant."""
    return {
        "closures": table(world, "closures"),
        "requests": table(world, "requests"),
        "votes": table(world, "votes"),
        "messages": [
            (m.channel, m.ts, m.thread_ts, len(m.versions), m.text) for m in world.slack.messages
        ],
        "graph_writes": graph_writes(world),
    }


def status_ts(world: World) -> str:
    status = world.status()
    assert status is not None
    return status.ts


# --- the permission matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    user: str
    approvers: tuple[str, ...]


ROLES = {
    "admin": Role(ADMIN, APPROVERS),  # the admin who starts every closure here
    "approver": Role(APPROVERS[0], APPROVERS),
    "outsider": Role(OUTSIDER, APPROVERS),
    # the same admin, also listed among the tenant's approvers: still never counts on their own
    "requester_approver": Role(ADMIN, (ADMIN, *APPROVERS)),
}
ADMINS = {"admin", "requester_approver"}
ALLOWED = {
    "start": ADMINS,
    "abort": ADMINS,
    "retry": ADMINS,
    "status": set(ROLES),
    "list": set(ROLES),
    "help": set(ROLES),
    "approve": {"approver"},
    "audit": {"admin", "approver", "requester_approver"},
}


def matrix() -> Iterator[Any]:
    for command in ALLOWED:
        for role in ROLES:
            yield pytest.param(role, command, id=f"{command}-{role}")


async def setup_for(world: World, command: str) -> SimMessage | None:
    """An open closure requested by ADMIN (rejected for `retry`), except before `start`."""
    if command == "start":
        return None
    assert "started" in await world.command(world.tenant.name, user=ADMIN)
    request = await world.wait_request("delete_users")
    # Settled: the status message shows the request's tally once the request is recorded.
    await world.slack.wait_for(lambda _: "Approvals: 0/2" in world.status_text())
    if command == "retry":
        await world.vote(request, APPROVERS[2], "x")
        # Settled: every visible effect of the veto is there (state, thread note, request marked).
        await world.slack.wait_for(
            lambda _: (
                world.state() == "delete_users.rejected"
                and any("was vetoed" in m.text for m in world.slack.messages)
                and "Vetoed" in request.text
            )
        )
    return request


async def allowed(world: World, role: str, command: str, request: SimMessage | None) -> None:
    user, tenant = ROLES[role].user, world.tenant.name
    if command == "start":
        assert "started" in await world.command(tenant, user=user)
        await world.wait_request("delete_users")
        closures = table(world, "closures")
        assert [(c["tenant"], c["requester"]) for c in closures] == [(tenant, user)]
    elif command == "abort":
        assert "aborted" in await world.command(f"abort {tenant} testing", user=user)
        assert await world.wait_state("aborted") == "aborted"
    elif command == "retry":
        assert "Retrying" in await world.command(f"retry {tenant}", user=user)
        await world.wait_request("delete_users", count=2)
        await world.wait_state("delete_users.awaiting_approval")
    elif command in ("status", "list", "help"):
        before = snapshot(world)
        text = {"status": f"status {tenant}", "list": "list", "help": "help"}[command]
        reply = await world.command(text, user=user)
        if command == "help":
            assert "Usage" in reply
        else:
            assert tenant in reply and "delete_users.awaiting_approval" in reply
        shown = world.slack.ephemerals[-1]
        assert shown["user"] == user and shown["response_type"] == "ephemeral"
        assert snapshot(world) == before
    elif command == "approve":
        assert request is not None
        await world.vote(request, user)
        await world.slack.wait_for(lambda _: "Approvals: 1/2" in world.status_text())
        assert [(v["approver"], v["kind"]) for v in table(world, "votes")] == [(user, "approve")]
        assert world.state() == "delete_users.awaiting_approval"
        assert graph_writes(world) == []
    elif command == "audit":
        reply = await world.command(f"audit {tenant}", user=user)
        assert "Usage" not in reply and "Only" not in reply, reply
        thread = status_ts(world)
        await world.slack.wait_for(
            lambda _: any(
                f["channel"] == CHANNEL and f["thread_ts"] == thread and "-audit-" in f["name"]
                for f in world.slack.files
            ),
            timeout=5,
        )
    else:  # pragma: no cover - the matrix lists every command above
        raise AssertionError(command)


async def refused(world: World, role: str, command: str, request: SimMessage | None) -> None:
    user, tenant = ROLES[role].user, world.tenant.name
    before = snapshot(world)
    if command == "approve":
        assert request is not None
        await world.vote(request, user)
        # A refusal is answered to the person alone (ephemeral), so a channel member cannot flood
        # the thread with them (issue 12): nothing new appears in the channel.
        refusal = await world.slack.wait_for(
            lambda _: next(
                (e for e in world.slack.ephemerals if "does not count" in str(e["text"])), None
            )
        )
        why = "requester" if user == ADMIN else "not a configured approver"
        assert refusal["user"] == user and why in str(refusal["text"])
        assert refusal["channel"] == CHANNEL
        after = snapshot(world)
        assert after == before
        assert "Approvals: 0/2" in world.status_text()
        return
    text = {
        "start": tenant,
        "abort": f"abort {tenant} not allowed",
        "retry": f"retry {tenant}",
        "audit": f"audit {tenant}",
    }[command]
    reply = await world.command(text, user=user)
    if command == "audit":
        assert "Usage" not in reply, reply
        assert re.search("admin", reply, re.I) and re.search("approver", reply, re.I), reply
    else:
        assert f"Only the configured admins may {command}" in reply, reply
    shown = world.slack.ephemerals[-1]
    assert shown["user"] == user and shown["response_type"] == "ephemeral"
    assert snapshot(world) == before


@pytest.mark.parametrize(("role", "command"), list(matrix()))
async def test_permission_matrix(make_world: MakeWorld, role: str, command: str) -> None:
    """Each role may do exactly what the contract grants it; every refusal says why and
    changes no closure, no Slack message and nothing in the tenant."""
    world = await make_world(users=8, approvers=ROLES[role].approvers)
    request = await setup_for(world, command)
    if role in ALLOWED[command]:
        await allowed(world, role, command, request)
    else:
        await refused(world, role, command, request)


# --- Slack's signature on event envelopes -------------------------------------------------------

STALE = 6 * 60
BAD_SIGNATURE = "v0=" + "0" * 64


def tampered(kind: str) -> dict[str, Any]:
    """deliver() arguments that make a request Slack did not sign (or signed too long ago)."""
    now = int(time.time())
    if kind == "wrong_signature":
        return {"headers": {"X-Slack-Signature": BAD_SIGNATURE}}
    if kind == "stale_timestamp":
        return {"timestamp": now - STALE}
    if kind == "future_timestamp":
        return {"timestamp": now + STALE}
    if kind == "missing_signature":
        return {"headers": {"X-Slack-Signature": None}}
    if kind == "missing_timestamp":
        return {"headers": {"X-Slack-Request-Timestamp": None}}
    if kind == "missing_both":
        return {"headers": {"X-Slack-Signature": None, "X-Slack-Request-Timestamp": None}}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "wrong_signature",
        "signed_with_another_secret",
        "stale_timestamp",
        "future_timestamp",
        "missing_signature",
        "missing_timestamp",
        "missing_both",
    ],
)
async def test_unsigned_vote_event_is_401_and_not_counted(make_world: MakeWorld, kind: str) -> None:
    """A reaction_added envelope without a valid, fresh signature is answered 401 and its vote
    is neither counted nor remembered (the same event, properly signed, still counts)."""
    world = await make_world(users=8, quorum=3)
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    envelope = world.slack.envelope(
        {
            "type": "reaction_added",
            "user": APPROVERS[0],
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": request.channel, "ts": request.ts},
            "item_user": request.user,
            "event_ts": world.slack.next_ts(),
        }
    )
    if kind == "signed_with_another_secret":
        ts = str(int(time.time()))
        signature = slack_signature("not-the-secret", ts, json.dumps(envelope).encode())
        result = await world.slack.deliver(
            envelope,
            sign=False,
            headers={"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": ts},
        )
    else:
        result = await world.slack.deliver(envelope, **tampered(kind))
    assert result.status == 401
    before = snapshot(world)
    # Another approver's signed vote is processed; the tampered one must not have been.
    await world.vote(request, APPROVERS[1])
    await world.slack.wait_for(lambda _: "Approvals: 1/3" in world.status_text())
    assert [v["approver"] for v in table(world, "votes")] == [APPROVERS[1]]
    assert before["votes"] == [] and before["closures"] == snapshot(world)["closures"]
    # The rejected delivery burned nothing: Slack's genuine delivery of that event counts.
    again = await world.slack.deliver(envelope)
    assert again.status == 200
    await world.slack.wait_for(lambda _: "Approvals: 2/3" in world.status_text())
    assert sorted(v["approver"] for v in table(world, "votes")) == sorted(APPROVERS[:2])
    assert world.state() == "delete_users.awaiting_approval"
    assert graph_writes(world) == []


NOT_JSON_OBJECTS = [
    pytest.param(b"not json", "application/json", id="not-json"),
    pytest.param(b"[1, 2]", "application/json", id="json-array"),
    pytest.param(b"null", "application/json", id="json-null"),
    pytest.param(b"\xff\xfe\x00", "application/json", id="not-utf8"),
    pytest.param(b"payload=not-json", "application/x-www-form-urlencoded", id="form-payload"),
    pytest.param(
        json.dumps({"type": "event_callback", "team_id": 5, "authorizations": "x"}).encode(),
        "application/json",
        id="authorizations-not-a-list",
    ),
]


@pytest.mark.parametrize(("body", "content_type"), NOT_JSON_OBJECTS)
async def test_unsigned_malformed_body_is_401(world: World, body: bytes, content_type: str) -> None:
    """A request with a wrong signature is answered 401 whatever its body is."""
    result = await world.slack.deliver(
        body, content_type=content_type, sign=False, headers={"X-Slack-Signature": BAD_SIGNATURE}
    )
    assert result.status == 401


async def test_unsigned_url_verification_is_401(world: World) -> None:
    """Even the URL verification handshake is answered only when Slack signed it."""
    body = {"type": "url_verification", "token": "x", "challenge": "c" * 20}
    result = await world.slack.deliver(body, sign=False)
    assert result.status == 401 and "c" * 20 not in result.body
    assert (await world.slack.deliver(body)).status == 200


# --- secrets ------------------------------------------------------------------------------------


class Collect(logging.Handler):
    """Keeps every record, fully formatted (with tracebacks), from every logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[Collect]:
    """DEBUG everywhere: the root logger (caplog and our own handler) and each named logger."""
    caplog.set_level(logging.DEBUG)
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    saved: dict[logging.Logger, tuple[int, bool]] = {}
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            saved[logger] = (logger.level, logger.disabled)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
            if not logger.propagate:
                logger.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, (level, disabled) in saved.items():
            logger.setLevel(level)
            logger.disabled = disabled
            if handler in logger.handlers:
                logger.removeHandler(handler)


@pytest.fixture
def operator_output() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What an operator reads, at DEBUG: `run`'s text output (with its redactor) and JSON output
    whose redactor knows no secret value (so what the bot itself logs is scanned, fields too)."""
    text_out, json_out = io.StringIO(), io.StringIO()
    text_handler = logs.configure("debug", "text", text_out)
    json_handler = logging.StreamHandler(json_out)
    json_handler.setFormatter(logs.JsonFormatter(logs.Redactor()))
    json_handler.addFilter(logs.ContextFilter())
    logging.getLogger().addHandler(json_handler)
    try:
        yield text_out, json_out
    finally:
        logs.unconfigure(text_handler)
        logs.unconfigure(json_handler)


def find_secrets(blob: bytes, secret_values: dict[str, str]) -> list[str]:
    found = [name for name, value in secret_values.items() if value.encode() in blob]
    found += [f"JWT {m.group(0)[:24]!r}" for m in JWT.finditer(blob)]
    return found


async def test_no_secret_in_logs_database_or_slack(
    make_world: MakeWorld,
    every_logger_at_debug: Collect,
    operator_output: tuple[io.StringIO, io.StringIO],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a whole closure, no Slack token, signing secret, tenant client secret or Graph access
    token is in any log line (DEBUG included; raw records, and the operator's text and JSON
    output), the SQLite files, /healthz, /metrics, or anything sent to Slack."""
    text_out, json_out = operator_output
    world = await make_world(
        users=30, start=False, tenant={"client_secret": "tenant-secret-" + secrets.token_hex(16)}
    )
    # Distinctive secrets, so a match can only be a leak.
    world.slack.bot_token = "xoxb-" + secrets.token_hex(20)
    world.slack.signing_secret = "signing-" + secrets.token_hex(20)
    world.environ["SLACK_BOT_TOKEN"] = world.slack.bot_token
    world.environ["SLACK_SIGNING_SECRET"] = world.slack.signing_secret
    issued: list[str] = []
    authority = world.microsoft.authority
    mint = authority._mint

    def recording_mint(*args: Any, **kwargs: Any) -> str:
        token = mint(*args, **kwargs)
        issued.append(token)
        return token

    monkeypatch.setattr(authority, "_mint", recording_mint)
    await world.start_bot()
    assert world.service is not None

    world.script_approvers()
    world.script_admin()
    assert "started" in await world.command(world.tenant.name)
    assert await world.wait_state("closed", timeout=60) == "closed"
    assert issued, "the bot obtained its Graph token from the simulated authority"
    async with aiohttp.ClientSession() as http:
        served = []
        for path in ("/healthz", "/livez", "/metrics"):
            async with http.get(f"{world.service.url}{path}") as resp:
                served.append(await resp.read())

    secret_values = {
        "SLACK_BOT_TOKEN": world.slack.bot_token,
        "SLACK_SIGNING_SECRET": world.slack.signing_secret,
        "tenant client secret": world.tenant.client_secret,
        **{f"env {k}": v for k, v in world.environ.items()},
    }
    for n, token in enumerate(issued):
        _header, payload, signature = token.split(".")
        secret_values[f"access token {n}"] = token
        secret_values[f"access token {n} payload"] = payload
        secret_values[f"access token {n} signature"] = signature

    # (a) every log line, as caplog and as our own handler saw it
    log_text = "\n".join(
        [caplog.text, *(r.getMessage() for r in caplog.records), *every_logger_at_debug.lines]
    )
    assert every_logger_at_debug.lines, "DEBUG logging was captured"
    assert find_secrets(log_text.encode(), secret_values) == []
    output = {"text": text_out.getvalue(), "json": json_out.getvalue()}
    assert "-> closed" in output["text"]
    assert all(json.loads(line) for line in output["json"].splitlines())
    for name, text in output.items():
        assert find_secrets(text.encode(), secret_values) == [], name
    for blob in served:
        assert find_secrets(blob, secret_values) == []

    # (b) the database files, raw, WAL checkpointed and after the bot closed them
    db_path = Path(world.settings().storage_path)
    world.service.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    raw = [p.read_bytes() for p in (db_path, Path(f"{db_path}-wal")) if p.exists()]
    await world.stop_bot()
    raw += [p.read_bytes() for p in (db_path, Path(f"{db_path}-wal")) if p.exists()]
    for blob in raw:
        assert find_secrets(blob, secret_values) == []

    # (c) everything the bot sent to Slack
    sent = {
        "calls": world.slack.calls,
        "messages": [
            {"text": m.text, "blocks": m.blocks, "metadata": m.metadata, "versions": m.versions}
            for m in world.slack.messages
        ],
        "ephemerals": world.slack.ephemerals,
        "files": [{**f, "content": None} for f in world.slack.files],
    }
    assert world.slack.calls and world.slack.messages
    assert find_secrets(json.dumps(sent, default=str).encode(), secret_values) == []
    for f in world.slack.files:
        assert find_secrets(f.get("content") or b"", secret_values) == []
