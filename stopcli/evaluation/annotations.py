"""Benchmark records: our own format plus EventHallusion-, MVBench- and Video-MME-style annotations.

Our format (`annotations.jsonl`, `.json` list, or `.csv`): {video, question, answer, options?, type?}, the video
relative to the folder. Other styles map onto it:
  EventHallusion: {id, question, answer: yes/no}            -> video `<id>.mp4` found anywhere under the folder,
                                                               question + "\\nPlease answer yes or no:", type yes/no
  MVBench:        {video, question, candidates, answer}      -> options = candidates, gold = letter of `answer`
  Video-MME:      {videoID, question, options ["A. x", ...], answer "B"} -> video `<videoID>.mp4`, options stripped
A record that cannot be read becomes a Record with `error` set, so the run reports it and goes on."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StopError
from .scoring import LETTERS

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
ANNOTATION_NAMES = ("annotations.jsonl", "annotations.json", "annotations.csv")


@dataclass(frozen=True)
class Record:
    video: str  # relative to the folder (or absolute)
    question: str
    answer: str | None = None
    options: tuple[str, ...] | None = None
    type: str | None = None
    error: str | None = None
    # Set by the benchmark readers (stopcli/evaluation/benchmarks/); the generic format leaves them empty.
    benchmark: str | None = None
    qid: str | None = None  # tells apart two questions that share video, text and options
    text: str | None = None  # the prompt the benchmark's protocol sends, byte for byte
    system: str | None = None  # the protocol's system message, sent as the chat template's system turn
    prefix: str | None = None  # the protocol's answer prefix, sent as the start of the assistant's reply
    start: float | None = None  # clip bounds in seconds, where the protocol honours them
    end: float | None = None
    frame_rate: float | None = None  # a folder of frames (or a GIF) is a video at this rate
    judge: bool = False  # scored only by an LLM judge: run and kept, reported as not scored
    meta: dict = field(default_factory=dict, compare=False)  # what the benchmark's scorer and report need

    @property
    def key(self) -> str:
        base = f"{self.video}::{self.question}::{'|'.join(self.options or ())}"
        return f"{base}::{self.qid}" if self.qid is not None else base

    @property
    def clip(self) -> tuple:
        """What decoding depends on: records that share it share one decode and one vision pass."""
        return self.video, self.start, self.end, self.frame_rate

    def prompt(self) -> str:
        if self.text is not None:
            return self.text
        if not self.options or "(a)" in self.question.lower():
            return self.question
        listed = " ".join(f"({LETTERS[i]}) {opt}" for i, opt in enumerate(self.options))
        return f"{self.question} options: {listed}. answer with the letter."


def _read_rows(path: Path) -> list[object]:
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        rows.append({"_error": f"line {n} is not JSON"})
            return rows
        if path.suffix == ".json":
            data = json.loads(text)
            return data if isinstance(data, list) else data.get("questions", data.get("data", [data]))
        if path.suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
    except (json.JSONDecodeError, csv.Error) as exc:
        raise StopError(f"cannot read annotations {path}: {exc}") from None
    raise StopError(f"annotations must be .jsonl, .json or .csv: {path}")


def _find_video(folder: Path, stem: str) -> str:
    for ext in VIDEO_EXTENSIONS:
        hits = sorted(folder.rglob(f"{stem}{ext}"))
        if hits:
            return str(hits[0].relative_to(folder))
    return f"{stem}.mp4"  # reported as missing when the run reaches it


def _options(raw) -> tuple[str, ...] | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = [o for o in raw.split("|")]
    return tuple(re.sub(r"^\s*\(?[A-Ha-h][\.\):]\s*", "", str(o)).strip() for o in raw)


def parse_record(row: object, folder: Path) -> Record:
    if not isinstance(row, dict):
        return Record(video="?", question="?", error="record is not an object")
    if "_error" in row:
        return Record(video="?", question="?", error=row["_error"])
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return Record(video=str(row.get("video", "?")), question="?", error="record has no question")
    kind = row.get("type") or row.get("task_type") or None
    if "candidates" in row:  # MVBench
        options = _options(row["candidates"])
        gold = str(row.get("answer", ""))
        letter = LETTERS[options.index(gold)] if options and gold in options else gold.strip("()").lower() or None
        return Record(str(row.get("video", "?")), question, letter, options, kind or "multiple-choice")
    if "videoID" in row:  # Video-MME
        options = _options(row.get("options"))
        return Record(_find_video(folder, str(row["videoID"])), question, str(row.get("answer", "")).lower() or None,
                      options, kind or row.get("duration") or "multiple-choice")
    video = row.get("video")
    if not video and row.get("id") is not None:  # EventHallusion
        answer = str(row.get("answer", "")).strip().lower() or None
        return Record(_find_video(folder, str(row["id"])), question.rstrip() + "\nPlease answer yes or no:", answer,
                      None, kind or "yes/no")
    if not video:
        return Record(video="?", question=question, error="record has no video")
    options = _options(row.get("options"))
    answer = row.get("answer")
    answer = None if answer in (None, "") else str(answer).strip()
    if options and answer and answer.lower() not in LETTERS[:len(options)]:
        answer = LETTERS[options.index(answer)] if answer in options else answer
    return Record(str(video), question, answer.lower() if answer else None, options, kind)


def load_records(folder: Path, annotations: Path | None = None, question: str | None = None) -> list[Record]:
    """Records from `annotations` (or the folder's annotations file); with none, `question` for every video."""
    if annotations is None:
        found = [folder / n for n in ANNOTATION_NAMES if (folder / n).is_file()]
        annotations = found[0] if found else None
    if annotations is None:
        if question is None:
            raise StopError(f"no annotations file in {folder} ({', '.join(ANNOTATION_NAMES)}); "
                            "pass --annotations FILE or --question TEXT")
        videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        if not videos:
            raise StopError(f"no videos in {folder}")
        return [Record(str(p.relative_to(folder)), question) for p in videos]
    if not annotations.is_file():
        raise StopError(f"annotations file not found: {annotations}")
    return [parse_record(row, folder) for row in _read_rows(annotations)]
