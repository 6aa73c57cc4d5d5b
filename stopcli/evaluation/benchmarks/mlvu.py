"""MLVU dev (JUNJIE99/MLVU): 7 multiple-choice tasks on long videos, plus 2 open-ended ones (judge needed).

Layout: MLVU/json/{1_plotQA,2_needle,3_ego,4_count,5_order,6_anomaly_reco,7_topic_reasoning,8_sub_scene,
9_summary}.json and MLVU/video/<json stem>/<file> (the folder passed may also be the inner MLVU/). Record:
{video, duration, question, candidates, answer: <candidate text>, question_type}. The published files repeat a
candidate in places (the official script takes the last match, the authors the first) and hold an answer that is
not a candidate: that item becomes a failure line."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, find_video, letter_of, mean_of, read_json, result, tally, task_files, verdict

NAME = "mlvu"
TITLE = "MLVU"
GROUP = "mcqa"
CHOICE = ("1_plotQA", "2_needle", "3_ego", "4_count", "5_order", "6_anomaly_reco", "7_topic_reasoning")
OPEN = ("8_sub_scene", "9_summary")
SYSTEM = ("Carefully watch this video and pay attention to every detail. Based on your observations, select the "
          "best option that accurately addresses the question.")
ANSWER_PREFIX = "Best Option: ("


def _root(folder: Path) -> Path:
    return folder / "MLVU" if (folder / "MLVU" / "json").is_dir() else folder


def detect(folder: Path) -> bool:
    root = _root(folder)
    return any((root / "json" / f"{s}.json").is_file() for s in CHOICE + OPEN)


def _block(question: str, candidates: list[str]) -> str:
    lines = "".join(f"({'ABCDEFGH'[i]}) {c}\n" for i, c in enumerate(candidates))
    return f"Question: {question}\nOptions:\n{lines}".rstrip()


def prompt(question: str, candidates: list[str], protocol: str) -> tuple[str, str | None, str | None]:
    if protocol == "official":  # choice_bench.py joins the options and the instruction without a newline
        return _block(question, candidates) + "Only give the best option.", SYSTEM, ANSWER_PREFIX
    if protocol == "lmms-eval":  # its question field, then the post prompt with the prefix inside the user turn
        return _block(question, candidates) + "\nOnly give the best option.\nBest option: (", None, None
    return _block(question, candidates) + "\nOnly give the best option.", None, None


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    root = _root(folder)
    present = task_files("MLVU", root / "json", CHOICE + OPEN, split, kind="task file")
    base = root.relative_to(folder).as_posix() + "/" if root != folder else ""
    records = []
    for stem in present:
        task = stem.split("_", 1)[1]
        items = read_json(root / "json" / f"{stem}.json", "MLVU task")
        if not isinstance(items, list):
            raise UsageError(f"{root / 'json' / (stem + '.json')} is not a list of questions")
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("video"), str) or \
                    not isinstance(item.get("question"), str):
                records.append(Record("?", "?", benchmark=NAME, type=task, qid=f"{stem}/{n}",
                                      error="record needs video and question"))
                continue
            video = find_video(folder, [f"{base}video/{stem}/{item['video']}", f"{base}video/{task}/{item['video']}"])
            if stem in OPEN:  # open-ended: run it and keep the reply; a judge scores it, not us
                records.append(Record(video, item["question"], str(item.get("answer")), None, task, benchmark=NAME,
                                      qid=f"{stem}/{n}", text=item["question"], judge=True))
                continue
            candidates = [str(c) for c in item.get("candidates") or []]
            gold = letter_of(candidates, str(item.get("answer")), last=protocol == "official")
            error = None if gold else f"gold answer {item.get('answer')!r} is not among the candidates"
            text, system, prefix = prompt(item["question"], candidates, protocol)
            records.append(Record(video, item["question"], gold, tuple(candidates), task, error=error, benchmark=NAME,
                                  qid=f"{stem}/{n}", text=text, system=system, prefix=prefix,
                                  meta=dict(gold_text=item.get("answer"))))
    return records


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    if row.get("judge"):
        return verdict(None, None, scored=False)
    reply, options, text = row.get("prediction") or "", list(row.get("options") or []), (row.get("meta") or {})
    gold = letter_of(options, str(text.get("gold_text")), last=protocol == "official") or row.get("answer")
    if protocol == "authors":
        parsed = P.authors_letter(reply)
        return verdict(parsed, parsed == gold)
    parsed = P.mlvu_letter(reply, strip=protocol == "lmms-eval")
    return verdict(parsed, parsed == gold)


def aggregate(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type"))
    tasks = [s.split("_", 1)[1] for s in CHOICE]
    choice = {k: v for k, v in groups.items() if k in tasks}
    order = tasks + [s.split("_", 1)[1] for s in OPEN]
    if protocol == "authors":
        total = tally([r for r in rows if not r.get("judge")], lambda r: "all").get("all", {})
        return result(TITLE, protocol, total.get("accuracy"), "pooled accuracy (7 tasks)", groups, order,
                      m_avg=mean_of(choice), judge_note="open-ended tasks: not scored (judge needed)")
    return result(TITLE, protocol, mean_of(choice), "M-Avg (mean of the 7 task accuracies)", groups, order,
                  judge_note="open-ended tasks: not scored (judge needed)")
