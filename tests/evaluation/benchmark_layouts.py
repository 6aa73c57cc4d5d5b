"""Small benchmark folders in each publisher's layout, built from synthetic videos. Field names and value styles
follow the published files; the questions and answers are our own."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from stopcli.embedded.world import moving_shape_frames, write_video

SHAPES = [("circle", "red", "right"), ("square", "blue", "down"), ("triangle", "green", "left")]

def video(path: Path, n: int = 0, frames: int = 8) -> Path:
    shape, color, move = SHAPES[n % len(SHAPES)]
    return write_video(path, moving_shape_frames(shape, color, move, frames=frames, size=64))

def frame_folder(path: Path, n: int = 0, frames: int = 9) -> Path:
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    shape, color, move = SHAPES[n % len(SHAPES)]
    for i, f in enumerate(moving_shape_frames(shape, color, move, frames=frames, size=64), 1):
        Image.fromarray(f).save(path / f"{i:05d}.jpg")  # tvqa frames are 1-based, five digits
    return path

def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path

def eventhallusion(root: Path, videos: bool = True) -> Path:
    def item(id_, caption, questions, unexpected=None):
        info = {"object": ["ball"], "scene": "A grey room.", "caption": caption}
        if unexpected:
            info["unexpected"] = unexpected
        return {"id": id_, "category": "synthetic", "length": "00:01", "event_info": info,
                "questions": [{"type": t, "question": q, "answer": a} for t, q, a in questions]}

    dump(root / "questions" / "entire_questions.json", [
        item("entire_001", "A red circle moves right.", [("entire", "Does the red circle move to the right?", "Yes."),
                                                         ("entire", "Does the circle turn into a square?", "No.")]),
    ])
    dump(root / "questions" / "mix_questions.json", [
        item("mix_001", "A blue square moves down.", [("hallucination", "Does anything unexpected happen?", "No.")],
             unexpected="Nothing unexpected."),
    ])
    dump(root / "questions" / "misleading_questions.json", [
        item("misleading_001", "A green triangle moves left.",
             [("misleading", "Does the green triangle stop in the middle?", "No.")]),
    ])
    if videos:
        video(root / "videos" / "entire" / "entire_001.mp4", 0)
        video(root / "videos" / "interleave" / "interleave_001.mp4", 1)
        video(root / "videos" / "misleading" / "misleading_001.mp4", 2)
    return root

def mvbench(root: Path, videos: bool = True) -> Path:
    dump(root / "json" / "action_sequence.json", [
        {"video": "AB12C.mp4", "question": "What did the shape do first?", "candidates": ["Moved right.",
         "Moved left.", "Stayed still."], "answer": "Moved right.", "start": 0.0, "end": 0.75},
        {"video": "AB12C.mp4", "question": "What did the shape do last?", "candidates": ["Stayed still.",
         "Moved right."], "answer": "Moved right.", "start": 0.25, "end": 1.0},
    ])
    dump(root / "json" / "object_shuffle.json", [
        {"video": "video_7.mp4", "question": "Where is the square at the end?",
         "candidates": ["At the top.", "At the bottom.", "In the middle."], "answer": "At the bottom."},
    ])
    dump(root / "json" / "episodic_reasoning.json", [
        {"video": "s01e02_seg01_clip_00", "question": "Which way does the triangle go?",
         "candidates": ["left", "right", "up", "down", "nowhere"], "answer": "left", "start": 0.0, "end": 3.0},
        {"video": "s01e02_seg01_clip_01", "question": "Which way does it go?", "candidates": ["left", "right"],
         "answer": "right", "start": 0.0, "end": 2.0},
    ])
    dump(root / "json" / "fine_grained_pose.json", [
        {"video": "S001C001P001R001A001_rgb.avi", "question": "Which pose?", "candidates": ["sitting", "standing"],
         "answer": "kneeling"},
    ])
    if videos:
        video(root / "video" / "star" / "Charades_v1_480" / "AB12C.mp4", 0)
        video(root / "video" / "perception" / "videos" / "video_7.mp4", 1)
        frame_folder(root / "video" / "tvqa" / "frames_fps3_hq" / "s01e02_seg01_clip_00", 2)
        (root / "video" / "tvqa" / "frames_fps3_hq" / "s01e02_seg01_clip_01").mkdir(parents=True)  # no frames
    return root

def videomme(root: Path, videos: bool = True) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def row(n, vid, duration, question, options, answer):
        return dict(video_id=f"{n:03d}", duration=duration, domain="Knowledge", sub_category="Shapes",
                    url=f"https://example.invalid/{vid}", videoID=vid, question_id=f"{n:03d}-1",
                    task_type="Counting Problem",
                    question=question, options=options, answer=answer)

    rows = [row(1, "aaaaaaaaaaa", "short", "What color is the circle?",
                ["A. Red.", "B. Blue.", "C. Green.", "D. Yellow."], "A"),
            row(2, "bbbbbbbbbbb", "medium", "Which way does the square move?",
                ["A. Up.", "B. Down.", "C. Left.", "D. Right."], "B"),
            row(3, "ccccccccccc", "long", "How many shapes are there?", ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "A")]
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "videomme" / "test-00000-of-00001.parquet")
    if videos:
        for n, r in enumerate(rows):
            video(root / "data" / f"{r['videoID']}.mp4", n)
    return root

def nextqa(root: Path, videos: bool = True) -> Path:
    d = root / "dataset" / "nextqa"
    d.mkdir(parents=True, exist_ok=True)
    fields = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3",
              "a4"]
    rows = [["1000000001", 8, 64, 64, "why does the circle move right", 2, 0, "CW", "to hide", "to fall",
             "to reach the edge", "to turn", "to stop"],
            ["1000000001", 8, 64, 64, "what does the circle do after moving", 0, 1, "TP", "keeps moving", "sleeps",
             "jumps", "spins", "vanishes"],
            ["1000000002", 8, 64, 64, "how many squares are there", 1, 0, "DC", "zero", "one", "two", "three", "four"]]
    with (d / "val.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerows(rows)
    dump(d / "map_vid_vidorID.json", {"1000000001": "0001/1000000001", "1000000002": "0002/1000000002"})
    if videos:
        video(root / "NExTVideo" / "0001" / "1000000001.mp4", 0)
        video(root / "NExTVideo" / "0002" / "1000000002.mp4", 1)
    return root

def longvideobench(root: Path, videos: bool = True) -> Path:
    dump(root / "lvb_val.json", [
        {"video_id": "v0", "question": "What shape is shown?", "question_wo_referring_query": "What shape?",
         "candidates": ["A circle", "A square", "A star", "A line"], "correct_choice": 0, "position": [0],
         "topic_category": "synthetic", "question_category": "S2E", "level": "L1-Perception", "id": "v0_0",
         "video_path": "v0.mp4", "subtitle_path": "v0_en.json", "duration_group": 15,
         "starting_timestamp_for_subtitles": 0,
         "duration": 1.0, "view_count": 0},
        {"video_id": "v1", "question": "Where does the square go?", "question_wo_referring_query": "Where?",
         "candidates": ["Up", "Down", "Left", "Right", "Nowhere"], "correct_choice": 1, "position": [0],
         "topic_category": "synthetic", "question_category": "E2O", "level": "L2-Relation", "id": "v1_0",
         "video_path": "v1.mp4", "subtitle_path": "v1_en.json", "duration_group": 600,
         "starting_timestamp_for_subtitles": 0, "duration": 1.0, "view_count": 0},
    ])
    if videos:
        video(root / "videos" / "v0.mp4", 0)
        video(root / "videos" / "v1.mp4", 1)
    return root

def mlvu(root: Path, videos: bool = True) -> Path:
    base = root / "MLVU"
    dump(base / "json" / "4_count.json", [
        {"video": "count_1.mp4", "duration": 1.0, "question": "How many circles appear?", "candidates": ["1", "2",
         "3", "1"], "answer": "1", "question_type": "count"},  # a repeated candidate, as in the published file
        {"video": "count_1.mp4", "duration": 1.0, "question": "How many squares appear?", "candidates": ["0", "2"],
         "answer": "5", "question_type": "count"},  # the gold is not a candidate
    ])
    dump(base / "json" / "3_ego.json", [
        {"video": "ego_1.mp4", "duration": 1.0, "question": "Which way did the square go?",
         "candidates": ["up", "down"], "answer": "down", "question_type": "ego"},
    ])
    dump(base / "json" / "9_summary.json", [
        {"video": "summary_1.mp4", "duration": 1.0, "question": "Please summarize this video.",
         "answer": "A triangle crosses the frame.", "question_type": "summary"},
    ])
    if videos:
        video(base / "video" / "4_count" / "count_1.mp4", 0)
        video(base / "video" / "3_ego" / "ego_1.mp4", 1)
        video(base / "video" / "9_summary" / "summary_1.mp4", 2)
    return root

def videocomp(root: Path, videos: bool = True) -> Path:
    dump(root / "activitynet_comp_val.json", [
        {"key": "k1", "video_id": "abc", "question": "Which caption fits?\nA. a circle moves right\nB. a circle "
         "moves left\nAnswer with the letter.", "answer": "A", "query_video/start_time": 0,
         "query_video/end_time": 1000000}])
    dump(root / "youcook2_comp_val.json", [
        {"key": "k2", "video_id": "xyz", "question": "Which caption fits?\nA. a square moves up\nB. a square moves "
         "down\nAnswer with the letter.", "answer": "B", "query_video/start_time": 0,
         "query_video/end_time": 1000000}])
    if videos:
        video(root / "activitynet_video" / "v_abc.mp4", 0)
        video(root / "raw_videos" / "video" / "xyz.mkv", 1)
    return root

def vcgbench(root: Path, videos: bool = True) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = {"Generic": [dict(video_name="v_gen", question="What happens in the video?",
                               answer="A red circle moves to the right.")],
              "Temporal": [dict(video_name="v_gen", question="What happens after the circle starts moving?",
                                answer="It keeps moving right.")],
              "Consistency": [dict(video_name="v_con", question_1="None", question_2="Which way does it go?",
                                   answer="Down.")]}
    for split, rows in tables.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / split / "test-00000-of-00001.parquet")
    if videos:
        video(root / "Test_Videos" / "v_gen.mp4", 0)
        video(root / "Test_Videos" / "v_con.mkv", 1)
    return root


BUILDERS = dict(eventhallusion=eventhallusion, mvbench=mvbench, videomme=videomme, nextqa=nextqa,
                longvideobench=longvideobench, mlvu=mlvu, videocomp=videocomp,
                vcgbench=vcgbench)

def row(record, prediction: str, protocol: str, ratio=0.0, pruner="none", stop=False) -> dict:
    """A result line for `record` as the runner writes it, with a hand-written prediction."""
    from stopcli.evaluation.runner import Setting, item_key, record_fields
    from stopcli.evaluation.scoring import score_row

    s = Setting(ratio, pruner, stop)
    r = dict(key=item_key(record.key, s), **record_fields(record, protocol), chat=None, prediction=prediction,
             ratio=ratio, pruner=pruner, stop=stop, visual_tokens=None, timings_ms=None, error=record.error)
    if record.error:
        r.update(prediction=None, parsed=None, correct=None, scored=False)
    else:
        r.update(score_row(r, protocol))
    return r

__all__ = ["BUILDERS", "row", "video", "frame_folder"]
