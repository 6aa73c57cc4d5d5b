"""MVBench (OpenGVLab): 20 multiple-choice tasks over clips from 11 video sources.

Layout: json/<task>.json and video/<source dir>/..., each task mapped to its source dir, its data type (video
file, or a folder of frames read at 3 fps) and whether its records carry clip bounds (start/end seconds), as in
the publisher's task table. Record: {video, question, candidates, answer: <candidate text>} (+ start, end)."""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from ..annotations import Record
from . import parsers as P
from .base import PROTOCOLS  # noqa: F401  (every protocol applies; the registry reads it)
from .base import check_protocol, letter_of, task_files, mean_of, read_json, result, tally, verdict

NAME = "mvbench"
TITLE = "MVBench"
GROUP = "mcqa"

# task -> (source dir under video/, frame rate of a frame-folder task or None for files, has clip bounds)
TASKS = {
    "action_sequence": ("star/Charades_v1_480/", None, True),
    "action_prediction": ("star/Charades_v1_480/", None, True),
    "action_antonym": ("ssv2_video/", None, False),
    "fine_grained_action": ("Moments_in_Time_Raw/videos/", None, False),
    "unexpected_action": ("FunQA_test/test/", None, False),
    "object_existence": ("clevrer/video_validation/", None, False),
    "object_interaction": ("star/Charades_v1_480/", None, True),
    "object_shuffle": ("perception/videos/", None, False),
    "moving_direction": ("clevrer/video_validation/", None, False),
    "action_localization": ("sta/sta_video/", None, True),
    "scene_transition": ("scene_qa/video/", None, False),
    "action_count": ("perception/videos/", None, False),
    "moving_count": ("clevrer/video_validation/", None, False),
    "moving_attribute": ("clevrer/video_validation/", None, False),
    "state_change": ("perception/videos/", None, False),
    "fine_grained_pose": ("nturgbd/", None, False),
    "character_order": ("perception/videos/", None, False),
    "egocentric_navigation": ("vlnqa/", None, False),
    "episodic_reasoning": ("tvqa/frames_fps3_hq/", 3.0, True),
    "counterfactual_inference": ("clevrer/video_validation/", None, False),
}
GIF_RATE = 25.0  # videochat2 reads GIF sources at 25 fps
SKIPPED_BY_AUTHORS = "fine_grained_pose"  # the authors evaluate 19 tasks

SYSTEM = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
          "movement of objects, and the action and pose of persons. Based on your observations, select the best "
          "option that accurately addresses the question.")
ANSWER_PREFIX = "Best option:("


def detect(folder: Path) -> bool:
    return (folder / "json").is_dir() and any((folder / "json" / f"{t}.json").is_file() for t in TASKS)


def _block(question: str, candidates: list[str]) -> str:
    """Question, options one per line, "Only give the best option." (videochat2's qa_template, the authors')."""
    lines = "".join(f"({'ABCDEFGH'[i]}) {c}\n" for i, c in enumerate(candidates))
    return f"Question: {question}\nOptions:\n{lines}Only give the best option."


def prompt(question: str, candidates: list[str], protocol: str) -> tuple[str, str | None, str | None]:
    """(user text, system message, answer prefix) for one record."""
    if protocol == "lmms-eval":
        lines = "".join(f"({'ABCDEFGH'[i]}) {c}\n" for i, c in enumerate(candidates))
        return "Question:" + question + "\nOption:\n" + lines + "Only give the best option.\n", None, None
    if protocol == "official":  # videochat2 puts the system text in front of the question as well
        return SYSTEM + "\n" + _block(question, candidates), SYSTEM, ANSWER_PREFIX
    return _block(question, candidates), None, None


def load(folder: Path, protocol: str = "official", bounds: bool = True, split: str | None = None) -> list[Record]:
    check_protocol(TITLE, protocol)
    present = task_files("MVBench", folder / "json", TASKS, split)
    records = []
    for task in present:
        if protocol == "authors" and task == SKIPPED_BY_AUTHORS:
            continue
        source, rate, has_bounds = TASKS[task]
        items = read_json(folder / "json" / f"{task}.json", "MVBench task")
        if not isinstance(items, list):
            raise UsageError(f"{folder / 'json' / (task + '.json')} is not a list of questions")
        for n, item in enumerate(items):
            records.append(_record(item, task, n, source, rate, protocol,
                                   use_bounds=has_bounds and bounds and protocol == "official"))
    return records


def _record(item, task: str, n: int, source: str, rate: float | None, protocol: str, use_bounds: bool) -> Record:
    if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("video", "question")) or \
            not isinstance(item.get("candidates"), list) or not item["candidates"]:
        return Record(video="?", question="?", benchmark=NAME, type=task, qid=f"{task}/{n}",
                      error="record needs video, question and a list of candidates")
    candidates = [str(c) for c in item["candidates"]]
    video = f"video/{source}{item['video']}"
    gold = letter_of(candidates, str(item.get("answer")))
    error = None if gold else f"gold answer {item.get('answer')!r} is not among the candidates"
    start = end = None
    if use_bounds:
        try:
            start, end = float(item["start"]), float(item["end"])
        except (KeyError, TypeError, ValueError):
            error = error or "bound task record without numeric start/end"
    text, system, prefix = prompt(item["question"], candidates, protocol)
    frame_rate = rate if rate is not None else GIF_RATE if video.lower().endswith(".gif") else None
    return Record(video, item["question"], gold, tuple(candidates), task, error=error, benchmark=NAME,
                  qid=f"{task}/{n}", text=text, system=system, prefix=prefix, start=start, end=end,
                  frame_rate=frame_rate, meta=dict(gold_text=item.get("answer")))


def score(row: dict, protocol: str) -> dict:
    check_protocol(TITLE, protocol)
    reply, gold = row.get("prediction") or "", row.get("answer")
    if protocol == "official":
        after = (row.get("answer_prefix") or "").endswith("(")
        return verdict(None, P.videochat2_match(reply, gold, after))
    if protocol == "lmms-eval":
        parsed = P.lmms_mvbench_option(reply)
        return verdict(parsed, parsed == gold, scored=reply != "")  # empty replies leave the denominator
    if row.get("type") == SKIPPED_BY_AUTHORS:
        return verdict(None, None, scored=False)
    parsed = P.authors_letter(reply)
    return verdict(parsed, parsed == gold)


def aggregate(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type"))
    if protocol == "authors":  # the authors' number pools every item of their 19 tasks
        total = tally(rows, lambda r: "all").get("all", {})
        return result(TITLE, protocol, total.get("accuracy"), "pooled accuracy (19 tasks)", groups, TASKS,
                      mean_of_tasks=mean_of(groups))
    return result(TITLE, protocol, mean_of(groups), "mean of task accuracies", groups, TASKS)
