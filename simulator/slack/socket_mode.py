"""Slack's Socket Mode, simulated: `apps.connections.open` hands an app-level token a one-use
ws:// URL; the websocket there says hello, carries envelopes (events_api, slash_commands,
interactive) to the app and waits for each one's ack, as wss-primary.slack.com does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from simulator.slack.state import JSON

APP_TOKEN_PREFIX = "xapp-"
APP_TOKEN_SCOPES = frozenset({"connections:write"})
MAX_CONNECTIONS = 10  # Slack allows an app ten open Socket Mode connections
HOST = "applink-sim"

# Interactive payload types, and those whose ack may carry the answer (options, view errors).
INTERACTIVE_TYPES = frozenset(
    {
        "block_actions",
        "block_suggestion",
        "dialog_cancellation",
        "dialog_submission",
        "dialog_suggestion",
        "interactive_message",
        "message_action",
        "shortcut",
        "view_closed",
        "view_submission",
    }
)
ANSWERED_INTERACTIVE_TYPES = frozenset({"block_suggestion", "dialog_suggestion", "view_submission"})


def envelope_type(payload: JSON) -> tuple[str, bool]:
    """The Socket Mode envelope type that carries `payload`, and whether its ack may answer."""
    if "command" in payload and "response_url" in payload:
        return "slash_commands", True
    kind = payload.get("type")
    if kind == "event_callback":
        return "events_api", False
    if kind in INTERACTIVE_TYPES:
        return "interactive", kind in ANSWERED_INTERACTIVE_TYPES
    raise ValueError(
        f"Socket Mode carries event_callback, slash command and interactive payloads, not {kind!r}"
    )


@dataclass
class SocketConnection:
    """One app connection to the Socket Mode endpoint."""

    id: int
    ws: web.WebSocketResponse
    ready: bool = False  # hello sent: envelopes may go out on it
    draining: bool = False  # told to disconnect: no new envelopes, acks still count
    envelopes: int = 0  # envelopes sent on it

    @property
    def usable(self) -> bool:
        return self.ready and not self.draining and not self.ws.closed


@dataclass
class SocketDelivery:
    """What became of one envelope: the app's ack payload ({} for a bare ack), if it acked."""

    envelope_id: str
    frame: JSON  # the envelope as sent
    ack: JSON | None = None
    timed_out: bool = False


@dataclass
class _Pending:
    future: asyncio.Future[JSON]
    connection: int = 0


