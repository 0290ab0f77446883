"""The simulated Slack workspace as a real HTTP server on 127.0.0.1: the Web API the bot calls,
and (through slack_delivery) Slack's signed slash commands and events to the bot's Request URL,
or with `socket_mode` on, the same over the app's Socket Mode websocket (slack_socket).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web

from simulator.slack.blocks import Invalid
from simulator.slack.delivery import Delivery, EventResult, SlashResult, slack_signature
from simulator.slack.limits import RateLimits
from simulator.slack.render import render_channel, render_message
from simulator.slack.socket_mode import APP_TOKEN_SCOPES, SocketModeServer
from simulator.slack.state import JSON, SimMessage, SimUser
from simulator.slack.webapi import DEFAULT_BOT_SCOPES, MAX_UPLOAD_BYTES, METHODS, call

__all__ = [
    "DEFAULT_BOT_SCOPES",
    "EventResult",
    "RateLimits",
    "SimMessage",
    "SimUser",
    "SlackSimulator",
    "SlashResult",
    "SocketModeServer",
    "render_channel",
    "render_message",
    "slack_signature",
]


# Methods only an app-level token may call: they answer from the simulator, not the workspace.
APP_METHODS = frozenset({"apps.connections.open"})


@dataclass
class _Fault:
    status: int
    retry_after: int
    error: str | None
    remaining: int


def _decoded(args: JSON) -> JSON:
    """The call's arguments for `calls`, JSON-valued form fields decoded as Slack decodes them."""
    out = dict(args)
    for key in ("blocks", "metadata", "attachments", "view", "files"):
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                pass  # recorded as sent; the call itself answered the format error
    return out


