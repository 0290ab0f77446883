"""Slack's side of the bot's Request URL: signed slash commands (and their response_url) and
Events API envelopes, delivered over HTTP as Slack delivers them, or, with `socket_mode` on,
over the app's Socket Mode connection (slack_socket) with the ack in place of the HTTP answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from simulator.slack.blocks import Invalid, check_blocks, check_metadata
from simulator.slack.socket_mode import APP_TOKEN_PREFIX, SocketModeServer
from simulator.slack.state import JSON, SimUser, Workspace

RESPONSE_URL_USES = 5  # Slack allows five responses per response_url ...
RESPONSE_URL_TTL = 30 * 60  # ... within thirty minutes


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """`X-Slack-Signature` as Slack computes it: v0=hex(hmac_sha256(secret, "v0:ts:body"))."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class SlashResult:
    """What became of one slash command: the bot's immediate answer, then its later responses."""

    status: int  # HTTP status of the answer (200 for a socket ack); 0 if none in ack_timeout
    body: str
    ack: JSON | None  # the answer's JSON object, or {"text": body} for plain text; None if empty
    response_url: str
    trigger_id: str
    responses: list[JSON] = field(default_factory=list)  # response_url deliveries, as they arrive
    timed_out: bool = False
    envelope_id: str | None = None  # the Socket Mode envelope that carried it, if one did


@dataclass
class EventResult:
    """The bot's answer to one delivery to its Request URL."""

    status: int  # HTTP status (200 for a socket ack); 0 if no answer within ack_timeout
    body: str
    event_id: str | None
    envelope: JSON | None  # what was sent, parsed; pass it to deliver() to redeliver
    timed_out: bool = False
    envelope_id: str | None = None  # the Socket Mode envelope that carried it, if one did
    delivered: bool = True  # False when Slack sends the app nothing (it is not in the channel)


@dataclass
class _ResponseTarget:
    result: SlashResult
    user: str
    channel: str
    created: float
    uses: int = 0


