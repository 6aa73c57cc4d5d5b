"""`stop bench` on a folder with good videos, a corrupt file, a text file named .mp4 and a missing video."""

import json
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from stopcli.evaluation.runner import done_keys, settings_grid
from stopcli.cli import app
from stopcli.evaluation.annotations import load_records
from stopcli.evaluation.scoring import is_correct
from stopcli.embedded.world import moving_shape_frames, write_video

runner = CliRunner()


@pytest.fixture()
def folder(tmp_path):
    for name, (shape, color, move) in {"a": ("circle", "red", "right"), "b": ("square", "blue", "down"),
                                       "c": ("triangle", "green", "left")}.items():
        write_video(tmp_path / f"{name}.mp4", moving_shape_frames(shape, color, move, frames=8, size=96))
    good = (tmp_path / "a.mp4").read_bytes()
    (tmp_path / "corrupt.mp4").write_bytes(good[: len(good) // 4])
    (tmp_path / "notes.mp4").write_text("not a video")
    records = [
        {"video": "a.mp4", "question": "which direction does the red circle move?", "answer": "right", "type": "direction"},
        {"video": "a.mp4", "question": "is there a red circle in the video?", "answer": "yes", "type": "exist"},
        {"video": "b.mp4", "question": "what color is the square?", "answer": "blue", "type": "color",
         "options": ["red", "blue", "green", "yellow"]},
        {"video": "c.mp4", "question": "how many objects are there?", "answer": "one", "type": "count"},
        {"video": "corrupt.mp4", "question": "what?", "answer": "yes"},
        {"video": "notes.mp4", "question": "what?", "answer": "yes"},
        {"video": "missing.mp4", "question": "what?", "answer": "no"},
        {"video": "b.mp4"},
    ]
    (tmp_path / "annotations.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return tmp_path


def bench(folder, model, *extra):
    return runner.invoke(app, ["bench", str(folder), "--model", model, "--frames", "4", "--max-new-tokens", "2",
                               "--pruners", "holitom", *map(str, extra)])


def test_bench_scores_records_and_keeps_failures(folder, tiny_model):
    r = bench(folder, tiny_model, "--ratio", "0,0.9", "--json", "--plot", folder / "plot.png")
    assert r.exit_code == 1, r.output  # some items failed
    rows = [json.loads(line) for line in (folder / "stop-results.jsonl").read_text().splitlines()]
    grid = settings_grid([0.0, 0.9], ["holitom"], "both")
    assert len(grid) == 3 and len(rows) == 8 * 3
    assert len({row["key"] for row in rows}) == len(rows)
    by_video = {}
    for row in rows:
        by_video.setdefault(row["video"], []).append(row)
        if row["error"] is None:
            assert row["correct"] == is_correct(row["prediction"], row["answer"],
                                                ["red", "blue", "green", "yellow"] if row["type"] == "color" else None)
            assert row["visual_tokens"]["before"] == 4 * 36
            assert row["timings_ms"]["prefill"] > 0
    assert all(row["error"] is None for v in ("a.mp4", "c.mp4") for row in by_video[v])
    assert all("damaged" in row["error"] or "truncated" in row["error"] for row in by_video["corrupt.mp4"])
    assert all("not a video" in row["error"] for row in by_video["notes.mp4"])
    assert all("not found" in row["error"] for row in by_video["missing.mp4"])
    assert sum(1 for row in rows if row["error"] == "record has no question") == 3
    summary = json.loads(r.stdout)["summary"]
    overall = {(s["ratio"], s["pruner"], s["stop"]): s for s in summary if s["type"] == "all"}
    assert set(overall) == {(0.0, "none", False), (0.9, "holitom", False), (0.9, "holitom", True)}
    assert overall[(0.9, "holitom", True)]["kept"] < 0.2 * 144
    assert overall[(0.0, "none", False)]["speedup"] == pytest.approx(1.0)
    assert (folder / "plot.png").stat().st_size > 1000
    # a second run without --resume refuses to touch finished work
    again = bench(folder, tiny_model, "--ratio", "0,0.9")
    assert again.exit_code == 2 and "--resume" in again.stderr


def test_question_mode_without_annotations(folder, tiny_model):
    (folder / "annotations.jsonl").unlink()
    r = bench(folder, tiny_model, "--ratio", "0.9", "--no-stop", "--question", "what happens?", "--json")
    rows = [json.loads(line) for line in (folder / "stop-results.jsonl").read_text().splitlines()]
    assert {row["video"] for row in rows} == {"a.mp4", "b.mp4", "c.mp4", "corrupt.mp4", "notes.mp4"}
    assert all(row["correct"] is None for row in rows)
    assert r.exit_code == 1  # the corrupt and text files fail


def test_other_annotation_styles(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vid7.mp4").write_bytes(b"x")
    (tmp_path / "eh.json").write_text(json.dumps([{"id": "vid7", "question": "Is a dog there?", "answer": "No"}]))
    (tmp_path / "mv.json").write_text(json.dumps([{"video": "x.mp4", "question": "Q?", "candidates": ["up", "down"],
                                                    "answer": "down"}]))
    (tmp_path / "mme.json").write_text(json.dumps([{"videoID": "vid7", "question": "Q?", "answer": "C",
                                                     "options": ["A. one", "B. two", "C. three", "D. four"]}]))
    (tmp_path / "ours.csv").write_text("video,question,answer,type\nx.mp4,what color?,red,color\n")
    eh = load_records(tmp_path, tmp_path / "eh.json")[0]
    assert eh.video == "sub/vid7.mp4" and eh.answer == "no" and eh.question.endswith("Please answer yes or no:")
    mv = load_records(tmp_path, tmp_path / "mv.json")[0]
    assert mv.options == ("up", "down") and mv.answer == "b" and "(b) down" in mv.prompt()
    mme = load_records(tmp_path, tmp_path / "mme.json")[0]
    assert mme.video == "sub/vid7.mp4" and mme.options == ("one", "two", "three", "four") and mme.answer == "c"
    ours = load_records(tmp_path, tmp_path / "ours.csv")[0]
    assert (ours.video, ours.answer, ours.type) == ("x.mp4", "red", "color")


def test_sigkill_then_resume_answers_every_item_exactly_once(folder, tiny_model):
    out = folder / "stop-results.jsonl"
    cmd = [sys.executable, "-c", "from stopcli.cli import main; main()", "bench", str(folder), "--model", tiny_model,
           "--frames", "4", "--max-new-tokens", "8", "--pruners", "holitom,visionzip", "--ratio", "0,0.5,0.9"]
    total = 8 * len(settings_grid([0, 0.5, 0.9], ["holitom", "visionzip"], "both"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    partial = len(done_keys(out))
    assert 3 <= partial < total
    with out.open("a") as f:
        f.write('{"key": "cut short by the kill')  # a half-written line must not count as done
    r = runner.invoke(app, ["bench", str(folder), "--model", tiny_model, "--frames", "4", "--max-new-tokens", "8",
                            "--pruners", "holitom,visionzip", "--ratio", "0,0.5,0.9", "--resume"])
    assert r.exit_code == 1  # the bad files fail, as before
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines() if line.startswith('{"key": "') and
            line.endswith("}")]
    assert len(keys) == total and len(set(keys)) == total


def test_each_video_is_decoded_and_encoded_once_per_run(folder, tiny_model, monkeypatch):
    import stopcli.evaluation.runner as B
    from stopcli.backbones.llava_onevision import LlavaOnevisionBackbone

    calls = {"decode": 0, "encode": 0, "prepare": 0}
    real_read, real_encode, real_prepare = B.read_video, LlavaOnevisionBackbone.encode, LlavaOnevisionBackbone.prepare

    def counting_read(*a, **k):
        calls["decode"] += 1
        return real_read(*a, **k)

    def counting_encode(self, inputs):
        calls["encode"] += 1
        return real_encode(self, inputs)

    def counting_prepare(self, *a, **k):
        calls["prepare"] += 1
        return real_prepare(self, *a, **k)

    monkeypatch.setattr(B, "read_video", counting_read)
    monkeypatch.setattr(LlavaOnevisionBackbone, "encode", counting_encode)
    monkeypatch.setattr(LlavaOnevisionBackbone, "prepare", counting_prepare)
    bench(folder, tiny_model, "--ratio", "0,0.75,0.9")
    # a, b, c decode and encode once each; corrupt/notes/missing are tried once each and fail; each of the four
    # questions on the good videos goes through the processor once, whatever the number of settings
    assert calls == {"decode": 6, "encode": 3, "prepare": 4}


def test_each_sink_score_is_its_own_setting_and_min_max_keys_are_unchanged():
    from stopcli.evaluation.runner import Setting, item_key, summarise

    grid = settings_grid([0.0, 0.9], ["uniform", "holitom"], "both", ["minmax", "robust"])
    assert grid == [Setting(0.0, "none", False), Setting(0.9, "uniform", False), Setting(0.9, "holitom", False),
                    Setting(0.9, "holitom", True, "minmax"), Setting(0.9, "holitom", True, "robust")]
    assert item_key("v#0", grid[3]) == "v#0@0.9/holitom/stop"  # results files from before the robust score resume
    assert item_key("v#0", grid[4]) == "v#0@0.9/holitom/stop-robust"
    assert grid[4].prune_settings().build().score == "robust"
    row = lambda stop, score, ok: dict(ratio=0.9, pruner="holitom", stop=stop, sink_score=score, type="t",  # noqa
                                       error=None, correct=ok, visual_tokens={"after": 10},
                                       timings_ms={"prefill": 1.0})
    old = dict(row(True, None, True))
    old.pop("sink_score")  # a row written before the robust score existed reads as min-max
    summary = summarise([row(True, "minmax", False), old, row(True, "robust", True), row(False, None, True)])
    acc = {(s["stop"], s["sink_score"]): s["accuracy"] for s in summary}
    assert acc == {(False, None): 1.0, (True, "minmax"): 0.5, (True, "robust"): 1.0}
