"""LongVideoBench (longvideobench/LongVideoBench): 4-5 option questions on videos up to an hour long.

Layout: lvb_val.json, lvb_test_wo_gt.json (or the hub's validation-00000-of-00001.parquet copy, which the SToP
authors read), videos/<video_path>, subtitles/ (not used: the no-subtitle setting).
Fields: id, video_id, video_path, duration_group (8/15/60/600/3600 s), question_category, question,
candidates, correct_choice (an index; absent in the test file), duration."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, read_json, read_parquet, result, tally, verdict

NAME = "longvideobench"
TITLE = "LongVideoBench"
GROUP = None
LETTERS = "ABCDE"
FILES = {"val": "lvb_val.json", "test": "lvb_test_wo_gt.json"}
DURATION_GROUPS = ("8", "15", "60", "600", "3600")
DIRECT = "Answer with the option's letter from the given choices directly."
AUTHORS_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. "
                       "Respond with only the letter (A, B, C, or D) of the correct option.")


PARQUET = {"val": "validation-00000-of-00001.parquet"}  # the hub's table copy (option0..4, "N/A"-padded)


def detect(folder: Path) -> bool:
    return any((folder / f).is_file() for f in FILES.values()) or (folder / PARQUET["val"]).is_file()


def _items(folder: Path, split: str) -> list:
    """The split's questions: the JSON file, or the parquet copy the SToP authors read (options back to a list)."""
    path = folder / FILES[split]
    if path.is_file():
        items = read_json(path, "LongVideoBench questions")
        if not isinstance(items, list):
            raise UsageError(f"{path} is not a list of questions")
        return items
    if split in PARQUET and (folder / PARQUET[split]).is_file():
        rows = read_parquet(folder / PARQUET[split], ("video_path", "question", "option0", "correct_choice"),
                            "LongVideoBench")
        for r in rows:
            r["candidates"] = [r[f"option{i}"] for i in range(5) if r.get(f"option{i}") not in (None, "N/A")]
        return rows
    raise UsageError(f"LongVideoBench split file missing: {path}")


def prompt(question: str, candidates: list[str], protocol: str) -> str:
    lines = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(candidates))
    if protocol == "official":  # the publisher's dataset class: "Question: ", lettered options, the instruction
        return f"Question: {question}\n{lines}\n{DIRECT}"
    if protocol == "lmms-eval":
        return f"{question}\n{lines}\n{DIRECT}\n"
    # the authors: Video-MME's wording with five options, padded with "N/A" as in the parquet copy
    five = (list(candidates) + ["N/A"] * 5)[:5]
    opts = "".join(f"({LETTERS[i]}) {c.strip(',')}.\n" for i, c in enumerate(five))
    return f"{AUTHORS_INSTRUCTION} \n{question}\n{opts}The best answer is:"


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    split = split or "val"
    if split not in FILES:
        raise UsageError(f"LongVideoBench has no split {split!r}; choose from {', '.join(FILES)}")
    items = _items(folder, split)
    records = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) or \
                not isinstance(item.get("candidates"), list) or not 2 <= len(item["candidates"]) <= 5:
            records.append(Record("?", "?", benchmark=NAME, qid=str(n), error="record needs a question and 2-5 "
                                                                                "candidates"))
            continue
        candidates = [str(c) for c in item["candidates"]]
        choice = item.get("correct_choice")
        gold = LETTERS[choice] if isinstance(choice, int) and 0 <= choice < len(candidates) else None
        error = None if gold or choice is None else f"correct_choice {choice!r} is not a candidate index"
        records.append(Record(f"videos/{item.get('video_path', '?')}", item["question"], gold, tuple(candidates),
                              str(item.get("duration_group")), error=error, benchmark=NAME,
                              qid=str(item.get("id", n)), text=prompt(item["question"], candidates, protocol),
                              meta=dict(correct_choice=choice, question_category=item.get("question_category"))))
    return records


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    reply = row.get("prediction") or ""
    if row.get("answer") is None:  # the test split ships without answers
        return verdict(None, None, scored=False)
    if protocol == "authors":  # gold is the index as text: only a reply "2" matches index 2 (their quirk)
        choice = (row.get("meta") or {}).get("correct_choice")
        return verdict(reply.strip(), reply.strip() == str(choice))
    # unparsed -> a random letter in the source; drawn from the item's key here, so a re-score is stable
    parsed = P.lvb_letter(reply, len(row.get("options") or []), row.get("key"))
    return verdict(parsed, parsed == row.get("answer"))


def aggregate(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type"))
    total = tally(rows, lambda r: "all").get("all", {})
    cats = tally(rows, lambda r: (r.get("meta") or {}).get("question_category"))
    return result(TITLE, protocol, total.get("accuracy"), "accuracy over all questions", groups, DURATION_GROUPS,
                  by={"question_category": {n: t["accuracy"] for n, t in cats.items()}})
