"""EventHallusion (Stevetich/EventHallusion): yes/no questions about videos built to mislead, plus a description.

Layout: questions/{entire,misleading,mix}_questions.json (older releases: interleave_questions.json) and
videos/{entire,interleave,misleading}/<id>.mp4. The "mix" file's ids are mix_xxx and its videos ship as
videos/interleave/interleave_xxx.mp4. One item = one video with several questions; answers "Yes." / "No."."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import check_protocol, find_video, read_json, result, tally, verdict

NAME = "eventhallusion"
TITLE = "EventHallusion"
GROUP = "fine-grained"
PROTOCOLS = ("official", "authors")
SPLITS = ("entire", "interleave", "misleading")
QUESTION_FILES = {"entire": ("entire_questions.json",), "misleading": ("misleading_questions.json",),
                  "interleave": ("mix_questions.json", "interleave_questions.json")}
ANSWER_PROMPT = "\nPlease answer yes or no:"
DESCRIBE = "Please describe this video in detail."


def detect(folder: Path) -> bool:
    return any((folder / "questions" / f).is_file() for files in QUESTION_FILES.values() for f in files)


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol, PROTOCOLS)
    splits = SPLITS if split is None else (split,)
    if split is not None and split not in SPLITS:
        raise UsageError(f"EventHallusion has no split {split!r}; choose from {', '.join(SPLITS)}")
    records = []
    found = 0
    for name in splits:
        path = next((folder / "questions" / f for f in QUESTION_FILES[name] if (folder / "questions" / f).is_file()),
                    None)
        if path is None:
            if split is not None:
                raise UsageError(f"EventHallusion split file missing: {folder / 'questions' / QUESTION_FILES[name][0]}")
            continue
        found += 1
        items = read_json(path, "EventHallusion questions")
        if not isinstance(items, list):
            raise UsageError(f"{path} is not a list of videos")
        for item in items:
            records.extend(_records(folder, name, item, protocol))
    if not found:
        raise UsageError(f"no EventHallusion question files in {folder / 'questions'}")
    return records


def _records(folder: Path, split: str, item, protocol: str) -> list[Record]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return [Record(video="?", question="?", benchmark=NAME, type=split, error="item has no id")]
    vid = item["id"].replace("mix", "interleave") if item["id"].startswith("mix") else item["id"]
    video = find_video(folder, [f"videos/{split}/{vid}.mp4", f"videos/mix/{item['id']}.mp4"])
    info = item.get("event_info") or {}
    out = []
    # The description is judged by GPT (official: every split, interleave against `unexpected`; authors: not
    # misleading, `caption` for all): run it and keep it, never score it here.
    if protocol == "official" or split != "misleading":
        ref = info.get("unexpected") if protocol == "official" and split == "interleave" else info.get("caption")
        out.append(Record(video, DESCRIBE, ref, None, split, benchmark=NAME, qid=f"{item['id']}/desc", text=DESCRIBE,
                          judge=True, meta=dict(kind="description", id=item["id"])))
    questions = item.get("questions")
    if not isinstance(questions, list) or not questions:
        out.append(Record(video, "?", None, None, split, benchmark=NAME, error=f"{item['id']} has no questions"))
        return out
    for n, q in enumerate(questions):
        if not isinstance(q, dict) or not isinstance(q.get("question"), str):
            out.append(Record(video, "?", None, None, split, benchmark=NAME, error=f"{item['id']} question {n} is bad"))
            continue
        gold = q.get("answer")
        error = None if gold in ("Yes.", "No.", "Yes", "No", "yes", "no") else f"gold answer {gold!r} is not yes/no"
        out.append(Record(video, q["question"], gold, None, split, error=error, benchmark=NAME,
                          qid=f"{item['id']}/{n}", text=q["question"] + ANSWER_PROMPT,
                          meta=dict(kind="binary", id=item["id"], qtype=q.get("type"))))
    return out


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol, PROTOCOLS)
    if row.get("judge"):
        return verdict(None, None, scored=False)
    reply, gold = row.get("prediction") or "", str(row.get("answer"))
    if protocol == "official":
        parsed = P.eventhallusion_official(reply)
        g = "Yes." if gold.lower().startswith("yes") else "No."
        return verdict(parsed, parsed == g)
    parsed = P.authors_yes_no(reply)
    return verdict(parsed, parsed == gold.strip().strip(".").lower().strip(","))


def aggregate(rows: list[dict], protocol: str) -> dict:
    binary = [r for r in rows if not r.get("judge")]
    groups = tally(binary, lambda r: r.get("type"))
    total = tally(binary, lambda r: "all")
    described = [r for r in rows if r.get("judge") and not r.get("error")]
    unmatched = sum(1 for r in binary if not r.get("error") and r.get("parsed") not in ("Yes.", "No.", "yes", "no"))
    return result(TITLE, protocol, total.get("all", {}).get("accuracy"), "binary accuracy, pooled over splits",
                  groups, SPLITS, judge_items=len(described), judge_note="descriptions: not scored (judge needed)",
                  not_matching=unmatched)