@dataclass
class SocketModeServer:
    """The Socket Mode side of the simulator: tickets, connections, envelopes and their acks."""

    app_id: str
    notify: Callable[[], None]  # the workspace's change signal
    base_url: str = ""  # "ws://127.0.0.1:PORT", set once the simulator listens
    connections: list[SocketConnection] = field(default_factory=list)
    log: list[JSON] = field(default_factory=list)  # {"direction", "connection", "frame"}
    errors: list[str] = field(default_factory=list)  # what Slack would not accept from the app
    # The network between the app and Slack refuses the websocket upgrade (a corporate proxy or
    # firewall that blocks WSS): apps.connections.open still answers over HTTPS, the connection
    # to its URL never opens. Not Slack's behaviour but the most common reason an app cannot
    # connect; the bot must say so in one line rather than retry forever.
    blocked: bool = False
    _tickets: set[str] = field(default_factory=set)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _next_id: int = 0
    _turn: int = 0

    # -- apps.connections.open and the endpoint --------------------------------------------------

    def open_url(self) -> str:
        """A fresh one-use websocket URL, as apps.connections.open returns."""
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        return f"{self.base_url}/link/?ticket={ticket}&app_id={self.app_id}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The websocket endpoint: a valid ticket gets hello, then envelopes; acks come back."""
        ticket = request.query.get("ticket", "")
        if self.blocked:
            return web.Response(status=403, text="blocked by proxy")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid_ticket")
        self._tickets.discard(ticket)  # a URL connects once
        ws = web.WebSocketResponse()  # answers the client's pings, as Slack does
        await ws.prepare(request)
        self._next_id += 1
        conn = SocketConnection(self._next_id, ws)
        self.connections.append(conn)
        try:
            if sum(not c.ws.closed for c in self.connections) > MAX_CONNECTIONS:
                await self._send(conn, self._disconnect_frame("too_many_websockets"))
                await ws.close(code=WSCloseCode.POLICY_VIOLATION)
                return ws
            await self._send(conn, self._hello())
            conn.ready = True
            self._changed_now()
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._receive(conn, str(message.data))
                else:
                    self.errors.append(f"connection {conn.id}: a {message.type.name} frame")
                self.notify()
        finally:
            conn.ready = False
            self.connections.remove(conn)
            self._changed_now()
        return ws

    def _hello(self) -> JSON:
        return {
            "type": "hello",
            "num_connections": sum(c.usable for c in self.connections) + 1,
            "debug_info": {"host": HOST, "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }

    @staticmethod
    def _disconnect_frame(reason: str) -> JSON:
        return {"type": "disconnect", "reason": reason, "debug_info": {"host": HOST}}

    async def _send(self, conn: SocketConnection, frame: JSON) -> None:
        await conn.ws.send_str(json.dumps(frame))
        self.log.append({"direction": "sent", "connection": conn.id, "frame": frame})

    def _receive(self, conn: SocketConnection, data: str) -> None:
        """An ack from the app: `{"envelope_id": ..., "payload": {...}}` (payload optional)."""
        try:
            frame = json.loads(data)
        except ValueError:
            self.errors.append(f"connection {conn.id}: not JSON: {data[:200]!r}")
            return
        self.log.append({"direction": "received", "connection": conn.id, "frame": frame})
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        if not isinstance(envelope_id, str):
            self.errors.append(f"connection {conn.id}: not an ack: {data[:200]!r}")
            return
        payload = frame.get("payload")
        if payload is not None and not isinstance(payload, dict):
            self.errors.append(f"connection {conn.id}: ack {envelope_id} payload is not an object")
            return
        pending = self._pending.pop(envelope_id, None)
        if pending is None or pending.future.done():
            self.errors.append(f"connection {conn.id}: ack for unknown or expired {envelope_id}")
            return
        pending.future.set_result(payload or {})

    # -- delivering envelopes ----------------------------------------------------------------

    def usable(self) -> list[SocketConnection]:
        """The connections Slack would send an envelope on now."""
        return [c for c in self.connections if c.usable]

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self.notify()

    async def _connection(self) -> SocketConnection:
        """A usable connection, taking turns across them as Slack spreads envelopes."""
        while True:
            changed = self._changed
            usable = self.usable()
            if usable:
                self._turn += 1
                return usable[self._turn % len(usable)]
            await changed.wait()

    async def deliver(
        self,
        payload: JSON,
        *,
        timeout: float,  # noqa: ASYNC109 - Slack's ack deadline, passed through
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> SocketDelivery:
        """Sends `payload` in an envelope and waits up to `timeout` for the app's ack.

        Raises ConnectionError if no app connection was open within `timeout`."""
        kind, accepts = envelope_type(payload)
        envelope_id = str(uuid.uuid4())
        frame: JSON = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts,
        }
        if kind == "events_api":
            frame["retry_attempt"] = retry_attempt
            frame["retry_reason"] = retry_reason
        result = SocketDelivery(envelope_id, frame)
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[envelope_id] = pending
        try:
            async with asyncio.timeout(timeout):
                while True:
                    conn = await self._connection()
                    try:
                        await self._send(conn, frame)
                    except ConnectionError:
                        conn.ready = False  # gone mid-send; Slack tries another connection
                        continue
                    conn.envelopes += 1
                    pending.connection = conn.id
                    break
                result.ack = await pending.future
        except TimeoutError:
            if not pending.connection:
                raise ConnectionError(
                    f"no Socket Mode connection within {timeout}s: the app has not called"
                    " apps.connections.open and connected"
                ) from None
            result.timed_out = True
        finally:
            self._pending.pop(envelope_id, None)
            self.notify()
        return result

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Tells every connection to go, as Slack does before it drops one: the app should open
        a new URL; no new envelopes go out on the old connections."""
        for conn in self.usable():
            conn.draining = True
            await self._send(conn, self._disconnect_frame(reason))
        self._changed_now()

    async def close(self) -> None:
        """Closes every connection (the simulator is stopping)."""
        for conn in list(self.connections):
            conn.ready = False
            await conn.ws.close(code=WSCloseCode.GOING_AWAY)
