"""Azure Resource Manager: the tenant's Azure subscriptions, listed and cancelled by API.

Azure subscriptions are not in Graph's `directory/subscriptions`; ARM is its own resource with
its own token scope (`{arm_url}/.default`), and the app needs a role (Owner) on each one.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.microsoft.graph import retry_after
from bot.microsoft.tokens import MsalTokens

LIST_API = "2020-01-01"
CANCEL_API = "2021-10-01"
ACTIVE_STATES = frozenset({"Enabled", "PastDue", "Warned"})


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass
class Arm:
    session: aiohttp.ClientSession
    arm_url: str
    tokens: MsalTokens
    ssl_context: ssl.SSLContext | None = None
    max_attempts: int = 6
    backoff_base: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    async def _call(self, method: str, path: str) -> dict[str, Any]:
        scopes = [f"{self.arm_url}/.default"]
        for attempt in range(self.max_attempts):
            token = await self.tokens.token(scopes=scopes)
            async with self.session.request(
                method,
                f"{self.arm_url}{path}",
                headers={"Authorization": f"Bearer {token}"},
                ssl=self.ssl_context if self.ssl_context is not None else True,
            ) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else {}
                except ValueError:
                    body = {}
                if resp.status < 300:
                    return body if isinstance(body, dict) else {}
                if resp.status in (429, 500, 502, 503, 504) and attempt + 1 < self.max_attempts:
                    await self.sleep(retry_after(dict(resp.headers), attempt, self.backoff_base))
                    continue
                error = body.get("error") if isinstance(body, dict) else None
                error = error if isinstance(error, dict) else {}
                raise ArmError(
                    resp.status, str(error.get("code", "")), str(error.get("message", ""))
                )
        raise ArmError(0, "retriesExhausted", path)

    async def subscriptions(self) -> list[dict[str, Any]]:
        body = await self._call("GET", f"/subscriptions?api-version={LIST_API}")
        return list(body.get("value", []))

    async def cancel(self, subscription_id: str) -> None:
        await self._call(
            "POST",
            f"/subscriptions/{subscription_id}/providers/Microsoft.Subscription/cancel"
            f"?api-version={CANCEL_API}",
        )
