"""What the bot is configured with: frozen dataclasses, built by `bot.config` from the TOML
file and the environment (secrets have `repr=False`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from statemachine import steps


@dataclass(frozen=True)
class SlackSettings:
    """The [slack] table plus the Slack secrets from the environment."""

    progress_channel: str
    admins: tuple[str, ...]
    api_url: str | None
    bot_token: str = field(repr=False)
    signing_secret: str | None = field(repr=False)
    app_token: str | None = field(repr=False)


@dataclass(frozen=True)
class Timing:
    """The [timing] table; durations in seconds."""

    poll_interval: float = 300.0
    approval_ttl: float = 86400.0
    reminder_interval: float = 43200.0
    tenant_gone_checks: int = 3
    # Least time between two edits of a status message (0: every edit at once, for tests).
    status_edit_interval: float = 2.0


@dataclass(frozen=True)
class PartnerCenterSettings:
    """[tenants.partner_center]: the partner's own app, to cancel what the partner sold."""

    tenant_id: str  # the partner's tenant (a subscription's ownerTenantId)
    client_id: str
    client_secret_env: str
    client_secret: str = field(repr=False)
    api_url: str = "https://api.partnercenter.microsoft.com"


@dataclass(frozen=True)
class TenantSettings:
    """One [[tenants]] table, its endpoints resolved and its client secret read."""

    name: str
    tenant_id: str
    client_id: str
    retain: tuple[str, ...]
    approvers: tuple[str, ...]
    quorum: int
    quorum_by_step: Mapping[str, int]
    cloud: str
    authority_host: str
    graph_url: str
    client_secret_env: str | None
    client_secret: str | None = field(repr=False)
    certificate_file: Path | None
    arm_url: str = ""  # Azure Resource Manager (the cloud's unless overridden)
    partner_center: PartnerCenterSettings | None = None
    # Who the admin-center checklists ping: the retained administrator's Slack user (an ID or an
    # email); None: the first `retain` entry's email, looked up in Slack.
    retain_slack_user: str | None = None

    def quorum_for(self, step: str) -> int:
        """Approvals needed for `step` (a step name or 'rollback')."""
        try:
            key = steps.info(step).key
        except KeyError:
            raise ValueError(f"unknown step {step!r}") from None
        return self.quorum_by_step.get(key, self.quorum)


@dataclass(frozen=True)
class NetworkSettings:
    """[network], else the HTTPS_PROXY and NO_PROXY environment variables: the proxy every
    outgoing HTTPS call (Slack, sign-in, Graph, Resource Manager, Partner Center) goes through.

    `https_proxy` may carry credentials (only from the environment), so it is never shown.
    `no_proxy` entries are host names (matching the host and its subdomains), '.'-prefixed
    domains, IP addresses or networks, or '*' for every host.
    """

    https_proxy: str | None = field(default=None, repr=False)
    no_proxy: tuple[str, ...] = ()

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL to reach `url` through, or None to connect directly."""
        if self.https_proxy is None:
            return None
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        return None if bypasses_proxy(host, self.no_proxy) else self.https_proxy


def bypasses_proxy(host: str, no_proxy: Sequence[str]) -> bool:
    """Whether `host` is covered by one of the `no_proxy` entries (curl's rules, plus CIDR)."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.strip("[]")
        )
    except ValueError:
        address = None
    for entry in no_proxy:
        entry = entry.lower().strip()
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


@dataclass(frozen=True)
class Settings:
    """Everything the bot is configured with; `file` is the config file as given."""

    file: Path
    slack: SlackSettings
    storage_path: Path
    ca_file: Path | None
    timing: Timing
    tenants: tuple[TenantSettings, ...]
    network: NetworkSettings = NetworkSettings()

    def tenant(self, name: str) -> TenantSettings | None:
        """The tenant configured under `name`, compared case-insensitively."""
        wanted = name.lower()
        return next((t for t in self.tenants if t.name == wanted), None)
