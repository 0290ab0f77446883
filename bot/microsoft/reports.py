"""What data dies with the tenant: Microsoft 365 usage reports (mailboxes, OneDrive accounts,
SharePoint sites: how many and how many bytes), read before step 1 so its request can say it.

As microsoftgraph/microsoft-graph-docs-contrib documents them (api-reference/v1.0/api/
reportroot-getmailboxusagedetail.md, reportroot-getonedriveusageaccountdetail.md,
reportroot-getsharepointsiteusagedetail.md): `GET /reports/{function}(period='D7')` with the
Graph token (Application permission Reports.Read.All) answers `302 Found` whose `Location` is
"a preauthenticated download URL" that is "only valid for a short period of time (a few
minutes)" and does "not require an `Authorization` header". So the redirect is followed by
hand and the download carries no Authorization header (aiohttp would follow it with the
token when the download host is the Graph host). The download itself follows no further
redirect, and the URL (a bearer credential for a few minutes) is never put in a reason: aiohttp's
errors name the URL in `str()`, so a reason carries only the error's type and HTTP status. The
CSV may begin with a UTF-8 byte order mark; it is dropped before parsing.

A figure that cannot be read is `unknown` with the reason; reading never fails a step.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.microsoft.graph import GraphError, error_of, retry_after
from bot.microsoft.tenant import Tenant

log = logging.getLogger("close_account_bot.reports")

PERIOD = "D7"
REPORTS_PERMISSION = "Reports.Read.All"
# (key in the plan's `data` fact, the report function)
REPORTS: tuple[tuple[str, str], ...] = (
    ("mailboxes", "getMailboxUsageDetail"),
    ("onedrive", "getOneDriveUsageAccountDetail"),
    ("sharepoint", "getSharePointSiteUsageDetail"),
)
STORAGE = "Storage Used (Byte)"
IS_DELETED = "Is Deleted"
REFRESHED = "Report Refresh Date"
ATTEMPTS = 3  # a report is a courtesy: a few tries on 429/5xx, then "unknown"
TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class Figure:
    """One report's total: how many (mailboxes, accounts, sites) and how many bytes, or why
    it is unknown."""

    count: int | None = None
    bytes: int | None = None
    refreshed: str | None = None  # the report's refresh date (YYYY-MM-DD)
    unknown: str | None = None

    def as_fact(self) -> dict[str, Any]:
        if self.unknown is not None:
            return {"unknown": self.unknown}
        return {"count": self.count, "bytes": self.bytes, "refreshed": self.refreshed}


class ReportUnavailable(Exception):
    """Why a report could not be read, in words for the approvers."""


def parse(data: bytes) -> Figure:
    """Count the rows that are not deleted and sum their storage; a UTF-8 BOM is ignored."""
    text = data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    count = total = 0
    refreshed: str | None = None
    for row in rows:
        if str(row.get(IS_DELETED, "")).strip().lower() == "true":
            continue
        count += 1
        value = str(row.get(STORAGE) or "0").strip() or "0"
        try:
            total += int(float(value))
        except ValueError:
            raise ReportUnavailable(f"the report's {STORAGE!r} is not a number") from None
        refreshed = refreshed or (str(row.get(REFRESHED) or "").strip() or None)
    if rows and STORAGE not in rows[0]:
        raise ReportUnavailable(f"the report has no {STORAGE!r} column")
    return Figure(count=count, bytes=total, refreshed=refreshed)


def _reason(err: GraphError) -> str:
    if err.status == 403:
        return (
            f"the app lacks the optional {REPORTS_PERMISSION} permission (Microsoft answered"
            f" 403 {err.code or 'Forbidden'}); grant it to see the figures"
        )
    return f"Microsoft answered {err.status} {err.code}: {err.message[:200]}".rstrip(": ")


async def _location(tenant: Tenant, function: str) -> str | bytes:
    """The report call with the Graph token, redirects not followed: the download URL (or the
    CSV itself, should Microsoft answer it directly)."""
    graph = tenant.graph
    path = f"/reports/{function}(period='{PERIOD}')"
    url = graph.url(path)
    refreshed = False
    attempt = 0
    while True:
        token = await graph.tokens.token(force_refresh=False)
        graph.sent += 1  # the Graph requests metric counts every request sent
        async with graph.session.get(
            url,
            headers={"Authorization": f"Bearer {token}"},
            allow_redirects=False,
            ssl=graph.ssl_context if graph.ssl_context is not None else True,
            timeout=TIMEOUT,
        ) as resp:
            status, headers, data = resp.status, dict(resp.headers), await resp.read()
        if graph.on_request is not None:
            graph.on_request("GET", path, status)
        if status in (301, 302, 303, 307, 308) and headers.get("Location"):
            return headers["Location"]
        if status == 200:
            return data
        if status == 401 and not refreshed:
            refreshed = True
            await graph.tokens.token(force_refresh=True)
            continue
        if (status == 429 or status >= 500) and attempt + 1 < ATTEMPTS:
            await graph.sleep(retry_after(headers, attempt, graph.backoff_base))
            attempt += 1
            continue
        try:
            body = json.loads(data.decode("utf-8", "replace") or "{}")
        except ValueError:
            body = {}
        raise error_of(status, body if isinstance(body, dict) else {}, path)


async def _download(tenant: Tenant, location: str) -> bytes:
    """The preauthenticated download: HTTPS only, and never with an Authorization header."""
    if urlsplit(location).scheme != "https":
        raise ReportUnavailable("Microsoft's download link is not HTTPS; it was not followed")
    graph = tenant.graph
    async with graph.session.get(
        location,
        headers={},  # preauthenticated: the Graph token stays with Graph
        allow_redirects=False,  # the link Graph gave is the download; it sends nowhere else
        ssl=graph.ssl_context if graph.ssl_context is not None else True,
        timeout=TIMEOUT,
    ) as resp:
        if resp.status != 200:
            raise ReportUnavailable(f"the report's download answered {resp.status}")
        return await resp.read()


async def read_figure(tenant: Tenant, function: str) -> Figure:
    """One report's figure; any failure is an `unknown` figure with the reason."""
    try:
        found = await _location(tenant, function)
        data = found if isinstance(found, bytes) else await _download(tenant, found)
        return await asyncio.to_thread(parse, data)  # a large tenant's CSV: off the loop
    except GraphError as err:
        reason = _reason(err)
    except ReportUnavailable as err:
        reason = str(err)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError, csv.Error) as err:
        reason = f"the report could not be read ({_error_name(err)})"
    log.warning("usage report %s unavailable: %s", function, reason)
    return Figure(unknown=reason)


def _error_name(err: BaseException) -> str:
    """The error's type and HTTP status, never its text: aiohttp's (InvalidURL,
    ClientResponseError, redirect errors) name the preauthenticated download URL."""
    status = getattr(err, "status", None)
    return f"{type(err).__name__}, HTTP {status}" if isinstance(status, int) else type(err).__name__


async def data_figures(tenant: Tenant) -> dict[str, Any]:
    """The plan's `data` fact: each report's count and bytes (or why unknown), and the period."""
    facts: dict[str, Any] = {"period": PERIOD}
    for key, function in REPORTS:
        facts[key] = (await read_figure(tenant, function)).as_fact()
    return facts
