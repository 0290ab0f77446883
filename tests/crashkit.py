"""Crash harness: the real bot in a subprocess, SIGKILLed at deterministic points of a closure.

The simulated Slack workspace and Microsoft tenant run in the test's event loop; the bot runs as
`python -m bot run` on 127.0.0.1 with the World's config and secrets. The harness sees what the
simulators see, from the test process, through what they expose:

- `graph`: a Graph request (or `$batch` sub-request) reaching Microsoft, before Microsoft acts
  on it (a wrapper around the simulator's public `faults`, which it asks about every Graph
  request first). A point may `drop` such a request (not a sub-request): Microsoft never acts
  on it, as if the bot had died just before sending it.
- `microsoft`: a request Microsoft answered (its public `requests` log, observed on append),
  before the answer leaves: the change is made, the bot never hears of it.
- `slack`: a Web API call Slack carried out (its public `calls` log), before the answer leaves:
  the message is posted or edited, the bot never learns so.

Each event carries the closure's state as the bot's database has it at that moment (read-only
from the test: WAL lets it read the last commit while the bot writes).

A `KillPoint` is "the nth event matching this predicate while the closure is in this step".
Points are armed one at a time in the order the closure reaches them; counting starts when a
point is armed; a point still armed when the closure is seen in a later step is skipped (and
reported as never reached). When a point fires, the harness sends SIGKILL from inside the
simulator's handler, so the answer never reaches the bot, waits for the process to die and
starts a new one on the same database and a fresh port. What the simulators still do for the
dead process (the rest of a `$batch`) counts for no point.

Scripted people behave as Slack and a Global Administrator would. The admin types the command
(again, if Slack showed an error). Approvers react to each approval request one after the
other, seconds apart as people do: the first once the bot has recorded the request, the next
once the bot has stored the previous vote or the process that acknowledged it has died. Slack
redelivers a reaction whose delivery failed, with the same event ID, up to three times, as the
Events API does, and never one the bot acknowledged; when kills cut all four deliveries short,
Slack gives up and the reaction is only on the message, where the bot must read it back. The
admin works each admin-center checklist
once the bot has polled Microsoft ADMIN_POLLS times after it, so kills can land while the bot
waits on the checklist.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from sqlite_utils import Database

from bot.world import ADMIN, APPROVERS, CHANNEL, World
from simulator.microsoft.server import RequestRecord
from simulator.slack.server import SimMessage, SlashResult
from statemachine.steps import names as step_names
from storage.approvals import request_at
from storage.audit import trail
from storage.closures import latest_closure_for
from storage.db import open_db

T = TypeVar("T")

DESTRUCTIVE = frozenset({"DELETE", "PATCH", "PUT"})
SLACK_RETRIES = 3  # the Events API retries a failed delivery three times
ADMIN_POLLS = 3  # the bot polls Microsoft this often after a checklist before the admin acts
READY_TIMEOUT = 20.0
AT_REST = ("closed", ".failed", ".blocked", ".rejected", "aborted")
POLL = 0.02  # seconds between looks at the bot's database


# --- events and kill points -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing the simulators saw, while the closure was in `state`."""

    source: str  # "graph" | "microsoft" | "slack"
    method: str  # HTTP method, or the Slack Web API method
    path: str = ""  # Graph/Microsoft path with query
    batch: bool = False  # a $batch sub-request
    status: int = 0  # Microsoft's answer (microsoft events)
    args: dict[str, Any] = field(default_factory=dict)  # Slack call arguments
    state: str | None = None  # the closure's state in the bot's database at that moment

    @property
    def step(self) -> str | None:
        return self.state.split(".", 1)[0] if self.state else None


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL the bot on the `nth` event matching `match` while the closure is in `step`."""

    name: str
    step: str
    match: Callable[[Event], bool]
    nth: int = 1
    drop: bool = False  # graph events: Microsoft never acts on the request

    def __str__(self) -> str:
        return f"{self.name} (#{self.nth})" if self.nth > 1 else self.name


@dataclass
class Kill:
    point: KillPoint
    event: Event
    incarnation: int
    at: float


# Predicates for the kill-point catalogue (tests/test_crash.py picks from it).


def graph(method: str, prefix: str, *, batch: bool | None = None) -> Callable[[Event], bool]:
    def match(e: Event) -> bool:
        return (
            e.source == "graph"
            and e.method == method
            and e.path.startswith(prefix)
            and (batch is None or e.batch == batch)
        )

    return match


def answered(method: str, contains: str) -> Callable[[Event], bool]:
    def match(e: Event) -> bool:
        return e.source == "microsoft" and e.method == method and contains in e.path

    return match


def posted(event_type: str | None = None, text: str = "") -> Callable[[Event], bool]:
    """A chat.postMessage that Slack stored: by metadata event_type and/or text fragment."""

    def match(e: Event) -> bool:
        if e.source != "slack" or e.method != "chat.postMessage":
            return False
        metadata = e.args.get("metadata")
        kind = metadata.get("event_type") if isinstance(metadata, dict) else None
        return (event_type is None or kind == event_type) and text in str(e.args.get("text", ""))

    return match


def slack_call(method: str, **args: str) -> Callable[[Event], bool]:
    def match(e: Event) -> bool:
        return (
            e.source == "slack"
            and e.method == method
            and all(str(e.args.get(k)) == v for k, v in args.items())
        )

    return match


# --- the observed simulators --------------------------------------------------------------------


class _ObservedList(list[T]):
    """The simulator's own log, with a callback after each append."""

    def __init__(self, items: Iterable[T], on_append: Callable[[T], None]) -> None:
        super().__init__(items)
        self._on_append = on_append

    def append(self, item: T) -> None:
        super().append(item)
        self._on_append(item)


