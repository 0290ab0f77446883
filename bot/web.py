"""The bot's HTTP server: Slack's deliveries at /slack/events (signature first, then Bolt),
readiness at /healthz, liveness at /livez, Prometheus metrics at /metrics."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_sdk.signature import SignatureVerifier

if TYPE_CHECKING:
    from bot.service import Service

log = logging.getLogger("close_account_bot.service")


def well_formed(body: bytes, content_type: str) -> bool:
    """Whether a signed body has the shape of a Slack delivery (Bolt assumes it does)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if content_type == "application/json":
        try:
            envelope = json.loads(text)
        except ValueError:
            return False
        if not isinstance(envelope, dict):
            return False
        authorizations = envelope.get("authorizations", [])
        return isinstance(envelope.get("event", {}), dict) and (
            isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
        )
    if "payload=" in text:  # interactivity: a form field holding JSON
        payload = parse_qs(text).get("payload", ["{}"])[0]
        try:
            return isinstance(json.loads(payload), dict)
        except ValueError:
            return False
    return True


def build_web(service: Service) -> web.Application:
    # Socket Mode has no signing secret (and slack-sdk refuses an empty one): its requests come
    # over the websocket, and there is no /slack/events route below to verify.
    secret = service.settings.slack.signing_secret
    verifier = (
        SignatureVerifier(secret) if secret and not service.settings.slack.app_token else None
    )

    async def slack_events(request: web.Request) -> web.StreamResponse:
        # The signature is checked on the raw bytes before anything parses them, so a forged
        # or malformed body is a 401 (or 400), never a crash.
        body = await request.read()
        assert verifier is not None  # the route exists only in HTTP mode, where config needs one
        try:
            valid = verifier.is_valid_request(body, dict(request.headers))
        except (ValueError, TypeError):
            valid = False
        if not valid:
            return web.json_response({"error": "invalid request"}, status=401)
        if not well_formed(body, request.content_type):
            log.warning("a signed but malformed request from Slack was refused")
            return web.json_response({"error": "malformed request"}, status=400)
        try:
            bolt_request = await to_bolt_request(request)
            bolt_response = await service.app.async_dispatch(bolt_request)
        except (ValueError, TypeError, AttributeError, KeyError):
            log.warning("a signed but malformed request from Slack was refused")
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(bolt_response)

    async def healthz(_: web.Request) -> web.StreamResponse:
        """Readiness: 503 with the reason while Slack or a tenant's authority is unreachable."""
        if not service.ready or service.health is None:
            return web.json_response({"ok": False, "starting": True}, status=503)
        answer = {**await service.health.check(), "open_closures": service.runner.running()}
        return web.json_response(answer, status=200 if answer["ok"] else 503)

    async def livez(_: web.Request) -> web.StreamResponse:
        """Liveness: the process serves; asks nothing of Slack, Microsoft or the database."""
        return web.json_response({"ok": True})

    async def metrics(_: web.Request) -> web.StreamResponse:
        return web.Response(
            body=service.metrics.render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    web_app = web.Application()
    # In Socket Mode Slack's requests arrive over the websocket, unsigned: an HTTP endpoint
    # would accept forged commands and votes, so there is none.
    if not service.settings.slack.app_token:
        web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/livez", livez)
    web_app.router.add_get("/metrics", metrics)
    return web_app
