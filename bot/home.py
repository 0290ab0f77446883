"""The App Home tab: every closure at a glance, for whoever opens the bot's Home.

`home_view` is pure (closures in, a `views.publish` view out), in the style of `bot.blocks`:
open closures first, then the most recently finished, each with its state in words, the
current step, who approved what, who or what it waits on, whether it can still be rolled back
and a link to its thread. `build_home` reads them from the database (a `HomeSource`) and
fetches the thread permalinks (cached; a failure only leaves the link out); `publish_home`
sends the view for one user.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlite_utils import Database

from bot.approvers import Approvers
from bot.blocks import Block, Progress, slack_len, split_text
from bot.commands import USAGE
from bot.config import Settings
from bot.identity import Directory
from bot.messages import (
    PHASE_LABEL,
    mentions,
    plain,
    shown_reason,
    slack_date,
    slack_trouble,
    state_words,
    when,
)
from bot.status import status_view
from statemachine import approvals as rules
from statemachine import steps
from statemachine.closure import FINAL_STATES, split_state
from statemachine.steps import ROLLBACK
from storage import approvals as requests_db
from storage import closures as closures_db
from storage import outbox as outbox_db
from storage.closures import ClosureRow

log = logging.getLogger("close_account_bot.home")

MAX_VIEW_BLOCKS = 100  # Slack's limit for a Home tab view
MAX_TEXT = 3000  # a section's (or a context element's) text
MAX_REASON = 1500  # a blocker's fix or a failure, within one closure's section
RECENT_FINISHED = 10  # finished closures shown after the open ones
BLOCKS_PER_CLOSURE = 3  # section, context, divider
FIXED_BLOCKS = 5  # header, intro, two group headers, the "not shown" note
MAX_SHOWN = (MAX_VIEW_BLOCKS - FIXED_BLOCKS) // BLOCKS_PER_CLOSURE
PERMALINK_CACHE = 1024

FINAL_MARK = {
    "closed": ":white_check_mark:",
    "aborted": ":octagonal_sign:",
    "rolled_back": ":leftwards_arrow_with_hook:",
}
PHASE_MARK = {
    "planning": ":mag:",
    "awaiting_approval": ":hourglass_flowing_sand:",
    "executing": ":arrow_forward:",
    "waiting_external": ":clipboard:",
    "verifying": ":mag:",
    "blocked": ":no_entry:",
    "rejected": ":x:",
    "failed": ":warning:",
}

T = TypeVar("T")


@dataclass(frozen=True)
class HomeClosure:
    """One closure as the Home tab shows it."""

    closure_id: str
    tenant: str
    tenant_id: str
    state: str
    requester: str
    created_at: float
    updated_at: float
    display_name: str | None = None  # the tenant's live name, once read from Microsoft
    reason: str | None = None  # the fix (blocked), the error (failed), the veto (rejected)
    approvals: Mapping[str, Sequence[str]] = field(default_factory=dict)  # step -> approvers
    votes: Sequence[str] = ()  # approvals so far on the open request
    needed: Sequence[str] = ()  # eligible approvers who have not approved the open request
    quorum: int | None = None  # of the open request; None while no request is open
    expires_at: float | None = None  # of the open request
    progress: Progress | None = None
    rollback_possible: bool | None = None  # None: not worth saying
    permalink: str | None = None  # the status message, which heads the closure's thread
    slack_error: str | None = None  # what keeps the closure from talking to Slack

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def _pick(
    items: Sequence[T],
    *,
    finished: Callable[[T], bool],
    created: Callable[[T], float],
    updated: Callable[[T], float],
) -> tuple[list[T], list[T], int, int]:
    """Open items (oldest first), then the most recently finished, within the block budget;
    also how many open and finished ones are left out."""
    open_ = sorted((i for i in items if not finished(i)), key=created)
    done = sorted((i for i in items if finished(i)), key=updated, reverse=True)
    shown_open = open_[:MAX_SHOWN]
    shown_done = done[: max(0, min(RECENT_FINISHED, MAX_SHOWN - len(shown_open)))]
    return shown_open, shown_done, len(open_) - len(shown_open), len(done) - len(shown_done)


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    """At most `limit` as Slack counts, never cut inside markup (an entity, a code span)."""
    return text if slack_len(text) <= limit else split_text(text, limit - 1)[0] + "…"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text)}]}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def _approved_line(approvals: Mapping[str, Sequence[str]]) -> str | None:
    parts = [
        f"{'rollback' if step == ROLLBACK else f'step {n}'} by {mentions(who)}"
        for n, step in enumerate((*steps.names(), ROLLBACK), start=1)
        if (who := approvals.get(step))
    ]
    return "*Approved:* " + " · ".join(parts) if parts else None


def _waiting_lines(c: HomeClosure, now: float) -> list[str]:
    """Who or what the closure waits on now (nothing once it is finished)."""
    step, phase = split_state(c.state)
    retry = f"`/close-account retry {c.tenant}`"
    reason = _clip(shown_reason(phase, c.reason or "no reason recorded"), MAX_REASON)
    if step is None:
        return [f"*Reason:* {reason}"] if phase == "aborted" and c.reason else []
    if phase == "awaiting_approval":
        if c.quorum is None:
            return ["*Waiting on:* the approval request being posted"]
        missing = max(0, c.quorum - len(c.votes))
        lines = [
            f"*Approvals:* {len(c.votes)}/{c.quorum}"
            + (f", by {mentions(c.votes)}" if c.votes else " so far")
        ]
        who = " or ".join(f"<@{u}>" for u in c.needed) or "nobody eligible is left"
        wait = f"*Waiting on:* {missing} more approval{'s' if missing != 1 else ''} from {who}"
        if c.expires_at is not None:
            if c.expires_at > now:
                wait += f" · expires {when(c.expires_at, now)}"
            else:
                wait += f" · expired {when(c.expires_at, now)}; a fresh request follows"
        return [*lines, wait]
    if phase == "waiting_external":
        return [
            "*Waiting on:* the Global Administrator's checklist (in the thread);"
            " the bot re-checks Microsoft and moves on by itself"
        ]
    if phase == "blocked":
        return [f"*Blocked:* {reason}", f"*Waiting on:* the fix above, then an admin's {retry}"]
    if phase in ("failed", "rejected"):
        head = "Failed" if phase == "failed" else "Vetoed"
        return [
            f"*{head}:* {reason}",
            f"*Waiting on:* an admin's retry ({retry}) or `abort`",
        ]
    doing = PHASE_LABEL.get(phase, phase.replace("_", " "))
    progress = f" · {c.progress.line()}" if c.progress and phase == "executing" else ""
    return [f"*Waiting on:* the bot ({doing}){progress}"]


def closure_blocks(c: HomeClosure, *, now: float, viewer: str | None = None) -> list[Block]:
    """One closure: what it is, where it stands, what it waits on; then ids and a divider."""
    step, phase = split_state(c.state)
    mark = FINAL_MARK.get(phase, ":grey_question:") if step is None else PHASE_MARK.get(phase, "")
    name = f" · {plain(c.display_name)}" if c.display_name else ""
    lines = [f"{mark} *{c.tenant}*{name} — {state_words(c.state)}"]
    if c.slack_error:
        lines.append(slack_trouble(c.slack_error))
    if viewer is not None and viewer in c.needed and phase == "awaiting_approval":
        lines.append(":point_right: *Your approval is needed* (react in the thread)")
    lines += _waiting_lines(c, now)
    approved = _approved_line(c.approvals)
    if approved:
        lines.append(approved)
    if c.rollback_possible is True:
        lines.append(
            ":leftwards_arrow_with_hook: Rollback is still possible"
            f" (`/close-account rollback {c.tenant}`)."
        )
    elif c.rollback_possible is False:
        lines.append("Point of no return passed: this closure can no longer be undone.")
    lines.append(
        f"<{c.permalink}|Open the thread>" if c.permalink else "_No thread link right now._"
    )
    age = (
        f"finished {when(c.updated_at, now)}"
        if c.finished
        else f"started {when(c.created_at, now)}"
    )
    return [
        _section("\n".join(lines)),
        _context(
            f"tenant `{c.tenant_id}` · requested by <@{c.requester}> · closure"
            f" `{c.closure_id}` · {age}"
        ),
        {"type": "divider"},
    ]


def home_view(
    closures: Sequence[HomeClosure], *, now: float, viewer: str | None = None
) -> dict[str, Any]:
    """The Home tab: open closures first, then the most recently finished; at most 100 blocks."""
    blocks: list[Block] = [_header("Tenant closures")]
    if not closures:
        blocks += [
            _section(
                ":wave: No closures yet. An admin starts one with `/close-account <tenant>`;"
                " it is tracked here and in the progress channel, step by step."
            ),
            _context(USAGE),
        ]
        return {"type": "home", "blocks": blocks}
    open_, done, hidden_open, hidden_done = _pick(
        closures,
        finished=lambda c: c.finished,
        created=lambda c: c.created_at,
        updated=lambda c: c.updated_at,
    )
    blocks.append(
        _context(
            f"As of {slack_date(now)} · open closures first, then the {RECENT_FINISHED} most"
            " recently finished · `/close-account help` for the commands"
        )
    )
    if open_:
        blocks.append(_header(f"Open ({len(open_) + hidden_open})"))
        for c in open_:
            blocks += closure_blocks(c, now=now, viewer=viewer)
    if done:
        blocks.append(_header("Recently finished"))
        for c in done:
            blocks += closure_blocks(c, now=now, viewer=viewer)
    notes = []
    if hidden_open:
        notes.append(f"{hidden_open} more open closures are not shown: `/close-account list`.")
    if hidden_done:
        notes.append(
            f"{hidden_done} older finished closures are not shown:"
            " `/close-account audit <tenant>` for their trail."
        )
    if notes:
        blocks.append(_context(" ".join(notes)))
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}


# --- reading the database ------------------------------------------------------------------

_permalinks: OrderedDict[tuple[str, str, str], str] = OrderedDict()


@dataclass(frozen=True)
class HomeSource:
    """What the Home tab is read from: the database, Slack (for links), who may approve."""

    db: Database
    client: AsyncWebClient
    clock: Callable[[], float]
    settings: Settings
    directory: Directory
    approvers: Approvers


async def permalink(source: HomeSource, channel: str, ts: str) -> str | None:
    """The message's permalink, cached (least recently used first out); None if Slack fails."""
    key = (str(source.client.base_url), channel, ts)
    cached = _permalinks.get(key)
    if cached is not None:
        _permalinks.move_to_end(key)
        return cached
    try:
        resp = await source.client.chat_getPermalink(channel=channel, message_ts=ts)
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("no permalink for %s/%s: %s", channel, ts, exc)
        return None
    link = resp.get("permalink")
    if not isinstance(link, str) or not link:
        return None
    _permalinks[key] = link
    while len(_permalinks) > PERMALINK_CACHE:
        _permalinks.popitem(last=False)
    return link


