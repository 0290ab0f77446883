"""Block Kit for the status message, approval requests and checklists: pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import inventory
from bot.messages import (
    FINAL_LABEL,
    PHASE_LABEL,
    and_more,
    code,
    duration,
    inert,
    inventory_note,
    item_action,
    kind_title,
    known_name,
    mentions,
    mfa_why_note,
    plain,
    rollback_note,
    setting_reason,
    slack_date,
    step_of_total,
)
from bot.messages.dataloss import step_five_text, step_one_text
from statemachine import steps
from statemachine.closure import split_state
from statemachine.plan import Item, Plan
from statemachine.steps import ROLLBACK

Block = dict[str, Any]
MAX_BLOCKS = 50  # blocks in one message (Block Kit reference, "Blocks")
MAX_TEXT = 3000  # a section's text, and any text object's
# An approval request's own blocks (outcome, header, tenant, up to 6 of changes, counts, the
# inventory file, point of no return, who may approve, plan) and up to STEP_ROOM of a step's own
# sections (step 1's accounts kept and data lost, step 4's why) leave this many for its items.
STEP_ROOM = 4
ITEM_ROOM = MAX_BLOCKS - 13 - STEP_ROOM
CHECKLIST_ROOM = MAX_BLOCKS - 2  # a checklist's title and footer
OWN_KINDS = ("own_application", "own_service_principal")  # the bot's own access: always last
KIND_LABEL = {
    "user": "users",
    "subscription": "subscriptions",
    "azure_subscription": "Azure subscriptions (through Azure Resource Manager)",
    "security_defaults": "security defaults",
    "ca_policy": "conditional access policies requiring MFA",
    "per_user_mfa": "per-user MFA settings",
    "deleted_user": "soft-deleted users to purge (irreversible)",
    "application": "app registrations",
    "service_principal": "enterprise applications (service principals)",
    "deleted_application": "soft-deleted app registrations to purge (irreversible)",
    "deleted_service_principal": "soft-deleted enterprise applications to purge (irreversible)",
    "own_application": "the bot's own app registration (deleted last)",
    "own_service_principal": "the bot's own enterprise application (deleted last)",
    "disable_sync": "directory synchronization to turn off (Microsoft can take up to 72 h)",
    "restore_user": "deleted users to restore",
    "restore_security_defaults": "security defaults to turn back on",
    "restore_ca_policy": "conditional access policies to put back to their recorded state",
    "restore_per_user_mfa": "per-user MFA settings to put back",
    "reactivate_subscription": "cancelled subscriptions to reactivate (checklist follows)",
    "reactivate_azure_subscription": "cancelled Azure subscriptions to reactivate (checklist)",
}


def slack_len(text: str) -> int:
    """Length as Slack's limits count it: the text as sent (entities included), in UTF-16 code
    units, which is never less than Python's count of code points."""
    return len(text.encode("utf-16-le")) // 2


