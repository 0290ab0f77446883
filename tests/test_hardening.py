"""Requests meant for another workspace, enterprise or app are refused; Slack's API is reached
over HTTPS only (plain http for a loopback simulator)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.world import APPROVERS, World
from storage import approvals as requests_db
from storage import audit
from tests.test_config import assert_names, build, config_error, with_value


@pytest.mark.parametrize(
    ("key", "value"),
    [("team_id", "T0OTHER"), ("api_app_id", "A0OTHER"), ("enterprise_id", "E0OTHER")],
)
async def test_a_reaction_for_another_team_app_or_enterprise_is_refused(
    world: World, key: str, value: str
) -> None:
    """A signed reaction event naming another team, app or enterprise gets 401 and no vote,
    and the refusal is audited (tenant FOREIGN) with the IDs it named."""
    await world.command(world.tenant.name)
    request = await world.wait_request("delete_users")
    event = {
        "type": "reaction_added",
        "user": APPROVERS[0],
        "reaction": "white_check_mark",
        "item": {"type": "message", "channel": request.channel, "ts": request.ts},
        "event_ts": world.slack.next_ts(),
    }
    envelope = world.slack.envelope(event)
    if key == "enterprise_id":
        envelope["authorizations"][0]["enterprise_id"] = value
        envelope["enterprise_id"] = value
    else:
        envelope[key] = value
    result = await world.slack.deliver(envelope)
    assert result.status == 401
    assert world.service is not None
    [row] = audit.trail(world.service.db, audit.FOREIGN)
    assert row.action == "foreign_request_refused" and row.actor == APPROVERS[0]
    assert row.detail["mismatch"] == ("app_id" if key == "api_app_id" else key)
    assert row.detail[key.removeprefix("api_")] == value
    req = requests_db.request_at(world.service.db, request.channel, request.ts)
    assert req is not None and requests_db.votes_for(world.service.db, req.id) == []
    ours = await world.slack.deliver(world.slack.envelope(event))  # the same event, ours
    assert ours.status == 200
    assert [v.approver for v in requests_db.votes_for(world.service.db, req.id)] == [APPROVERS[0]]


async def test_a_command_for_another_team_is_refused(world: World) -> None:
    """A signed /close-account naming another workspace starts nothing; the refusal is audited."""
    form = {
        "team_id": "T0OTHER",
        "api_app_id": world.slack.app_id,
        "channel_id": world.channel,
        "user_id": "U0ADMIN1",
        "command": "/close-account",
        "text": world.tenant.name,
        "response_url": f"{world.slack.base_url}/response/nowhere",
    }
    result = await world.slack.deliver(
        urlencode(form).encode(), content_type="application/x-www-form-urlencoded"
    )
    assert result.status == 401
    assert world.slack.messages == []
    assert world.service is not None
    [row] = audit.trail(world.service.db, audit.FOREIGN)
    assert (row.action, row.actor) == ("foreign_request_refused", "U0ADMIN1")
    assert row.detail["team_id"] == "T0OTHER" and row.detail["kind"] == "command"


def test_slack_api_url_must_be_https_unless_loopback(tmp_path: Path) -> None:
    """slack.api_url over http is accepted for 127.0.0.1, ::1 and localhost only."""
    for url in ("http://127.0.0.1:9000/api", "http://[::1]:9000/api", "http://localhost/api"):
        assert build(with_value("slack.api_url", url), tmp_path).slack.api_url == url + "/"
    for url in ("http://slack.example.test/api", "http://10.0.0.5/api", "ftp://127.0.0.1/"):
        error = config_error(with_value("slack.api_url", url), tmp_path)
        assert_names(error, tmp_path, "slack.api_url", "https://")
    error = config_error(with_value("slack.api_url", "http://slack.example.test/"), tmp_path)
    assert "loopback" in error.problem