class SlackSimulator(Delivery):
    """A Slack workspace on 127.0.0.1 that plays Slack to the bot; see the module docstring."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-sim-token",
        signing_secret: str = "sim-signing-secret",
        team_id: str = "T0SIM",
        users: list[SimUser] | None = None,
        channels: dict[str, str] | None = None,
        bot_scopes: frozenset[str] | None = None,
        clock: Callable[[], float] = time.time,
        ack_timeout: float = 3.0,
        app_token: str = "xapp-1-sim",
        socket_mode: bool = False,
        rate_limits: RateLimits | None = None,
    ) -> None:
        """`socket_mode=True` (or setting `sim.socket_mode` later) is the app's "Enable Socket
        Mode" switch: deliveries then go over its websocket, never to `request_url`.
        `rate_limits` enforces Slack's per-method tiers (slack_limits); None for none."""
        super().__init__(
            bot_token=bot_token,
            signing_secret=signing_secret,
            team_id=team_id,
            users=users,
            channels=channels,
            bot_scopes=DEFAULT_BOT_SCOPES if bot_scopes is None else bot_scopes,
            clock=clock,
        )
        self._init_delivery(ack_timeout, app_token=app_token, socket_mode=socket_mode)
        self.api_url = ""  # "http://127.0.0.1:PORT/api/" once started
        self._faults: dict[str, list[_Fault]] = {}
        self.rate_limits = rate_limits
        self.api_connections: set[tuple[str, int]] = set()  # client address of each Web API call
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        # aiohttp refuses bodies over 1 MiB by default (413); Slack takes files up to 1 GB.
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1_000_000)
        app.router.add_route("GET", "/api/{method}", self._api)
        app.router.add_route("POST", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{key}", self._upload)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/archives/{channel}/{p}", self._archive)
        app.router.add_get("/link/", self.sockets.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.base_url}/api/"
        self.sockets.base_url = f"ws://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        await self.sockets.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        error: str | None = None,
        count: int = 1,
    ) -> None:
        """The next `count` calls of `method` fail: with `error`, HTTP 200 `ok: false`;
        else HTTP `status` (429 carries `Retry-After: retry_after`, as Slack's rate limits do)."""
        if method not in METHODS and method not in APP_METHODS:
            raise ValueError(f"the simulator does not implement {method}")
        self._faults.setdefault(method, []).append(_Fault(status, retry_after, error, count))

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        return fault

    # -- the Web API -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.api_connections.add((str(peer[0]), int(peer[1])))
        status, headers = 200, {"X-OAuth-Scopes": ",".join(sorted(self.bot_scopes))}
        if method in METHODS and METHODS[method].scope:
            headers["X-Accepted-OAuth-Scopes"] = METHODS[method].scope or ""
        elif method in APP_METHODS:
            headers["X-Accepted-OAuth-Scopes"] = ",".join(sorted(APP_TOKEN_SCOPES))
        args: JSON = {}
        try:
            args, token = await self._read_args(request)
            if token is not None and token == self.app_token:
                headers["X-OAuth-Scopes"] = ",".join(sorted(APP_TOKEN_SCOPES))
            fault = self._take_fault(method)
            if fault is not None and fault.error is None:
                status = fault.status
                error = "ratelimited" if status == 429 else "internal_error"
                if status == 429:
                    headers["Retry-After"] = str(fault.retry_after)
                body: JSON = {"ok": False, "error": error}
            elif fault is not None:
                body = {"ok": False, "error": fault.error}
            elif method not in METHODS and method not in APP_METHODS:
                raise Invalid("unknown_method")
            elif token is None:
                raise Invalid("not_authed")
            elif token not in (self.bot_token, self.app_token):
                raise Invalid("invalid_auth")
            elif (token == self.app_token) != (method in APP_METHODS):
                raise Invalid("not_allowed_token_type")
            elif method == "apps.connections.open":
                body = {"ok": True, "url": self.sockets.open_url()}
            elif (retry_after := self._limited(method, args)) is not None:
                status, headers["Retry-After"] = 429, str(retry_after)
                body = {"ok": False, "error": "ratelimited"}
            else:
                body = call(self, method, args)
        except Invalid as e:
            body = {"ok": False, "error": e.error, **e.extra}
            if e.messages:
                body["response_metadata"] = {"messages": e.messages}
        self.calls.append(
            {
                "method": method,
                "args": _decoded(args),
                "ok": body["ok"],
                "error": body.get("error"),
                "status": status,
            }
        )
        self.notify()
        return web.json_response(body, status=status, headers=headers)

    def _limited(self, method: str, args: JSON) -> int | None:
        if self.rate_limits is None:
            return None
        return self.rate_limits.check(method, str(args.get("channel", "")))

    async def _read_args(self, request: web.Request) -> tuple[JSON, str | None]:
        """Arguments from the query string and the body, and the token, read as Slack reads them."""
        args: JSON = dict(request.query)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = json.loads(await request.read())
                except ValueError:
                    raise Invalid("invalid_json") from None
                if not isinstance(body, dict):
                    raise Invalid("invalid_json")
                body.pop("token", None)  # a JSON body's token counts only in the header
                args.update(body)
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
            else:
                raise Invalid("invalid_form_data")
        form_token = args.pop("token", None)
        if token is None and isinstance(form_token, str) and form_token:
            token = form_token
        return args, token

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.pending_uploads.get(request.match_info["key"])
        if upload is None:
            return web.Response(status=404, text="file_not_found", content_type="text/plain")
        data = b""
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader) and part.filename is not None:
                    data = await part.read()
                    break
        else:
            data = await request.read()
        if len(data) != upload["length"]:
            # The file must be the `length` declared to files.getUploadURLExternal; Slack
            # answers a failed upload with a non-200 status (the method's usage info).
            return web.Response(
                status=400,
                text=f"length mismatch: declared {upload['length']}, received {len(data)}",
                content_type="text/plain",
            )
        upload["content"] = data
        self.notify()
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _archive(self, request: web.Request) -> web.Response:
        """A permalink, served: the message as text."""
        digits = request.match_info["p"].removeprefix("p")
        msg = self.message(request.match_info["channel"], f"{digits[:-6]}.{digits[-6:]}")
        if msg is None:
            return web.Response(status=404, text="message_not_found")
        users = {uid: u.name for uid, u in self.users.items()}
        return web.Response(text=render_message(msg, users=users, channels=self.channels))
