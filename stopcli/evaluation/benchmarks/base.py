"""What the benchmark readers share: protocol names, folder checks, verdicts and per-group tallies.

A benchmark module defines NAME, TITLE, GROUP ("fine-grained", "mcqa" or None: which PDR average it joins),
PROTOCOLS (those it has), and
  detect(folder) -> bool                       the folder looks like this benchmark as published
  load(folder, protocol, bounds, split) -> [Record]   one Record per question, prompt built for the protocol
  score(row, protocol) -> dict(parsed, correct, scored)   from a result line alone, so a run can be re-scored
  aggregate(rows, protocol) -> dict            the numbers the benchmark reports (see `report`)
`scored` False leaves the item out of the denominator (the protocol excludes it); `correct` None = judge needed."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from ...errors import UsageError

PROTOCOLS = ("official", "lmms-eval", "authors")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def check_protocol(name: str, protocol: str, available: Iterable[str] = PROTOCOLS) -> None:
    available = tuple(available)
    if protocol not in available:
        raise UsageError(f"{name} has no {protocol!r} protocol; choose from {', '.join(available)}")


def task_files(title: str, json_dir: Path, known: Iterable[str], split: str | None, kind: str = "task") -> list[str]:
    """The task stems to read from `json_dir` (one `<stem>.json` each): every known one that is present, or exactly
    the comma-separated ones `split` names, each of which must be known and present."""
    known = tuple(known)
    stems = list(known) if split is None else split.split(",")
    unknown = [s for s in stems if s not in known]
    if unknown:
        raise UsageError(f"{title} has no {kind} {unknown[0]!r}; tasks: {', '.join(known)}")
    present = [s for s in stems if (json_dir / f"{s}.json").is_file()]
    if split is not None and len(present) < len(stems):
        missing = next(s for s in stems if s not in present)
        raise UsageError(f"{title} task file missing: {json_dir / (missing + '.json')}")
    if not present:
        raise UsageError(f"no {title} task files in {json_dir}")
    return present


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read {what} {path}: {reason}") from None


def read_parquet(path: Path, columns: Iterable[str], what: str) -> list[dict]:
    """The rows of a parquet table (pyarrow), after checking it has `columns`."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for anything that is not parquet
        raise UsageError(f"cannot read {what} table {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UsageError(f"{path} lacks the {what} column(s) {', '.join(missing)}")
    return table.to_pylist()


def find_video(folder: Path, candidates: Iterable[str]) -> str:
    """The first candidate (relative to `folder`) that exists, else the first one (reported missing when run)."""
    candidates = list(candidates)
    for c in candidates:
        if (folder / c).exists():
            return c
    return candidates[0]


def with_extensions(stem: str, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[str]:
    return [stem + e for e in extensions]


def verdict(parsed, correct: bool | None, scored: bool = True) -> dict:
    return dict(parsed=parsed, correct=correct, scored=scored)


def letter_of(options: list[str], text: str, last: bool = False) -> str | None:
    """The option letter of the gold text: the first matching candidate, or the last one (MLVU's official
    script keeps overwriting its match). None when the text is not a candidate."""
    hits = [i for i, o in enumerate(options) if o == text]
    return None if not hits else "ABCDEFGH"[hits[-1] if last else hits[0]]


def tally(rows: list[dict], group_of: Callable[[dict], str | None]) -> dict[str, dict]:
    """Per group: items, failed, judge (not scored), excluded (left out by the protocol), scored, correct,
    accuracy (correct / scored)."""
    out: dict[str, dict] = defaultdict(lambda: dict(items=0, failed=0, judge=0, excluded=0, scored=0, correct=0,
                                                    empty=0))
    for r in rows:
        g = group_of(r)
        if g is None:
            continue
        t = out[g]
        t["items"] += 1
        if r.get("error"):
            t["failed"] += 1
            continue
        t["empty"] += not (r.get("prediction") or "").strip()
        if r.get("judge"):
            t["judge"] += 1
        elif not r.get("scored", True) or r.get("correct") is None:
            t["excluded"] += 1
        else:
            t["scored"] += 1
            t["correct"] += bool(r["correct"])
    for t in out.values():
        t["accuracy"] = t["correct"] / t["scored"] if t["scored"] else None
    return dict(out)


def pooled(groups: dict[str, dict]) -> dict:
    total = dict(items=0, failed=0, judge=0, excluded=0, scored=0, correct=0, empty=0)
    for t in groups.values():
        for k in total:
            total[k] += t[k]
    total["accuracy"] = total["correct"] / total["scored"] if total["scored"] else None
    return total


def mean_of(groups: dict[str, dict], names: Iterable[str] | None = None) -> float | None:
    """Mean accuracy over the groups that have scored items (the "mean over tasks" of MVBench, MLVU's M-Avg)."""
    values = [t["accuracy"] for n, t in groups.items() if (names is None or n in names) and t["accuracy"] is not None]
    return sum(values) / len(values) if values else None


def result(name: str, protocol: str, score: float | None, score_name: str, groups: dict[str, dict],
           order: Iterable[str] | None = None, judge_items: int = 0, judge_note: str | None = None, **extra) -> dict:
    """One benchmark's report: the headline score, how it is made, and every group with its tally. Items that
    need a judge (in `groups` or counted in `judge_items`) are reported as not scored."""
    names = [n for n in (order or sorted(groups)) if n in groups] + sorted(set(groups) - set(order or groups))
    overall = pooled(groups)
    judge = overall["judge"] + judge_items
    out = dict(benchmark=name, protocol=protocol, score=score, score_name=score_name,
               groups={n: groups[n] for n in names}, items=overall["items"] + judge_items, failed=overall["failed"],
               judge=judge, excluded=overall["excluded"], scored=overall["scored"], empty=overall["empty"])
    if judge:
        out["judge_note"] = judge_note or "not scored (judge needed)"
    out.update(extra)
    return out
