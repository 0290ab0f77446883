"""Parsing /close-account text: every input gets a command or a one-line reason."""

from __future__ import annotations

import pytest

from bot.commands import Command, UsageError, parse


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("contoso", Command("start", "contoso")),
        ("start Contoso", Command("start", "contoso")),
        ("status", Command("status")),
        ("status contoso", Command("status", "contoso")),
        ("list", Command("list")),
        ("help", Command("help")),
        ("abort contoso customer renewed", Command("abort", "contoso", "customer renewed")),
        ("retry contoso", Command("retry", "contoso")),
        ("  RETRY   contoso ", Command("retry", "contoso")),
    ],
)
def test_parses_the_contracts_commands(text: str, command: Command) -> None:
    """Each documented form parses to its command."""
    assert parse(text) == command


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "start",
        "retry",
        "abort",
        "list now",
        "retry a b",
        "status a b",
        "<@U1>",
        "contoso fabrikam",
        "start ../etc",
        "drop table",
        "`x`",
    ],
)
def test_garbage_is_refused_with_a_reason(text: str) -> None:
    """Anything else raises UsageError with a one-line reason."""
    with pytest.raises(UsageError) as info:
        parse(text)
    assert "\n" not in str(info.value) and str(info.value)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("rollback contoso", Command("rollback", "contoso")),
        ("disable-sync contoso", Command("disable-sync", "contoso")),
        ("audit contoso", Command("audit", "contoso")),
    ],
)
def test_parses_the_later_commands(text: str, command: Command) -> None:
    """rollback, disable-sync and audit take exactly one tenant."""
    assert parse(text) == command
    with pytest.raises(UsageError):
        parse(text + " extra")