class _ObservedFaults:
    """Wraps `MicrosoftSimulator.faults`: every Graph request is offered to `on_request` first."""

    def __init__(self, inner: Any, on_request: Callable[[str, str, bool], bool]) -> None:
        self._inner = inner
        self._on_request = on_request

    def take(self, method: str, path: str, *, in_batch: bool) -> Any:
        if self._on_request(method, path, in_batch) and not in_batch:
            self._inner.drop(1, path_prefix=path, method=method)
        return self._inner.take(method, path, in_batch=in_batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass(frozen=True)
class Attempt:
    """One delivery of a reaction event to the bot, and how it ended."""

    incarnation: int  # the bot process it was sent to
    outcome: str  # "200", "HTTP <status>", "no answer within 3 s", or the connection error
    started: float
    ended: float


@dataclass
class VoteRecord:
    """One approval reaction and what became of its delivery."""

    user: str
    ts: str  # the approval request message
    step: str
    plan_hash: str
    quorum: int
    event_id: str
    mark: int  # len(microsoft.requests) when the reaction appeared on the message
    attempts: list[Attempt] = field(default_factory=list)
    acked: bool = False
    incarnation: int = 0  # the bot process that acknowledged it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class CrashHarness:
    """Runs one closure with the bot in a subprocess, killing it at each point in turn."""

    def __init__(self, world: World, points: list[KillPoint], *, stall: float = 15.0) -> None:
        self.world = world
        self.points = list(points)
        self.stall = stall
        self.kills: list[Kill] = []
        self.fired: set[int] = set()  # indexes of the points that fired
        self.votes: list[VoteRecord] = []
        self.exits: list[str] = []  # unexpected bot exits: a crash we did not cause
        self.problems: list[str] = []  # the scripted people could not do their part
        self.incarnation = 0
        self.logs: list[Path] = []
        self.status_states: list[str] = []
        self.stopped_at = ""  # why run() gave up, if it did
        self.planned_users = [
            uid
            for uid, u in world.tenant.users.items()
            if str(u["userPrincipalName"]).lower() != world.tenant.retained_upn.lower()
        ]
        self._armed = 0
        self._count = 0
        self._accepting = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: sqlite3.Connection | None = None
        self._killed_by_us = False
        self._up = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._last_change = time.monotonic()
        ms, slack = world.microsoft, world.slack
        ms.requests = _ObservedList(ms.requests, self._on_record)
        slack.calls = _ObservedList(slack.calls, self._on_call)
        ms.faults = _ObservedFaults(ms.faults, self._on_graph)  # type: ignore[assignment]
        slack.subscribe(self._on_message)

    # -- events ----------------------------------------------------------------------------

    def _state(self) -> str | None:
        """The state the status message shows."""
        return self.world.state()

    def _on_graph(self, method: str, path: str, in_batch: bool) -> bool:
        event = Event("graph", method, path, batch=in_batch, state=self.db_state())
        return self._offer(event)

    def _on_record(self, record: RequestRecord) -> None:
        event = Event(
            "microsoft",
            record.method,
            record.path,
            batch=record.batch,
            status=record.status,
            state=self.db_state(),
        )
        self._offer(event)

    def _on_call(self, call: dict[str, Any]) -> None:
        args = call.get("args")
        event = Event("slack", str(call["method"]), args=args or {}, state=self.db_state())
        self._offer(event)

    def _on_message(self, kind: str, message: SimMessage) -> None:
        payload = (message.metadata or {}).get("event_payload") or {}
        if (message.metadata or {}).get("event_type") == "close_account_status":
            state = str(payload.get("state"))
            if not self.status_states or self.status_states[-1] != state:
                self.status_states.append(state)
                self._last_change = time.monotonic()

    def listen(self, callback: Callable[[Event], None]) -> None:
        self._listeners.append(callback)

    def _offer(self, event: Event) -> bool:
        """Count the event for the armed point; SIGKILL the bot when it fires. True to drop.
        Runs inside the simulators' handlers, so it reports its own errors instead of raising."""
        try:
            return self._count_event(event)
        except Exception as exc:  # reported with the invariants
            self.problems.append(f"harness error on {event}: {type(exc).__name__}: {exc}")
            return False

    def _count_event(self, event: Event) -> bool:
        for listener in self._listeners:
            listener(event)
        if not self._accepting:
            return False
        while self._armed < len(self.points) and _later(event.step, self.points[self._armed].step):
            self._armed, self._count = self._armed + 1, 0  # the closure went past it: never reached
        if self._armed >= len(self.points):
            return False
        point = self.points[self._armed]
        if event.step != point.step or not point.match(event):
            return False
        self._count += 1
        if self._count < point.nth:
            return False
        self._kill(point, event)
        return point.drop and event.source == "graph"

    def _kill(self, point: KillPoint, event: Event) -> None:
        proc = self._proc
        assert proc is not None and proc.poll() is None, "a kill point fired with no bot running"
        self._accepting = False
        self._killed_by_us = True
        self._up.clear()
        proc.send_signal(signal.SIGKILL)
        self.kills.append(Kill(point, event, self.incarnation, time.monotonic()))
        self.fired.add(self._armed)
        self._armed += 1
        self._count = 0

    def _start(self, work: Any) -> None:
        """Run a scripted person; an exception there is a harness problem, reported at the end."""

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.problems.append(f"{type(exc).__name__}: {exc}")

        self._tasks.append(asyncio.create_task(guarded()))

    # -- the bot process -------------------------------------------------------------------

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        self.incarnation += 1
        log = self.world.directory / f"bot-{self.incarnation:02d}.log"
        self.logs.append(log)
        command = [
            sys.executable,
            "-m",
            "bot",
            "run",
            "--config",
            str(self.world.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        env = {**os.environ, **self.world.environ}
        with log.open("wb") as out:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.world.slack.request_url = f"http://127.0.0.1:{port}/slack/events"
        return proc, port

    async def _ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        """Poll /healthz until it answers {"ok": true}; False if the process dies first."""
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    return False
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as resp:
                        if resp.status == 200 and (await resp.json()).get("ok") is True:
                            return True
                await asyncio.sleep(0.05)
        raise TimeoutError(f"the bot did not answer {url} within {READY_TIMEOUT}s")

    async def _supervise(self) -> None:
        while not self._closing:
            proc, port = self._spawn()
            self._proc, self._killed_by_us = proc, False
            self._accepting = True
            # A kill point can fire while the bot resumes, between its healthz answer and here:
            # a process already killed is never marked up (deliveries would go to a dead port).
            if await self._ready(proc, port) and not self._killed_by_us:
                self._up.set()
            code = await asyncio.to_thread(proc.wait)
            self._up.clear()
            self._last_change = time.monotonic()
            if self._closing:
                return
            if not self._killed_by_us:
                self._accepting = False
                self.exits.append(
                    f"incarnation {self.incarnation} exited by itself with code {code}:\n"
                    + self.log_tail(self.logs[-1])
                )
                return

    async def stop(self) -> None:
        self._closing = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
            except TimeoutError:
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def log_tail(path: Path, lines: int = 30) -> str:
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- the run ---------------------------------------------------------------------------

    async def run(self, *, limit: float = 90.0, grace: float = 5.0) -> str | None:
        """Start the bot and the closure; drive it until the status message shows it closed.

        Gives up after `limit` seconds, when the closure stalls (its state changes neither in the
        database nor on the status message for `stall` seconds), when it waits on a person
        (`failed`, `blocked`, `rejected`, `aborted` in the database), or when the database says
        `closed` and the status message has not followed `grace` seconds later. Returns the
        state the status message shows."""
        self._start(self._supervise())
        self._start(self._approve())
        self._start(self._admin())
        await self._start_closure()
        started = time.monotonic()
        self._last_change = started
        stored, settled_at = None, None
        while True:
            state = self._state()
            if state == "closed" or self.exits or self.problems:
                return state
            now = time.monotonic()
            current = self.db_state()
            if current != stored:
                stored, self._last_change, settled_at = current, now, None
            if current is not None and current.endswith(AT_REST):
                settled_at = settled_at or now
            if (
                now - started > limit
                or now - self._last_change > self.stall
                or (settled_at is not None and now - settled_at > grace)
            ):
                self.stopped_at = f"database {current}, status message {state}"
                return state

            def moved(_: object, shown: str | None = state) -> bool:
                return self._state() != shown

            with contextlib.suppress(TimeoutError):
                await self.world.slack.wait_for(moved, timeout=0.5)

    async def _start_closure(self) -> None:
        """The admin types `/close-account <tenant>`, and again if Slack showed an error or the
        bot died before a closure existed (then the bot answers that one is open, or starts it)."""
        slack = self.world.slack
        while self.db_state() is None:
            await self._wait_up()
            incarnation = self.incarnation
            try:
                result = await slack.slash_command(
                    user_id=ADMIN, text=self.world.tenant.name, channel_id=CHANNEL
                )
            except aiohttp.ClientError:
                continue
            if result.status != 200:
                continue

            def answered(_: object, r: SlashResult = result, i: int = incarnation) -> bool:
                return bool(r.responses) or self.incarnation != i

            with contextlib.suppress(TimeoutError):
                await slack.wait_for(answered, timeout=10)

    async def _wait_up(self) -> None:
        while not self._up.is_set():
            if self.exits:
                raise RuntimeError(self.exits[-1])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), 1.0)

    # -- scripted approvers ------------------------------------------------------------------

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait for a condition on the bot's database, which has no change signal to await:
        re-checked every POLL seconds (the tasks are cancelled when the run ends)."""
        while not condition():  # noqa: ASYNC110 - nothing to await: SQLite has no change signal
            await asyncio.sleep(POLL)

    async def _approve(self) -> None:
        slack = self.world.slack
        seen: set[str] = set()
        while True:
            request = await slack.wait_for(
                lambda _: next(
                    (r for r in self.world.requests() if r.ts not in seen and r.thread_ts),
                    None,
                ),
                timeout=3600,
            )
            seen.add(request.ts)
            self._start(self._approve_request(request))

    async def _approve_request(
        self, request: SimMessage, approvers: tuple[str, ...] = APPROVERS[:2]
    ) -> None:
        """The approvers react one after the other (see the module docstring). A reaction that
        beats the bot's own bookkeeping of the request is a race of its own, not a crash: see
        test_crash.py."""
        await self._until(lambda: self._bot_knows(request.channel, request.ts))
        for user in approvers:
            vote = await self._vote(request, user)
            if vote is None:
                continue  # undelivered: the next approver reacts all the same, as people do

            def stored_or_lost(v: VoteRecord = vote) -> bool:
                gone = self.incarnation != v.incarnation or not self._up.is_set()
                return gone or self._audited(v.event_id)

            await self._until(stored_or_lost)

    def _query(self, work: Callable[[Database], T], default: T) -> T:
        """Run `work` on a read-only connection to the bot's database (the bot may be writing:
        WAL lets us read the last commit), or return `default` while there is none."""
        if self._conn is None:
            try:
                self._conn = sqlite3.connect(
                    f"file:{self.world.settings().storage_path}?mode=ro",
                    uri=True,
                    isolation_level=None,
                )
            except sqlite3.OperationalError:
                return default
        try:
            return work(Database(self._conn))
        except sqlite3.OperationalError:
            self._conn.close()
            self._conn = None
            return default

    def _bot_knows(self, channel: str, ts: str) -> bool:
        """Whether the bot's database links this message to an approval request."""
        return self._query(lambda db: request_at(db, channel, ts) is not None, False)

    def _audited(self, event_id: str) -> bool:
        return self._query(
            lambda db: any(r.event_id == event_id for r in trail(db, self.world.tenant.name)),
            False,
        )

    def db_state(self) -> str | None:
        """The closure's state as the bot's database has it."""

        def state(db: Database) -> str | None:
            row = latest_closure_for(db, self.world.tenant.name)
            return None if row is None else str(row.state)

        return self._query(state, None)

    async def _vote(self, request: SimMessage, user: str) -> VoteRecord | None:
        """React on the request; Slack delivers reaction_added until the bot acknowledges it
        (a failed delivery is retried with the same event ID, at most SLACK_RETRIES times)."""
        slack = self.world.slack
        payload = (request.metadata or {})["event_payload"]
        mark = len(self.world.microsoft.requests)
        slack.add_reaction(request, "white_check_mark", user)
        event = {
            "type": "reaction_added",
            "user": user,
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": request.channel, "ts": request.ts},
            "item_user": request.user,
            "event_ts": slack.next_ts(),
        }
        envelope = slack.envelope(event)
        record = VoteRecord(
            user,
            request.ts,
            str(payload["step"]),
            str(payload["plan_hash"]),
            int(payload["quorum"]),
            str(envelope["event_id"]),
            mark,
        )
        self.votes.append(record)
        while len(record.attempts) <= SLACK_RETRIES:
            await self._wait_up()
            retry = len(record.attempts) or None
            incarnation, started = self.incarnation, time.monotonic()
            try:
                result = await slack.deliver(
                    envelope, retry_num=retry, retry_reason="http_error" if retry else None
                )
                outcome = "200" if result.status == 200 else f"HTTP {result.status}"
                if result.timed_out:
                    outcome = f"no answer within {slack.ack_timeout:g} s"
            except aiohttp.ClientError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            record.attempts.append(Attempt(incarnation, outcome, started, time.monotonic()))
            if outcome == "200":
                record.acked, record.incarnation = True, incarnation
                return record
        # Slack gives up after its retries; the reaction stays on the message, where the bot
        # reads it back (reconcile_votes) when it starts and before it approves.
        return None

    # -- the scripted Global Administrator ---------------------------------------------------

    async def _admin(self) -> None:
        """Work each checklist once the bot has polled Microsoft ADMIN_POLLS times after it
        appeared, so that kill points can land while the bot waits on the admin."""
        tenant, slack = self.world.tenant, self.world.slack
        polls: Counter[str] = Counter()
        enough = {step: asyncio.Event() for step in step_names()}
        posted_for: set[str] = set()
        openid = f"/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"

        def count(e: Event) -> None:
            for step in posted_for:
                if step == "delete_directory":
                    hit = e.source == "microsoft" and e.method == "GET" and e.path == openid
                else:
                    hit = (
                        e.source == "graph"
                        and e.method == "GET"
                        and e.path.startswith("/v1.0/directory/subscriptions")
                    )
                if hit:
                    polls[step] += 1
                    if polls[step] >= ADMIN_POLLS:
                        enough[step].set()

        self.listen(count)
        done: set[str] = set()
        while True:
            checklist = await slack.wait_for(
                lambda _: next(
                    (
                        m
                        for m in slack.messages
                        if m.user == slack.bot_user_id
                        and m.thread_ts
                        and "checklist for a Global Administrator" in m.text.split("\n")[0]
                        and _checklist_step(m.text) not in done
                    ),
                    None,
                ),
                timeout=3600,
            )
            step = _checklist_step(checklist.text)
            posted_for.add(step)
            await enough[step].wait()
            posted_for.discard(step)
            done.add(step)
            for sub in list(tenant.subscriptions):
                if step == "cancel_subscriptions" and sub["status"] in ("Enabled", "Warning"):
                    tenant.cancel_subscription(sub["id"])
                elif step == "delete_disabled_subscriptions" and sub["status"] != "Deleted":
                    tenant.delete_subscription(sub["id"])
            if step == "delete_directory":
                for app_id in list(tenant.deleted_applications):  # the bot's own, per checklist
                    tenant.purge_application(app_id)
                tenant.delete_tenant()


