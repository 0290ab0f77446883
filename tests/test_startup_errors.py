"""What an operator sees when `run`, `check` or `audit` cannot work: one line, no traceback,
exit 2 for what the operator must fix and 1 for a service that did not answer."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Mapping

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from bot.world import World
from simulator.tls import create_client_certificate
from tests.conftest import MakeWorld
from tests.test_certificates import expired_pem
from tests.test_run_process import run_env, socket_mode_world


async def cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:  # it did not stop by itself: a failure, not a hang
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The process exited `code` having printed exactly one line on stderr, and no traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "listening" not in result.stdout
    return lines[0]


async def run(world: World, env: Mapping[str, str], *extra: str) -> str:
    """`run` as an operator starts it; returns stderr's one line (it must not start)."""
    result = await cli(
        "run", "--config", str(world.config_path), "--host", "127.0.0.1", *extra, env=env
    )
    assert result.returncode != 0, result.stdout
    return result.stderr


def set_config(world: World, old: str, new: str) -> None:
    text = world.config_path.read_text()
    assert old in text
    world.config_path.write_text(text.replace(old, new))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- secrets and credentials ---------------------------------------------------------------


async def test_http_mode_without_a_signing_secret_is_one_line_exit_2(
    make_world: MakeWorld,
) -> None:
    """With no app token (HTTP mode) and no signing secret, run names the variable and exits 2."""
    world = await make_world(start=False)
    result = await cli(
        "run",
        "--config",
        str(world.config_path),
        env=run_env(world, drop=("SLACK_SIGNING_SECRET",)),
    )
    assert "SLACK_SIGNING_SECRET" in one_line(result, 2)


def bad_certificates() -> dict[str, tuple[bytes, str]]:
    """Certificate files that cannot work, and the word the one line must contain."""
    key_pem, cert_pem = create_client_certificate()
    other_key, _ = create_client_certificate()
    locked = serialization.load_pem_private_key(key_pem, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2"),
    )
    return {
        "garbage": (b"this is not a certificate\n", "private key"),
        "key-less": (cert_pem, "no PEM private key"),
        "expired": (expired_pem(), "expired"),
        "password-protected": (locked + cert_pem, "password"),
        "another certificate's key": (other_key + cert_pem, "does not belong"),
        "broken key": (
            b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n" + cert_pem,
            "not a valid",
        ),
    }


@pytest.mark.parametrize("case", sorted(bad_certificates()))
async def test_a_bad_certificate_stops_run_before_listening(
    make_world: MakeWorld, case: str
) -> None:
    """A certificate that cannot sign in is found at start: one line naming the config key and
    why, exit 2, instead of "listening" and a failure in the middle of a closure."""
    world = await make_world(start=False, certificate=True)
    content, word = bad_certificates()[case]
    (world.directory / "app-credential.pem").write_bytes(content)
    result = await cli(
        "run",
        "--config",
        str(world.config_path),
        env=run_env(world, drop=("SIM_TENANT_SECRET",)),
    )
    line = one_line(result, 2)
    assert "tenants[0].certificate_file" in line and word in line, line


# --- the port ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
async def test_an_impossible_port_is_one_line_exit_2(make_world: MakeWorld, port: str) -> None:
    """--port outside 0-65535 (or not a number) is an argument error: one line, exit 2."""
    world = await make_world(start=False)
    result = await cli(
        "run", "--config", str(world.config_path), "--port", port, env=run_env(world)
    )
    assert "--port" in one_line(result, 2)


