"""NExT-QA (doc-doc/NExT-QA), multiple choice: 5 options, causal / temporal / descriptive questions.

Layout: dataset/nextqa/{train,val,test}.csv and dataset/nextqa/map_vid_vidorID.json (video id -> "<dir>/<id>"),
videos NExTVideo/<dir>/<id>.mp4. Columns: video, frame_count, width, height, question, answer (0-4), qid,
type (CW/CH/TN/TC/TP/DL/DC/DO), a0..a4."""

from __future__ import annotations

import csv
from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, find_video, read_json, result, tally, verdict

NAME = "nextqa"
TITLE = "NExT-QA"
GROUP = None
LETTERS = "ABCDE"
# The official evaluation merges TP into TN and reports causal, temporal and descriptive accuracy.
TYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")
GROUPS = {"C": ("CW", "CH"), "T": ("TN", "TC"), "D": ("DC", "DL", "DO")}


def _dir(folder: Path) -> Path:
    return folder / "dataset" / "nextqa"


def detect(folder: Path) -> bool:
    return any((_dir(folder) / f"{s}.csv").is_file() for s in ("val", "test", "train"))


def default_split(protocol: str) -> str:
    return "test" if protocol == "lmms-eval" else "val"  # lmms-eval's multiple-choice task scores test


def prompt(question: str, options: list[str], protocol: str) -> str:
    if protocol == "authors":
        lines = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(options))
        return f"Question: {question}\nOptions:\n{lines} Only give the option."
    return "\n".join([question.strip()] + [f"{LETTERS[i]}. {o.strip()}" for i, o in enumerate(options)])


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    split = split or default_split(protocol)
    path = _dir(folder) / f"{split}.csv"
    if not path.is_file():
        raise UsageError(f"NExT-QA split file missing: {path}")
    map_path = _dir(folder) / "map_vid_vidorID.json"
    if not map_path.is_file():
        raise UsageError(f"NExT-QA video map missing: {map_path}")
    vid_map = read_json(map_path, "NExT-QA video map")
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    root = "NExTVideo" if (folder / "NExTVideo").is_dir() else "dataset/nextqa/NExTVideo"
    records = []
    for n, row in enumerate(rows):
        options = [row.get(f"a{i}") or "" for i in range(5)]
        vid = str(row.get("video", ""))
        rel = vid_map.get(vid) if isinstance(vid_map, dict) else None
        video = find_video(folder, [f"{root}/{rel}.mp4"]) if rel else f"{root}/{vid}.mp4"
        error = None if rel else f"video {vid!r} is not in map_vid_vidorID.json"
        try:
            index = int(row.get("answer", ""))
            gold = LETTERS[index] if 0 <= index < 5 else None
        except ValueError:
            index, gold = None, None
        if gold is None:
            error = error or f"gold answer {row.get('answer')!r} is not an option index 0-4"
        qtype = str(row.get("type", ""))
        records.append(Record(video, str(row.get("question", "")), gold, tuple(options),
                              "TN" if qtype == "TP" else qtype, error=error, benchmark=NAME,
                              qid=f"{vid}_{row.get('qid', n)}", text=prompt(str(row.get("question", "")), options,
                                                                             protocol),
                              meta=dict(answer_index=index, qtype=qtype, split=split)))
    return records


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    reply = row.get("prediction") or ""
    if protocol == "authors":  # compared with the integer gold: a letter reply never matches (their quirk)
        index = (row.get("meta") or {}).get("answer_index")
        return verdict(reply.strip(), P.authors_match(int(index), reply))
    # lmms-eval draws a random letter for an unparsed reply (seeded by the item here); official counts it wrong
    seed = row.get("key") if protocol == "lmms-eval" else None
    parsed = P.mmmu_letter(reply, [o.strip() for o in row.get("options") or []], seed)
    return verdict(parsed, parsed == row.get("answer"))


def aggregate(rows: list[dict], protocol: str) -> dict:
    by_type = tally(rows, lambda r: r.get("type"))
    groups = tally(rows, lambda r: next((g for g, ts in GROUPS.items() if r.get("type") in ts), None))
    total = tally(rows, lambda r: "all").get("all", {})
    return result(TITLE, protocol, total.get("accuracy"), "accuracy over all questions", groups, GROUPS,
                  by={"type": {n: t["accuracy"] for n, t in by_type.items()}})