ORDER = (*step_names(), "closed")


def _later(step: str | None, than: str) -> bool:
    return step in ORDER and ORDER.index(step) > ORDER.index(than)


def _checklist_step(text: str) -> str:
    number = int(text.split(",", 1)[0].removeprefix("Step ").strip())
    return step_names()[number - 1]


# --- invariants ---------------------------------------------------------------------------------


def step_of_write(path: str) -> str | None:
    """The closure step a destructive Graph request belongs to, from its path."""
    p = path.split("?", 1)[0]
    if p.startswith("/v1.0/users/") and p.count("/") == 3:
        return "delete_users"
    if (
        p.startswith("/v1.0/policies/identitySecurityDefaultsEnforcementPolicy")
        or p.startswith("/v1.0/identity/conditionalAccess/policies/")
        or (p.startswith("/beta/users/") and p.endswith("/authentication/requirements"))
    ):
        return "disable_mfa"
    if p.startswith(("/v1.0/directory/deletedItems/", "/v1.0/applications/")) or p.startswith(
        "/v1.0/servicePrincipals/"
    ):
        return "delete_directory"
    return None


# Bot replies that may legitimately say the same thing twice. Back to back: only an answer to an
# outside event or a timer: a refused reaction (one answer per reaction) and a reminder (one per
# reminder_interval while nothing changes). Anywhere in the thread, also a report of what
# Microsoft shows now ("Step 5: tenant-not-found answers: 1/3.", "Step 2:\n• waiting on ..."),
# which the bot posts when Microsoft's answer changes, so it recurs if the answer changes back.
# Every other reply reports a transition, which happens once per step and plan: seen twice, the
# bot redid reported work or sent a post twice.
REPEATS_IN_A_ROW = re.compile(r".*'s reaction does not count|:bell: Reminder")
RECURS = re.compile(r".*'s reaction does not count|:bell: Reminder|Step \d:( tenant-not-found|\n)")


