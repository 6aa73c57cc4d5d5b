"""Video-MME (BradyFU/Video-MME): 4-option questions on short, medium and long videos.

Layout: videomme/test-00000-of-00001.parquet (read with pyarrow), videos data/<videoID>.mp4 (the authors' copy:
video/), subtitles subtitle/<videoID>.srt (not used: the no-subtitle setting). Columns: video_id, duration
(short|medium|long), domain, sub_category, url, videoID, question_id, task_type, question, options (["A. ...",
...]), answer (a letter)."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, find_video, read_parquet, result, tally, verdict, with_extensions

NAME = "videomme"
TITLE = "Video-MME"
GROUP = "mcqa"
DURATIONS = ("short", "medium", "long")
COLUMNS = ("videoID", "question_id", "duration", "question", "options", "answer")

INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video. Respond with "
               "only the letter (A, B, C, or D) of the correct option.")
LMMS_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and the "
                    "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
LMMS_POST = "\nAnswer with the option's letter from the given choices directly."


def _parquet(folder: Path) -> Path | None:
    """videomme/test-*.parquet as downloaded, or the table moved to the top as the SToP authors' script does
    (recognised there by its videoID column: other benchmarks ship parquet tables too)."""
    hits = sorted((folder / "videomme").glob("*.parquet")) if (folder / "videomme").is_dir() else []
    if hits:
        return hits[0]
    top = folder / "test-00000-of-00001.parquet"
    if top.is_file():
        import pyarrow.parquet as pq

        try:
            if "videoID" in pq.read_schema(top).names:
                return top
        except Exception:  # not a parquet file: not this layout
            return None
    return None


def detect(folder: Path) -> bool:
    return _parquet(folder) is not None


def prompt(question: str, options: list[str], protocol: str) -> str:
    if protocol == "authors":  # their template keeps a space before the newline and adds "." to every option
        lines = "".join(f"{o}.\n" for o in options)
        return f"{INSTRUCTION} \n{question}\n{lines}The best answer is:"
    if protocol == "lmms-eval":
        return LMMS_INSTRUCTION + "\n" + question + "\n" + "\n".join(options) + "\n" + LMMS_POST
    return INSTRUCTION + "\n" + question + "\n" + "\n".join(options) + "\nThe best answer is:"


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    path = _parquet(folder)
    if path is None:
        raise UsageError(f"Video-MME table missing: {folder / 'videomme' / 'test-00000-of-00001.parquet'}")
    if split is not None and split not in DURATIONS:
        raise UsageError(f"Video-MME has no duration {split!r}; choose from {', '.join(DURATIONS)}")
    records = []
    for row in read_parquet(path, COLUMNS, "Video-MME"):
        if split is not None and row.get("duration") != split:
            continue
        options = [str(o) for o in row.get("options") or []]
        vid = str(row.get("videoID"))
        video = find_video(folder, [p for d in ("data", "video", "videos") for p in with_extensions(f"{d}/{vid}")])
        gold = str(row.get("answer") or "").strip()
        error = None
        if len(options) != 4:
            error = f"expected 4 options, got {len(options)}"
        elif gold not in "ABCD" or len(gold) != 1:
            error = f"gold answer {gold!r} is not an option letter"
        records.append(Record(video, str(row["question"]), gold, tuple(options), str(row.get("duration")),
                              error=error, benchmark=NAME, qid=str(row.get("question_id")),
                              text=prompt(str(row["question"]), options, protocol),
                              meta=dict(domain=row.get("domain"), sub_category=row.get("sub_category"),
                                        task_type=row.get("task_type"))))
    return records


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    reply, gold = row.get("prediction") or "", row.get("answer")
    if protocol == "authors":
        return verdict(P.authors_letter(reply), P.authors_match(gold, reply))
    prefixes = P.VIDEOMME_PREFIXES_OFFICIAL if protocol == "official" else P.VIDEOMME_PREFIXES_LMMS
    parsed = P.videomme_letter(reply, prefixes)
    # the official script leaves unparsed replies out of the denominator; lmms-eval counts them wrong
    return verdict(parsed, parsed == gold, scored=parsed != "" or protocol == "lmms-eval")


def aggregate(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type"))
    total = tally(rows, lambda r: "all").get("all", {})
    by = {k: tally(rows, lambda r, k=k: (r.get("meta") or {}).get(k)) for k in ("domain", "task_type")}
    return result(TITLE, protocol, total.get("accuracy"), "accuracy over all questions", groups, DURATIONS,
                  by={k: {n: t["accuracy"] for n, t in v.items()} for k, v in by.items()})