async def test_a_port_in_use_is_one_line_exit_2(make_world: MakeWorld) -> None:
    """A port another process holds is named with the fix, exit 2, and the lock is released."""
    world = await make_world(start=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        result = await cli(
            "run",
            "--config",
            str(world.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            port,
            env=run_env(world),
        )
    line = one_line(result, 2)
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line
    assert not (world.directory / "close-account.db.lock").read_text()  # released


# --- Slack at start ------------------------------------------------------------------------


async def test_a_refused_bot_token_is_one_line_exit_2(make_world: MakeWorld) -> None:
    """Slack answering invalid_auth to the bot token is the operator's to fix: exit 2."""
    world = await make_world(start=False)
    env = run_env(world, SLACK_BOT_TOKEN="xoxb-not-the-apps-token")
    line = one_line(await cli("run", "--config", str(world.config_path), env=env), 2)
    assert "SLACK_BOT_TOKEN" in line and "invalid_auth" in line


async def test_slack_unreachable_at_start_is_one_line_exit_1(make_world: MakeWorld) -> None:
    """Slack not answering at all is one line naming the URL, exit 1 (a restart may fix it)."""
    world = await make_world(start=False)
    url = f"http://127.0.0.1:{closed_port()}/api/"
    set_config(world, world.slack.api_url, url)
    line = one_line(await cli("run", "--config", str(world.config_path), env=run_env(world)), 1)
    assert "cannot reach Slack" in line and url in line


async def test_a_refused_app_token_is_one_line_exit_2(make_world: MakeWorld) -> None:
    """In Socket Mode an app token Slack refuses is named: exit 2."""
    world = await socket_mode_world(make_world)
    env = run_env(world, SLACK_APP_TOKEN="xapp-1-not-this-apps")
    line = one_line(await cli("run", "--config", str(world.config_path), env=env), 2)
    assert "SLACK_APP_TOKEN" in line


async def test_socket_mode_that_cannot_connect_is_one_line_exit_1(make_world: MakeWorld) -> None:
    """When the websocket cannot open (a proxy refusing WSS), run says so in one line, exit 1,
    instead of retrying with a traceback a connection."""
    world = await socket_mode_world(make_world)
    world.slack.sockets.blocked = True
    line = one_line(await cli("run", "--config", str(world.config_path), env=run_env(world)), 1)
    assert "Socket Mode" in line


# --- check and audit -----------------------------------------------------------------------


async def test_check_reports_unreachable_slack_and_goes_on_to_the_tenants(
    make_world: MakeWorld,
) -> None:
    """check with Slack unreachable prints a failed Slack line, still checks every tenant, and
    exits 1, with no traceback."""
    world = await make_world(start=False)
    set_config(world, world.slack.api_url, f"http://127.0.0.1:{closed_port()}/api/")
    result = await cli("check", "--config", str(world.config_path), env=run_env(world))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["slack"] and "FAIL" in line for line in lines), lines
    assert any(line.startswith("contoso") and "ok" in line.split() for line in lines), lines


async def test_check_reports_an_unreachable_authority_and_goes_on(make_world: MakeWorld) -> None:
    """A tenant whose authority does not answer is a failed token line, not a traceback."""
    world = await make_world(start=False)
    host = world.microsoft.base_url
    set_config(
        world, f'authority_host = "{host}"', f'authority_host = "https://127.0.0.1:{closed_port()}"'
    )
    result = await cli("check", "--config", str(world.config_path), env=run_env(world))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    token = [line for line in result.stdout.splitlines() if line.startswith("contoso")]
    assert token and "FAIL" in token[0] and "cannot reach" in token[0], result.stdout
    assert any(
        line.startswith("slack") and "ok" in line.split() for line in result.stdout.splitlines()
    )


async def test_audit_with_a_mistyped_database_path_is_one_line_exit_2(
    make_world: MakeWorld,
) -> None:
    """audit on a database that does not exist says so and creates nothing (it used to print []
    from a fresh empty file)."""
    world = await make_world(start=False)
    set_config(world, "close-account.db", "close-acount.db")
    args = ("audit", "--config", str(world.config_path), "--tenant", "contoso")
    line = one_line(await cli(*args, env=run_env(world)), 2)
    assert "storage.path" in line and "close-acount.db" in line
    assert not (world.directory / "close-acount.db").exists()


async def test_a_database_directory_that_does_not_exist_is_refused(
    make_world: MakeWorld,
) -> None:
    """check and run refuse a storage path whose directory is missing: one line, exit 2."""
    world = await make_world(start=False)
    missing = world.directory / "nope" / "x.db"
    set_config(world, str(world.directory / "close-account.db"), str(missing))
    for command in ("check", "run"):
        result = await cli(command, "--config", str(world.config_path), env=run_env(world))
        line = one_line(result, 2)
        assert "storage.path" in line and str(missing.parent) in line


def test_version_is_printed() -> None:
    """--version prints the installed version and exits 0."""
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"close-account-bot {version('close-account-bot')}"
    assert result.stderr == ""


# --- found by review: what a first run gets wrong ------------------------------------------


async def plain_text_server(status: int) -> tuple[web.AppRunner, str]:
    """An HTTP server answering every request with `status` in plain text, as a proxy's error
    page or a wrong URL does (not Slack's JSON)."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=status, text="upstream connect error or disconnect")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/api/"


async def test_a_slack_url_answering_plain_text_is_one_line(make_world: MakeWorld) -> None:
    """An api_url that answers 404 in plain text (not Slack's JSON) is one line naming the URL,
    exit 2, for run; check fails the Slack line and still checks the tenant."""
    world = await make_world(start=False)
    runner, url = await plain_text_server(404)
    try:
        set_config(world, world.slack.api_url, url)
        line = one_line(await cli("run", "--config", str(world.config_path), env=run_env(world)), 2)
        assert url in line and "HTTP 404" in line and "api_url" in line
        result = await cli("check", "--config", str(world.config_path), env=run_env(world))
    finally:
        await runner.cleanup()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("slack") and "http_404" in line for line in lines), lines
    assert any(line.startswith("contoso") and "ok" in line.split() for line in lines), lines


async def test_a_database_directory_the_bot_cannot_write_is_one_line(
    make_world: MakeWorld,
) -> None:
    """A storage path where the lock file cannot be created is one line naming the directory and
    the fix, exit 2, not a traceback."""
    world = await make_world(start=False)
    set_config(world, str(world.directory / "close-account.db"), "/proc/close-account.db")
    line = one_line(await cli("run", "--config", str(world.config_path), env=run_env(world)), 2)
    assert "storage.path" in line and "/proc" in line and "writable" in line


async def test_a_corrupt_database_is_one_line_for_run_audit_and_check(
    make_world: MakeWorld,
) -> None:
    """A database file that is not SQLite is one line for run and audit (exit 2) and a failed
    storage line for check."""
    world = await make_world(start=False)
    (world.directory / "close-account.db").write_bytes(b"garbage, not a database" * 100)
    env = run_env(world)
    line = one_line(await cli("run", "--config", str(world.config_path), env=env), 2)
    assert "storage.path" in line and "backup" in line
    audit = ("audit", "--config", str(world.config_path), "--tenant", "contoso")
    assert "storage.path" in one_line(await cli(*audit, env=env), 2)
    result = await cli("check", "--config", str(world.config_path), env=env)
    storage = [line for line in result.stdout.splitlines() if line.startswith("storage")]
    assert storage and "FAIL" in storage[0] and "not a SQLite database" in storage[0]


async def test_a_ca_file_that_is_not_a_certificate_is_one_line(make_world: MakeWorld) -> None:
    """[tls] ca_file holding something else is a config error naming the key, exit 2, for run and
    check alike."""
    world = await make_world(start=False)
    bad = world.directory / "not-a-ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nbm90\n-----END CERTIFICATE-----\n")
    set_config(world, str(world.microsoft.ca_file), str(bad))
    for command in ("run", "check"):
        result = await cli(command, "--config", str(world.config_path), env=run_env(world))
        assert "tls.ca_file" in one_line(result, 2)


async def test_audit_writes_nothing_to_the_database(make_world: MakeWorld) -> None:
    """audit reads only: no migration, no journal-mode switch, the database file's bytes
    unchanged (safe beside a bot of another version and on a read-only backup copy)."""
    world = await make_world(start=False)
    await world.start_bot()
    await world.command("contoso")
    await world.wait_request("delete_users")
    await world.stop_bot()
    db = world.directory / "close-account.db"
    # A copy in rollback-journal mode: opening it the way `run` does would switch it to WAL (and
    # migrate it), which changes the file's header.
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    before = db.read_bytes()
    args = ("audit", "--config", str(world.config_path), "--tenant", "contoso", "--format", "csv")
    result = await cli(*args, env=run_env(world))
    assert result.returncode == 0 and "plan" in result.stdout, result.stderr
    assert db.read_bytes() == before
