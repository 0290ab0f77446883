"""Benchmarks: `python -m benchmarks [name ...]` runs them and prints a results table.

Each benchmark module has `NAME`, `TITLE` and `async def run() -> list[Row]`; every number it
reports is measured in the same run as its baseline. See BENCHMARKS.md for the reading.
"""
