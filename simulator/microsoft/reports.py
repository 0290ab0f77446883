"""Microsoft 365 usage reports in the simulated Graph: how much mail, OneDrive and SharePoint data
a tenant holds, so a closure can show what dies with it.

As microsoftgraph/microsoft-graph-docs-contrib documents them (api-reference/v1.0/api/):
- reportroot-getmailboxusagedetail.md, reportroot-getonedriveusageaccountdetail.md and
  reportroot-getsharepointsiteusagedetail.md: `GET /reports/{function}(period='D7')` (D7, D30,
  D90 or D180; OneDrive and SharePoint also take `date=YYYY-MM-DD`) answers `302 Found` with a
  `Location` header naming a preauthenticated download URL, valid "a few minutes", that needs no
  Authorization header and returns the CSV (`application/octet-stream`) with the columns listed
  below. v1.0 documents no `$format=application/json` (only beta does), so v1.0 has none here.
  The pages are marked global-only (no national cloud); the simulator does not refuse them there.
- Permissions: Application | Reports.Read.All (the SharePoint page's table; the other two pages'
  includes name the same permission).
- resources/adminreportsettings.md: `displayConcealedNames`: "If set to `true`, all reports
  conceal user information such as usernames, groups, and sites". Modelled as the tenant's
  `display_concealed_names` flag (on by default, as in a new tenant), readable and writable at
  `/admin/reportSettings` (adminreportsettings-get.md: ReportSettings.Read.All, least;
  adminreportsettings-update.md: ReportSettings.ReadWrite.All). A concealed value is an opaque
  32-character hex token, the same for the same name.

The download URL is on the simulator's 127.0.0.1 address (`/_sim/reports/{token}`), not on
reports.office.com, which the simulator does not answer for. Figures are per user and derived
from the user's object ID, so the same user always shows the same bytes.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.microsoft.graph_data import SimTenant
from simulator.microsoft.graph_odata import (
    Caller,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    ok,
)

# reportroot-getmailboxusagedetail.md's column list (its example header line omits the last
# three but "Report Period"; the list is what the page says the file has).
MAILBOX_COLUMNS = (
    "Report Refresh Date",
    "User Principal Name",
    "Display Name",
    "Is Deleted",
    "Deleted Date",
    "Created Date",
    "Last Activity Date",
    "Item Count",
    "Storage Used (Byte)",
    "Issue Warning Quota (Byte)",
    "Prohibit Send Quota (Byte)",
    "Prohibit Send/Receive Quota (Byte)",
    "Deleted Item Count",
    "Deleted Item Size (Byte)",
    "Deleted Item Quota (Byte)",
    "Has Archive",
    "Report Period",
)
ONEDRIVE_COLUMNS = (
    "Report Refresh Date",
    "Site URL",
    "Owner Display Name",
    "Is Deleted",
    "Last Activity Date",
    "File Count",
    "Active File Count",
    "Storage Used (Byte)",
    "Storage Allocated (Byte)",
    "Owner Principal Name",
    "Report Period",
)
SHAREPOINT_COLUMNS = (
    "Report Refresh Date",
    "Site Id",
    "Site URL",
    "Owner Display Name",
    "Is Deleted",
    "Last Activity Date",
    "File Count",
    "Active File Count",
    "Page View Count",
    "Visited Page Count",
    "Storage Used (Byte)",
    "Storage Allocated (Byte)",
    "Root Web Template",
    "Owner Principal Name",
    "Report Period",
)
PERIODS = ("D7", "D30", "D90", "D180")
DOWNLOAD_LIFETIME = 300.0  # seconds: "valid for a short period of time (a few minutes)"
GIB = 1024**3
_CALL = re.compile(r"(?P<name>[A-Za-z]+)\((?P<arg>period|date)=(?P<value>[^)]*)\)")


@dataclass(frozen=True)
class Usage:
    """One member's seeded usage figures, in bytes and counts."""

    mailbox_bytes: int
    mailbox_items: int
    deleted_item_bytes: int
    onedrive_bytes: int
    onedrive_files: int


def usage_of(user: dict[str, Any]) -> Usage:
    """The seeded figures for `user`, derived from its object ID (stable across calls)."""
    digest = hashlib.sha256(str(user["id"]).encode()).digest()

    def part(i: int, top: int) -> int:
        return int.from_bytes(digest[i * 4 : i * 4 + 4], "big") % top

    guest = user.get("userType") == "Guest"
    return Usage(
        mailbox_bytes=0 if guest else 50_000_000 + part(0, 30 * GIB),
        mailbox_items=0 if guest else 200 + part(1, 60_000),
        deleted_item_bytes=0 if guest else part(2, 500_000_000),
        onedrive_bytes=0 if guest else 1_000_000 + part(3, 200 * GIB),
        onedrive_files=0 if guest else part(4, 20_000),
    )


