"""/metrics in the Prometheus text format (0.0.4): each required metric, with values that match
what the simulators saw."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError

from bot.metrics import Registry
from bot.world import World
from tests.conftest import MakeWorld

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


@dataclass
class Family:
    name: str
    help: str = ""
    kind: str = ""
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def value(self, **labels: str) -> float:
        return self.samples[tuple(sorted(labels.items()))]


def _unescape(text: str, allowed: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt not in allowed:
                raise ValueError(f"bad escape \\{nxt} in {text!r}")
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    """`a="x",b="y"` with escapes in the values; refuses anything else."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        m = LABEL.match(text, i)
        if m is None or text[m.end() : m.end() + 2] != '="':
            raise ValueError(f"bad label at {text[i:]!r}")
        j = m.end() + 2
        value: list[str] = []
        while text[j] != '"':
            if text[j] == "\n":
                raise ValueError("raw newline in a label value")
            value.append(text[j : j + 2] if text[j] == "\\" else text[j])
            j += 2 if text[j] == "\\" else 1
        pairs.append((m.group(0), _unescape("".join(value), '\\"n')))
        i = j + 1
        if i < len(text):
            if text[i] != ",":
                raise ValueError(f"expected ',' at {text[i:]!r}")
            i += 1
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate label in {text!r}")
    return tuple(sorted(pairs))


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"bad value {text!r}")
    return float(text)


def parse(text: str) -> dict[str, Family]:
    """A strict reader of the text exposition format 0.0.4: HELP and TYPE at most once per
    metric and before its samples, each metric's samples together, valid names, labels and
    values, no duplicate series, a newline at the end."""
    if text and not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    closed: set[str] = set()
    current = ""
    for line in text.split("\n")[:-1]:
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name) or name in closed:
                    raise ValueError(f"bad or reopened metric in {line!r}")
                fam = families.setdefault(name, Family(name))
                if fam.samples:
                    raise ValueError(f"{parts[1]} after samples: {line!r}")
                rest = parts[3] if len(parts) == 4 else ""
                if parts[1] == "HELP":
                    if fam.help:
                        raise ValueError(f"second HELP: {line!r}")
                    fam.help = _unescape(rest, "\\n")
                else:
                    if fam.kind or rest not in TYPES:
                        raise ValueError(f"bad or second TYPE: {line!r}")
                    fam.kind = rest
                if current and current != name:
                    closed.add(current)
                current = name
            continue
        if not line.strip():
            raise ValueError("blank line")
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?", line)
        if m is None:
            raise ValueError(f"bad sample line {line!r}")
        name, labels, value = m.group(1), _labels(m.group(2) or ""), _value(m.group(3))
        if name in closed or name not in families or not families[name].kind:
            raise ValueError(f"sample of an undeclared or finished metric: {line!r}")
        if current != name:
            closed.add(current)
            current = name
        fam = families[name]
        if labels in fam.samples:
            raise ValueError(f"duplicate series {line!r}")
        if fam.kind == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError(f"a counter below 0: {line!r}")
        fam.samples[labels] = value
    return families


async def scrape(world: World) -> tuple[str, dict[str, Family]]:
    assert world.service is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{world.service.url}/metrics") as resp,
    ):
        assert resp.status == 200
        return resp.headers["Content-Type"], parse(await resp.text())


REQUIRED = {
    "close_account_closures": "gauge",
    "close_account_approvals_waiting": "gauge",
    "close_account_graph_requests_total": "counter",
    "close_account_graph_throttled_total": "counter",
    "close_account_slack_calls_total": "counter",
    "close_account_slack_errors_total": "counter",
    "close_account_graph_write_pace": "gauge",
    "close_account_oldest_wait_on_person_seconds": "gauge",
}


