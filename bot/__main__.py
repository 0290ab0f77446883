"""The command line: demo | run | check | diagram | audit. The only wiring point.

User errors (config, arguments, a port in use, a credential that cannot work) are one line on
stderr and exit 2; a service that cannot be reached at start is one line and exit 1, so a
supervisor's restart may fix it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import aiohttp

from bot.config import ConfigError, Settings, load_settings
from bot.logs import FORMATS, LEVELS, configure
from bot.settings import TenantSettings
from bot.startup import StartupError, Unreachable
from storage.lock import InstanceLockedError


class CliError(Exception):
    """A user error: printed as one line, exit 2."""


def version() -> str:
    """The installed distribution's version (pyproject's), or the source tree's if not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("close-account-bot")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


def port_number(text: str) -> int:
    """A TCP port for --port: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def _settings(path: str) -> Settings:
    return load_settings(path)


def _tenant(settings: Settings, args: argparse.Namespace) -> TenantSettings:
    """The tenant `--tenant` names, or a one-line error naming the config."""
    tenant = settings.tenant(args.tenant)
    if tenant is None:
        raise CliError(f"{args.config}: tenants: no tenant named {args.tenant!r}")
    return tenant


def cmd_diagram(_: argparse.Namespace) -> int:
    from statemachine.closure import mermaid

    print(mermaid())
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import sqlite3

    from bot.auditlog import as_csv, as_json
    from bot.summary import changed_csv
    from storage.audit import trail
    from storage.db import open_readonly

    settings = _settings(args.config)
    tenant = _tenant(settings, args)
    if not settings.storage_path.is_file():  # opening it would create an empty database
        raise CliError(
            f"{args.config}: storage.path: no database at {settings.storage_path}"
            " (check the path; `run` creates it)"
        )
    try:
        db = open_readonly(settings.storage_path)
        if args.deleted:  # every object the tenant's closures changed, as CSV
            print(changed_csv(db, tenant.name), end="")
            return 0
        rows = trail(db, tenant.name)
    except sqlite3.DatabaseError as exc:
        raise CliError(
            f"{args.config}: storage.path: {settings.storage_path} cannot be read as the bot's "
            f"database ({exc})"
        ) from None
    print(
        as_json(rows) if args.format == "json" else as_csv(rows), end="\n" * (args.format == "json")
    )
    return 0


async def _check(settings: Settings) -> int:
    """Reads only: no database, no Slack posts, no Graph writes."""
    from bot.doctor import check_slack, check_storage, check_tenant_reachable, table
    from bot.network import client_session
    from bot.service import build_tenants, ca_bundle, slack_client, ssl_context
    from bot.startup import check_tls

    check_tls(settings)
    context = ssl_context(settings.ca_file)
    bundle = ca_bundle(settings.ca_file)
    async with client_session(settings.network) as session:
        tenants = build_tenants(settings, session, context, bundle)
        try:
            lines = [check_storage(settings.storage_path)]
            lines += await check_slack(slack_client(settings, context, session), settings)
            for tenant in tenants.values():
                lines += await check_tenant_reachable(tenant)
        finally:
            for tenant in tenants.values():
                getattr(tenant.graph.tokens, "close", lambda: None)()
            if bundle:
                os.unlink(bundle)  # a small temp file
    print(table(lines))
    return 0 if all(line.ok for line in lines) else 1


def cmd_check(args: argparse.Namespace) -> int:
    return asyncio.run(_check(_settings(args.config)))


async def _plan(settings: Settings, name: str, fmt: str) -> int:
    """Reads only: the tenant's inventory per step, printed; no database, Slack or write."""
    from bot import preview
    from bot.microsoft.graph import GraphError
    from bot.microsoft.tokens import TokenError
    from bot.network import client_session
    from bot.service import build_tenants, ca_bundle, ssl_context
    from bot.startup import check_tls

    check_tls(settings)
    context = ssl_context(settings.ca_file)
    bundle = ca_bundle(settings.ca_file)
    async with client_session(settings.network) as session:
        tenants = build_tenants(settings, session, context, bundle)
        try:
            found = await preview.preview(
                tenants[name], session, context, settings.timing.tenant_gone_checks
            )
        except (TokenError, GraphError, aiohttp.ClientError, TimeoutError) as exc:
            print(f"close-account-bot: cannot read {name}: {exc}", file=sys.stderr)
            return 1
        finally:
            for tenant in tenants.values():
                getattr(tenant.graph.tokens, "close", lambda: None)()
            if bundle:
                os.unlink(bundle)
    out = {
        "text": lambda: preview.as_text(name, found),
        "csv": lambda: preview.as_csv(found),
        "json": lambda: preview.as_json(found),
    }[fmt]()
    print(out, end="" if out.endswith("\n") else "\n")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    tenant = _tenant(settings, args)
    return asyncio.run(_plan(settings, tenant.name, args.format))


