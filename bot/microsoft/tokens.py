"""Graph tokens through MSAL: one confidential client per tenant, built and called off the loop."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import msal
import requests

from bot.config import NetworkSettings, TenantSettings
from bot.microsoft.certificates import CertificateError, msal_credential
from bot.network import requests_proxies

MSAL_TIMEOUT = 30.0  # seconds per request to the authority


class TokenError(Exception):
    """Microsoft refused to issue a token; the message carries Microsoft's error, never a secret."""


def http_session(ca_bundle: str | None, network: NetworkSettings | None = None) -> requests.Session:
    """A requests session for MSAL that ignores REQUESTS_CA_BUNDLE and trusts `ca_bundle`,
    reaching each host through `network`'s proxy unless no_proxy covers it."""
    session = requests.Session()
    # REQUESTS_CA_BUNDLE would otherwise override `verify`; the proxy comes from `network`
    # (bot/config.py reads HTTPS_PROXY and NO_PROXY), per request below.
    session.trust_env = False
    if ca_bundle:
        session.verify = ca_bundle
    send = session.request

    def request(method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:
        # MSAL ignores its own `timeout` when handed a session; a silent authority must not
        # stall a closure forever.
        kwargs.setdefault("timeout", MSAL_TIMEOUT)
        target = url.decode() if isinstance(url, bytes) else url
        kwargs["proxies"] = requests_proxies(network, target)
        return send(method, url, **kwargs)

    session.request = request  # type: ignore[method-assign, assignment]
    return session


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token, read without verifying it (Microsoft verifies it)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


class MsalTokens:
    """App-only tokens for one tenant; MSAL caches them itself."""

    def __init__(
        self,
        tenant: TenantSettings,
        *,
        ca_bundle: str | None,
        network: NetworkSettings | None = None,
    ) -> None:
        self.tenant = tenant
        self._ca_bundle = ca_bundle
        self._app: msal.ConfidentialClientApplication | None = None
        self._http = http_session(ca_bundle, network)
        self._lock = asyncio.Lock()
        self.scopes = [f"{tenant.graph_url}/.default"]

    def _credential(self) -> Any:
        if self.tenant.certificate_file is not None:
            return msal_credential(self.tenant.certificate_file)
        return self.tenant.client_secret

    def msal_options(self) -> dict[str, Any]:
        """Authority and discovery for MSAL: a host Microsoft's instance discovery does not know
        (a test authority, a sovereign proxy) needs instance_discovery=False."""
        custom = self.tenant.authority_host not in _KNOWN_AUTHORITY_HOSTS
        return {
            "authority": f"{self.tenant.authority_host}/{self.tenant.tenant_id}",
            "instance_discovery": False if custom else None,
        }

    def _build(self) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            self.tenant.client_id,
            client_credential=self._credential(),
            http_client=self._http,
            **self.msal_options(),
        )

    def _acquire(self, force_refresh: bool, scopes: list[str] | None = None) -> str:
        if self._app is None:
            try:
                self._app = self._build()
            except CertificateError as exc:
                raise TokenError(f"certificate {exc}") from exc
            except ValueError as exc:  # MSAL's word for an authority it cannot discover
                raise TokenError(f"authority {self.tenant.authority_host}: {exc}") from exc
        app = self._app
        if force_refresh:
            app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes or self.scopes)
        finally:
            # A token lasts an hour: keeping the TLS connection (and its CA bundle) per tenant
            # costs more memory than reconnecting.
            self._http.close()
        if "access_token" not in result:
            error = result.get("error", "unknown_error")
            description = str(result.get("error_description", "")).split("\n")[0]
            raise TokenError(f"{error}: {description}".strip(": "))
        token: str = result["access_token"]
        return token

    def close(self) -> None:
        """Close MSAL's keep-alive connections."""
        self._http.close()

    async def token(self, force_refresh: bool = False, scopes: list[str] | None = None) -> str:
        """A token for Graph, or for `scopes` (Azure Resource Manager)."""
        async with self._lock:
            try:
                return await asyncio.to_thread(self._acquire, force_refresh, scopes)
            except requests.RequestException as exc:
                raise TokenError(f"cannot reach {self.tenant.authority_host}: {exc}") from exc


_KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.us",
        "https://login.chinacloudapi.cn",
    }
)