async def test_metrics_after_a_closure(make_world: MakeWorld) -> None:
    """After a whole closure /metrics parses strictly and shows the closure closed, nothing
    waiting on a person, the Graph requests and the 429s Microsoft sent, each Slack call by
    method as Slack counted them, and the write pace."""
    world = await make_world(users=30)
    world.microsoft.faults.throttle(3, path_prefix="/v1.0/users/", method="DELETE")
    world.script_approvers()
    world.script_admin()
    assert "started" in await world.command(world.tenant.name)
    assert await world.wait_state("closed", timeout=60) == "closed"
    assert world.service is not None
    await world.service.runner.idle()
    content_type, metrics = await scrape(world)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name, kind in REQUIRED.items():
        assert metrics[name].kind == kind and metrics[name].help, name
    assert metrics["close_account_closures"].samples == {(("state", "closed"),): 1.0}
    assert metrics["close_account_approvals_waiting"].value() == 0
    assert metrics["close_account_oldest_wait_on_person_seconds"].value() == 0
    graph = [r for r in world.microsoft.requests if r.path.startswith(("/v1.0/", "/beta/"))]
    assert metrics["close_account_graph_requests_total"].value(tenant="contoso") == len(graph)
    assert metrics["close_account_graph_throttled_total"].value(tenant="contoso") >= 3
    # The pace is the one the pacer learned: Microsoft's 429s above cut the documented 20/s (how
    # far depends on whether they came as one push-back or several).
    pacer = world.service.core.tenants["contoso"].graph.pacer
    pace = metrics["close_account_graph_write_pace"].value(tenant="contoso")
    assert pace == pacer.rate() and 0 < pace <= 10
    slack = metrics["close_account_slack_calls_total"]
    for method in ("chat.postMessage", "reactions.get"):  # all sent once the closure is idle
        seen = sum(c["method"] == method for c in world.slack.calls)
        assert slack.value(method=method) == seen > 0, method
    # Bolt checks the token once with a client of its own (AsyncApp._init_context): not counted.
    auth_tests = sum(c["method"] == "auth.test" for c in world.slack.calls)
    assert slack.value(method="auth.test") == auth_tests - 1


async def test_waits_on_people_are_counted_and_aged(make_world: MakeWorld) -> None:
    """An open approval request is one approval waiting, and a step waiting on an admin in
    the admin centers is a wait on a person, each with an age in seconds."""
    world = await make_world(users=20)
    assert "started" in await world.command(world.tenant.name)
    await world.wait_request("delete_users")
    _, metrics = await scrape(world)
    assert metrics["close_account_approvals_waiting"].value() == 1
    age = metrics["close_account_oldest_wait_on_person_seconds"].value()
    assert 0 < age < 60
    assert metrics["close_account_closures"].value(state="delete_users.awaiting_approval") == 1
    world.script_approvers()  # no admin: step 2 waits on one
    await world.wait_state("cancel_subscriptions.waiting_external")
    _, metrics = await scrape(world)
    assert metrics["close_account_approvals_waiting"].value() == 0
    assert 0 < metrics["close_account_oldest_wait_on_person_seconds"].value() < 60


async def test_slack_failures_are_counted_by_method_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A Slack call that fails is counted under its method and error and logged as a warning."""
    assert world.service is not None
    world.slack.fail_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError):
        await world.service.client.chat_postMessage(channel="C0NOPE", text="hello")
    _, metrics = await scrape(world)
    errors = metrics["close_account_slack_errors_total"]
    assert errors.value(method="chat.postMessage", error="channel_not_found") == 1
    warnings = [r for r in caplog.records if r.name == "close_account_bot.slack"]
    assert [r.getMessage() for r in warnings] == [
        "Slack chat.postMessage failed: channel_not_found"
    ]
    assert warnings[0].levelno == 30


def test_label_values_and_help_are_escaped() -> None:
    """Backslashes, double quotes and newlines in label values and help survive a strict parse."""
    registry = Registry()
    odd = 'a "quoted" back\\slash\nnew line'
    registry.counter("x_total", "help with \\ and\nnewline", ("label",)).inc(2, label=odd)
    registry.gauge("y", "no labels").set(0.25)
    registry.gauge("z", "infinite", read=lambda: {(): float("inf")})
    families = parse(registry.render())
    assert families["x_total"].value(label=odd) == 2
    assert families["x_total"].help == "help with \\ and\nnewline"
    assert families["y"].value() == 0.25
    assert families["z"].value() == float("inf")


def test_the_strict_parser_refuses_malformed_text() -> None:
    """The test's parser is strict: samples without a TYPE, bad escapes, duplicates and a
    missing final newline are refused (so a passing parse means something)."""
    bad = [
        "x 1\n",
        '# TYPE x gauge\nx{a="\\q"} 1\n',
        "# TYPE x gauge\nx 1\nx 2\n",
        "# TYPE x gauge\nx 1",
        "# TYPE x gauge\n# TYPE y gauge\ny 1\nx 1\n",
        "# TYPE x counter\nx -1\n",
    ]
    for text in bad:
        with pytest.raises((ValueError, IndexError)):
            parse(text)