class Delivery(Workspace):
    """Sends what Slack sends to the bot's Request URL and takes what comes back."""

    def _init_delivery(
        self, ack_timeout: float, *, app_token: str = "xapp-1-sim", socket_mode: bool = False
    ) -> None:
        if not app_token.startswith(APP_TOKEN_PREFIX):
            raise ValueError(f"an app-level token starts with {APP_TOKEN_PREFIX!r}")
        self.request_url: str | None = None  # the bot's Request URL (".../slack/events")
        self.app_token = app_token  # the app-level token that may call apps.connections.open
        self.socket_mode = socket_mode  # Socket Mode on: deliveries go over the websocket
        self.sockets = SocketModeServer(self.app_id, self.notify)
        self.ack_timeout = ack_timeout  # Slack gives up on the bot's answer after 3 s
        self.verification_token = "sim-verification-token"  # the deprecated `token` field
        self._session: aiohttp.ClientSession | None = None
        self._response_targets: dict[str, _ResponseTarget] = {}
        self._event_seq = 0

    async def _send(
        self,
        body: bytes,
        *,
        content_type: str,
        sign: bool = True,
        timestamp: int | None = None,
        headers: dict[str, str | None] | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> tuple[int, str, str, bool]:
        """POSTs to the Request URL as Slack does; (status, body, content type, timed out)."""
        request_url = self._require_request_url()
        if self._session is None:
            raise RuntimeError("start the simulator first")
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sent: dict[str, str] = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
        }
        if sign:
            sent["X-Slack-Signature"] = slack_signature(self.signing_secret, ts, body)
        if retry_num is not None:
            sent["X-Slack-Retry-Num"] = str(retry_num)
            sent["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        elif retry_reason is not None:
            sent["X-Slack-Retry-Reason"] = retry_reason
        for name, value in (headers or {}).items():
            for existing in [k for k in sent if k.lower() == name.lower()]:
                del sent[existing]
            if value is not None:
                sent[name] = value
        try:
            async with self._session.post(
                request_url,
                data=body,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=self.ack_timeout),
            ) as resp:
                return resp.status, await resp.text(), resp.content_type, False
        except TimeoutError:
            return 0, "", "", True

    async def deliver(
        self,
        body: bytes | dict[str, Any],
        *,
        headers: dict[str, str | None] | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        sign: bool = True,
        timestamp: int | None = None,
        content_type: str = "application/json",
    ) -> EventResult:
        """Delivers a raw body to the Request URL; `headers` override (None removes one).

        With `socket_mode` on, the body (a JSON object) goes out in a Socket Mode envelope
        instead, `retry_num`/`retry_reason` as its retry_attempt/retry_reason; the HTTP-only
        options (headers, sign, timestamp, content_type) are refused there."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        envelope: JSON | None = body if isinstance(body, dict) else None
        if envelope is None:
            try:
                parsed = json.loads(raw)
                envelope = parsed if isinstance(parsed, dict) else None
            except ValueError:
                envelope = None
        if self.socket_mode:
            http_only = headers is not None or not sign or timestamp is not None
            if http_only or content_type != "application/json":
                raise ValueError("headers, sign, timestamp and content_type are HTTP-only")
            if envelope is None:
                raise ValueError("Socket Mode carries JSON objects only")
            return await self._deliver_socket(envelope, retry_num, retry_reason)
        status, text, _, timed_out = await self._send(
            raw,
            content_type=content_type,
            sign=sign,
            timestamp=timestamp,
            headers=headers,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )
        event_id = envelope.get("event_id") if envelope else None
        return EventResult(status, text, event_id, envelope, timed_out)

    async def _deliver_socket(
        self, envelope: JSON, retry_num: int | None, retry_reason: str | None
    ) -> EventResult:
        sent = await self.sockets.deliver(
            envelope,
            timeout=self.ack_timeout,
            retry_attempt=retry_num or 0,
            retry_reason=retry_reason or ("timeout" if retry_num else ""),
        )
        status = 0 if sent.ack is None else 200
        body = json.dumps(sent.ack) if sent.ack else ""
        event_id = envelope.get("event_id")
        return EventResult(status, body, event_id, envelope, sent.timed_out, sent.envelope_id)

    def _new_event_id(self) -> str:
        self._event_seq += 1
        return f"Ev{self._event_seq:04d}{secrets.token_hex(3).upper()}"

    def envelope(self, event: JSON, *, event_id: str | None = None) -> JSON:
        """An event_callback envelope around `event`, as the Events API sends it."""
        context = {"id": self.team_id, "app": self.app_id, "seq": self._event_seq}
        return {
            "token": self.verification_token,
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or self._new_event_id(),
            "event_time": int(self.clock()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + base64.urlsafe_b64encode(json.dumps(context).encode()).decode(),
        }

    def _require_request_url(self) -> str:
        if self.request_url is None:
            raise RuntimeError("set sim.request_url to the bot's Request URL first")
        return self.request_url

    def _active_user(self, user_id: str) -> SimUser:
        user = self.users.get(user_id)
        if user is None or user.deleted:
            raise ValueError(f"{user_id} is not an active member of the workspace")
        return user

    async def slash_command(
        self,
        *,
        user_id: str,
        text: str,
        channel_id: str = "C0PROGRESS",
        command: str = "/close-account",
    ) -> SlashResult:
        """A member types `command text` in a channel: Slack POSTs the signed form (or sends its
        fields in a slash_commands envelope), shows the immediate answer (the HTTP answer, or
        the ack's payload), and accepts later responses at the response_url."""
        user = self._active_user(user_id)
        if channel_id not in self.channels:
            raise ValueError(f"no channel {channel_id}")
        key = secrets.token_hex(12)
        response_url = f"{self.base_url}/response/{key}"
        trigger_id = f"{int(self.clock())}.{self._event_seq}.{secrets.token_hex(16)}"
        form = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self.channels[channel_id],
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
        result = SlashResult(0, "", None, response_url, trigger_id)
        self._response_targets[key] = _ResponseTarget(result, user.id, channel_id, self.clock())
        if self.socket_mode:
            sent = await self.sockets.deliver(form, timeout=self.ack_timeout)
            result.envelope_id, result.timed_out = sent.envelope_id, sent.timed_out
            if sent.ack is not None:
                result.status, result.body = 200, (json.dumps(sent.ack) if sent.ack else "")
                result.ack = sent.ack or None  # the ack's payload is the immediate answer
            if result.ack and (result.ack.get("text") or result.ack.get("blocks")):
                self._show(result.ack, user.id, channel_id, source="ack")
            self.notify()
            return result
        status, body, content_type, timed_out = await self._send(
            urlencode(form).encode(), content_type="application/x-www-form-urlencoded"
        )
        result.status, result.body, result.timed_out = status, body, timed_out
        if status == 200 and body.strip():
            result.ack = {"text": body}
            if content_type == "application/json" or body.lstrip().startswith("{"):
                try:
                    parsed = json.loads(body)
                    result.ack = parsed if isinstance(parsed, dict) else {"text": body}
                except ValueError:
                    pass
            if result.ack.get("text") or result.ack.get("blocks"):
                self._show(result.ack, user.id, channel_id, source="ack")
        self.notify()
        return result

    def _show(self, payload: JSON, user: str, channel: str, *, source: str) -> JSON:
        """Shows a command's answer: in the channel if `in_channel`, else to the user only."""
        shown: JSON = {
            "user": user,
            "channel": channel,
            "text": payload.get("text") or "",
            "blocks": payload.get("blocks") or None,
            "response_type": payload.get("response_type") or "ephemeral",
            "replace_original": bool(payload.get("replace_original")),
            "delete_original": bool(payload.get("delete_original")),
            "thread_ts": None,
            "source": source,
        }
        if shown["response_type"] == "in_channel":
            self.post(
                channel=channel,
                user=self.bot_user_id,
                text=shown["text"],
                blocks=shown["blocks"],
                metadata=payload.get("metadata") or None,
            )
        else:
            self.ephemerals.append(shown)
        return shown

    async def _response_url(self, request: web.Request) -> web.Response:
        target = self._response_targets.get(request.match_info["key"])
        if target is None:
            return web.Response(status=404, text="invalid_url")
        if self.clock() - target.created > RESPONSE_URL_TTL:
            return web.Response(status=404, text="expired_url")
        if target.uses >= RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        if not payload.get("delete_original"):
            if not payload.get("text") and not payload.get("blocks"):
                return web.Response(status=400, text="no_text")
            try:
                if payload.get("blocks"):
                    check_blocks(payload["blocks"])
                if payload.get("metadata"):
                    payload["metadata"] = check_metadata(payload["metadata"])
            except Invalid as e:
                return web.Response(status=400, text=e.error)
        target.uses += 1
        target.result.responses.append(
            self._show(payload, target.user, target.channel, source="response_url")
        )
        self.notify()
        return web.Response(text="ok")

    async def react(
        self,
        *,
        user_id: str,
        channel: str,
        ts: str,
        name: str,
        remove: bool = False,
        event_id: str | None = None,
    ) -> EventResult:
        """A member adds (or removes) a reaction in the Slack client: the message keeps it and
        the bot gets a reaction_added (reaction_removed) event, signed or over its socket."""
        self._active_user(user_id)
        if not self.socket_mode:
            self._require_request_url()
        msg = self.message(channel, ts)
        if msg is None or msg.tombstone:
            raise ValueError(f"no message {ts} in {channel} (never posted, or deleted)")
        changed = (
            self.remove_reaction(msg, name, user_id)
            if remove
            else self.add_reaction(msg, name, user_id)
        )
        if not changed:
            state = "has no" if remove else "already has"
            raise ValueError(f"{user_id} {state} :{name}: on {ts}; redeliver with deliver()")
        event = {
            "type": "reaction_removed" if remove else "reaction_added",
            "user": user_id,
            "reaction": name,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "item_user": msg.user,
            "event_ts": self.next_ts(),
        }
        if not self.bot_in(channel):
            # A bot gets a channel's events only while it is a member of the channel (the
            # Events API docs' event subscriptions, as for reaction_added): the reaction
            # stays on the message, the bot hears nothing.
            return EventResult(0, "", None, None, delivered=False)
        return await self.deliver(self.envelope(event, event_id=event_id))

    async def open_home(self, user_id: str) -> EventResult:
        """A member opens the app's Home tab: the bot gets app_home_opened."""
        self._active_user(user_id)
        event: JSON = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": "D" + user_id[1:],
            "tab": "home",
            "event_ts": self.next_ts(),
        }
        if user_id in self.home_views:
            event["view"] = self.home_views[user_id]
        return await self.deliver(self.envelope(event))
