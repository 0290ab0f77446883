"""Logs an operator can use: text or JSON lines with timestamps and levels, the closure a line
is about, every transition and Graph write at INFO, start and stop lines, and no secret."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.__main__ import parser
from bot.app import build_app
from bot.world import World
from tests.conftest import MakeWorld

Capture = Callable[..., io.StringIO]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def capture_logs() -> Iterator[Capture]:
    """`capture_logs(fmt, level="info")`: the bot's own log configuration, into a buffer."""
    root = logging.getLogger()
    level = root.level
    installed: list[logging.Handler] = []

    def capture(fmt: str, level: str = "info") -> io.StringIO:
        out = io.StringIO()
        installed.append(logs.configure(level, fmt, out))
        return out

    yield capture
    for handler in installed:
        logs.unconfigure(handler)
    root.setLevel(level)


async def close_tenant(world: World) -> str:
    world.script_approvers()
    world.script_admin()
    assert "started" in await world.command(world.tenant.name)
    assert await world.wait_state("closed", timeout=60) == "closed"
    assert world.service is not None
    await world.service.runner.idle()
    row = world.service.db.execute("SELECT id FROM closures").fetchone()
    return str(row[0])


async def test_json_lines_carry_closure_tenant_and_state(
    make_world: MakeWorld, capture_logs: Capture
) -> None:
    """In JSON format every line parses as one object with ts, level, logger and msg; each
    transition line names the closure, the tenant and the state it moved to, and lines logged
    by the closure's task (its Graph writes) carry the same closure ID and tenant."""
    out = capture_logs("json")
    world = await make_world(users=20)
    closure_id = await close_tenant(world)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    transitions = [line for line in lines if "trigger" in line]
    assert [t["state"] for t in transitions][-1] == "closed"
    assert all(t["closure_id"] == closure_id and t["tenant"] == "contoso" for t in transitions)
    assert {"from_state", "actor"} <= set(transitions[0])
    writes = [line for line in lines if line["logger"] == "close_account_bot.graph"]
    assert writes and all(w["closure_id"] == closure_id for w in writes)
    assert all(w["state"].endswith(".executing") for w in writes)


async def test_transitions_and_graph_write_summaries_are_info_lines(
    make_world: MakeWorld, capture_logs: Capture
) -> None:
    """At the default level each line starts with an ISO timestamp and the level; every
    transition is an INFO line (from -> to, trigger, actor) and each $batch of deletes is an
    INFO summary with what was sent, what succeeded, what Microsoft throttled, and the pace."""
    out = capture_logs("text")
    world = await make_world(users=30)
    world.microsoft.faults.throttle(2, path_prefix="/v1.0/users/", method="DELETE")
    closure_id = await close_tenant(world)
    lines = out.getvalue().splitlines()
    assert lines and all(ISO.match(line) for line in lines if not line.startswith((" ", "\t")))
    assert (
        f"INFO close_account_bot.runner: closure {closure_id}: delete_users.planning ->"
        " delete_users.awaiting_approval (plan_ready by bot)"
    ) in out.getvalue()
    assert re.search(
        r"INFO close_account_bot\.runner: closure \w+: \S+ -> closed \(", out.getvalue()
    )
    summaries = [
        line for line in lines if "close_account_bot.graph: graph contoso: DELETE $batch" in line
    ]
    assert summaries and all(" INFO " in line and "writes/s" in line for line in summaries)
    assert any(re.search(r": 2[0-9] sent, 20 ok, 2 throttled, 0 failed", s) for s in summaries)


async def test_start_and_stop_are_logged(make_world: MakeWorld, capture_logs: Capture) -> None:
    """Starting logs the version, the mode, the database and the tenants; stopping logs a line
    when it begins and one when it is done."""
    out = capture_logs("text")
    world = await make_world()
    await world.stop_bot()
    text = out.getvalue()
    database = world.settings().storage_path
    assert re.search(
        rf"close-account-bot \S+ starting: http mode, database {re.escape(str(database))},"
        r" tenants contoso",
        text,
    )
    assert "stopping; 0 open closures resume at the next start" in text
    assert text.rstrip().endswith("close_account_bot.service: stopped")


