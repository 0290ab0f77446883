"""Outgoing HTTPS through the configured proxy ([network] or HTTPS_PROXY/NO_PROXY).

Every aiohttp session the bot opens is made here: a middleware picks, per request, the proxy
for the request's host (or none for a no_proxy host), so Graph, Resource Manager, Partner
Center, Slack's Web API and websockets all follow one rule, whatever the caller passed and
whatever slack-sdk read from the environment itself (it reads HTTPS_PROXY but not NO_PROXY).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from yarl import URL

from bot.config import NetworkSettings

Handler = Any  # aiohttp.client_middlewares.ClientHandlerType


def proxy_middleware(network: NetworkSettings) -> Any:
    """An aiohttp client middleware that routes each request by `network`'s rule."""

    async def middleware(req: aiohttp.ClientRequest, handler: Handler) -> aiohttp.ClientResponse:
        proxy = network.proxy_for(str(req.url))
        if proxy is None:
            req.update_proxy(None, None, None)
        else:
            url = URL(proxy)
            headers = None
            if url.user is not None:
                auth = aiohttp.encode_basic_auth(url.user, url.password or "")
                headers = {"Proxy-Authorization": auth}
                url = url.with_user(None)
            req.update_proxy(url, None, headers)
        response: aiohttp.ClientResponse = await handler(req)
        return response

    return middleware


def client_session(network: NetworkSettings, **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose every request (websockets too) honours `network`."""
    return aiohttp.ClientSession(middlewares=(proxy_middleware(network),), **kwargs)


def requests_proxies(network: NetworkSettings | None, url: str) -> dict[str, str]:
    """The `proxies` argument for one requests call to `url` (MSAL's session)."""
    proxy = None if network is None else network.proxy_for(url)
    return {} if proxy is None else {"http": proxy, "https": proxy}
