"""The audit trail as files people can read: CSV and JSON, for Slack and for the CLI."""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Sequence
from typing import Any

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


def as_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps([{**r, "time": _time(r["at"])} for r in rows], indent=2, sort_keys=True)


def as_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {**row, "time": _time(row["at"]), "detail": json.dumps(row["detail"], sort_keys=True)}
        )
    return out.getvalue()
