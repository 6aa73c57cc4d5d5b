"""`stop bench`: every record x ratio x pruner x (base, +SToP), one JSONL line per finished item, resumable.

Each video is decoded and encoded once per run; every setting reuses that vision pass."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import StopError
from ..pipeline import EncodedVideo, PruneSettings, answer
from ..pruners import WRAPPABLE
from .annotations import Record
from .scoring import score_row
from ..video import read_video


@dataclass(frozen=True)
class Setting:
    ratio: float
    pruner: str
    stop: bool
    sink_score: str = "minmax"  # SToP's sink score; only read when stop

    def prune_settings(self) -> PruneSettings:
        return PruneSettings(pruner=self.pruner, ratio=self.ratio, stop=self.stop, sink_score=self.sink_score)


def settings_grid(ratios: Iterable[float], pruners: Iterable[str], stop_mode: str,
                  sink_scores: Iterable[str] = ("minmax",)) -> list[Setting]:
    """ratio 0 is one unpruned run; other ratios run each pruner without and/or with SToP (once per sink score)."""
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[stop_mode]
    grid = []
    for r in ratios:
        if r == 0:
            grid.append(Setting(0.0, "none", False))
            continue
        for p in pruners:
            for s in modes if p in WRAPPABLE else (False,):
                grid.extend([Setting(r, p, True, score) for score in sink_scores] if s else [Setting(r, p, False)])
    return list(dict.fromkeys(grid))


def item_key(record_key: str, s: Setting) -> str:
    # min-max keys read as before the robust score existed, so older results files resume
    mode = "base" if not s.stop else "stop" if s.sink_score == "minmax" else f"stop-{s.sink_score}"
    return f"{record_key}@{s.ratio:g}/{s.pruner}/{mode}"


def done_keys(path: Path) -> set[str]:
    """Keys already in a results file. A line cut short by a kill is ignored (its item runs again)."""
    keys = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return keys


class ResultWriter:
    """Appends one JSON line per item and makes it durable before the next item starts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("ab") as f:  # a kill mid-line leaves a fragment: close it so the next line parses
                f.write(b"\n")
        self.file = path.open("a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def record_fields(record: Record, protocol: str | None) -> dict:
    """What a result line says about its question: enough to re-score it under any protocol without the model."""
    return dict(benchmark=record.benchmark, protocol=protocol if record.benchmark else None, video=record.video,
                question=record.question, answer=record.answer,
                options=list(record.options) if record.options else None, type=record.type, meta=record.meta or None,
                prompt=record.prompt(), system=record.system, answer_prefix=record.prefix, judge=record.judge,
                clip=None if record.start is None and record.frame_rate is None else
                dict(start=record.start, end=record.end, frame_rate=record.frame_rate))


def failure_row(record: Record, s: Setting, key: str, reason: str, protocol: str | None = None) -> dict:
    return dict(key=key, **record_fields(record, protocol), chat=None, prediction=None, parsed=None, correct=None,
                scored=False, ratio=s.ratio, pruner=s.pruner, stop=s.stop,
                sink_score=s.sink_score if s.stop else None, visual_tokens=None, timings_ms=None,
                error=reason)


def plan(records: list[Record], grid: list[Setting], skip: set[str]) -> list[tuple[tuple, list[tuple[Record, Setting]]]]:
    """The work left, one entry per clip in file order: its (record, setting) items whose keys are not in `skip`. A
    clip is (video, start, end, frame rate): the same file and the same bounds share one decode and one vision pass."""
    by_clip: dict[tuple, list[Record]] = defaultdict(list)
    for rec in records:
        by_clip[rec.clip].append(rec)
    work = []
    for clip, recs in by_clip.items():
        todo = [(r, s) for r in recs for s in grid if item_key(r.key, s) not in skip]
        if todo:
            work.append((clip, todo))
    return work


def run_video(backbone, folder: Path, clip_key: tuple, todo: list[tuple[Record, Setting]], *, frames: int,
              max_new_tokens: int, protocol: str | None = None) -> Iterator[dict]:
    """One clip's items: decode and encode it once, then yield one row per (record, setting) as each finishes, so
    the caller can make it durable before the next starts. The in-process loop and every Ray worker run this same
    function: results cannot depend on who runs it. Benchmark records are scored with `protocol`'s parser (their
    prompts were built for it when they were read)."""
    video, start, end, frame_rate = clip_key
    clip, encoded, video_error = None, None, None
    try:
        if all(r.error for r, _ in todo):
            raise StopError(todo[0][0].error)
        path = Path(video) if Path(video).is_absolute() else folder / video
        t0 = time.perf_counter()
        clip = read_video(path, num_frames=frames, start=start, end=end, frame_rate=frame_rate)
        decode_ms = (time.perf_counter() - t0) * 1000
    except StopError as exc:
        video_error = str(exc)
    prepared: dict[tuple, tuple[dict, str]] = {}  # (prompt, system, prefix) -> (processor inputs, chat text)
    for rec, s in todo:
        key = item_key(rec.key, s)
        if rec.error or video_error:
            row = failure_row(rec, s, key, rec.error or video_error, protocol)
        else:
            try:
                turn = (rec.prompt(), rec.system, rec.prefix)
                if turn not in prepared:  # every setting of a question sends the same prompt: process it once
                    prepared[turn] = (backbone.prepare(clip.frames, *turn, fps=clip.fps, indices=clip.indices),
                                      backbone.chat_text(*turn))
                inputs, chat = prepared[turn]
                if encoded is None:  # the vision pass depends on the frames only: once per clip
                    t0 = time.perf_counter()
                    enc = backbone.encode(inputs)
                    encoded = (enc, (time.perf_counter() - t0) * 1000)
                ev = EncodedVideo(clip, inputs, encoded[0], decode_ms, encoded[1])
                res = answer(backbone, ev, s.prune_settings(), max_new_tokens)
                row = dict(key=key, **record_fields(rec, protocol),
                           chat=chat,
                           prediction=res.answer, ratio=s.ratio, pruner=s.pruner, stop=s.stop,
                           sink_score=s.sink_score if s.stop else None,
                           visual_tokens=res.visual_tokens, prompt_tokens=res.prompt_tokens,
                           timings_ms=dict(prefill=res.timings_ms["prefill"], prune=res.timings_ms["prune"],
                                           total=res.timings_ms["total"]),
                           error=None)
                row.update(score_row(row, protocol))
            except StopError as exc:
                row = failure_row(rec, s, key, str(exc), protocol)
            except RuntimeError as exc:  # e.g. out of memory on one long video: record it, go on
                row = failure_row(rec, s, key, f"{type(exc).__name__}: {str(exc).splitlines()[0]}", protocol)
        yield row


def run_bench(backbone, folder: Path, records: list[Record], grid: list[Setting], output: Path, *, frames: int,
              max_new_tokens: int, skip: set[str], on_item: Callable[[dict], None] | None = None,
              protocol: str | None = None) -> list[dict]:
    """Run every (record, setting) not in `skip` in this process; write and return the rows."""
    writer = ResultWriter(output)
    rows: list[dict] = []
    try:
        for clip_key, todo in plan(records, grid, skip):
            for row in run_video(backbone, folder, clip_key, todo, frames=frames, max_new_tokens=max_new_tokens,
                                 protocol=protocol):
                writer.write(row)
                rows.append(row)
                if on_item:
                    on_item(row)
    finally:
        writer.close()
    return rows


def read_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per ratio x pruner x SToP x type (and 'all'): accuracy, mean kept tokens, mean prefill ms, and the prefill
    speed-up against the unpruned (ratio 0) rows of the same file when there are any."""
    ok = [r for r in rows if r.get("error") is None]
    base_prefill = [r["timings_ms"]["prefill"] for r in ok if r["ratio"] == 0]
    ref = sum(base_prefill) / len(base_prefill) if base_prefill else None
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        for t in ("all", r.get("type") or "-"):
            score = (r.get("sink_score") or "minmax") if r["stop"] else ""  # rows from before the robust score
            groups[(r["ratio"], r["pruner"], r["stop"], score, t)].append(r)
    out = []
    for (ratio, pruner, stop, score, t), items in sorted(groups.items(), key=lambda kv: (*kv[0][:4],
                                                                                           kv[0][4] != "all", kv[0][4])):
        if t != "all" and all((r.get("type") or "-") == t for r in rows):
            continue  # a single type repeats the 'all' row
        good = [r for r in items if r.get("error") is None]
        scored = [r for r in good if r.get("correct") is not None and r.get("scored", True)]
        prefill = sum(r["timings_ms"]["prefill"] for r in good) / len(good) if good else None
        out.append(dict(ratio=ratio, pruner=pruner, stop=stop, sink_score=score or None, type=t, items=len(items),
                        failed=len(items) - len(good),
                        accuracy=sum(r["correct"] for r in scored) / len(scored) if scored else None,
                        kept=sum(r["visual_tokens"]["after"] for r in good) / len(good) if good else None,
                        prefill_ms=prefill, speedup=ref / prefill if ref and prefill else None))
    return out


def plot(summary: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary if r["type"] == "all"]
    fig, (ax_acc, ax_t) = plt.subplots(1, 2, figsize=(10, 4))
    ref = [r for r in rows if r["ratio"] == 0]
    lines = sorted({(r["pruner"], r["stop"], r.get("sink_score") or "") for r in rows if r["ratio"] > 0})
    for pruner, stop, score in lines:
        pts = sorted((r for r in rows if (r["pruner"], r["stop"], r.get("sink_score") or "") == (pruner, stop, score)),
                     key=lambda r: r["ratio"])
        pts = ref + pts
        label = pruner + (" + SToP" if stop else "") + (f" ({score})" if stop and score != "minmax" else "")
        style = "-" if stop else "--"
        xs = [r["ratio"] for r in pts]
        ax_acc.plot(xs, [r["accuracy"] if r["accuracy"] is not None else float("nan") for r in pts], style,
                    marker="o", label=label)
        ax_t.plot(xs, [r["prefill_ms"] if r["prefill_ms"] is not None else float("nan") for r in pts], style,
                  marker="o", label=label)
    ax_acc.set(xlabel="ratio (fraction of visual tokens dropped)", ylabel="accuracy", title="accuracy")
    ax_t.set(xlabel="ratio (fraction of visual tokens dropped)", ylabel="prefill ms", title="prefill time")
    for ax in (ax_acc, ax_t):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
