"""Microsoft national cloud endpoints: the sign-in authority host and Graph base URL per cloud.

A tenant's `cloud` key in the config picks one of these; explicit endpoints override it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CloudEndpoints:
    """Where to get tokens (`authority_host`) and where to call Graph (`graph_url`).

    Both are https:// URLs without a trailing slash.
    """

    authority_host: str
    graph_url: str
    arm_url: str  # Azure Resource Manager, for Azure subscriptions


CLOUDS: dict[str, CloudEndpoints] = {
    "global": CloudEndpoints(
        authority_host="https://login.microsoftonline.com",
        graph_url="https://graph.microsoft.com",
        arm_url="https://management.azure.com",
    ),
    "usgov": CloudEndpoints(
        authority_host="https://login.microsoftonline.us",
        graph_url="https://graph.microsoft.us",
        arm_url="https://management.usgovcloudapi.net",
    ),
    "usgov-dod": CloudEndpoints(
        authority_host="https://login.microsoftonline.us",
        graph_url="https://dod-graph.microsoft.us",
        arm_url="https://management.usgovcloudapi.net",
    ),
    "china": CloudEndpoints(
        authority_host="https://login.chinacloudapi.cn",
        graph_url="https://microsoftgraph.chinacloudapi.cn",
        arm_url="https://management.chinacloudapi.cn",
    ),
}