@dataclass(frozen=True)
class Site:
    """A SharePoint site of the tenant (the root site and team sites)."""

    site_id: str
    url: str
    owner_upn: str
    owner_name: str
    storage_bytes: int
    files: int
    template: str


def sites_of(tenant: SimTenant) -> list[Site]:
    """The tenant's SharePoint sites: the root site, owned by the retained admin, and a team
    site per ten members (at least one), each owned by a member."""
    members = [u for u in tenant.users.values() if u.get("userType") != "Guest"]
    owner = tenant.retained_user or (members[0] if members else None)
    host = f"https://{tenant.name}.sharepoint.com"
    sites = []
    for n in range(1 + max(1, len(members) // 10)):
        who = owner if n == 0 or not members else members[(n * 7) % len(members)]
        seed = hashlib.sha256(f"{tenant.tenant_id}:site:{n}".encode()).digest()
        sites.append(
            Site(
                site_id=str(_uuid(seed)),
                url=host + "/" if n == 0 else f"{host}/sites/team{n}",
                owner_upn=str(who["userPrincipalName"]) if who else "",
                owner_name=str(who["displayName"]) if who else "",
                storage_bytes=10_000_000 + int.from_bytes(seed[:4], "big") % (500 * GIB),
                files=int.from_bytes(seed[4:8], "big") % 50_000,
                template="SITEPAGEPUBLISHING#0" if n == 0 else "GROUP#0",
            )
        )
    return sites


def _uuid(seed: bytes) -> str:
    h = seed[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def conceal(value: str) -> str:
    """What a report shows in place of a name when names are concealed."""
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest().upper()


class Reports:
    """The report functions and their short-lived download URLs for one simulator."""

    def __init__(self, base_url: Callable[[], str], clock: Callable[[], float]) -> None:
        self._base_url = base_url
        self._clock = clock
        self._downloads: dict[str, tuple[float, bytes]] = {}
        # Tests look here: the Authorization header each download came with (None: none).
        self.download_authorizations: list[str | None] = []
        # Whether the CSV starts with a UTF-8 byte order mark, as files downloaded from
        # Microsoft's report URLs are seen to (readers must drop it); off by default so that
        # plain `resp.text()` readers see the documented header line.
        self.byte_order_mark = False
        # Tests set it: each download answers what it makes (raised, as aiohttp's handlers may)
        # instead of the CSV: a failing download (`web.HTTPInternalServerError`) or one that
        # redirects further (`web.HTTPFound(url)`).
        self.download_answer: Callable[[], web.HTTPException] | None = None

    def route(
        self, req: GraphRequest
    ) -> Callable[[SimTenant, Caller, GraphRequest], GraphResponse]:
        """The handler for /reports/{function}(...) and /admin/reportSettings, or GraphError."""
        seg = [s.lower() for s in req.segments]
        if seg == ["admin", "reportsettings"] and req.version in ("v1.0", "beta"):
            if req.method == "GET":
                return get_settings
            if req.method == "PATCH":
                return patch_settings
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        if req.method != "GET":
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        match = _CALL.fullmatch(req.segments[-1])
        if match is None or match["name"].lower() not in _FUNCTIONS:
            raise bad_request(f"Resource not found for the segment '{req.segments[-1]}'.")
        return self._report

    def download(self, token: str, authorization: str | None = None) -> bytes | None:
        """The CSV behind a download token, or None once it has expired (or never existed).
        `authorization` is the request's Authorization header, recorded for tests: the URL is
        preauthenticated, so a client that sends its Graph token here leaks it."""
        self.download_authorizations.append(authorization)
        if self.download_answer is not None:
            raise self.download_answer()
        now = self._clock()
        self._downloads = {k: v for k, v in self._downloads.items() if v[0] > now}
        found = self._downloads.get(token)
        return None if found is None else found[1]

    def _report(self, tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
        del caller  # the permission was checked before the handler ran
        match = _CALL.fullmatch(req.segments[-1])
        assert match is not None  # route() checked it
        build, args = _FUNCTIONS[match["name"].lower()]
        arg, value = match["arg"], match["value"]
        if arg not in args:
            raise bad_request(f"Invalid parameter: {arg}")
        if arg == "period":
            period = value.strip("'")
            if not (value.startswith("'") and value.endswith("'")) or period not in PERIODS:
                raise bad_request(
                    f"Invalid value for period: {value}. Allowed: {', '.join(PERIODS)}."
                )
            label = period[1:]
        else:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise bad_request(f"Invalid value for date: {value}.") from None
            label = "1"
        data = (codecs.BOM_UTF8 if self.byte_order_mark else b"") + to_csv(build(tenant, label))
        token = secrets.token_urlsafe(24)
        self._downloads[token] = (self._clock() + DOWNLOAD_LIFETIME, data)
        location = f"{self._base_url()}/_sim/reports/{token}"
        return GraphResponse(302, None, {"Location": location, "Content-Type": "text/plain"})


Rows = Callable[[SimTenant, str], list[list[str]]]


def to_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def _names(tenant: SimTenant, *values: str) -> list[str]:
    concealed = tenant.display_concealed_names
    return [conceal(v) if concealed and v else v for v in values]


def _day(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _everyone(tenant: SimTenant) -> list[tuple[dict[str, Any], bool]]:
    """Active members, then soft-deleted ones (the reports list deleted users as such)."""
    return [(u, False) for u in tenant.users.values() if u.get("userType") != "Guest"] + [
        (u, True) for u in tenant.deleted_users.values() if u.get("userType") != "Guest"
    ]


def mailbox_rows(tenant: SimTenant, period: str) -> list[list[str]]:
    refresh = _day(tenant.now() - dt.timedelta(days=1))
    rows = [list(MAILBOX_COLUMNS)]
    for user, deleted in _everyone(tenant):
        use = usage_of(user)
        upn, display = _names(tenant, user["userPrincipalName"], user["displayName"])
        rows.append(
            [
                refresh,
                upn,
                display,
                str(deleted),
                (user.get("deletedDateTime") or "")[:10] if deleted else "",
                str(user.get("createdDateTime", ""))[:10],
                refresh,
                str(use.mailbox_items),
                str(use.mailbox_bytes),
                str(49 * GIB),
                str(49 * GIB + GIB // 2),
                str(50 * GIB),
                str(use.mailbox_items // 20),
                str(use.deleted_item_bytes),
                str(30 * GIB),
                "False",
                period,
            ]
        )
    return rows


def onedrive_rows(tenant: SimTenant, period: str) -> list[list[str]]:
    refresh = _day(tenant.now() - dt.timedelta(days=1))
    rows = [list(ONEDRIVE_COLUMNS)]
    for user, deleted in _everyone(tenant):
        use = usage_of(user)
        personal = re.sub(r"[^a-z0-9]", "_", str(user["userPrincipalName"]).lower())
        url = f"https://{tenant.name}-my.sharepoint.com/personal/{personal}"
        site, owner, upn = _names(tenant, url, user["displayName"], user["userPrincipalName"])
        rows.append(
            [
                refresh,
                site,
                owner,
                str(deleted),
                refresh,
                str(use.onedrive_files),
                str(use.onedrive_files // 10),
                str(use.onedrive_bytes),
                str(1024 * GIB),
                upn,
                period,
            ]
        )
    return rows


def sharepoint_rows(tenant: SimTenant, period: str) -> list[list[str]]:
    refresh = _day(tenant.now() - dt.timedelta(days=1))
    rows = [list(SHAREPOINT_COLUMNS)]
    for site in sites_of(tenant):
        url, owner, upn = _names(tenant, site.url, site.owner_name, site.owner_upn)
        rows.append(
            [
                refresh,
                site.site_id,
                url,
                owner,
                "False",
                refresh,
                str(site.files),
                str(site.files // 10),
                str(site.files * 3),
                str(site.files // 5),
                str(site.storage_bytes),
                str(1024 * GIB),
                site.template,
                upn,
                period,
            ]
        )
    return rows


def get_settings(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """adminreportsettings-get.md: the adminReportSettings object."""
    del caller
    return ok(
        {
            "@odata.context": f"{req.base}/{req.version}/$metadata#admin/reportSettings/$entity",
            "displayConcealedNames": tenant.display_concealed_names,
        }
    )


def patch_settings(tenant: SimTenant, caller: Caller, req: GraphRequest) -> GraphResponse:
    """adminreportsettings-update.md: set displayConcealedNames; 204 No Content."""
    del caller
    body = req.body
    if not isinstance(body, dict) or not isinstance(body.get("displayConcealedNames"), bool):
        raise bad_request("displayConcealedNames (Boolean) is required.")
    tenant.display_concealed_names = body["displayConcealedNames"]
    return GraphResponse(204)


def is_report_call(req: GraphRequest) -> bool:
    """Whether the call is one this module serves."""
    seg = [s.lower() for s in req.segments]
    return (len(seg) == 2 and seg[0] == "reports") or seg == ["admin", "reportsettings"]


# function (lower-cased) -> its rows and the parameters its page documents
_FUNCTIONS: dict[str, tuple[Rows, tuple[str, ...]]] = {
    "getmailboxusagedetail": (mailbox_rows, ("period",)),
    "getonedriveusageaccountdetail": (onedrive_rows, ("period", "date")),
    "getsharepointsiteusagedetail": (sharepoint_rows, ("period", "date")),
}
