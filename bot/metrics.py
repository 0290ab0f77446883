"""The bot's metrics in the Prometheus text format (0.0.4): counters fed as calls happen, gauges
read from the database and the Graph clients when /metrics is scraped."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING

from sqlite_utils import Database

from storage import closures as closures_db

if TYPE_CHECKING:
    from bot.microsoft.tenant import Tenant

Labels = tuple[str, ...]
Samples = Mapping[Labels, float]
PREFIX = "close_account_"


def escape_label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


class Family:
    """One metric: its name, help, type, label names, and its samples (kept, or read from
    `read` at scrape time)."""

    def __init__(
        self,
        name: str,
        help_text: str,
        kind: str,
        labels: Labels = (),
        read: Callable[[], Samples] | None = None,
    ) -> None:
        self.name = name
        self.help = help_text
        self.kind = kind
        self.labels = labels
        self.read = read
        self.values: dict[Labels, float] = {}

    def _key(self, labels: Mapping[str, str]) -> Labels:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, not {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0 and self.kind == "counter":
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        samples = self.read() if self.read is not None else self.values
        for key, value in sorted(samples.items()):
            pairs = ",".join(
                f'{name}="{escape_label(v)}"' for name, v in zip(self.labels, key, strict=True)
            )
            lines.append(
                f"{self.name}{{{pairs}}} {number(value)}"
                if pairs
                else f"{self.name} {number(value)}"
            )
        return lines


class Registry:
    """Metric families by name, rendered in registration order."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def add(self, family: Family) -> Family:
        if family.name in self.families:
            raise ValueError(f"metric {family.name} is already registered")
        self.families[family.name] = family
        return family

    def counter(
        self,
        name: str,
        help_text: str,
        labels: Labels = (),
        read: Callable[[], Samples] | None = None,
    ) -> Family:
        return self.add(Family(name, help_text, "counter", labels, read))

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Labels = (),
        read: Callable[[], Samples] | None = None,
    ) -> Family:
        return self.add(Family(name, help_text, "gauge", labels, read))

    def render(self) -> str:
        return "".join(line + "\n" for f in self.families.values() for line in f.render())


def _version() -> str:
    try:
        return metadata.version("close-account-bot")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare source tree
        return "0+unknown"


class Metrics:
    """Every metric the bot exports. Slack calls are counted as they happen (by the Slack
    client); the rest is read when scraped, from the database and each tenant's Graph client."""

    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        r.gauge(PREFIX + "build_info", "The running version.", ("version",)).set(
            1, version=_version()
        )
        self.slack_calls = r.counter(
            PREFIX + "slack_calls_total", "Slack Web API calls, by method.", ("method",)
        )
        self.slack_errors = r.counter(
            PREFIX + "slack_errors_total",
            "Slack Web API calls that failed (after slack-sdk's retries), by method and error.",
            ("method", "error"),
        )

    def watch(
        self, db: Database, tenants: Mapping[str, Tenant], clock: Callable[[], float]
    ) -> None:
        """Register the metrics read at scrape time from the database and the Graph clients."""
        r = self.registry

        def graph(value: Callable[[Tenant], float]) -> Callable[[], Samples]:
            return lambda: {(name,): float(value(t)) for name, t in tenants.items()}

        r.gauge(
            PREFIX + "closures",
            "Closures in the database, by state.",
            ("state",),
            lambda: {(s,): float(n) for s, n in closures_db.counts_by_state(db).items()},
        )
        r.gauge(
            PREFIX + "approvals_waiting",
            "Open approval requests of open closures.",
            read=lambda: {(): float(closures_db.open_request_count(db))},
        )
        r.gauge(
            PREFIX + "oldest_wait_on_person_seconds",
            "Age of the oldest wait on a person: an open approval request or a step waiting on"
            " an admin in Microsoft's admin centers (0 when none).",
            read=lambda: {(): _age(closures_db.oldest_wait_on_people(db), clock)},
        )
        r.counter(
            PREFIX + "graph_requests_total",
            "Graph requests sent, by tenant: each request and each request inside a $batch.",
            ("tenant",),
            graph(lambda t: t.graph.sent),
        )
        r.counter(
            PREFIX + "graph_throttled_total",
            "Graph answers 429 (throttled), by tenant, $batch sub-requests included.",
            ("tenant",),
            graph(lambda t: t.graph.throttled),
        )
        r.gauge(
            PREFIX + "graph_write_pace",
            "Graph writes per second the pacer lets out now, by tenant: 0 while a pause"
            " Microsoft asked for (a 429, or its budget nearly spent) holds.",
            ("tenant",),
            graph(lambda t: t.graph.pacer.rate()),
        )
        r.counter(
            PREFIX + "graph_pacer_wait_seconds_total",
            "Seconds Graph writes waited for the pacer (budgets and pauses), by tenant.",
            ("tenant",),
            graph(lambda t: t.graph.pacer.waited),
        )

    def render(self) -> str:
        return self.registry.render()


def _age(since: float | None, clock: Callable[[], float]) -> float:
    return 0.0 if since is None else max(0.0, clock() - since)