async def _run(settings: Settings, host: str, port: int) -> None:
    from bot.service import serve_forever, start_service

    # SIGTERM (systemd, Kubernetes, `docker stop` without the image's STOPSIGNAL) and SIGINT stop
    # the bot the same clean way: the runner stops, the database closes, the lock is released.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    service = await start_service(settings, host=host, port=port)
    # In Socket Mode Slack's requests come over the websocket: the port serves only health and
    # metrics, so the line does not name /slack/events (which answers 404 there).
    where = (
        f"{service.url} (Socket Mode; /healthz, /livez, /metrics)"
        if settings.slack.app_token
        else f"{service.url}/slack/events"
    )
    print(f"close-account-bot listening on {where}", flush=True)
    await serve_forever(service, stop)


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def handler() -> None:
        logging.getLogger("close_account_bot").info(
            "%s received; stopping", signal.Signals(signum).name
        )
        stop.set()

    return handler


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    try:
        asyncio.run(_run(settings, args.host, args.port))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    if args.users is not None and args.users < 2:
        raise CliError("--users: must be at least 2")
    if args.config is not None:
        from bot.rehearsal import RehearsalError, run_rehearsal

        try:
            return asyncio.run(
                run_rehearsal(args.config, args.tenant, users=args.users or 12, seed=args.seed)
            )
        except RehearsalError as exc:
            raise CliError(str(exc)) from None
    if args.tenant is not None:
        raise CliError("--tenant: only with --config (a rehearsal of your own config)")
    db = str(Path(args.db).resolve()) if args.db else None
    return asyncio.run(
        run_demo(users=args.users or 250, seed=args.seed, db_path=db, rollback=args.rollback)
    )


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line and exit 2, like config errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="close-account-bot",
        description="Close a Microsoft 365 tenant from Slack: planned, approved, verified.",
    )
    p.add_argument("--version", action="version", version=f"close-account-bot {version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="run a whole closure against the embedded simulators")
    demo.add_argument(
        "--users", type=int, default=None, help="simulated users (default 250; 12 with --config)"
    )
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--db", default=None, help="database file (default: a temporary one)")
    demo.add_argument(
        "--rollback", action="store_true", help="roll the closure back after step 2 instead"
    )
    demo.add_argument(
        "--config", default=None, help="rehearse with your own config file (simulated tenants)"
    )
    demo.add_argument("--tenant", default=None, help="the config's tenant to rehearse")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="run the bot")
    run.add_argument("--config", required=True)
    run.add_argument("--port", type=port_number, default=3000)
    run.add_argument("--host", default="0.0.0.0")
    run.add_argument("--log-level", choices=list(LEVELS), default="info")
    run.add_argument("--log-format", choices=list(FORMATS), default="text")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="check config, credentials, permissions and roles")
    check.add_argument("--config", required=True)
    check.set_defaults(func=cmd_check)
    plan = sub.add_parser("plan", help="preview a closure: per step, what it would do and block")
    plan.add_argument("--config", required=True)
    plan.add_argument("--tenant", required=True)
    plan.add_argument("--format", choices=["text", "csv", "json"], default="text")
    plan.set_defaults(func=cmd_plan)
    diagram = sub.add_parser("diagram", help="print the state machine as Mermaid")
    diagram.set_defaults(func=cmd_diagram)
    audit = sub.add_parser("audit", help="print a tenant's audit trail")
    audit.add_argument("--config", required=True)
    audit.add_argument("--tenant", required=True)
    audit.add_argument("--format", choices=["json", "csv"], default="json")
    audit.add_argument(
        "--deleted",
        action="store_true",
        help="print instead every object the tenant's closures changed (deleted...), as CSV",
    )
    audit.set_defaults(func=cmd_audit)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # `run` logs at --log-level (default info); every other command only warnings, as text.
    configure(
        getattr(args, "log_level", "warning"), getattr(args, "log_format", "text"), sys.stderr
    )
    try:
        code: int = args.func(args)
    except (ConfigError, CliError, InstanceLockedError, StartupError) as exc:
        print(f"close-account-bot: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(f"close-account-bot: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
