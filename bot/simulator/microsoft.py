"""The simulated Microsoft cloud: one HTTPS aiohttp server on 127.0.0.1 that is the login
authority and Microsoft Graph for any number of tenants, plus a JSON control surface for a
scripted admin. Throttling, injected faults and the write gate apply to every Graph call.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from bot.simulator.graph_api import Caller, GraphApi, is_ca_path, resource_units
from bot.simulator.graph_data import DEFAULT_APP_ROLES, SimError, SimTenant
from bot.simulator.graph_odata import (
    JSON_TYPE,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    error_body,
    error_response,
    parse_query,
)
from bot.simulator.graph_throttle import (
    FaultRule,
    Faults,
    Interval,
    SlidingWindow,
    WriteGate,
    format_seconds,
)
from bot.simulator.microsoft_authority import Authority, register_certificate
from bot.simulator.tls import create_server_tls

__all__ = ["Faults", "MicrosoftSimulator", "RequestRecord", "SimError", "SimTenant"]

VERSIONS = ("v1.0", "beta")
MAX_BATCH = 20
WRITE_LIMIT, WRITE_WINDOW = 3000, 150.0
READ_WINDOW = 10.0
_BATCH_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_DIAGNOSTIC = (
    '{"ServerInfo":{"DataCenter":"Simulated","Slice":"E","Ring":"1","RoleInstance":"SIM"}}'
)
_PAYLOAD_ERROR = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
    "is of valid JSON format."
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it; `status` 0 means the connection was dropped."""

    time: float  # the simulator's monotonic clock
    method: str
    path: str  # with the query; $batch sub-requests as "/{version}{url}"
    tenant_id: str | None
    status: int
    batch: bool = False


def _read_limit(users: int) -> int:
    """Directory resource units per 10 s by tenant size (steps.md)."""
    return 3500 if users < 50 else 5000 if users <= 500 else 8000