def test_the_redactor_blanks_tokens_jwts_and_configured_secrets(capture_logs: Capture) -> None:
    """Whatever a library logs, Slack tokens, bearer values, JWTs and the configured secret
    values never reach the output, in the message, its arguments or an exception, in text or
    JSON."""
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4In0.c2lnbmF0dXJl"
    leaks = [
        "xoxb-1234-5678-abcdef",
        "xapp-1-A0-123-abcdef",
        "xoxe.xoxp-1-abc",
        jwt,
        "client-secret-value-42",
    ]
    for fmt in ("text", "json"):
        out = capture_logs(fmt)
        logs.protect(["client-secret-value-42", None, ""])
        log = logging.getLogger("some.library")
        log.warning("token %s and %s", leaks[0], leaks[1])
        log.warning("header Authorization: Bearer %s; rotated %s", jwt, leaks[2])
        log.warning("secret in the message: client-secret-value-42", extra={"detail": leaks[0]})
        try:
            raise ValueError(f"failed with {leaks[4]} and {jwt}")
        except ValueError:
            log.exception("an error")
        text = out.getvalue()
        assert text.count(logs.REDACTED) >= 7, text
        assert [leak for leak in leaks if leak in text] == [], text
        assert "xoxb-" not in text and "eyJ" not in text
        if fmt == "json":
            records = [json.loads(line) for line in text.splitlines()]
            assert len(records) == 4 and "exc" in records[-1]
            assert "ValueError" in records[-1]["exc"]


def test_text_lines_show_the_closure_context(capture_logs: Capture) -> None:
    """A line logged inside a closure's context names the closure, its tenant and its state,
    and the state follows the closure's transitions."""
    out = capture_logs("text")
    context = logs.closure_context("c0ffee", "contoso", "delete_users.planning")
    log = logging.getLogger("close_account_bot.test")
    context.run(log.info, "planning")
    logs.note_state("c0ffee", "delete_users.awaiting_approval")
    context.run(log.info, "asked")
    log.info("outside")
    first, second, third = out.getvalue().splitlines()
    assert first.endswith("planning [closure=c0ffee tenant=contoso state=delete_users.planning]")
    assert second.endswith("state=delete_users.awaiting_approval]")
    assert third.endswith("close_account_bot.test: outside")


def test_debug_lines_are_dropped_at_info(capture_logs: Capture) -> None:
    """--log-level info drops DEBUG lines and keeps INFO; warning keeps only warnings."""
    out = capture_logs("text", "info")
    log = logging.getLogger("close_account_bot.test")
    log.debug("quiet")
    log.info("heard")
    out2 = capture_logs("text", "warning")
    log.info("quiet too")
    log.warning("heard too")
    assert "heard" in out.getvalue() and "quiet" not in out.getvalue()
    assert "heard too" in out2.getvalue() and "quiet too" not in out2.getvalue()
    assert "heard too" not in out.getvalue()  # the second configure replaced the first


def test_libraries_speak_from_warning_up_unless_at_debug(capture_logs: Capture) -> None:
    """At info the libraries' INFO lines (slack-sdk's retries, transitions' callbacks) are
    dropped while the bot's own are kept; at debug both are shown."""
    library = logging.getLogger("slack_sdk.web.async_base_client")
    own = logging.getLogger("close_account_bot.test")
    out = capture_logs("text", "info")
    library.info("a retry handler found")
    library.warning("a library warning")
    own.info("the bot's own line")
    assert "a retry handler found" not in out.getvalue()
    assert "a library warning" in out.getvalue() and "the bot's own line" in out.getvalue()
    out = capture_logs("text", "debug")
    library.info("a retry handler found")
    assert "a retry handler found" in out.getvalue()


def test_configure_refuses_unknown_levels_and_formats() -> None:
    """An unknown level or format is a ValueError naming the choices, not a silent default."""
    with pytest.raises(ValueError, match="debug, info, warning, error"):
        logs.configure("verbose", "text", io.StringIO())
    with pytest.raises(ValueError, match="text, json"):
        logs.configure("info", "xml", io.StringIO())


def test_run_takes_log_level_and_log_format() -> None:
    """`run` defaults to info and text; --log-level and --log-format take the documented choices
    and nothing else."""
    args = parser().parse_args(["run", "--config", "c.toml"])
    assert (args.log_level, args.log_format) == ("info", "text")
    args = parser().parse_args(
        ["run", "--config", "c.toml", "--log-level", "debug", "--log-format", "json"]
    )
    assert (args.log_level, args.log_format) == ("debug", "json")
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--config", "c.toml", "--log-format", "yaml"])


async def test_bolt_warns_nothing_about_the_token_at_start(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SLACK_BOT_TOKEN in the environment, as under `run`, building the app logs no
    "token will be unused" warning (the client carries that very token)."""
    world = await make_world()
    assert world.service is not None
    monkeypatch.setenv("SLACK_BOT_TOKEN", world.slack.bot_token)
    caplog.set_level(logging.DEBUG)
    client = AsyncWebClient(token=world.slack.bot_token)
    core = world.service.core
    build_app(
        actions=core.actions,
        reactions=core.reactions,
        home_source=core.home,
        background=core.background,
        client=client,
        signing_secret="s" * 32,
    )
    assert [r for r in caplog.records if r.name.startswith("slack_bolt")] == []