async def _eligible(source: HomeSource, row: ClosureRow) -> tuple[str, ...]:
    tenant = source.settings.tenant(row.tenant)
    if tenant is None:
        return ()
    try:
        active = await source.directory.active_ids(tenant.approvers)
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("cannot check approvers' accounts for %s: %s", row.tenant, exc)
        active = source.directory.ids(tenant.approvers)
    return rules.eligible_approvers(active, source.approvers.requesters(row))


async def home_closure(
    source: HomeSource, row: ClosureRow, *, detailed: bool = True
) -> HomeClosure:
    """A closure row as the Home tab shows it; without detail, only what sorting needs."""
    step, phase = split_state(row.state)
    base = HomeClosure(
        closure_id=row.id,
        tenant=row.tenant,
        tenant_id=row.tenant_id,
        state=row.state,
        requester=source.approvers.requester(row),
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
        display_name=row.display_name,
        reason=row.reason if phase in ("blocked", "failed", "rejected", "aborted") else None,
        slack_error=getattr(outbox_db.trouble(source.db, row.id), "error", None),
    )
    if not detailed:
        return base
    view = status_view(source.db, row)
    votes: list[str] = []
    needed: tuple[str, ...] = ()
    quorum: int | None = None
    expires_at: float | None = None
    if step is not None and phase == "awaiting_approval":
        req = requests_db.open_request(source.db, row.id, step)
        if req is not None:
            votes = [
                v.approver for v in requests_db.votes_for(source.db, req.id) if v.kind == "approve"
            ]
            needed = tuple(u for u in await _eligible(source, row) if u not in votes)
            quorum, expires_at = int(req.quorum), float(req.expires_at)
    link = None
    if row.status_ts:
        link = await permalink(source, row.channel, row.status_ts)
    return replace(
        base,
        approvals=view.approvals,
        votes=tuple(votes),
        needed=needed,
        quorum=quorum,
        expires_at=expires_at,
        progress=view.progress,
        rollback_possible=view.rollback_possible,
        permalink=link,
    )


async def build_home(source: HomeSource, user_id: str) -> dict[str, Any]:
    """The Home view for `user_id`, read from the database; Slack is asked only for links."""
    rows = closures_db.all_closures(source.db)
    open_, done, _, _ = _pick(
        rows,
        finished=lambda r: r.state in FINAL_STATES,
        created=lambda r: float(r.created_at),
        updated=lambda r: float(r.updated_at),
    )
    shown = {r.id for r in (*open_, *done)}
    closures = await asyncio.gather(
        *(home_closure(source, row, detailed=row.id in shown) for row in rows)
    )
    return home_view(closures, now=source.clock(), viewer=user_id or None)


async def publish_home(source: HomeSource, user_id: str) -> None:
    """Publish the Home tab for `user_id`; a Slack error is logged, never raised."""
    if not user_id:
        return
    view = await build_home(source, user_id)
    try:
        await source.client.views_publish(user_id=user_id, view=view)
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("views.publish for %s failed: %s", user_id, exc)
