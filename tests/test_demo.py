"""`close-account-bot demo` (what `make demo` runs) as a process: the README's first command
closes its simulated tenant, and `demo --rollback` rolls one back."""

from __future__ import annotations

from pathlib import Path

from tests.test_rehearsal import run_cli


async def test_the_demo_closes_its_tenant_and_shows_what_people_see(tmp_path: Path) -> None:
    """The demo exits 0 with the tenant closed, and its channel shows what issues 11 and 13
    added: step 1's data that dies, an Azure subscription's resources named before it can be
    cancelled, the Azure subscriptions' 3-day delete lines, the retained
    admin pinged on a checklist, each request's inventory file and the closing summary."""
    code, out, err = await run_cli("demo", "--users", "30", cwd=tmp_path)
    assert code == 0, out + err
    assert "Final state: closed; Microsoft tenant deleted: True" in out
    for shown in (
        "Data that dies with the tenant",
        "Approving this step confirms the data is backed up.",
        "Delete the Azure subscription",
        "which Azure Resource Manager requires removed before it cancels it: stcontosologs",
        "(3 days after cancelling)",
        "this checklist is yours",
        "plan-delete_users-",
        "Summary of the closure of contoso",
        "changed-contoso-",
    ):
        assert shown in out, shown
    assert "Traceback" not in err and "WARNING" not in err


async def test_the_rollback_demo_puts_everything_back(tmp_path: Path) -> None:
    """`demo --rollback` exits 0 once every user is restored and the cancelled subscriptions,
    the Azure one among them, are active again."""
    code, out, err = await run_cli("demo", "--users", "30", "--rollback", cwd=tmp_path)
    assert code == 0, out + err
    assert "Final state: rolled_back; users 30/30" in out
    assert "Azure portal > Subscriptions" in out
