"""VCGBench (VideoChatGPT's quantitative benchmark): open-ended questions scored 0-5 by a GPT judge.

Layout (as the SToP authors read it): {Generic,Temporal,Consistency}/test-00000-of-00001.parquet and
Test_Videos/<video_name>.{mp4,avi,mov,mkv}. Columns: video_name, question, answer (Consistency: question_1,
question_2). Every reply needs the judge: read and run, kept, reported as not scored."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, find_video, read_parquet, result, tally, verdict, with_extensions

NAME = "vcgbench"
TITLE = "VCGBench"
GROUP = None  # judged 0-5: no accuracy here, so it joins no PDR average
SPLITS = ("Generic", "Temporal", "Consistency")


def _table(folder: Path, split: str) -> Path:
    return folder / split / "test-00000-of-00001.parquet"


def detect(folder: Path) -> bool:
    return any(_table(folder, s).is_file() for s in SPLITS)


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    if split is not None and split not in SPLITS:
        raise UsageError(f"VCGBench has no split {split!r}; choose from {', '.join(SPLITS)}")
    names = [s for s in SPLITS if split in (None, s) and _table(folder, s).is_file()]
    if not names:
        raise UsageError(f"VCGBench table missing: {_table(folder, split or 'Generic')}")
    records = []
    for name in names:
        needed = ("video_name", "question_1", "question_2") if name == "Consistency" else ("video_name", "question")
        for n, row in enumerate(read_parquet(_table(folder, name), needed, "VCGBench")):
            video = find_video(folder, with_extensions(f"Test_Videos/{row['video_name']}",
                                                       (".mp4", ".avi", ".mov", ".mkv")))
            if name != "Consistency":
                questions = [row["question"]]
            elif protocol == "authors":  # the authors ask one of the pair
                questions = [row["question_2"] if row["question_1"] == "None" else row["question_1"]]
            else:  # consistency compares the replies to both phrasings ("None" marks a missing one)
                questions = [q for q in (row["question_1"], row["question_2"]) if q not in (None, "None")]
            for k, q in enumerate(questions):
                records.append(Record(video, str(q), None if row.get("answer") is None else str(row["answer"]), None,
                                      name, benchmark=NAME, qid=f"{name}/{n}/{k}", text=str(q), judge=True))
    return records


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    return verdict(None, None, scored=False)


def aggregate(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type"))
    return result(TITLE, protocol, None, "GPT-judged 0-5 scores", groups, SPLITS,
                  judge_note="not scored (judge needed)")
