"""Rehearsal with the operator's own config: `close-account-bot demo --config FILE [--tenant NAME]`
builds simulated tenants that match the config, runs the real bot against them and reports the
config mistakes that only a run would show."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.rehearsal import build_tenant, read_config, run_rehearsal, slack_people
from simulator.microsoft.graph_data import GLOBAL_ADMINISTRATOR
from simulator.microsoft.server import MicrosoftSimulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "close-account.example.toml"
SECRETS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "CONTOSO_SECRET")


def sample(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """The README's sample config copied into `tmp_path`, with text replaced."""
    text = EXAMPLE.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "close-account.toml"
    path.write_text(text)
    return path


def no_secrets_env() -> dict[str, str]:
    """The environment without any of the secrets the sample config names."""
    return {k: v for k, v in os.environ.items() if k not in SECRETS}


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env={**no_secrets_env(), "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_sample_config_rehearses_to_a_closed_tenant(tmp_path: Path) -> None:
    """`demo --config` on the README's sample config, with no secret in the environment, closes
    the simulated contoso (exit 0, the channel printed, step 1's request with the data that dies
    and the closing summary) and never creates the config's real database."""
    config = sample(tmp_path)
    code, out, err = await run_cli("demo", "--config", str(config), cwd=tmp_path)
    assert code == 0, out + err
    assert "Traceback" not in err
    assert "tenant 'contoso' (8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f), cloud global" in out
    assert "STATUS (posted)" in out and "is closed: Microsoft no longer knows it" in out
    assert "Final state: closed; simulated tenant deleted: True" in out
    assert "mailboxes" in out and "size unknown" not in out
    assert "Summary of the closure of contoso" in out
    assert sorted(os.listdir(tmp_path)) == ["close-account.toml"]


async def test_an_unknown_tenant_is_a_one_line_error(tmp_path: Path) -> None:
    """`--tenant` naming no configured tenant is one line on stderr naming the configured
    tenants, exit 2, and nothing runs."""
    config = sample(tmp_path)
    code, out, err = await run_cli(
        "demo", "--config", str(config), "--tenant", "fabrikam", cwd=tmp_path
    )
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [
        f"close-account-bot: {config}: tenants: no tenant named 'fabrikam' (contoso)"
    ]


def test_several_tenants_need_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With two tenants configured and no --tenant, the rehearsal is a one-line error listing
    both names (exit 2)."""
    config = sample(tmp_path)
    second = EXAMPLE.read_text().split("\n[[tenants]]\n", 1)[1]
    second = second.replace('name = "contoso"', 'name = "fabrikam"').replace(
        "8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f", "9f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f"
    )
    config.write_text(config.read_text() + "\n[[tenants]]\n" + second)
    assert main(["demo", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"close-account-bot: {config}: 2 tenants (contoso, fabrikam): choose one with --tenant"
    )


def test_tenant_without_config_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """`demo --tenant` without `--config` is a one-line usage error (exit 2)."""
    assert main(["demo", "--tenant", "contoso"]) == 2
    assert "--tenant: only with --config" in capsys.readouterr().err


async def test_an_unreachable_quorum_is_reported_and_nothing_runs(tmp_path: Path) -> None:
    """When the only admin is also an approver, the approvers who may vote on the closure that
    admin starts are one short of the quorum: the rehearsal says so, warns that the approver is
    an admin, and exits 1 without starting the simulators."""
    config = sample(
        tmp_path,
        ('admins = ["U0ADMIN1", "admin2@contoso.com"]', 'admins = ["U0APPR1"]'),
        ('approvers = ["U0APPR1", "U0APPR2", "U0APPR3"]', 'approvers = ["U0APPR1", "U0APPR2"]'),
    )
    out = io.StringIO()
    assert await run_rehearsal(config, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines == [
        "warning: tenants[0].approvers: U0APPR1 is also an admin: they cannot approve a"
        " closure they start",
        "config mistake: tenants[0].quorum: unreachable: delete_users needs 2,"
        " cancel_subscriptions needs 2, delete_disabled_subscriptions needs 2, disable_mfa needs"
        " 2, delete_directory needs 2, rollback needs 2 approvals but only 1 approvers may vote"
        " (U0APPR1 is an approver and the only admin who could start it, and the requester"
        " never counts)",
        "The rehearsal of contoso did not run: 1 config mistake(s) above.",
    ]


async def test_a_per_step_quorum_above_the_voters_is_reported(tmp_path: Path) -> None:
    """A quorum_by_step entry larger than the approvers who may vote names that step only."""
    config = sample(
        tmp_path,
        ('admins = ["U0ADMIN1", "admin2@contoso.com"]', 'admins = ["U0APPR3"]'),
        (
            "# quorum_by_step = { delete_directory = 3 }",
            "quorum_by_step = { delete_directory = 3 }",
        ),
    )
    out = io.StringIO()
    assert await run_rehearsal(config, out=out) == 1
    assert (
        "config mistake: tenants[0].quorum: unreachable: delete_directory needs 3 approvals but"
        " only 2 approvers may vote" in out.getvalue()
    )


async def test_two_retained_accounts_are_flagged(tmp_path: Path) -> None:
    """Two retain entries are a config mistake (Microsoft deletes a directory only when one
    Global Administrator is left), exit 1, with the doc it rests on."""
    config = sample(
        tmp_path,
        (
            'retain = ["admin@contoso.onmicrosoft.com"]',
            'retain = ["admin@contoso.onmicrosoft.com", "backup@contoso.onmicrosoft.com"]',
        ),
    )
    out = io.StringIO()
    assert await run_rehearsal(config, out=out) == 1
    assert (
        "config mistake: tenants[0].retain: lists 2 accounts: Microsoft deletes a directory only"
        " when exactly one Global Administrator is left" in out.getvalue()
    )
    assert "directory-delete-howto.md" in out.getvalue()


def test_the_simulated_tenant_matches_the_config(tmp_path: Path) -> None:
    """The simulated tenant has the config's name, tenant ID and client ID, and a retained
    object ID becomes a Global Administrator with that very ID."""
    object_id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    config = sample(tmp_path, ('"admin@contoso.onmicrosoft.com"', f'"{object_id}"'))
    tenant = read_config(config).tenants[0]
    sim, partner = build_tenant(MicrosoftSimulator(), tenant, users=5, seed=1)
    assert (sim.name, sim.tenant_id, sim.client_id) == (
        "contoso",
        "8f0c1d2e-3a4b-5c6d-7e8f-9a0b1c2d3e4f",
        "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
    )
    assert partner is None
    assert sim.roles[object_id] == {GLOBAL_ADMINISTRATOR}
    assert sim.retained_user is not None and sim.retained_user["id"] == object_id


def test_emails_become_workspace_members(tmp_path: Path) -> None:
    """An admin given by email is a simulated member with that email; Slack IDs stay as given."""
    settings = read_config(sample(tmp_path))
    people, ids = slack_people(settings, settings.tenants[0])
    by_id = {p.id: p for p in people}
    assert by_id[ids["admin2@contoso.com"]].email == "admin2@contoso.com"
    assert {"U0ADMIN1", "U0APPR1", "U0APPR2", "U0APPR3"} <= set(by_id)


def test_a_certificate_credential_needs_no_file(tmp_path: Path) -> None:
    """A tenant with a certificate_file that is not on this machine still rehearses: the
    rehearsal stands a simulated secret in for it and never reads the real credential."""
    config = sample(
        tmp_path,
        ('client_secret_env = "CONTOSO_SECRET"', 'certificate_file = "missing.pem"'),
    )
    assert read_config(config).tenants[0].name == "contoso"
