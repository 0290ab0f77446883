"""`python -m benchmarks [name ...]`: run the benchmarks (all by default), then print a table.

Exits 1 if a benchmark could not run; a missed target is reported, not an error.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from benchmarks import ack_latency, budgets, delete_purge, resume
from benchmarks.common import Row, say

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (delete_purge, budgets, ack_latency, resume)
}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        (
            int(line.split()[1]) / 1024 / 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0.0,
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.1f} GiB, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}; load average at start {load}"
    )


def table(rows: list[Row]) -> str:
    header = ("benchmark", "metric", "measured", "target", "baseline (same run)", "")
    lines = [
        (
            r.benchmark,
            r.metric,
            r.measured,
            r.target,
            r.baseline,
            "-" if r.ok is None else "met" if r.ok else "MISSED",
        )
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in BENCHMARKS]
    if unknown:
        print(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    chosen = argv or list(BENCHMARKS)
    say(f"machine: {machine()}")
    rows: list[Row] = []
    failed = False
    started = time.perf_counter()
    for name in chosen:
        module = BENCHMARKS[name]
        began = time.perf_counter()
        try:
            rows += asyncio.run(module.run())
        except Exception:
            failed = True
            traceback.print_exc()
            rows.append(Row(name, "(did not run)", "error", "-", "-", False))
        say(f"  ({name} took {time.perf_counter() - began:.0f}s)\n")
    say(table(rows))
    say(f"\n{len(chosen)} benchmark(s) in {time.perf_counter() - started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
