"""The real Microsoft host names the simulator answers for, behind a test proxy, and their role.

The national clouds' hosts are bot/microsoft/clouds.py's, as Microsoft documents them
(microsoftgraph/microsoft-graph-docs-contrib, concepts/deployments.md: the Microsoft Entra ID
endpoints login.microsoftonline.com / .us / login.chinacloudapi.cn and the Graph roots
graph.microsoft.com, graph.microsoft.us, dod-graph.microsoft.us,
microsoftgraph.chinacloudapi.cn); Partner Center's is the bot's default `api_url`.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from bot.config import PartnerCenterSettings
from bot.microsoft.clouds import CLOUDS

Role = Literal["authority", "graph", "arm", "partnercenter"]


def _host(url: str) -> str:
    host = urlsplit(url).hostname
    assert host, url
    return host


def _roles() -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for cloud in CLOUDS.values():
        roles[_host(cloud.authority_host)] = "authority"
        roles[_host(cloud.graph_url)] = "graph"
        roles[_host(cloud.arm_url)] = "arm"
    roles[_host(PartnerCenterSettings.api_url)] = "partnercenter"
    return roles


HOST_ROLES: dict[str, Role] = _roles()
"""Every real host name -> what the simulator serves there."""


def real_host(host_header: str | None) -> str | None:
    """The real host a request's Host header names, or None (127.0.0.1, localhost, unknown)."""
    if not host_header:
        return None
    host = host_header.lower()
    if not host.startswith("["):
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host if host in HOST_ROLES else None
