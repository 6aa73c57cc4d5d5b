"""The real CLI through typer's runner, on the tiny random checkpoint and real mp4 files."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stopcli.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_ask_prints_answer_and_table(tiny_model, videos):
    r = run("ask", videos["good"], "which direction does the red circle move?", "--model", tiny_model,
            "--frames", 8, "--max-new-tokens", 3)
    assert r.exit_code == 0, r.output
    for label in ("visual tokens", "288 →", "prefill ms", "pruning ms", "vision encode ms", "tokens/s",
                  "peak memory MB", "holitom + SToP"):
        assert label in r.stdout


def test_ask_json_has_the_documented_fields(tiny_model, videos):
    r = run("ask", videos["good"], "what color is the circle?", "--model", tiny_model, "--frames", 8,
            "--pruner", "visionzip", "--ratio", 0.75, "--no-stop", "--max-new-tokens", 2, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert {"answer", "model", "pruner", "stop", "ratio", "visual_tokens", "prompt_tokens", "timings_ms"} <= set(data)
    assert data["pruner"] == "visionzip" and data["stop"] is False and data["ratio"] == 0.75
    assert data["visual_tokens"] == {"before": 288, "after": 8 * 9}  # round(0.25 * 36) per frame
    assert set(data["timings_ms"]) >= {"decode_video", "vision", "prune", "prefill", "generate", "total"}
    assert data["model"] == tiny_model


def test_stop_flags_change_the_mu(tiny_model, videos):
    r = run("ask", videos["good"], "what?", "--model", tiny_model, "--frames", 4, "--pruner", "holitom",
            "--mu-s", 0.1, "--mu-t", 0.2, "--max-new-tokens", 1, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["stop"] is True and data["mu"] == {"s": 0.1, "t": 0.2}


def test_sink_score_flag_reaches_the_pruner(tiny_model, videos):
    r = run("ask", videos["good"], "what?", "--model", tiny_model, "--frames", 4, "--pruner", "visionzip",
            "--sink-score", "robust", "--max-new-tokens", 1, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sink_score"] == "robust"
    r = run("ask", videos["good"], "what?", "--model", tiny_model, "--frames", 4, "--max-new-tokens", 1, "--json",
            "--preset", "llava-onevision-qwen2-7b-ov")
    assert json.loads(r.stdout)["sink_score"] == "minmax"  # a real checkpoint's preset: the authors' score


def test_ratio_zero_keeps_every_token(tiny_model, videos):
    r = run("ask", videos["good"], "what?", "--model", tiny_model, "--frames", 4, "--ratio", 0,
            "--max-new-tokens", 1, "--json")
    data = json.loads(r.stdout)
    assert data["visual_tokens"] == {"before": 144, "after": 144}


def test_default_preset_runs_offline_on_the_embedded_model():
    r = run("ask", Path(__file__).parents[1] / "samples" / "red_circle.mp4", "which direction does the red circle move?", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["model"].startswith("stopcli:") and data["visual_tokens"]["after"] < 0.15 * 288


@pytest.mark.parametrize("args, code, message", [
    (["--ratio", "1.0"], 2, "ratio"),
    (["--ratio", "-0.1"], 2, "ratio"),
    (["--pruner", "tome"], 2, "unknown pruner 'tome'"),
    (["--preset", "nope"], 2, "unknown preset 'nope'"),
    (["--frames", "0"], 2, "frames"),
    (["--dtype", "int8"], 1, "dtype"),
])
def test_bad_arguments_are_one_line_errors(videos, args, code, message):
    r = run("ask", videos["good"], "q", *args)
    assert r.exit_code == code
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.output


@pytest.mark.parametrize("kind", ["missing", "dir", "text", "empty", "audio"])
def test_bad_videos_are_one_line_errors(videos, kind):
    r = run("ask", videos[kind], "q")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.output


def test_bad_yaml_preset_and_bad_model(tmp_path, videos):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: m\nframes: many\n")
    r = run("ask", videos["good"], "q", "--preset", bad)
    assert r.exit_code == 2 and "'frames' must be int" in r.stderr
    r = run("ask", videos["good"], "q", "--model", tmp_path / "no-model")
    assert r.exit_code == 1 and "cannot load model" in r.stderr


def test_presets_lists_the_shipped_presets():
    r = run("presets", "--json")
    assert r.exit_code == 0
    names = {p["name"] for p in json.loads(r.stdout)}
    assert {"default", "llava-onevision-qwen2-7b-ov", "llava-video-7b-qwen2"} <= names
    assert "llava-onevision-qwen2-7b-ov" in run("presets").stdout


def test_compare_rows_share_one_vision_pass(tiny_model, videos, monkeypatch):
    from stopcli.backbones.llava_onevision import LlavaOnevisionBackbone

    calls = []
    real = LlavaOnevisionBackbone.encode
    monkeypatch.setattr(LlavaOnevisionBackbone, "encode", lambda self, inputs: calls.append(1) or real(self, inputs))
    r = run("compare", videos["good"], "what color is the circle?", "--model", tiny_model, "--frames", 8,
            "--pruners", "visionzip,holitom", "--max-new-tokens", 2, "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["pruner"], x["stop"]) for x in rows] == [("none", False), ("visionzip", False), ("visionzip", True),
                                                        ("holitom", False), ("holitom", True)]
    assert rows[0]["visual_tokens"]["after"] == 288 and rows[0]["prefill_speedup"] == 1.0
    assert all(x["visual_tokens"]["after"] < 40 for x in rows[1:])
    assert len(calls) == 1
    human = run("compare", videos["good"], "what?", "--model", tiny_model, "--frames", 4, "--max-new-tokens", 1)
    assert human.exit_code == 0 and "holitom + SToP" in human.stdout and "no pruning" in human.stdout
    assert "holitom + SToP (robust)" in human.stdout  # the default preset's sink score, named
    assert [x["sink_score"] for x in rows] == [None, None, "robust", None, "robust"]


def test_qwen_checkpoints_take_the_same_cli_path(tmp_path, videos):
    from stopcli.embedded.tiny_models import build_qwen_vl

    model = str(build_qwen_vl(tmp_path / "qwen", version="2.5"))
    r = run("ask", videos["good"], "what color is the circle?", "--model", model, "--frames", 8, "--ratio", 0.5,
            "--max-new-tokens", 2, "--json", "--show", tmp_path / "q.png")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["frames"] == 4 and data["video_frames"] == 8  # temporal patches of 2 frames
    assert data["visual_tokens"]["after"] < data["visual_tokens"]["before"]
    assert (tmp_path / "q.png").stat().st_size > 1000


@pytest.mark.parametrize("args, says", [
    (["--steps", "0"], "--steps"),
    (["--warmup", "0"], "--warmup"),
    (["--threads", "0"], "--threads"),
    (["--vision-frames", "-1"], "--vision-frames"),
    (["--vision-batch", "0"], "--vision-batch"),
    (["--vision-steps", "-1"], "--vision-steps"),
    (["--vision-lr-scale", "-0.5"], "--vision-lr-scale"),
    (["--track-weight", "-1"], "--track-weight"),
    (["--option-weight", "-1"], "--option-weight"),
    (["--position-weight", "-1"], "--position-weight"),
    (["--readout-weight", "-0.1"], "--readout-weight"),
    (["--mc-share", "1.5"], "--mc-share"),
    (["--endpoint-weight", "-2"], "--endpoint-weight"),
    (["--coordinate-weight", "-1"], "--coordinate-weight"),
    (["--centroid-weight", "-1"], "--centroid-weight"),
    (["--centre-weight", "-1"], "--centre-weight"),
    (["--identity-weight", "-1"], "--identity-weight"),
    (["--branch-turns", "-1"], "--branch-turns"),
    (["--keep-choices", "1,1.5"], "--keep-choices"),
    (["--keep-choices", "1,half"], "--keep-choices"),
    (["--init-from", "no-such-checkpoint"], "--init-from"),
])
def test_train_rejects_bad_options_in_one_line(tmp_path, args, says):
    r = run("train", tmp_path / "out", *args)
    assert r.exit_code == 2, r.output
    assert says in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("settings, says", [
    ("{not json", "cannot read"),
    ("[1, 2]", "not a JSON object"),
    ('{"steps": 2, "learning_rate": 0.1}', "unknown settings: learning_rate"),
    ('{"steps": "many"}', "steps"),
    ('{"keep_choices": 0.5}', "keep_choices"),
    ('{"lr": true}', "lr"),
    ('{"vision_cosine": 1}', "vision_cosine"),
    ('{"warmup": 0}', "warmup"),
    ('{"frames": 0}', "frames in"),
    ('{"steps": 0}', "steps in"),
    ('{"centre_weight": -1}', "--centre-weight"),
    ('{"init_from": "/no/such/checkpoint"}', "--init-from"),
])
def test_train_rejects_a_bad_config_in_one_line(tmp_path, settings, says):
    (tmp_path / "c.json").write_text(settings)
    r = run("train", tmp_path / "out", "--config", tmp_path / "c.json")
    assert r.exit_code == 2, r.output
    assert says in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_train_takes_a_runs_settings_from_its_config_and_the_command_line_overrides_them(tmp_path):
    settings = dict(steps=2, batch=2, frames=4, max_turns=2, warmup=1, eval_every=1000, log_every=1, threads=1,
                    keep_choices=[1.0, 0.5], mc_share=0.9, readout_weight=2.0, seed=4,
                    vision_cosine=True, vision_frames=0)
    (tmp_path / "c.json").write_text(json.dumps(settings))
    r = run("train", tmp_path / "out", "--config", tmp_path / "c.json", "--steps", "3", "--seed", "5")
    assert r.exit_code == 0, r.output
    used = json.loads((tmp_path / "out" / "training_config.json").read_text())
    assert {k: used[k] for k in settings} == {**settings, "steps": 3, "seed": 5}
    assert [json.loads(x)["step"] for x in (tmp_path / "out" / "training_log.jsonl").read_text().splitlines()] == [
        1, 2, 3]
    rows = [line for line in r.stderr.splitlines() if line.startswith("step=")]
    assert len(rows) == 3 and all("answer_loss=" in x and "lr=" in x for x in rows)  # one line per row, unwrapped


@pytest.mark.parametrize("video, question, answer", [
    ("red_circle.mp4", "what color is the circle?", "red"),
    ("red_circle.mp4", "what shape is the red object?", "circle"),
    ("blue_square.mp4", "what color is the square?", "blue"),
    ("blue_square.mp4", "what shape is the blue object?", "square"),
    ("blue_square.mp4", "is there a blue square in the video?", "yes"),
    ("blue_square.mp4", "is there a red square in the video?", "no"),
    ("red_circle.mp4", "which direction does the red circle move?", "right"),  # the README's main command
    ("blue_square.mp4", "which direction does the blue square move?", "down"),
    ("red_circle.mp4", "what shape is the red object? options: (a) square (b) star (c) circle (d) triangle. "
                       "answer with the letter.", "c"),
    ("blue_square.mp4", "what color is the square? options: (a) red (b) blue (c) green (d) yellow. "
                        "answer with the letter.", "b"),
    ("blue_square.mp4", "which direction does the blue square move? options: (a) up (b) left (c) down (d) still. "
                        "answer with the letter.", "c"),
])
def test_embedded_model_answers_the_sample_videos(video, question, answer):
    r = run("ask", Path(__file__).parents[1] / "samples" / video, question, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["answer"] == answer
