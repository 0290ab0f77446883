"""The usage reports' preauthenticated download URL is a credential for a few minutes: the
download follows no further redirect, and a failed download's reason (which reaches the plan's
facts, the log and Slack) never carries the URL."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from bot.microsoft import reports
from bot.microsoft.tenant import Tenant
from bot.world import World
from tests.conftest import MakeWorld

FUNCTION = "getMailboxUsageDetail"
ELSEWHERE = "ftp://files.example/report.csv?tempauth=SECRETTOKEN"


def _tenant(world: World) -> Tenant:
    assert world.service is not None
    return world.service.core.tenants[world.tenant.name]


def _leaks(text: str) -> bool:
    return any(s in text for s in ("/_sim/reports/", "tempauth", "SECRETTOKEN", "://"))


async def test_a_redirecting_download_is_not_followed_and_its_reason_has_no_url(
    make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A download that answers a further redirect is not followed: the figure is unknown with
    the download's status only, and neither the reason nor the log names either URL."""
    world = await make_world(users=4)
    world.microsoft.reports.download_answer = lambda: web.HTTPFound(ELSEWHERE)
    with caplog.at_level(logging.WARNING, logger="close_account_bot.reports"):
        figure = await reports.read_figure(_tenant(world), FUNCTION)
    assert figure.unknown == "the report's download answered 302"
    assert not _leaks(caplog.text)


async def test_a_failing_download_says_its_status_without_the_url(make_world: MakeWorld) -> None:
    """A download answering 500 makes the figure unknown with the status, not the URL."""
    world = await make_world(users=4)
    world.microsoft.reports.download_answer = web.HTTPInternalServerError
    figure = await reports.read_figure(_tenant(world), FUNCTION)
    assert figure.unknown is not None and "500" in figure.unknown
    assert not _leaks(figure.unknown)


async def test_an_invalid_download_url_is_named_by_error_type_only(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Graph's Location is no valid URL, aiohttp's InvalidURL (whose text is the URL)
    gives a reason with the error's type only."""
    world = await make_world(users=4)

    async def location(tenant: Tenant, function: str) -> str:
        return "https://files.example:99999/report.csv?tempauth=SECRETTOKEN"

    monkeypatch.setattr(reports, "_location", location)
    figure = await reports.read_figure(_tenant(world), FUNCTION)
    assert figure.unknown == "the report could not be read (InvalidUrlClientError)"
