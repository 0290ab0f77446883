"""National clouds map to their own authority and Graph hosts, end to end in the bot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.microsoft.clouds import CLOUDS
from bot.microsoft.tokens import MsalTokens

GUID = "8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f"


def settings_for(tmp_path: Path, cloud: str, extra: str = "") -> MsalTokens:
    config = tmp_path / "bot.toml"
    config.write_text(
        f"""
[slack]
progress_channel = "C0PROGRESS"
admins = ["U0ADMIN1"]
api_url = "https://slack-gov.com/api/"
[storage]
path = "bot.db"
[[tenants]]
name = "contoso"
tenant_id = "{GUID}"
client_id = "{GUID}"
client_secret_env = "SECRET"
retain = ["admin@contoso.onmicrosoft.com"]
approvers = ["U0APPR1", "U0APPR2"]
quorum = 1
cloud = "{cloud}"
{extra}
"""
    )
    settings = load_settings(
        config, {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "s", "SECRET": "v"}
    )
    assert settings.slack.api_url == "https://slack-gov.com/api/"
    return MsalTokens(settings.tenants[0], ca_bundle=None)


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_each_cloud_uses_its_authority_graph_and_scope(tmp_path: Path, cloud: str) -> None:
    """The MSAL authority, the token scope and Graph's host all come from the cloud."""
    tokens = settings_for(tmp_path, cloud)
    hosts = CLOUDS[cloud]
    options = tokens.msal_options()
    assert options["authority"] == f"{hosts.authority_host}/{GUID}"
    assert options["instance_discovery"] is None  # Microsoft's own hosts are known to MSAL
    assert tokens.scopes == [f"{hosts.graph_url}/.default"]
    tokens.close()


def test_explicit_endpoints_override_the_cloud(tmp_path: Path) -> None:
    """A custom authority host (a proxy, the simulator) turns instance discovery off."""
    tokens = settings_for(
        tmp_path,
        "usgov",
        'authority_host = "https://login.example.test"\ngraph_url = "https://graph.example.test"',
    )
    assert tokens.msal_options() == {
        "authority": f"https://login.example.test/{GUID}",
        "instance_discovery": False,
    }
    assert tokens.scopes == ["https://graph.example.test/.default"]
    tokens.close()


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_each_cloud_has_its_resource_manager(tmp_path: Path, cloud: str) -> None:
    """Azure subscriptions are cancelled through the cloud's own Resource Manager host."""
    tokens = settings_for(tmp_path, cloud)
    assert tokens.tenant.arm_url == CLOUDS[cloud].arm_url
    assert tokens.tenant.arm_url.startswith("https://management.")
    tokens.close()
