"""Microsoft 365 usage reports in the Microsoft simulator, as microsoft-graph-docs-contrib
documents them: a 302 to a short-lived preauthenticated CSV download, Reports.Read.All, the
documented columns, seeded per-user figures, and names concealed unless the tenant's report
setting is off."""

from __future__ import annotations

import csv
import io
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator.microsoft.graph_data import DEFAULT_APP_ROLES
from simulator.microsoft.reports import (
    MAILBOX_COLUMNS,
    ONEDRIVE_COLUMNS,
    SHAREPOINT_COLUMNS,
    conceal,
    sites_of,
    usage_of,
)
from simulator.microsoft.server import MicrosoftSimulator, SimTenant

REPORTS = frozenset({"Reports.Read.All", "ReportSettings.ReadWrite.All"})


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ms(clock: Clock) -> AsyncIterator[MicrosoftSimulator]:
    async with MicrosoftSimulator(clock=clock) as sim:
        sim.add_tenant(name="contoso", users=21, seed=1, app_roles=DEFAULT_APP_ROLES | REPORTS)
        sim.add_tenant(name="fabrikam", users=5, seed=2)  # the default grant: no Reports.*
        yield sim


@pytest.fixture
async def http(ms: MicrosoftSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=ms.ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


def tenant(ms: MicrosoftSimulator, name: str) -> SimTenant:
    return next(t for t in ms.tenants.values() if t.name == name)


async def graph(
    ms: MicrosoftSimulator,
    http: aiohttp.ClientSession,
    name: str,
    path: str,
    method: str = "GET",
    body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    token = ms.access_token(tenant(ms, name).tenant_id)
    async with http.request(
        method,
        f"{ms.base_url}/v1.0/{path}",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        allow_redirects=False,
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def report(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession, function: str, name: str = "contoso"
) -> list[dict[str, str]]:
    """The report's rows: the 302, then its download without an Authorization header."""
    status, headers, _ = await graph(ms, http, name, f"reports/{function}(period='D7')")
    assert status == 302
    async with http.get(headers["Location"]) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/octet-stream"
        return list(csv.DictReader(io.StringIO(await resp.text())))


@pytest.mark.parametrize(
    ("function", "columns"),
    [
        ("getMailboxUsageDetail", MAILBOX_COLUMNS),
        ("getOneDriveUsageAccountDetail", ONEDRIVE_COLUMNS),
        ("getSharePointSiteUsageDetail", SHAREPOINT_COLUMNS),
    ],
)
async def test_a_report_redirects_to_a_csv_with_the_documented_columns(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession, function: str, columns: tuple[str, ...]
) -> None:
    """Each report answers 302 with a Location whose download (no token) is a CSV with the
    documented columns, one row per member (per site for SharePoint), for period 7."""
    status, headers, _ = await graph(ms, http, "contoso", f"reports/{function}(period='D7')")
    assert status == 302 and headers["Location"].startswith(ms.base_url + "/_sim/reports/")
    async with http.get(headers["Location"]) as resp:
        text = await resp.text()
    reader = csv.reader(io.StringIO(text))
    assert tuple(next(reader)) == columns
    rows = list(reader)
    contoso = tenant(ms, "contoso")
    members = [u for u in contoso.users.values() if u["userType"] != "Guest"]
    expected = len(sites_of(contoso)) if "SharePoint" in function else len(members)
    assert len(rows) == expected and all(row[-1] == "7" for row in rows)


async def test_reports_need_reports_read_all(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """Without Reports.Read.All every report is 403 Authorization_RequestDenied, and the
    settings need ReportSettings.*."""
    for function in ("getMailboxUsageDetail", "getOneDriveUsageAccountDetail"):
        status, _, body = await graph(ms, http, "fabrikam", f"reports/{function}(period='D7')")
        assert status == 403 and b"Authorization_RequestDenied" in body
    assert (await graph(ms, http, "fabrikam", "admin/reportSettings"))[0] == 403


async def test_mailbox_figures_are_the_seeded_ones_and_names_are_concealed(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """By default (displayConcealedNames true) the mailbox report hides each UPN behind a hash;
    the bytes are the user's seeded figures."""
    contoso = tenant(ms, "contoso")
    rows = await report(ms, http, "getMailboxUsageDetail")
    admin = contoso.retained_user
    assert admin is not None
    row = next(r for r in rows if r["User Principal Name"] == conceal(admin["userPrincipalName"]))
    assert int(row["Storage Used (Byte)"]) == usage_of(admin).mailbox_bytes > 0
    assert not any("@" in r["User Principal Name"] for r in rows)


async def test_turning_concealment_off_shows_real_names(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """PATCH /admin/reportSettings displayConcealedNames=false answers 204; GET reads it back and
    the OneDrive report then shows real owner UPNs with their seeded storage."""
    status, _, _ = await graph(ms, http, "contoso", "admin/reportSettings")
    assert status == 200
    patched = await graph(
        ms, http, "contoso", "admin/reportSettings", "PATCH", {"displayConcealedNames": False}
    )
    assert patched[0] == 204
    _, _, body = await graph(ms, http, "contoso", "admin/reportSettings")
    assert b'"displayConcealedNames": false' in body
    rows = await report(ms, http, "getOneDriveUsageAccountDetail")
    contoso = tenant(ms, "contoso")
    members = {u["userPrincipalName"]: u for u in contoso.users.values()}
    for row in rows:
        user = members[row["Owner Principal Name"]]
        assert int(row["Storage Used (Byte)"]) == usage_of(user).onedrive_bytes


async def test_deleted_users_show_as_deleted(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """A soft-deleted member still has a mailbox row, marked Is Deleted."""
    contoso = tenant(ms, "contoso")
    victim = next(
        u
        for u in contoso.users.values()
        if u["userType"] != "Guest" and u is not contoso.retained_user
    )
    contoso.soft_delete_user(victim["id"])
    rows = await report(ms, http, "getMailboxUsageDetail")
    flagged = [r for r in rows if r["Is Deleted"] == "True"]
    assert [r["User Principal Name"] for r in flagged] == [conceal(victim["userPrincipalName"])]


async def test_the_download_url_expires(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession, clock: Clock
) -> None:
    """The preauthenticated URL is valid for a few minutes only: after five it is 404."""
    _, headers, _ = await graph(
        ms, http, "contoso", "reports/getSharePointSiteUsageDetail(period='D30')"
    )
    clock.now += 301
    async with http.get(headers["Location"]) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    "call",
    [
        "reports/getMailboxUsageDetail(period='D8')",
        "reports/getMailboxUsageDetail(date=2024-01-01)",
        "reports/getOneDriveUsageAccountDetail(date=yesterday)",
        "reports/getNothing(period='D7')",
    ],
)
async def test_bad_parameters_are_400(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession, call: str
) -> None:
    """An unsupported period, a date where only period is documented, a malformed date and an
    unknown function are 400s, not reports."""
    assert (await graph(ms, http, "contoso", call))[0] == 400


async def test_a_date_report_covers_one_day(
    ms: MicrosoftSimulator, http: aiohttp.ClientSession
) -> None:
    """getOneDriveUsageAccountDetail(date=...) is documented for one day: Report Period 1."""
    status, headers, _ = await graph(
        ms, http, "contoso", "reports/getOneDriveUsageAccountDetail(date=2024-01-01)"
    )
    assert status == 302
    async with http.get(headers["Location"]) as resp:
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert rows and {r["Report Period"] for r in rows} == {"1"}
