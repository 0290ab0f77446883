"""The simulated Microsoft cloud: one HTTPS aiohttp server on 127.0.0.1 that is the login
authority and Microsoft Graph for any number of tenants, plus a JSON control surface for a
scripted admin. Throttling, injected faults and the write gate apply to every Graph call.

Reached at its 127.0.0.1 URL, Resource Manager is under `/arm` and Partner Center under
`/partnercenter`. Reached through a proxy (simulator/proxy.py) under a real host name, it
routes by the Host header (simulator/microsoft/hosts.py): each national cloud's authority,
Graph and Resource Manager hosts, and Partner Center's, all on its certificate.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from simulator.microsoft import graph_api, permissions
from simulator.microsoft.authority import Authority, register_certificate
from simulator.microsoft.azure import AzureEstate, AzureRefused
from simulator.microsoft.azure import handle as azure_handle
from simulator.microsoft.graph_batch import run_batch, validate_batch
from simulator.microsoft.graph_data import DEFAULT_APP_ROLES, ROLE_IDS, SimError, SimTenant
from simulator.microsoft.graph_lag import ReplicaLag
from simulator.microsoft.graph_odata import (
    JSON_TYPE,
    PAYLOAD_ERROR,
    Caller,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    error_response,
    parse_query,
)
from simulator.microsoft.graph_throttle import Faults, Throttler, WriteGate, fault_response
from simulator.microsoft.hosts import HOST_ROLES, Role, real_host
from simulator.microsoft.partner_center import partner_get, partner_patch
from simulator.microsoft.reports import Reports, is_report_call
from simulator.tls import create_server_tls

__all__ = ["Faults", "MicrosoftSimulator", "RequestRecord", "SimError", "SimTenant"]

VERSIONS = ("v1.0", "beta")
_DIAGNOSTIC = (
    '{"ServerInfo":{"DataCenter":"Simulated","Slice":"E","Ring":"1","RoleInstance":"SIM"}}'
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
        self.throttler = Throttler(clock, time_scale)
        self.reports = Reports(lambda: self.base_url, clock)  # usage reports' downloads
        self._gate = WriteGate()
        # Entra's eventual consistency: reads after a write may show the old state (graph_lag).
        self.lag = ReplicaLag(clock)
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
        azure_subscriptions: int = 0,
        app_is_azure_owner: bool = True,
        app_home_tenant_id: str | None = None,
    ) -> SimTenant:
        """Create a tenant. `users` counts every active account, the retained admin included;
        `guests` (default a tenth) are among them. `client_certificate` (PEM) registers a
        certificate credential on the bot's app next to its secret."""
        unknown = app_directory_roles - set(ROLE_IDS)
        if unknown:
            raise ValueError(
                f"unknown directory roles {sorted(unknown)}; known: {sorted(ROLE_IDS)}"
            )
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
            app_home_tenant_id=app_home_tenant_id,
        )
        if tenant.tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant.tenant_id} already exists")
        if client_certificate is not None:
            register_certificate(tenant, client_certificate)
        tenant.azure = AzureEstate(app_is_owner=app_is_azure_owner, now=tenant.now)
        tenant.azure.seed(tenant.tenant_id, azure_subscriptions, seed)
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
        tls = create_server_tls(dns_names=HOST_ROLES)
        self.ca_file = tls.ca_file
        app = web.Application()
        # Real host names first: a domain's sub-application only matches its Host header.
        for host, role in HOST_ROLES.items():
            app.add_domain(host, self._host_app(role))
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/_sim/tenants", self._sim_list)
        app.router.add_get("/_sim/tenants/{tenant}", self._sim_summary)
        app.router.add_post("/_sim/tenants/{tenant}/{action}", self._sim_action)
        app.router.add_post("/_sim/tenants/{tenant}/subscriptions/{sub}/{action}", self._sim_sub)
        app.router.add_get("/_sim/reports/{token}", self._report_download)
        app.router.add_route("*", "/arm/{tail:.*}", self._arm_entry)
        for method in ("GET", "PATCH"):
            app.router.add_route(
                method,
                "/partnercenter/v1/customers/{customer}/subscriptions/{sub}",
                self._partner_entry,
            )
        app.router.add_route("*", "/{tail:.*}", self._graph_entry)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls.ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"https://127.0.0.1:{port}"

    def _host_app(self, role: Role) -> web.Application:
        """The routes served on one real host name."""
        app = web.Application()
        if role == "authority":
            app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
            app.router.add_get("/{tenant}/discovery/v2.0/keys", self._keys)
            app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        elif role == "arm":
            app.router.add_route("*", "/{tail:.*}", self._arm_entry)
        elif role == "partnercenter":
            for method in ("GET", "PATCH"):
                app.router.add_route(
                    method, "/v1/customers/{customer}/subscriptions/{sub}", self._partner_entry
                )
        else:
            app.router.add_route("*", "/{tail:.*}", self._graph_entry)
        return app

    def _base_of(self, request: web.Request) -> str:
        """The base URL the client used: a real host's, or the 127.0.0.1 one."""
        host = real_host(request.headers.get("Host"))
        return self.base_url if host is None else f"https://{host}"

    async def stop(self) -> None:
        self._gate.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.ca_file:  # the throwaway CA's folder
            shutil.rmtree(os.path.dirname(self.ca_file), ignore_errors=True)

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
        self,
        request: web.Request,
        status: int,
        body: Any,
        tenant_id: str | None,
        extra: dict[str, str] | None = None,
    ) -> web.Response:
        self._record(request.method, request.path_qs, tenant_id, status)
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"} | (extra or {})
        return web.json_response(body, status=status, headers=headers)

    async def _arm_entry(self, request: web.Request) -> web.Response:
        """Azure Resource Manager: needs a token for the ARM audience of a live tenant."""
        try:
            tenant, _ = self.authority.verify(
                request.headers.get("Authorization"), audience="arm", base=self._real_base(request)
            )
        except GraphError as err:
            body = {"error": {"code": "InvalidAuthenticationToken", "message": err.message}}
            return self._json(request, 401, body, None)
        segments = [s for s in request.match_info["tail"].split("/") if s]
        arm_base = self._real_base(request) or f"{self.base_url}/arm"  # for nextLink
        status, body = azure_handle(
            tenant.azure, request.method, segments, dict(request.query), arm_base
        )
        return self._json(request, status, body, tenant.tenant_id)

    def _real_base(self, request: web.Request) -> str | None:
        base = self._base_of(request)
        return None if base == self.base_url else base

    async def _partner_entry(self, request: web.Request) -> web.Response:
        """Partner Center: the partner's own token (audience `{base}/partnercenter`); GET and
        PATCH of a customer's subscription (simulator/microsoft/partner_center.py)."""
        try:
            partner, _ = self.authority.verify(
                request.headers.get("Authorization"),
                audience="partnercenter",
                base=self._real_base(request),
            )
        except GraphError as err:
            return self._json(request, 401, {"code": 401, "description": err.message}, None)
        customer = self.tenants.get(request.match_info["customer"])
        if customer is None or customer.deleted:
            return self._json(request, 404, {"code": 800002, "description": "No customer."}, None)
        fault = customer.partner_center.take_fault(request.method)  # throttled, or down
        if fault is not None:
            return self._json(request, fault[0], fault[1], customer.tenant_id, fault[2])
        sub = request.match_info["sub"]
        if request.method == "GET":
            status, answer = partner_get(customer, partner.tenant_id, sub)
            return self._json(request, status, answer, customer.tenant_id)
        try:
            body = await request.json()
        except ValueError:
            body = None
        status, answer = partner_patch(
            customer, partner.tenant_id, sub, body, request.headers.get("If-Match")
        )
        return self._json(request, status, answer, customer.tenant_id)

    def _tenant_id_of(self, key: str) -> str:
        tenant = self.find_tenant(key)
        return tenant.tenant_id if tenant else key

    # -- authority -----------------------------------------------------------------------------

    async def _openid(self, request: web.Request) -> web.Response:
        key = request.match_info["tenant"]
        status, body = self.authority.openid_configuration(key, self._base_of(request))
        return self._json(request, status, body, self._tenant_id_of(key))

    async def _keys(self, request: web.Request) -> web.Response:
        key = request.match_info["tenant"]
        status, body = self.authority.keys(key)
        return self._json(request, status, body, self._tenant_id_of(key))

    async def _token(self, request: web.Request) -> web.Response:
        key = request.match_info["tenant"]
        text = await request.text()
        form = dict(parse_qsl(text, keep_blank_values=True))
        status, body = self.authority.token(key, form, self._base_of(request))
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
            elif action == "purge-application" and isinstance(body.get("id"), str):
                # Entra admin center > App registrations > Deleted applications > Delete
                # permanently (the bot cannot purge its own application: it has no access then).
                if body["id"] not in tenant.deleted_applications:
                    raise SimError(f"No deleted application {body['id']}.")
                tenant.purge_application(body["id"])
            elif action == "purge-deleted" and isinstance(body.get("id"), str):
                # What a Global Administrator's checklist asks: an application or a service
                # principal permanently deleted from the recycle bin (deleted service principals
                # are not shown in the admin center: Graph Explorer or PowerShell,
                # MicrosoftDocs/entra-docs docs/identity/enterprise-apps/delete-recover-faq.yml).
                if body["id"] in tenant.deleted_applications:
                    tenant.purge_application(body["id"])
                elif body["id"] in tenant.deleted_service_principals:
                    tenant.purge_service_principal(body["id"])
                else:
                    raise SimError(f"No deleted application or service principal {body['id']}.")
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
        if action not in ("cancel", "delete", "reactivate"):
            return self._json(request, 404, {"error": "unknown action"}, tenant.tenant_id)
        sub = tenant.find_subscription(sub_id)
        if sub is None and action == "delete" and tenant.azure.find(sub_id) is not None:
            try:  # the admin deletes a cancelled Azure subscription in the Azure portal
                azure_sub = tenant.azure.delete(sub_id)
            except AzureRefused as err:
                return self._json(request, 409, {"error": str(err)}, tenant.tenant_id)
            return self._json(request, 200, azure_sub, tenant.tenant_id)
        if sub is None:
            return self._json(request, 404, {"error": "unknown subscription"}, tenant.tenant_id)
        try:
            if action == "cancel":
                tenant.cancel_subscription(sub_id)
            elif action == "reactivate":
                tenant.reactivate_subscription(sub_id)
            else:
                tenant.delete_subscription(sub_id)
        except SimError as err:
            body = {"error": err.message, "reasons": err.reasons}
            return self._json(request, 409, body, tenant.tenant_id)
        return self._json(request, 200, sub, tenant.tenant_id)

    async def _report_download(self, request: web.Request) -> web.Response:
        """A usage report's preauthenticated download URL: no Authorization header needed
        (simulator/microsoft/reports.py)."""
        data = self.reports.download(
            request.match_info["token"], request.headers.get("Authorization")
        )
        self._record(request.method, request.path, None, 404 if data is None else 200)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

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
            query = parse_query(raw_query)
            base = self._base_of(request)
            req = GraphRequest(request.method, version, path, query, None, crid, base)
            tenant, caller = self.authority.verify(request.headers.get("Authorization"), base=base)
            tenant_id = tenant.tenant_id
            fault = self.faults.take(request.method, f"/{version}{path}", in_batch=False)
            if fault is not None and fault.kind == "drop":
                self._record(request.method, request.path_qs, tenant_id, 0)
                request.protocol.force_close()  # the client sees the connection go, no answer
                return web.Response(status=500)
            if fault is not None:
                resp = fault_response(fault, crid)
            elif req.segments == ["$batch"]:
                resp = await self._batch(request, tenant, caller, req)
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
            raise bad_request(PAYLOAD_ERROR)
        try:
            return json.loads(text)
        except ValueError:
            raise bad_request(PAYLOAD_ERROR) from None

    async def _serve(
        self, tenant: SimTenant, caller: Caller, req: GraphRequest, *, in_batch: bool = False
    ) -> GraphResponse:
        """One Graph call after authentication: faults (in batches), route, gate, throttle, act."""
        try:
            if in_batch:
                fault = self.faults.take(req.method, f"/{req.version}{req.path}", in_batch=True)
                if fault is not None:
                    return fault_response(fault, req.client_request_id)
            handler = self.reports.route(req) if is_report_call(req) else graph_api.route(req)
            permissions.require(caller, req)  # the docs' Application permissions for the call
            write = req.method != "GET"
            if write:
                await self._gate.admit()
            tenant.tick()
            throttled, headers = self.throttler.check(tenant, req, write)
            if throttled is not None:
                return throttled
            stale = None if write else self.lag.read(tenant.tenant_id, req)
            if stale is not None:
                stale.headers.update(headers)
                return stale
            resp = handler(tenant, caller, req)
            if write and resp.status < 300:
                self._gate.succeeded()
                self.lag.wrote()
            elif not write:
                self.lag.served(tenant.tenant_id, req, resp)
            resp.headers.update(headers)
            return resp
        except GraphError as err:
            return error_response(err, req.client_request_id)

    async def _batch(
        self, request: web.Request, tenant: SimTenant, caller: Caller, req: GraphRequest
    ) -> GraphResponse:
        if request.method != "POST":
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        items = validate_batch(await self._request_json(request))

        async def serve(sub: GraphRequest) -> GraphResponse:
            return await self._serve(tenant, caller, sub, in_batch=True)

        def record(method: str, path: str, status: int) -> None:
            self._record(method, path, tenant.tenant_id, status, batch=True)

        return await run_batch(
            items,
            version=req.version,
            client_request_id=req.client_request_id,
            base=req.base,
            serve=serve,
            record=record,
        )
