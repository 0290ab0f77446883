"""The core objects, built once and wired together: each gets what it needs through its
constructor. `service` builds the clients and calls `build_core`; nothing else constructs these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot.actions import Actions
from bot.approval_requests import ApprovalRequests
from bot.approvers import Approvers
from bot.approving import Approving
from bot.config import Settings
from bot.editbudget import EditBudget
from bot.home import HomeSource
from bot.identity import Directory
from bot.microsoft.tenant import Tenant
from bot.outbox import Outbox
from bot.patience import Patience
from bot.phases import Phases
from bot.plan_command import PlanCommand
from bot.planner import Planner
from bot.reactions import Reactions
from bot.runner import Background, Runner, Wakers
from bot.slackapi import BotIdentity
from bot.status import Status
from bot.summary import Records
from bot.transitions import Transitions


@dataclass(frozen=True)
class Core:
    settings: Settings
    db: Database
    tenants: dict[str, Tenant]
    directory: Directory
    outbox: Outbox
    status: Status
    transitions: Transitions
    reactions: Reactions
    phases: Phases
    runner: Runner
    actions: Actions
    background: Background
    home: HomeSource


def build_core(
    *,
    settings: Settings,
    db: Database,
    client: AsyncWebClient,
    tenants: dict[str, Tenant],
    session: aiohttp.ClientSession,
    ssl_context: Any,
    clock: Callable[[], float],
) -> Core:
    directory = Directory(client, db, clock)
    approvers = Approvers(settings, directory)
    wakers = Wakers()
    background = Background()
    backoff = min(settings.timing.poll_interval, 30.0)  # after an error that changed nothing
    requests = ApprovalRequests(db=db, client=client, approvers=approvers)
    me = BotIdentity(client)  # only the bot's own messages are the bot's
    # The status message and the thread each need the other: posts go in the status message's
    # thread (so it is posted first), and the thread says a thing before the status does.
    outbox: Outbox
    interval = settings.timing.status_edit_interval
    status = Status(
        db=db,
        client=client,
        me=me,
        clock=clock,
        interval=interval,
        # "0s" shows every edit at once (the tests); otherwise all status messages share one
        # budget within Slack's tier 3.
        budget=EditBudget() if interval > 0 else None,
        backoff=backoff,
        flush_thread=lambda closure_id: outbox.flush(closure_id),
        thread_pending=lambda closure_id: outbox.pending(closure_id),
    )
    records = Records(
        db=db,
        client=client,
        clock=clock,
        mark_requests=requests.mark_all,
        say=lambda closure_id, text: outbox.say(closure_id, text),
    )
    outbox = Outbox(
        db=db,
        client=client,
        me=me,
        clock=clock,
        show_status=status.refresh,
        mark_requests=records.after_posts,  # requests marked, then an end's list of changes
    )
    transitions = Transitions(db=db, clock=clock, outbox=outbox, status=status, wake=wakers.wake)
    reactions = Reactions(
        db=db,
        client=client,
        clock=clock,
        approvers=approvers,
        directory=directory,
        transitions=transitions,
        outbox=outbox,
        status=status,
        background=background.run,
    )
    planner = Planner(
        settings=settings,
        db=db,
        clock=clock,
        tenants=tenants,
        session=session,
        ssl_context=ssl_context,
    )
    approving = Approving(
        settings=settings,
        db=db,
        clock=clock,
        planner=planner,
        reactions=reactions,
        approvers=approvers,
        transitions=transitions,
        outbox=outbox,
    )
    phases = Phases(
        settings=settings,
        db=db,
        clock=clock,
        planner=planner,
        approving=approving,
        requests=requests,
        transitions=transitions,
        outbox=outbox,
        status=status,
        patience=Patience(settings, clock),
    )
    runner = Runner(
        db=db,
        clock=clock,
        phases=phases,
        transitions=transitions,
        outbox=outbox,
        status=status,
        requests=requests,
        wakers=wakers,
        background=background,
        backoff=backoff,
    )
    actions = Actions(
        settings=settings,
        db=db,
        client=client,
        clock=clock,
        directory=directory,
        approvers=approvers,
        transitions=transitions,
        status=status,
        spawn=runner.spawn,
        preview=PlanCommand(
            settings=settings,
            db=db,
            client=client,
            clock=clock,
            directory=directory,
            approvers=approvers,
            tenants=tenants,
            session=session,
            ssl_context=ssl_context,
        ).answer,
    )
    home = HomeSource(
        db=db,
        client=client,
        clock=clock,
        settings=settings,
        directory=directory,
        approvers=approvers,
    )
    return Core(
        settings=settings,
        db=db,
        tenants=tenants,
        directory=directory,
        outbox=outbox,
        status=status,
        transitions=transitions,
        reactions=reactions,
        phases=phases,
        runner=runner,
        actions=actions,
        background=background,
        home=home,
    )
