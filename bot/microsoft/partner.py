"""Partner Center: cancelling what a partner sold, with the partner's own app and tenant.

A subscription bought through a partner (its ownerTenantId is the partner's tenant) can only be
cancelled by that partner: `PATCH /v1/customers/{customer}/subscriptions/{id}` with status
`deleted`, with a token the partner's app gets from the partner's tenant.
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass

import aiohttp

from bot.config import NetworkSettings, PartnerCenterSettings, TenantSettings
from bot.microsoft.tokens import MsalTokens


class PartnerCenterError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(f"{status}: {description}")
        self.status = status


@dataclass
class PartnerCenter:
    session: aiohttp.ClientSession
    settings: PartnerCenterSettings
    tokens: MsalTokens
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def build(
        cls,
        session: aiohttp.ClientSession,
        tenant: TenantSettings,
        *,
        ca_bundle: str | None,
        ssl_context: ssl.SSLContext | None,
        network: NetworkSettings | None = None,
    ) -> PartnerCenter | None:
        """The partner's client, or None without [tenants.partner_center]. Its HTTP goes
        through `session` (which applies the proxy); its tokens through `network`'s proxy."""
        partner = tenant.partner_center
        if partner is None:
            return None
        # The partner's app signs in at the partner's tenant, same cloud and authority.
        as_partner = dataclasses.replace(
            tenant,
            tenant_id=partner.tenant_id,
            client_id=partner.client_id,
            client_secret_env=partner.client_secret_env,
            client_secret=partner.client_secret,
            certificate_file=None,
        )
        tokens = MsalTokens(as_partner, ca_bundle=ca_bundle, network=network)
        return cls(session, partner, tokens, ssl_context)

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

    async def cancel(self, customer_tenant_id: str, subscription_id: str) -> None:
        token = await self.tokens.token(scopes=[f"{self.settings.api_url}/.default"])
        url = (
            f"{self.settings.api_url}/v1/customers/{customer_tenant_id}"
            f"/subscriptions/{subscription_id}"
        )
        async with self.session.patch(
            url,
            json={"status": "deleted"},
            headers={"Authorization": f"Bearer {token}"},
            ssl=self.ssl_context if self.ssl_context is not None else True,
        ) as resp:
            if resp.status >= 300:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = {}
                description = body.get("description", "") if isinstance(body, dict) else ""
                raise PartnerCenterError(resp.status, str(description))

    def close(self) -> None:
        self.tokens.close()