def check_invariants(harness: CrashHarness) -> dict[str, list[str]]:
    """Every invariant by name, with its violations (empty lists when it holds)."""
    world = harness.world
    ms, slack = world.microsoft, world.slack
    records: list[RequestRecord] = list(ms.requests)
    db = open_db(world.settings().storage_path)
    try:
        rows = trail(db, world.tenant.name)
    finally:
        db.conn.close()
    out: dict[str, list[str]] = {}

    final = world.state()
    out["closed"] = [*harness.exits, *harness.problems]
    if not any(m.text.startswith(":checkered_flag:") for m in slack.messages):
        out["closed"].insert(0, "the thread never says the tenant is closed")
    if final != "closed" or not world.tenant.deleted:
        out["closed"].insert(
            0,
            f"final state {final}, tenant deleted: {world.tenant.deleted};"
            f" states seen: {' > '.join(harness.status_states[-6:])}",
        )

    out["every_point_reached"] = [
        f"never reached: {p}" for i, p in enumerate(harness.points) if i not in harness.fired
    ]

    # Every planned user deleted exactly once: one DELETE answered 204 per user (404s are fine).
    deleted = Counter(
        r.path.split("?")[0].rsplit("/", 1)[1]
        for r in records
        if r.method == "DELETE" and step_of_write(r.path) == "delete_users" and r.status == 204
    )
    wrong = [
        f"user {uid} deleted {deleted[uid]} times"
        for uid in harness.planned_users
        if deleted[uid] != 1
    ]
    wrong += [
        f"unplanned user {uid} deleted" for uid in deleted if uid not in harness.planned_users
    ]
    out["users_deleted_once"] = wrong

    # No destructive Graph request for a step before that step's quorum-completing vote: the
    # moment its reaction appeared on the request (the bot may learn of it from the event or by
    # reading the message's reactions back).
    approved = {r.step: r.plan_hash for r in rows if r.action == "approve"}
    marks: dict[str, int] = {}
    by_request: dict[str, list[VoteRecord]] = {}
    for vote in harness.votes:
        by_request.setdefault(vote.ts, []).append(vote)
    for votes in by_request.values():
        first = votes[0]
        if len(votes) >= first.quorum and approved.get(first.step) == first.plan_hash:
            mark = votes[first.quorum - 1].mark
            marks[first.step] = min(marks.get(first.step, mark), mark)
    early = []
    for index, r in enumerate(records):
        if r.method not in DESTRUCTIVE or not r.path.startswith(("/v1.0/", "/beta/")):
            continue
        step = step_of_write(r.path)
        if step is None:
            early.append(f"unexpected destructive request {r.method} {r.path}")
        elif step not in marks or index < marks[step]:
            early.append(f"{r.method} {r.path} ({step}) before its quorum-completing vote")
    out["no_write_before_quorum"] = early

    # Every acknowledged vote is in the audit trail: as a vote with its event ID, or, when the
    # bot read it back from the message's reactions before Slack redelivered the event, as a
    # reconciled vote (the redelivery is then recorded under its event ID too).
    audited = {(r.event_id, r.actor, r.step, r.plan_hash) for r in rows if r.action == "vote"}
    reconciled = {(r.actor, r.step, r.plan_hash) for r in rows if r.action == "vote_reconciled"}
    recorded_events = {r.event_id for r in rows if r.event_id}
    out["votes_audited"] = [
        f"{v.user}'s vote {v.event_id} on {v.step} ({v.ts}) is not in the audit trail"
        for v in harness.votes
        if v.acked
        and (v.event_id, v.user, v.step, v.plan_hash) not in audited
        and not ((v.user, v.step, v.plan_hash) in reconciled and v.event_id in recorded_events)
    ]
    # A vote Slack gave up delivering still counted for the plan it approved: stored from a
    # delivery whose answer was lost, or read back from the message's reactions.
    out["votes_audited"] += [
        f"{v.user}'s undelivered vote on {v.step} ({v.ts}) approved the plan unaudited"
        for v in harness.votes
        if not v.acked
        and approved.get(v.step) == v.plan_hash
        and (v.event_id, v.user, v.step, v.plan_hash) not in audited
        and (v.user, v.step, v.plan_hash) not in reconciled
    ]

    # Every delivery the bot did not answer 200 was cut short by a kill of the process it went
    # to: a bot that lives on answers each event, within Slack's 3 s.
    out["deliveries_answered"] = [
        f"{v.user}'s vote on {v.step} ({v.ts}), delivery {n} to bot #{a.incarnation}: {a.outcome}"
        for v in harness.votes
        for n, a in enumerate(v.attempts, start=1)
        if a.outcome != "200"
        and not any(
            k.incarnation == a.incarnation and a.started <= k.at <= a.ended for k in harness.kills
        )
    ]

    # Every state transition is in the audit trail: an unbroken chain start -> closed that
    # includes every state the status message showed.
    chain = [r.detail for r in rows if "from" in r.detail and "to" in r.detail]
    broken = []
    expected = f"{step_names()[0]}.planning"
    for link in chain:
        if link["from"] != expected:
            broken.append(f"transition {link['from']} -> {link['to']} after {expected}")
        expected = link["to"]
    if expected != "closed":
        broken.append(f"the audited transitions end in {expected}, not closed")
    through = {link["from"] for link in chain} | {link["to"] for link in chain}
    broken += [
        f"state {s} shown but never audited" for s in harness.status_states if s not in through
    ]
    out["transitions_audited"] = broken

    # No approval requested twice for an unchanged plan, unless the first expired or was vetoed.
    requests = [
        m
        for m in slack.messages
        if (m.metadata or {}).get("event_type") == "close_account_approval"
    ]
    keys = Counter(
        (p["closure_id"], p["step"], p["plan_hash"])
        for p in (m.metadata["event_payload"] for m in requests if m.metadata)
    )
    renewed = {
        (r.step, r.plan_hash)
        for r in rows
        if r.action == "veto" or (r.action == "replan" and r.detail.get("why") == "expired")
    }
    out["one_request_per_plan"] = [
        f"{n} approval requests for {step} plan {h[:12]}"
        for (_, step, h), n in keys.items()
        if n > 1 and (step, h) not in renewed
    ]

    # Slack shows how each approval ended: every request whose plan was approved is marked so
    # (a request left looking open invites votes the bot will refuse).
    out["requests_show_outcome"] = [
        f"the approved request for {p['step']} ({m.ts}) still reads {m.text[:60]!r}"
        for m in requests
        if m.metadata
        and (p := m.metadata["event_payload"])
        and approved.get(p["step"]) == p["plan_hash"]
        and not m.text.startswith(":white_check_mark: Approved by")
    ]

    # One status message per closure, and no bot thread reply repeated back to back.
    statuses = Counter(
        m.metadata["event_payload"]["closure_id"]
        for m in slack.messages
        if m.metadata and m.metadata.get("event_type") == "close_account_status"
    )
    dup = [f"{n} status messages for closure {cid}" for cid, n in statuses.items() if n > 1]
    threads = {
        m.ts
        for m in slack.messages
        if m.metadata and m.metadata.get("event_type") == "close_account_status"
    }
    replies = sorted(
        (m for m in slack.messages if m.thread_ts in threads and m.user == slack.bot_user_id),
        key=lambda m: float(m.ts),
    )
    said = [(m.versions[0]["text"], json.dumps(m.versions[0]["blocks"])) for m in replies]
    for (before, after), m in zip(itertools.pairwise(said), replies[1:], strict=True):
        if before == after and not REPEATS_IN_A_ROW.match(m.text):
            dup.append(f"reply posted twice in a row: {m.text.splitlines()[0][:100]!r}")
    earlier: set[tuple[str, str]] = set()
    for key, m in zip(said, replies, strict=True):
        if key in earlier and not RECURS.match(m.text):
            dup.append(f"reply posted again: {m.text.splitlines()[0][:100]!r}")
        earlier.add(key)
    out["no_duplicate_posts"] = dup
    return out


