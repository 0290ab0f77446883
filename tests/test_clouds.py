"""National clouds map to their own authority and Graph hosts, end to end in the bot; every
outgoing call goes through the configured HTTPS proxy unless no_proxy covers its host."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
import requests

from bot.config import ConfigError, NetworkSettings, Settings, load_settings
from bot.microsoft.clouds import CLOUDS
from bot.microsoft.tokens import MsalTokens, TokenError, http_session
from bot.network import client_session
from simulator.microsoft.hosts import HOST_ROLES
from simulator.microsoft.server import MicrosoftSimulator
from simulator.proxy import ConnectProxy

GUID = "8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f"
ENV = {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "s", "SECRET": "v"}


def load(
    tmp_path: Path,
    cloud: str,
    extra: str = "",
    *,
    tail: str = "",
    environ: Mapping[str, str] = ENV,
    tenant_id: str = GUID,
    client_id: str = GUID,
) -> Settings:
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
tenant_id = "{tenant_id}"
client_id = "{client_id}"
client_secret_env = "SECRET"
retain = ["admin@contoso.onmicrosoft.com"]
approvers = ["U0APPR1", "U0APPR2"]
quorum = 1
cloud = "{cloud}"
{extra}
{tail}
"""
    )
    return load_settings(config, environ)


def settings_for(tmp_path: Path, cloud: str, extra: str = "") -> MsalTokens:
    settings = load(tmp_path, cloud, extra)
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


# -- the proxy: configuration ----------------------------------------------------------------


def test_the_network_key_wins_over_the_environment(tmp_path: Path) -> None:
    """[network] https_proxy and no_proxy are used even when HTTPS_PROXY and NO_PROXY are set."""
    settings = load(
        tmp_path,
        "global",
        tail='[network]\nhttps_proxy = "http://proxy.corp:3128"\nno_proxy = ["internal.corp"]',
        environ={**ENV, "HTTPS_PROXY": "http://other:8080", "NO_PROXY": "elsewhere"},
    )
    assert settings.network == NetworkSettings("http://proxy.corp:3128", ("internal.corp",))


def test_the_environment_proxy_is_used_without_the_key_and_never_shown(tmp_path: Path) -> None:
    """Without [network], HTTPS_PROXY (which may hold a password) and NO_PROXY apply; the
    settings' repr never shows the proxy URL."""
    settings = load(
        tmp_path,
        "global",
        environ={**ENV, "HTTPS_PROXY": "http://bot:hunter2@proxy.corp:3128", "NO_PROXY": "a, .b"},
    )
    assert settings.network.https_proxy == "http://bot:hunter2@proxy.corp:3128"
    assert settings.network.no_proxy == ("a", ".b")
    assert "hunter2" not in repr(settings)


def test_without_key_or_environment_there_is_no_proxy(tmp_path: Path) -> None:
    """No [network] table and no HTTPS_PROXY: every host is reached directly."""
    settings = load(tmp_path, "global")
    assert settings.network.proxy_for("https://graph.microsoft.com/v1.0") is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"http://bot:hunter2@proxy.corp:3128"', "HTTPS_PROXY environment variable"),
        ('"socks5://proxy.corp:1080"', "must be a http:// or https:// URL"),
        ('"http://proxy.corp:3128/path"', "no path"),
        ('"http://proxy.corp:99999"', "invalid port"),
    ],
)
def test_a_bad_proxy_key_is_one_line_without_the_secret(
    tmp_path: Path, value: str, fragment: str
) -> None:
    """A proxy URL with a password, another scheme, a path or a bad port is refused in one
    line naming network.https_proxy, and the password is not repeated."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "global", tail=f"[network]\nhttps_proxy = {value}")
    assert caught.value.key == "network.https_proxy"
    assert fragment in str(caught.value)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_proxy_environment_variable_is_named_without_its_value(tmp_path: Path) -> None:
    """An HTTPS_PROXY that is not an http(s) URL fails naming the variable, not its value."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "global", environ={**ENV, "HTTPS_PROXY": "hunter2-not-a-url"})
    assert caught.value.key == "HTTPS_PROXY"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "proxied"),
    [
        ("https://graph.microsoft.us/v1.0/users", True),
        ("https://internal.corp/x", False),
        ("https://api.internal.corp/x", False),
        ("https://notinternal.corp/x", True),
        ("https://host.lan:8443/", False),
        ("http://127.0.0.1:3000/", False),
        ("https://10.1.2.3/", False),
        ("https://10.2.0.1/", True),
        ("wss://wss-primary.slack.com/link", True),
    ],
)
def test_no_proxy_hosts_bypass_the_proxy(url: str, proxied: bool) -> None:
    """no_proxy matches a host and its subdomains, '.'-prefixed domains, IPs and networks."""
    network = NetworkSettings(
        "http://proxy.corp:3128", ("internal.corp", ".lan", "127.0.0.1", "10.1.0.0/16")
    )
    assert network.proxy_for(url) == ("http://proxy.corp:3128" if proxied else None)


