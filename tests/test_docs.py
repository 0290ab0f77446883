"""The documents an operator follows match the code: the sample config, the contract in docs/,
and the README's links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "close-account.example.toml"
SHARED_SPEC = ROOT.parent / "shared" / "spec"
ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "CONTOSO_SECRET": "s"}


def test_the_sample_config_is_accepted_as_it_is() -> None:
    """close-account.example.toml loads with the documented variables set (Socket Mode, no
    signing secret), with the values its comments promise."""
    settings = load_settings(SAMPLE, ENV)
    assert settings.slack.app_token == "xapp-1" and settings.slack.signing_secret is None
    (tenant,) = settings.tenants
    assert tenant.name == "contoso" and tenant.quorum == 2 and tenant.cloud == "global"
    assert settings.storage_path == SAMPLE.parent / "close-account.db"


def test_every_commented_out_key_of_the_sample_is_a_real_key(tmp_path: Path) -> None:
    """Uncommenting the sample's optional keys still loads: no key in the comments is misspelt."""
    text = SAMPLE.read_text()
    for key in ("api_url", "quorum_by_step", "authority_host", "graph_url", "arm_url"):
        text = re.sub(rf"^# ({key} = .*)$", r"\1", text, flags=re.M)
    (tmp_path / "close-account.toml").write_text(text)
    settings = load_settings(tmp_path / "close-account.toml", ENV)
    assert settings.tenants[0].quorum_by_step == {"delete_directory": 3}
    assert settings.slack.api_url == "https://slack-gov.com/api/"


def test_the_samples_commented_network_table_loads(tmp_path: Path) -> None:
    """Uncommenting the sample's [network] table gives the proxy and no_proxy it shows."""
    text = SAMPLE.read_text()
    for line in ("[network]", "https_proxy = ", "no_proxy = "):
        text, count = re.subn(rf"^# ({re.escape(line)}.*)$", r"\1", text, flags=re.M)
        assert count == 1, line
    (tmp_path / "close-account.toml").write_text(text)
    network = load_settings(tmp_path / "close-account.toml", ENV).network
    assert network.https_proxy == "http://proxy.corp:3128"
    assert network.no_proxy == ("internal.corp", "10.0.0.0/8")
    assert network.proxy_for("https://graph.microsoft.com") == "http://proxy.corp:3128"
    assert network.proxy_for("https://10.1.2.3/") is None


@pytest.mark.parametrize("name", ["interface.md", "steps.md"])
def test_the_contract_in_docs_is_the_shared_one(name: str) -> None:
    """docs/ holds the same contract the outside tests use, so the repository is self-contained."""
    if not (SHARED_SPEC / name).exists():
        pytest.skip("no shared/spec beside the checkout")
    assert (ROOT / "docs" / name).read_text() == (SHARED_SPEC / name).read_text()


@pytest.mark.parametrize("doc", ["README.md", "deploy/README.md"])
def test_readme_links_point_inside_the_repository(doc: str) -> None:
    """Every relative link in the READMEs names a file of the repository (none outside it)."""
    path = ROOT / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [link for link in links if "://" not in link]
    missing = [link for link in local if not (path.parent / link).resolve().exists()]
    outside = [link for link in local if ROOT not in (path.parent / link).resolve().parents]
    assert local and not missing and not outside, (missing, outside)
    assert "../shared" not in path.read_text()