def _safe_cuts(text: str) -> list[int]:
    """Offsets where mrkdwn may be cut: outside a code span, an entity (&amp;) and a <...>
    token (a mention, date or link)."""
    cuts, in_code, in_entity, in_angle = [], False, False, False
    for n, ch in enumerate(text):
        if not (in_code or in_entity or in_angle):
            cuts.append(n)
        if in_entity:
            in_entity = ch != ";"
        elif in_angle:
            in_angle = ch != ">"
        elif ch == "`":
            in_code = not in_code
        elif not in_code and ch == "&":
            in_entity = True
        elif not in_code and ch == "<":
            in_angle = True
    return cuts


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in pieces of at most `limit` (Slack's count), cut at line ends where it can be,
    else at a space, never inside markup; nothing is lost."""
    pieces: list[str] = []
    while slack_len(text) > limit:
        fits = [n for n in _safe_cuts(text) if 0 < n and slack_len(text[:n]) <= limit]
        at = next(
            (n for n in reversed(fits) if text[n - 1] == "\n"),
            next((n for n in reversed(fits) if text[n - 1] == " "), fits[-1] if fits else 0),
        )
        if at == 0:  # one markup token longer than the limit: cut it (never happens for ours)
            at = limit // 2
        pieces.append(text[:at].rstrip("\n"))
        text = text[at:]
    return [*pieces, text] if text or not pieces else pieces


def _packed(lines: Sequence[str], limit: int) -> list[tuple[str, int]]:
    """Each packed text and how many of `lines` end in it or before it."""
    texts: list[tuple[str, int]] = []
    current, ended = "", 0
    for n, line in enumerate(lines):
        for piece in split_text(line, limit):
            joined = f"{current}\n{piece}" if current else piece
            if current and slack_len(joined) > limit:
                texts.append((current, ended))
                joined = piece
            current = joined
        ended = n + 1
    return [*texts, (current, ended)] if current else texts


def pack(lines: Sequence[str], limit: int = MAX_TEXT) -> list[str]:
    """Lines joined into as few texts of at most `limit` as they fit in, a line split only when
    it alone is longer."""
    return [text for text, _ in _packed(lines, limit)]


def _text(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": split_text(text)[0]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": split_text(text)[0]}]}


def list_blocks(lines: Sequence[str], room: int, *, rest: str) -> tuple[list[Block], int]:
    """`lines` as sections in at most `room` blocks; when they need more, the last block says
    how many lines are left out and `rest` (where they are). Returns the blocks and how many
    lines they show whole."""
    packed = _packed(lines, MAX_TEXT)
    if len(packed) <= room:
        return [_text(t) for t, _ in packed], len(lines)
    kept = packed[: max(0, room - 1)]
    shown = kept[-1][1] if kept else 0
    # A line split over texts is shown whole or not at all.
    out = [_text(t) for t, _ in _packed(lines[:shown], MAX_TEXT)]
    out.append(_context(f"{and_more(shown, len(lines))}{rest}"))
    return out, shown


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rate: float | None = None  # items per second
    eta_seconds: float | None = None

    def line(self) -> str:
        pct = 100 * self.done // self.total if self.total else 100
        parts = [f"{self.done:,}/{self.total:,} ({pct}%)"]
        if self.rate:
            parts.append(f"{self.rate:,.1f}/s")
        if self.eta_seconds is not None and self.done < self.total:
            parts.append(f"ETA {duration(self.eta_seconds)}")
        return " · ".join(parts)


@dataclass(frozen=True)
class StatusView:
    closure_id: str
    tenant: str
    tenant_id: str
    state: str
    requester: str
    display_name: str | None = None
    note: str | None = None
    approvals: Mapping[str, Sequence[str]] = field(default_factory=dict)  # step -> approvers
    progress: Progress | None = None
    rollback_possible: bool | None = None  # None: not worth saying (finished, rolled back)


def status_blocks(view: StatusView) -> list[Block]:
    current, phase = split_state(view.state)
    title = FINAL_LABEL.get(phase, "rolling back" if current == ROLLBACK else "in progress")
    name = f"{plain(view.display_name)} · " if view.display_name else ""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Closing {view.tenant}"[:150]}},
        _context(
            f"{name}tenant `{view.tenant_id}` · requested by <@{view.requester}> · "
            f"closure `{view.closure_id}` · *{title}*"
        ),
    ]
    lines = []
    closed = current is None and phase == "closed"
    names = steps.names()
    index = names.index(current) if current in names else len(names)
    undone = current == ROLLBACK or phase in ("rolled_back", "aborted")
    for n, step in enumerate(names, start=1):
        approved = view.approvals.get(step)
        if step == current:
            mark = {
                "blocked": ":no_entry:",
                "rejected": ":x:",
                "failed": ":warning:",
            }.get(phase, ":arrow_forward:")
            label = PHASE_LABEL.get(phase, phase)
        elif closed or (n - 1 < index and not undone):
            mark, label = ":white_check_mark:", "done"
        elif undone and approved:
            mark = ":leftwards_arrow_with_hook:" if phase != "aborted" else ":black_circle:"
            label = {"rolled_back": "undone", "aborted": "done before the abort"}.get(
                phase, "being undone"
            )
        elif undone:
            mark, label = ":black_circle:", "not run"
        else:
            mark, label = ":white_circle:", "pending"
        extra = f" · approved by {mentions(approved)}" if approved else ""
        if step == current and view.progress and phase == "executing":
            extra += f" · {view.progress.line()}"
        lines.append(f"{mark} {n}. {steps.info(step).title} — {label}{extra}")
    if current == ROLLBACK or phase == "rolled_back":
        label = "done" if phase == "rolled_back" else PHASE_LABEL.get(phase, phase)
        extra = f" · {view.progress.line()}" if view.progress and phase == "executing" else ""
        lines.append(f":leftwards_arrow_with_hook: {steps.info(ROLLBACK).title} — {label}{extra}")
    blocks.append(_text("\n".join(lines)))
    if view.note:
        blocks.append(_context(view.note))
    note = rollback_note(view.rollback_possible)
    if note and (view.rollback_possible is False or current not in (None, ROLLBACK)):
        blocks.append(_context(note))
    return blocks


def approval_blocks(
    plan: Plan,
    *,
    approvers: Sequence[str],
    quorum: int,
    expires_at: float,
    changes: Sequence[str] = (),
    outcome: str | None = None,
) -> list[Block]:
    facts = plan.facts
    blocks: list[Block] = [_text(f"*{outcome}*")] if outcome else []
    blocks += [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": f"Approve {step_of_total(plan.step)}: {steps.info(plan.step).title}"[:150],
            },
        },
        _text(
            f"*Tenant:* {plain(facts.get('display_name'))} · {code(facts.get('tenant_id'))} · "
            f"{plain(facts.get('primary_domain'))}"
        ),
    ]
    if changes:
        changed, _ = list_blocks(
            ["*The plan changed since the last request:*", *changes], 6, rest=" changes."
        )
        blocks += changed
    counts = plan.counts()
    if counts:
        guests = sum(1 for i in plan.items if i.detail.get("userType") == "Guest")
        summary = "\n".join(
            f"• *{n:,}* {KIND_LABEL.get(kind, kind)}"
            + (f" ({n - guests:,} members, {guests:,} guests)" if kind == "user" else "")
            for kind, n in sorted(counts.items(), key=lambda kn: kn[0] in OWN_KINDS)
        )
        verb = (
            "will be turned off first" if "disable_sync" in counts else steps.info(plan.step).verb
        )
        blocks.append(_text(f"*What {verb}:*\n{summary}"))
    kept_and_lost = step_one_text(plan.facts) if plan.step == "delete_users" else None
    if plan.step == "delete_directory":  # the point of no return: the data dies here
        kept_and_lost = step_five_text(plan.facts)
    if kept_and_lost:  # bot/messages/dataloss.py: the accounts kept, the data that dies
        blocks.append(_text(kept_and_lost))
    if plan.step == "disable_mfa" and plan.items:  # why each setting changes
        blocks.append(_text(mfa_why_note([str(k) for k in plan.facts.get("mfa_kept") or ()])))
    if plan.items:
        blocks.append(_context(inventory_note(plan_file_name(plan))))
    tail: list[Block] = []
    if not steps.info(plan.step).reversible:
        own = "".join(
            f" ({code(i.name)} {code(i.id)})"
            for i in plan.of_kind("own_application", "own_service_principal")
        )
        tail.append(
            _text(
                ":rotating_light: *Point of no return.* Approving this step makes the closure"
                " irreversible: soft-deleted users are purged, applications removed, and the bot"
                f" deletes its own access{own} last."
            )
        )
    tail.append(
        _text(
            f"*Who may approve:* {mentions(approvers)} · *needed:* {quorum} · "
            f"*expires:* {slack_date(expires_at)}\n"
            "React with :white_check_mark: to approve or :x: to veto. "
            "The requester's reaction never counts."
        )
    )
    tail.append(_context(f"plan `{plan.hash[:12]}` · approvals bind to this exact plan"))
    if plan.items:
        listed, _ = list_blocks(
            item_lines(plan),
            ITEM_ROOM,
            rest=f": every item is in {plan_file_name(plan)}, attached in the thread.",
        )
        blocks += listed
    return blocks + tail


def item_lines(plan: Plan) -> list[str]:
    """One line per item, grouped by kind in the plan's order (the bot's own access last); each
    group opens with its kind and what happens to its items (per line where that differs)."""
    groups: dict[str, list[Item]] = {}
    for item in plan.items:
        groups.setdefault(item.kind, []).append(item)
    lines: list[str] = []
    for kind in sorted(groups, key=lambda k: k in OWN_KINDS):  # stable: plan order otherwise
        members = groups[kind]
        actions = [item_action(plan.step, i) for i in members]
        same = len(set(actions)) == 1
        head = f"*{kind_title(kind)}* ({len(members):,})" + (f": {actions[0]}" if same else "")
        for n, (item, action) in enumerate(zip(members, actions, strict=True)):
            line = item_line(item) + ("" if same else f" — {action}")
            lines.append(f"{head}\n{line}" if n == 0 else line)
    return lines


def item_line(item: Item) -> str:
    """One item of a plan as the approvers read it: its name as people know it, its ID, and
    what else decides what happens (a guest, the service principal that goes with an app, why
    an MFA setting changes)."""
    kind = f" ({plain(item.detail['userType'])})" if "userType" in item.detail else ""
    known = known_name(item)
    name = f"{code(known)} " if known else ""
    sp = item.detail.get("servicePrincipalId")
    with_sp = f", with its service principal {code(sp)}" if sp else ""
    why = setting_reason(item)
    return f"• {name}{code(item.id)}{kind}{with_sp}" + (f": {plain(why)}" if why else "")


def plan_file_name(plan: Plan) -> str:
    """The inventory file every request with items has in its thread (`bot.inventory`)."""
    return inventory.csv_name(plan)


def checklist_needs_file(plan: Plan) -> bool:
    """Whether the checklist of `plan` leaves lines out of its message: then every line goes in
    a text file in the thread too (`bot.inventory.checklist_text`)."""
    return len(pack(_numbered(plan.checklist))) > CHECKLIST_ROOM


def _numbered(lines: Sequence[str]) -> list[str]:
    return [f"{n}. {inert(line)}" for n, line in enumerate(lines, start=1)]


def checklist_blocks(title: str, lines: Sequence[str], footer: str) -> list[Block]:
    """Every line of a checklist, split over as many sections as it takes; past the 50 blocks
    a message may hold, the last block says how many lines are in the plan file."""
    body, _ = list_blocks(
        _numbered(lines) or ["(nothing)"],
        CHECKLIST_ROOM,
        rest=": every line is in the plan file attached to the approval request in the thread.",
    )
    return [_text(f"*{title}*"), *body, _context(footer)]