def test_a_star_in_no_proxy_bypasses_every_host() -> None:
    """NO_PROXY=* turns the proxy off for every host, as curl and requests do."""
    assert NetworkSettings("http://proxy.corp:3128", ("*",)).proxy_for("https://x.y/") is None


# -- the proxy: in the bot's clients, against the simulator behind a test proxy ------------------


@pytest.fixture
async def sim() -> AsyncIterator[MicrosoftSimulator]:
    async with MicrosoftSimulator() as simulator:
        simulator.add_tenant(name="contoso", users=5)
        yield simulator


@pytest.fixture
async def proxy(sim: MicrosoftSimulator) -> AsyncIterator[ConnectProxy]:
    port = int(sim.base_url.rsplit(":", 1)[1])
    async with ConnectProxy(dict.fromkeys(HOST_ROLES, port)) as running:
        yield running


def sim_settings(
    tmp_path: Path, sim: MicrosoftSimulator, cloud: str, proxy: ConnectProxy, no_proxy: str = ""
) -> Settings:
    """The simulator's tenant on `cloud`'s real hosts, through `proxy`, trusting its CA."""
    tenant = next(iter(sim.tenants.values()))
    return load(
        tmp_path,
        cloud,
        tail=f'[tls]\nca_file = "{sim.ca_file}"\n'
        f'[network]\nhttps_proxy = "{proxy.url}"\nno_proxy = [{no_proxy}]',
        environ={**ENV, "SECRET": tenant.client_secret},
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
    )


