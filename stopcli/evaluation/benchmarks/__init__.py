"""Readers, prompts, parsers and aggregation for the benchmarks as their publishers ship them.

One module per benchmark (see base.py for what each defines). `stop bench DIR --benchmark NAME --protocol P`
reads DIR with `load`, and every result line keeps what `score` needs, so `stop report --protocol Q` re-scores a
run under another protocol's parser without generating again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ...errors import UsageError
from . import eventhallusion, longvideobench, mlvu, mvbench, nextqa, vcgbench, videocomp, videomme
from .base import PROTOCOLS

BENCHMARKS = {m.NAME: m for m in (eventhallusion, mvbench, videomme, nextqa, longvideobench, mlvu, videocomp,
                                           vcgbench)}
NAMES = tuple(BENCHMARKS)

__all__ = ["BENCHMARKS", "NAMES", "PROTOCOLS", "get", "detect", "load", "score", "aggregate"]


def get(name: str):
    key = name.lower().replace("-", "").replace("_", "")
    if key not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}")
    return BENCHMARKS[key]


def detect(folder: Path) -> str | None:
    """The benchmark whose published layout `folder` has; None when none does. Several -> a usage error."""
    hits = [n for n, m in BENCHMARKS.items() if m.detect(folder)]
    if len(hits) > 1:
        raise UsageError(f"{folder} looks like several benchmarks ({', '.join(hits)}); pass --benchmark NAME")
    return hits[0] if hits else None


# The authors' evaluation always opens the conversation with this system turn (LLaVA's qwen_1_5 template, and
# the same text on their Qwen path), whatever the model's own template would do without one.
AUTHORS_SYSTEM = "You are a helpful assistant."


def load(name: str, folder: Path, protocol: str, bounds: bool = True, split: str | None = None):
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    records = get(name).load(folder, protocol, bounds, split)
    if protocol == "authors":
        records = [r if r.system is not None else replace(r, system=AUTHORS_SYSTEM) for r in records]
    return records


def score(row: dict, protocol: str) -> dict:
    return get(row["benchmark"]).score(row, protocol)


def aggregate(name: str, rows: list[dict], protocol: str) -> dict:
    return get(name).aggregate(rows, protocol)