def describe(harness: CrashHarness) -> str:
    lines = [f"{len(harness.kills)} kills of {len(harness.points)} points:"]
    for kill in harness.kills:
        lines.append(
            f"  [{kill.incarnation:2d}] {kill.point} at {kill.event.state}:"
            f" {kill.event.source} {kill.event.method} {kill.event.path[:70]}"
        )
    missed = [p for i, p in enumerate(harness.points) if i not in harness.fired]
    lines += [f"  never reached: {p}" for p in missed]
    return "\n".join(lines)


def report(harness: CrashHarness, invariants: dict[str, list[str]]) -> str:
    broken = {k: v for k, v in invariants.items() if v}
    lines = [describe(harness)]
    if harness.stopped_at:
        lines.append(f"gave up waiting: {harness.stopped_at}")
    if broken:
        for v in harness.votes:
            tried = "; ".join(f"#{a.incarnation} {a.outcome}" for a in v.attempts)
            lines.append(f"  vote {v.user} on {v.step} {v.ts}: {tried}")
    for name, problems in broken.items():
        lines.append(f"{name}:")
        lines += [f"  - {p}" for p in problems[:8]]
        if len(problems) > 8:
            lines.append(f"  ... {len(problems) - 8} more")
    if broken and harness.logs:
        lines.append(f"last bot log ({harness.logs[-1].name}):")
        lines.append(harness.log_tail(harness.logs[-1], 15))
    return "\n".join(lines)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