def trusting(ca_file: Path | None) -> ssl.SSLContext:
    assert ca_file is not None
    return ssl.create_default_context(cafile=str(ca_file))


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
async def test_each_cloud_signs_in_and_reads_graph_on_its_own_hosts_through_the_proxy(
    tmp_path: Path, sim: MicrosoftSimulator, proxy: ConnectProxy, cloud: str
) -> None:
    """MSAL gets a token from the cloud's authority host and Graph answers on the cloud's Graph
    host, both reached only through the proxy."""
    settings = sim_settings(tmp_path, sim, cloud, proxy)
    tenant = settings.tenants[0]
    tokens = MsalTokens(tenant, ca_bundle=str(settings.ca_file), network=settings.network)
    try:
        token = await tokens.token()
    finally:
        tokens.close()
    async with (
        client_session(settings.network) as session,
        session.get(
            f"{tenant.graph_url}/v1.0/organization",
            headers={"Authorization": f"Bearer {token}"},
            ssl=trusting(settings.ca_file),
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["value"][0]["id"] == tenant.tenant_id
    endpoints = CLOUDS[cloud]
    authority, graph = endpoints.authority_host[8:], endpoints.graph_url[8:]
    assert proxy.hosts == {authority, graph}
    assert all(c.allowed and c.target.endswith(":443") for c in proxy.connects)


async def test_a_token_for_one_cloud_is_refused_by_another_clouds_graph(
    tmp_path: Path, sim: MicrosoftSimulator, proxy: ConnectProxy
) -> None:
    """National clouds' tokens are not interchangeable: the global Graph token gets a 401 from
    the US Government Graph host."""
    settings = sim_settings(tmp_path, sim, "global", proxy)
    tokens = MsalTokens(
        settings.tenants[0], ca_bundle=str(settings.ca_file), network=settings.network
    )
    try:
        token = await tokens.token()
    finally:
        tokens.close()
    async with (
        client_session(settings.network) as session,
        session.get(
            "https://graph.microsoft.us/v1.0/organization",
            headers={"Authorization": f"Bearer {token}"},
            ssl=trusting(settings.ca_file),
        ) as resp,
    ):
        assert resp.status == 401


async def test_no_proxy_hosts_are_reached_directly_by_aiohttp_and_msal(
    tmp_path: Path, sim: MicrosoftSimulator, proxy: ConnectProxy
) -> None:
    """A host in no_proxy (the simulator's 127.0.0.1) is connected to directly, by the aiohttp
    sessions and by MSAL's requests session alike: the proxy sees no CONNECT."""
    settings = sim_settings(tmp_path, sim, "global", proxy, no_proxy='"127.0.0.1"')
    tenant_id = settings.tenants[0].tenant_id
    url = f"{sim.base_url}/{tenant_id}/v2.0/.well-known/openid-configuration"
    async with (
        client_session(settings.network) as session,
        session.get(url, ssl=trusting(settings.ca_file)) as resp,
    ):
        assert resp.status == 200
    http = http_session(str(settings.ca_file), settings.network)
    try:
        answer = await asyncio.to_thread(http.get, url)
    finally:
        http.close()
    assert answer.status_code == 200
    assert proxy.connects == []


async def test_the_proxy_refuses_other_hosts_and_gets_the_environments_credentials(
    tmp_path: Path, sim: MicrosoftSimulator, proxy: ConnectProxy
) -> None:
    """A proxy user and password from HTTPS_PROXY go as Proxy-Authorization; a host the test
    proxy does not serve is refused (403) and recorded, so nothing leaves the machine."""
    network = NetworkSettings(proxy.url.replace("http://", "http://bot:pw@"), ())
    async with client_session(network) as session:
        with pytest.raises(aiohttp.ClientHttpProxyError) as caught:
            await session.get("https://example.com/")
        assert caught.value.status == 403
        http = http_session(str(sim.ca_file), network)
        try:
            with pytest.raises(requests.exceptions.ProxyError):
                await asyncio.to_thread(http.get, "https://example.org/")
        finally:
            http.close()
    assert [(c.target, c.allowed) for c in proxy.connects] == [
        ("example.com:443", False),
        ("example.org:443", False),
    ]
    assert proxy.connects[0].authorization == aiohttp.encode_basic_auth("bot", "pw")
    assert proxy.connects[1].authorization == aiohttp.encode_basic_auth("bot", "pw")


async def test_an_unreachable_proxy_is_a_token_error_naming_the_authority(tmp_path: Path) -> None:
    """With the proxy down, a token request fails as a TokenError naming the authority host,
    and the proxy's password is not in it."""
    settings = load(
        tmp_path, "usgov", environ={**ENV, "HTTPS_PROXY": "http://u:hunter2@127.0.0.1:9"}
    )
    tokens = MsalTokens(settings.tenants[0], ca_bundle=None, network=settings.network)
    try:
        with pytest.raises(TokenError) as caught:
            await tokens.token()
    finally:
        tokens.close()
    assert "https://login.microsoftonline.us" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
async def test_resource_manager_and_partner_center_answer_on_their_real_hosts(
    tmp_path: Path, sim: MicrosoftSimulator, proxy: ConnectProxy, cloud: str
) -> None:
    """The cloud's Resource Manager host serves ARM to a token for `{arm_url}/.default`, and
    Partner Center's host routes to Partner Center, which refuses a Resource Manager token."""
    settings = sim_settings(tmp_path, sim, cloud, proxy)
    tenant = settings.tenants[0]
    tokens = MsalTokens(tenant, ca_bundle=str(settings.ca_file), network=settings.network)
    try:
        token = await tokens.token(scopes=[f"{tenant.arm_url}/.default"])
    finally:
        tokens.close()
    headers = {"Authorization": f"Bearer {token}"}
    context = trusting(settings.ca_file)
    partner = f"https://api.partnercenter.microsoft.com/v1/customers/{tenant.tenant_id}"
    async with client_session(settings.network) as session:
        url = f"{tenant.arm_url}/subscriptions?api-version=2022-12-01"
        async with session.get(url, headers=headers, ssl=context) as resp:
            assert resp.status == 200, await resp.text()
            assert "value" in await resp.json()
        url = f"{partner}/subscriptions/x"
        async with session.patch(url, headers=headers, json={}, ssl=context) as resp:
            assert resp.status == 401
            assert "Invalid audience" in (await resp.json())["description"]
    assert host_of(tenant.arm_url) in proxy.hosts
    assert "api.partnercenter.microsoft.com" in proxy.hosts


def host_of(url: str) -> str:
    return url.removeprefix("https://")