class MicrosoftSimulator:
    """Entra ID + Graph for tests and the demo. `await start()`, then point MSAL at
    `f"{base_url}/{tenant_id}"` and Graph at `base_url`, trusting `ca_file`.

    time_scale: simulated seconds per real second; throttling windows shrink by it, the
    conditional-access interval is 1/time_scale s, and tenant clocks run that much faster.
    retry_after: the Retry-After injected 429s send; budget 429s send the real wait.
    """

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        retry_after: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self.retry_after = retry_after
        self.clock = clock
        self.base_url = ""
        self.ca_file = ""
        self.tenants: dict[str, SimTenant] = {}
        self.requests: list[RequestRecord] = []
        self.faults = Faults(retry_after)
        self.authority = Authority(lambda: self.base_url, self.find_tenant)
        self._graph = GraphApi(lambda: self.base_url)
        self._gate = WriteGate()
        self._reads: dict[str, SlidingWindow] = {}
        self._writes: dict[str, SlidingWindow] = {}
        self._ca: dict[str, Interval] = {}
        self._runner: web.AppRunner | None = None

    # -- tenants -------------------------------------------------------------------------------

    def add_tenant(
        self,
        *,
        name: str,
        users: int = 250,
        guests: int | None = None,
        seed: int = 0,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str = "sim-secret",
        retained_upn: str | None = None,
        display_name: str | None = None,
        custom_domains: int = 1,
        sync_enabled: bool = False,
        retained_is_global_admin: bool = True,
        app_roles: frozenset[str] | None = None,
        app_directory_roles: frozenset[str] = frozenset(
            {"Privileged Authentication Administrator"}
        ),
        subscriptions: list[dict[str, Any]] | None = None,
        client_certificate: bytes | None = None,
    ) -> SimTenant:
        """Create a tenant. `users` counts every active account, the retained admin included;
        `guests` (default a tenth) are among them. `client_certificate` (PEM) registers a
        certificate credential on the bot's app next to its secret."""
        ids = uuid.uuid5(uuid.NAMESPACE_URL, f"sim:{name}:{seed}")
        tenant = SimTenant(
            name=name,
            tenant_id=tenant_id or str(ids),
            client_id=client_id or str(uuid.uuid5(ids, "client")),
            client_secret=client_secret,
            retained_upn=retained_upn or f"admin@{name}.onmicrosoft.com",
            display_name=display_name or f"{name.capitalize()} Ltd",
            users=users,
            guests=users // 10 if guests is None else guests,
            seed=seed,
            custom_domains=custom_domains,
            sync_enabled=sync_enabled,
            retained_is_global_admin=retained_is_global_admin,
            app_roles=DEFAULT_APP_ROLES if app_roles is None else app_roles,
            app_directory_roles=app_directory_roles,
            subscriptions=subscriptions,
            clock=self.clock,
            time_scale=self.time_scale,
        )
        if tenant.tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant.tenant_id} already exists")
        if client_certificate is not None:
            register_certificate(tenant, client_certificate)
        self.tenants[tenant.tenant_id] = tenant
        return tenant

    def find_tenant(self, key: str) -> SimTenant | None:
        """A tenant by id or by any of its domain names, as the authority resolves them."""
        if key in self.tenants:
            return self.tenants[key]
        lowered = key.lower()
        for tenant in self.tenants.values():
            if any(d["id"] == lowered for d in tenant.domains):
                return tenant
        return None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        tls = create_server_tls()
        self.ca_file = tls.ca_file
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/_sim/tenants", self._sim_list)
        app.router.add_get("/_sim/tenants/{tenant}", self._sim_summary)
        app.router.add_post("/_sim/tenants/{tenant}/{action}", self._sim_action)
        app.router.add_post("/_sim/tenants/{tenant}/subscriptions/{sub}/{action}", self._sim_sub)
        app.router.add_route("*", "/{tail:.*}", self._graph_entry)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls.ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._gate.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MicrosoftSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test controls -------------------------------------------------------------------------

    def hold_writes(self, after: int) -> None:
        """After `after` more successful destructive writes, hold further ones until release."""
        self._gate.hold(after)

    def release_writes(self) -> None:
        self._gate.release()

    async def writes_held(self) -> None:
        """Return once at least one write is waiting at the gate."""
        await self._gate.wait_until_held()

    @property
    def held_writes(self) -> int:
        return self._gate.waiting

    @property
    def token_lifetime(self) -> float:
        return self.authority.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        self.authority.token_lifetime = seconds

    def expire_tokens(self) -> None:
        """Make every access token issued so far expire now (Graph answers 401)."""
        self.authority.expire_tokens()

    def access_token(self, tenant_id: str) -> str:
        """A Graph token for the tenant's bot app without the token endpoint."""
        return self.authority.access_token(self.tenants[tenant_id])

    # -- HTTP helpers --------------------------------------------------------------------------

    def _record(
        self, method: str, path: str, tenant_id: str | None, status: int, batch: bool = False
    ) -> None:
        self.requests.append(RequestRecord(self.clock(), method, path, tenant_id, status, batch))

    def _json(
        self, request: web.Request, status: int, body: Any, tenant_id: str | None
    ) -> web.Response:
        self._record(request.method, request.path_qs, tenant_id, status)
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        return web.json_response(body, status=status, headers=headers)

    def _tenant_id_of(self, key: str) -> str:
        tenant = self.find_tenant(key)
        return tenant.tenant_id if tenant else key

    # -- authority -----------------------------------------------------------------------------

    async def _openid(self, request: web.Request) -> web.Response:
        key = request.match_info["tenant"]
        status, body = self.authority.openid_configuration(key)
        return self._json(request, status, body, self._tenant_id_of(key))

    async def _keys(self, request: web.Request) -> web.Response:
        key = request.match_info["tenant"]
        status, body = self.authority.keys(key)
        return self._json(request, status, body, self._tenant_id_of(key))

    async def _token(self, request: web.Request) -> web.Response:
        key = request.match_info["tenant"]
        text = await request.text()
        form = dict(parse_qsl(text, keep_blank_values=True))
        status, body = self.authority.token(key, form)
        return self._json(request, status, body, self._tenant_id_of(key))

    # -- control surface -----------------------------------------------------------------------

    def _sim_tenant(self, request: web.Request) -> SimTenant:
        tenant = self.find_tenant(request.match_info["tenant"])
        if tenant is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "unknown tenant"}), content_type="application/json"
            )
        return tenant

    async def _sim_list(self, request: web.Request) -> web.Response:
        body = {"tenants": [t.summary() for t in self.tenants.values()]}
        return self._json(request, 200, body, None)

    async def _sim_summary(self, request: web.Request) -> web.Response:
        tenant = self._sim_tenant(request)
        return self._json(request, 200, tenant.summary(), tenant.tenant_id)

    async def _sim_body(self, request: web.Request) -> dict[str, Any]:
        text = await request.text()
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "body must be a JSON object"}),
                content_type="application/json",
            )
        return body

    async def _sim_action(self, request: web.Request) -> web.Response:
        tenant = self._sim_tenant(request)
        action = request.match_info["action"]
        body = await self._sim_body(request)
        try:
            if action == "delete":
                tenant.delete_tenant()
            elif action == "sync" and isinstance(body.get("enabled"), bool):
                tenant.set_sync(body["enabled"])
            elif action == "advance" and isinstance(body.get("seconds"), int | float):
                tenant.advance(float(body["seconds"]))
            elif action in ("sync", "advance"):
                field = "enabled (boolean)" if action == "sync" else "seconds (number)"
                return self._json(request, 400, {"error": f"{field} required"}, tenant.tenant_id)
            else:
                return self._json(request, 404, {"error": "unknown action"}, tenant.tenant_id)
        except SimError as err:
            body = {"error": err.message, "reasons": err.reasons}
            return self._json(request, 409, body, tenant.tenant_id)
        return self._json(request, 200, tenant.summary(), tenant.tenant_id)

    async def _sim_sub(self, request: web.Request) -> web.Response:
        tenant = self._sim_tenant(request)
        sub_id, action = request.match_info["sub"], request.match_info["action"]
        if action not in ("cancel", "delete"):
            return self._json(request, 404, {"error": "unknown action"}, tenant.tenant_id)
        if sub_id not in tenant.subscriptions:
            return self._json(request, 404, {"error": "unknown subscription"}, tenant.tenant_id)
        try:
            if action == "cancel":
                tenant.cancel_subscription(sub_id)
            else:
                tenant.delete_subscription(sub_id)
        except SimError as err:
            body = {"error": err.message, "reasons": err.reasons}
            return self._json(request, 409, body, tenant.tenant_id)
        return self._json(request, 200, tenant.subscriptions[sub_id], tenant.tenant_id)

    # -- Graph ---------------------------------------------------------------------------------

    async def _graph_entry(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        parts = [unquote(p) for p in raw_path.split("/")[1:]]
        version, path = parts[0], "/" + "/".join(parts[1:])
        crid = request.headers.get("client-request-id") or str(uuid.uuid4())
        tenant_id: str | None = None
        try:
            if version not in VERSIONS:
                raise bad_request(f"Invalid version: {version}")
            req = GraphRequest(request.method, version, path, parse_query(raw_query), None, crid)
            tenant, caller = self.authority.verify(request.headers.get("Authorization"))
            tenant_id = tenant.tenant_id
            fault = self.faults.take(request.method, f"/{version}{path}", in_batch=False)
            if fault is not None and fault.kind == "drop":
                self._record(request.method, request.path_qs, tenant_id, 0)
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("simulated dropped connection")
            if fault is not None:
                resp = self._fault_response(fault, crid)
            elif req.segments == ["$batch"]:
                resp = await self._batch(request, tenant, caller, version, crid)
            else:
                req.body = await self._request_json(request)
                resp = await self._serve(tenant, caller, req)
        except GraphError as err:
            resp = error_response(err, crid)
        self._record(request.method, request.path_qs, tenant_id, resp.status)
        headers = {
            "request-id": str(uuid.uuid4()),
            "client-request-id": crid,
            "x-ms-ags-diagnostic": _DIAGNOSTIC,
            "Cache-Control": "no-cache",
            "Strict-Transport-Security": "max-age=31536000",
            **resp.headers,
        }
        if resp.body is None:
            return web.Response(status=resp.status, headers=headers)
        headers["Content-Type"] = JSON_TYPE + ";charset=utf-8"
        headers["OData-Version"] = "4.0"
        return web.Response(status=resp.status, body=json.dumps(resp.body), headers=headers)

    async def _request_json(self, request: web.Request) -> Any:
        text = await request.text()
        if not text.strip():
            return None
        if "json" not in request.content_type:
            raise bad_request(_PAYLOAD_ERROR)
        try:
            return json.loads(text)
        except ValueError:
            raise bad_request(_PAYLOAD_ERROR) from None

    def _fault_response(self, fault: FaultRule, crid: str) -> GraphResponse:
        if fault.status == 429:
            headers = (
                {}
                if fault.retry_after is None
                else {"Retry-After": format_seconds(fault.retry_after)}
            )
            body = error_body("TooManyRequests", "Too many requests. Please retry later.", crid)
            return GraphResponse(429, body, headers)
        messages = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable"}
        code = messages.get(fault.status, "UnknownError")
        return GraphResponse(fault.status, error_body(code, "The service is unavailable.", crid))

    async def _serve(
        self, tenant: SimTenant, caller: Caller, req: GraphRequest, *, in_batch: bool = False
    ) -> GraphResponse:
        """One Graph call after authentication: faults (in batches), route, gate, throttle, act."""
        try:
            if in_batch:
                fault = self.faults.take(req.method, f"/{req.version}{req.path}", in_batch=True)
                if fault is not None:
                    return self._fault_response(fault, req.client_request_id)
            handler = self._graph.route(req)
            write = req.method != "GET"
            if write:
                await self._gate.admit()
            tenant.tick()
            throttled, headers = self._throttle(tenant, req, write)
            if throttled is not None:
                return throttled
            resp = handler(tenant, caller, req)
            if write and resp.status < 300:
                self._gate.succeeded()
            resp.headers.update(headers)
            return resp
        except GraphError as err:
            return error_response(err, req.client_request_id)

    def _budgets(self, tenant: SimTenant) -> tuple[tuple[int, float], tuple[int, float]]:
        reads = tenant.read_budget or (
            _read_limit(len(tenant.users)),
            READ_WINDOW / self.time_scale,
        )
        writes = tenant.write_budget or (WRITE_LIMIT, WRITE_WINDOW / self.time_scale)
        return reads, writes

    def _throttle(
        self, tenant: SimTenant, req: GraphRequest, write: bool
    ) -> tuple[GraphResponse | None, dict[str, str]]:
        """Spend the request's budget: (429 response, {}) or (None, headers to add)."""
        tid, crid = tenant.tenant_id, req.client_request_id
        if is_ca_path(req):
            interval = tenant.ca_interval
            gate = self._ca.setdefault(tid, Interval(self.clock))
            if not gate.take(1.0 / self.time_scale if interval is None else interval):
                body = error_body("TooManyRequests", "Too many requests.", crid)
                return GraphResponse(429, body), {}
        reads = self._reads.setdefault(tid, SlidingWindow(self.clock))
        writes = self._writes.setdefault(tid, SlidingWindow(self.clock))
        (r_limit, r_window), (w_limit, w_window) = self._budgets(tenant)
        cost = resource_units(req)
        checks = [(reads, cost, r_limit, r_window, "ResourceUnitLimitExceeded", "Read")]
        if write:
            checks.append((writes, 1, w_limit, w_window, "WriteLimitExceeded", "ReadWrite"))
        for window, units, limit, span, reason, scope in checks:
            wait = window.wait_for(units, limit, span)
            if wait is not None:
                usage = min(window.usage(limit, span) + units / limit, 1.8)
                headers = {
                    "Retry-After": format_seconds(wait),
                    "x-ms-throttle-limit-percentage": f"{usage:.2f}",
                    "x-ms-throttle-scope": f"Tenant_Application/{scope}/{tid}/{tenant.client_id}",
                    "x-ms-throttle-information": reason,
                }
                message = "Too many requests. Please retry after the time in Retry-After."
                return GraphResponse(429, error_body("TooManyRequests", message, crid), headers), {}
        usage = 0.0
        for window, units, limit, span, _, _ in checks:
            window.spend(units)
            usage = max(usage, window.usage(limit, span))
        headers = {"x-ms-resource-unit": str(cost)}
        if usage > 0.8:
            headers["x-ms-throttle-limit-percentage"] = f"{min(usage, 1.8):.2f}"
        return None, headers

    # -- $batch --------------------------------------------------------------------------------

    def _batch_items(self, body: Any) -> list[dict[str, Any]]:
        """Validate a JSON batch the way Graph does before running any of it."""
        invalid = bad_request("Invalid batch payload format.")
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise invalid
        items = body["requests"]
        if not items:
            raise invalid
        if len(items) > MAX_BATCH:
            raise bad_request(
                f"The number of requests in a batch exceeds the limit of {MAX_BATCH}."
            )
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) and item[k] for k in ("id", "method", "url")
            ):
                raise invalid
            if item["method"].upper() not in _BATCH_METHODS:
                raise bad_request(f"Invalid HTTP method '{item['method']}' in batch request.")
            if item["id"] in seen:
                raise bad_request(f"Batch request ids must be unique: '{item['id']}' repeats.")
            depends = item.get("dependsOn", [])
            if not isinstance(depends, list) or any(d not in seen for d in depends):
                raise bad_request(
                    f"Request '{item['id']}' depends on a request id that does not precede it."
                )
            headers = item.get("headers", {})
            if not isinstance(headers, dict):
                raise invalid
            has_type = any(k.lower() == "content-type" for k in headers)
            needs_body = item["method"].upper() in ("POST", "PATCH", "PUT")
            if ("body" in item and not has_type) or (needs_body and "body" not in item):
                raise bad_request(
                    f"Write request id : {item['id']} does not contain Content-Type header or body."
                )
            seen.add(item["id"])
        return items

    async def _batch(
        self, request: web.Request, tenant: SimTenant, caller: Caller, version: str, crid: str
    ) -> GraphResponse:
        if request.method != "POST":
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        items = self._batch_items(await self._request_json(request))
        statuses: dict[str, int] = {}
        responses = []
        for item in items:
            headers = {k.lower(): str(v) for k, v in item.get("headers", {}).items()}
            sub_crid = headers.get("client-request-id", crid)
            url: str = item["url"]
            path, _, query = url.partition("?")
            path = "/" + "/".join(unquote(p) for p in path.lstrip("/").split("/"))
            req = GraphRequest(
                item["method"].upper(), version, path, {}, item.get("body"), sub_crid
            )
            if any(not 200 <= statuses[d] < 300 for d in item.get("dependsOn", [])):
                message = "The request depends on a request that failed."
                resp = GraphResponse(424, error_body("FailedDependency", message, sub_crid))
            elif "://" in url:
                message = "Invalid request URL: batch requests take URLs relative to the version."
                resp = error_response(bad_request(message), sub_crid)
            else:
                try:
                    req.query = parse_query(query)
                    resp = await self._serve(tenant, caller, req, in_batch=True)
                except GraphError as err:
                    resp = error_response(err, sub_crid)
            self._record(
                req.method,
                f"/{version}{url if url.startswith('/') else '/' + url}",
                tenant.tenant_id,
                resp.status,
                batch=True,
            )
            statuses[item["id"]] = resp.status
            entry: dict[str, Any] = {
                "id": item["id"],
                "status": resp.status,
                "headers": {"Cache-Control": "no-cache", **resp.headers},
            }
            if resp.body is not None:
                entry["headers"]["Content-Type"] = JSON_TYPE + ";charset=utf-8"
                entry["body"] = resp.body
            responses.append(entry)
        return GraphResponse(200, {"responses": responses})
