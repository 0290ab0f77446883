"""The audit trail as files people can read: CSV and JSON, for Slack and for the CLI."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
from collections.abc import Sequence
from typing import Any

from bot.csvsafe import csv_dict
from storage.audit import AuditRow

FIELDS = [
    "id",
    "time",
    "at",
    "tenant",
    "closure_id",
    "actor",
    "action",
    "step",
    "plan_hash",
    "event_id",
    "detail",
]


def _time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="milliseconds")


def fields_of(row: AuditRow) -> dict[str, Any]:
    return {**dataclasses.asdict(row), "detail": dict(row.detail), "time": _time(row.at)}


def as_json(rows: Sequence[AuditRow]) -> str:
    return json.dumps([fields_of(r) for r in rows], indent=2, sort_keys=True)


def csv_fields(row: AuditRow) -> dict[str, str]:
    """The row as the CSV's cells: its detail as JSON, every cell made inert for a spreadsheet
    (actors, tenants and reasons come from outside)."""
    return csv_dict({**fields_of(row), "detail": json.dumps(dict(row.detail), sort_keys=True)})


def as_csv(rows: Sequence[AuditRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_fields(row))
    return out.getvalue()
