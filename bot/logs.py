"""Log lines an operator can use: ISO timestamps and levels, text or one JSON object a line,
the closure, tenant and state a line is about, and no secret in any line."""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import weakref
from collections.abc import Iterable
from typing import IO, Any

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("text", "json")
REDACTED = "[redacted]"
CONTEXT = ("closure_id", "tenant", "state")

# What a credential looks like, whoever logs it: Slack bot/user/refresh tokens (and rotated
# `xoxe.xoxp-` ones), Slack app-level tokens, an Authorization header's value, and a JWT (an
# access token; its base64url header always starts `eyJ`, which is `{"`).
TOKEN = re.compile(
    r"xox[a-z](?:\.xox[a-z])?-[0-9A-Za-z-]+"
    r"|xapp-[0-9A-Za-z-]+"
    r"|(?i:bearer)\s+[0-9A-Za-z._~+/=-]+"
    r"|eyJ[0-9A-Za-z_-]{5,}\.[0-9A-Za-z_-]*(?:\.[0-9A-Za-z_-]*)?"
)
MIN_SECRET = 6  # shorter configured values would blank out ordinary words

# Every attribute a plain LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)
_MARK = "_close_account_bot"  # on the handlers configure() installs
OWN = "close_account_bot"  # the bot's loggers are all under this name


class Scope:
    """The closure a task works for; `state` follows the closure's transitions."""

    def __init__(self, closure_id: str, tenant: str, state: str) -> None:
        self.closure_id = closure_id
        self.tenant = tenant
        self.state = state


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "close_account_scope", default=None
)
# The scope of each closure with a live task, so a transition fired from any task (a vote, a
# command) moves the state its drive task's lines show.
_scopes: weakref.WeakValueDictionary[str, Scope] = weakref.WeakValueDictionary()


def closure_context(closure_id: str, tenant: str, state: str) -> contextvars.Context:
    """A context for a closure's task: every line logged in it names the closure."""
    scope = Scope(closure_id, tenant, state)
    _scopes[closure_id] = scope
    context = contextvars.copy_context()
    context.run(_scope.set, scope)
    return context


def note_state(closure_id: str, state: str) -> None:
    """The closure moved to `state`: its task's lines say so from now on."""
    scope = _scopes.get(closure_id)
    if scope is not None:
        scope.state = state


class Redactor:
    """Blanks out anything that looks like a token and every configured secret value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        known = set(self.secrets) | {s for s in secrets if s and len(s) >= MIN_SECRET}
        # Longest first: a secret that contains another is blanked out whole.
        self.secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return TOKEN.sub(REDACTED, text)


class ContextFilter(logging.Filter):
    """Stamps each record with the closure, tenant and state of the task that logged it
    (unless the call gave them in `extra=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _scope.get()
        if scope is not None:
            for key in CONTEXT:
                if getattr(record, key, None) is None:
                    setattr(record, key, getattr(scope, key))
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2026-01-02T03:04:05.678Z INFO logger: message [closure=... tenant=... state=...]`."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{key.removesuffix('_id')}={value}"
            for key in CONTEXT
            if (value := getattr(record, key, None)) is not None
        )
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if context:
            line += f" [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, the closure's context when known, the
    call's `extra=` fields, and an exception as one `exc` field."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = vars(record)
        for key in [*CONTEXT, *fields]:  # the closure's context first, then the call's extras
            value = fields.get(key)
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(self._clean(out), default=str, ensure_ascii=False)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {str(k): self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(str(value))


def configure(
    level: str, fmt: str, stream: IO[str], *, secrets: Iterable[str] = ()
) -> logging.Handler:
    """Send the bot's records at `level` and above (the libraries' from warning up, all at
    debug) to `stream` in `fmt` (text | json), replacing the handler an earlier call
    installed. Returns the handler."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    redact = Redactor(secrets)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter(redact) if fmt == "text" else JsonFormatter(redact))
    handler.addFilter(ContextFilter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    # The bot's own lines at `level`; the libraries' (slack-sdk's retries, Bolt, MSAL,
    # transitions' "Finished processing state ...") only from warnings up, unless at debug.
    root.setLevel(LEVELS[level] if level == "debug" else max(LEVELS[level], logging.WARNING))
    logging.getLogger(OWN).setLevel(LEVELS[level])
    return handler


def protect(secrets: Iterable[str | None]) -> None:
    """Add secret values (read from the environment at start) for the installed handlers to
    blank out: defence in depth, since the bot never logs them on purpose."""
    values = list(secrets)
    for handler in logging.getLogger().handlers:
        redact = getattr(handler.formatter, "redact", None)
        if getattr(handler, _MARK, False) and isinstance(redact, Redactor):
            redact.add(values)


def unconfigure(handler: logging.Handler) -> None:
    """Remove a handler configure() installed, and the bot's own level (tests)."""
    logging.getLogger().removeHandler(handler)
    logging.getLogger(OWN).setLevel(logging.NOTSET)
