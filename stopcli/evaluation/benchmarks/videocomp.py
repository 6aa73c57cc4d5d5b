"""VideoComp: compositional multiple choice over captions, ActivityNet and YouCook2 splits.

Layout (as the SToP authors read it): {activitynet,youcook2}_comp_val.json, videos activitynet_video/v_<id>.{mp4,mkv}
and raw_videos/video/<id>.{mp4,mkv,webm}. Fields: key, video_id, question (sent as is), answer,
query_video/start_time and query_video/end_time (microseconds; the authors sample the whole video). Only the
authors' protocol exists; the other names use it too."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, find_video, read_json, result, tally, verdict, with_extensions

NAME = "videocomp"
TITLE = "VideoComp"
GROUP = "fine-grained"
# One scorer (the authors') exists; every protocol name uses it.
SPLITS = {"ActivityNet": "activitynet_comp_val.json", "YouCook2": "youcook2_comp_val.json"}


def detect(folder: Path) -> bool:
    return any((folder / f).is_file() for f in SPLITS.values())


def _videos(split: str, vid: str) -> list[str]:
    if split == "ActivityNet":
        return with_extensions(f"activitynet_video/v_{vid}", (".mp4", ".mkv"))
    return with_extensions(f"raw_videos/video/{vid}", (".mp4", ".mkv", ".webm"))


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    if split is not None and split not in SPLITS:
        raise UsageError(f"VideoComp has no split {split!r}; choose from {', '.join(SPLITS)}")
    names = [s for s in SPLITS if split in (None, s) and (folder / SPLITS[s]).is_file()]
    if not names:
        raise UsageError(f"VideoComp split file missing: {folder / SPLITS[split or 'ActivityNet']}")
    records = []
    for name in names:
        items = read_json(folder / SPLITS[name], "VideoComp questions")
        if not isinstance(items, list):
            raise UsageError(f"{folder / SPLITS[name]} is not a list of questions")
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("question"), str) or "video_id" not in item:
                records.append(Record("?", "?", benchmark=NAME, type=name, qid=f"{name}/{n}",
                                      error="record needs video_id and question"))
                continue
            gold = item.get("answer")
            records.append(Record(find_video(folder, _videos(name, str(item["video_id"]))), item["question"],
                                  None if gold is None else str(gold), None, name, benchmark=NAME,
                                  qid=f"{name}/{item.get('key', n)}", text=item["question"],
                                  error=None if gold is not None else "record has no answer"))
    return records


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    reply = row.get("prediction") or ""
    return verdict(P.authors_letter(reply), P.authors_match(row.get("answer"), reply))


def aggregate(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type"))
    total = tally(rows, lambda r: "all").get("all", {})
    return result(TITLE, protocol, total.get("accuracy"), "accuracy over both splits", groups, SPLITS)
