"""What Graph calls exchange: a `$batch` sub-request, a response, a failure for good
(`GraphError`), and how long a throttled or failed call waits (Retry-After, else backoff)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_BACKOFF = 60.0  # the longest wait between 429s that carry no Retry-After


class TokenSource(Protocol):
    async def token(self, force_refresh: bool = False) -> str: ...


class GraphError(Exception):
    """A Graph call that failed for good: status, Graph's error code and message, the path."""

    def __init__(self, status: int, code: str, message: str, path: str) -> None:
        super().__init__(f"{status} {code}: {message} ({path})")
        self.status = status
        self.code = code
        self.message = message
        self.path = path


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_text(self) -> str:
        """'403 Authorization_RequestDenied: message' as Graph reported it, or the status."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict):
            return f"{self.status} {error.get('code', '')}: {error.get('message', '')}"
        return str(self.status)


@dataclass(frozen=True)
class BatchRequest:
    id: str
    method: str
    url: str  # relative, like "/users/{id}"
    body: dict[str, Any] | None = None


def error_of(status: int, body: dict[str, Any], path: str) -> GraphError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return GraphError(status, str(error.get("code", "")), str(error.get("message", "")), path)
    return GraphError(status, "", str(body)[:200], path)


def retry_after(headers: dict[str, str], attempt: int, base: float) -> float:
    """Seconds to wait: Retry-After when Microsoft gives it, else exponential with jitter."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                break
    return float(min(base * (2 ** min(attempt, 30)), MAX_BACKOFF) * (0.5 + random.random() / 2))
