"""`stop sinks`: the statistics by hand, and a planted sink end to end through the command on a real mp4."""

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from stopcli.backbones.llava_onevision import LlavaOnevisionBackbone
from stopcli.cli import app
from stopcli.embedded.world import moving_shape_frames, write_video
from stopcli.pruners.planted import planted_sink_tokens
from stopcli.pruners.types import VisualTokens
from stopcli.sinks import attention_stats, folder_summary, kept_on_sinks, video_json

runner = CliRunner()
BASE = 1 / 729


def test_statistics_of_a_hand_made_attention_map():
    a = torch.full((4, 4), BASE)
    a[:, 3] = 8 * BASE  # a sink in every frame
    a[0, 1] = 20 * BASE  # a peak in one frame
    tokens = VisualTokens(torch.zeros(4, 4, 2), a, (2, 2))
    st = attention_stats("v", tokens, top_k=1)
    assert st.sinks.tolist() == [False, False, False, True]
    assert torch.allclose(st.persistence, torch.tensor([0.0, 0.25, 0.0, 1.0]))
    assert torch.allclose(st.persistent * 729, torch.tensor([1.0, 5.75, 1.0, 8.0]))
    assert torch.allclose(st.over_median, torch.tensor([1.0, 5.75, 1.0, 8.0]))  # of an even count, the lower median
    assert st.variation[3] == 0 and st.variation[1] > 1  # flat over time vs one peak
    assert st.top_k_share == pytest.approx(8 / 15.75)
    d = video_json(st)
    assert d["sinks"] == [dict(position=3, row=1, col=1, over_median=8.0, persistence=1.0)]
    assert d["top_position"] == dict(position=3, row=1, col=1) and d["grid"] == [2, 2]


def test_flat_attention_has_no_sinks_and_no_finite_z():
    tokens = VisualTokens(torch.zeros(3, 9, 2), torch.full((3, 9), BASE), (3, 3))
    d = video_json(attention_stats("flat", tokens))
    assert d["sinks"] == [] and d["max_robust_z"] is None and d["top_over_median"] == 1.0


def test_kept_tokens_on_the_planted_sink_with_and_without_stop():
    tokens, sink, _ = planted_sink_tokens(8, 14, 14, 16, seed=0)
    st = attention_stats("planted", tokens)
    kept = kept_on_sinks(st, tokens, ["visionzip", "fastvid"], 0.1)
    for name in ("visionzip", "fastvid"):
        assert kept[name]["base"]["on_sinks"] == 8 == kept[name]["base"]["on_top"]
        assert kept[name]["minmax"]["on_sinks"] == 0 == kept[name]["robust"]["on_sinks"]
    again = attention_stats("again", tokens)
    kept_on_sinks(again, tokens, ["visionzip"], 0.1)
    summary = folder_summary([st, again])
    assert summary["videos_with_sinks"] == 2 and summary["sink_share"][0][13] == 1.0
    assert summary["kept"]["visionzip"]["base"]["on_sinks"] == 16


def _corner_video(path, corner: bool):
    frames = moving_shape_frames("circle", "red", "right", frames=8)  # [8, 128, 128, 3], grey background
    if corner:
        frames[:, :24, 104:, :] = 255  # a static white patch over the top-right token cell
    return write_video(path, frames)


@pytest.fixture
def planted_attention(monkeypatch):
    """The vision pass of any LLaVA-OneVision reports its own attention, except that a token cell that is white in a
    frame draws 12x the frame's median there: a model with a sink wherever a video has a static white corner."""
    original = LlavaOnevisionBackbone.encode

    def encode(self, inputs):
        enc = original(self, inputs)
        t = enc.tokens
        pixels = inputs["pixel_values_videos"][0].float()  # [T, 3, H, W] in [-1, 1]
        white = torch.nn.functional.adaptive_avg_pool2d(pixels.mean(1, keepdim=True), t.grid).flatten(1) > 0.8
        att = torch.where(white, 12 * t.attention.median(1, keepdim=True).values, t.attention)  # [T, S]
        enc.tokens = dataclasses.replace(t, attention=att)
        return enc

    monkeypatch.setattr(LlavaOnevisionBackbone, "encode", encode)


def test_stop_sinks_finds_a_planted_corner_sink_end_to_end(tiny_model, tmp_path, planted_attention):
    folder = tmp_path / "videos"
    _corner_video(folder / "corner.mp4", True)
    _corner_video(folder / "plain.mp4", False)
    png = tmp_path / "sinks.png"
    r = runner.invoke(app, ["sinks", str(folder), "--model", tiny_model, "--frames", "8", "--pruners",
                            "visionzip,holitom", "--ratio", "0.75", "--out", str(png), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(data) >= {"model", "path", "frames", "ratio", "pruners", "sink_ratio", "sink_persistence", "videos",
                         "folder", "png"}
    assert data["ratio"] == 0.75 and data["pruners"] == ["visionzip", "holitom"] and data["png"] == str(png)
    by_name = {v["video"].rsplit("/", 1)[-1]: v for v in data["videos"]}
    corner, plain = by_name["corner.mp4"], by_name["plain.mp4"]
    for v in (corner, plain):
        assert set(v) >= {"video", "error", "frames", "grid", "top_position", "top_over_median", "max_robust_z",
                          "top_k_share", "sinks", "persistent", "variation", "over_median", "robust_z", "persistence",
                          "kept"}
        assert v["grid"] == [6, 6] and len(v["persistent"]) == 6 and len(v["persistent"][0]) == 6
        assert set(v["kept"]) == {"visionzip", "holitom"}
        assert set(v["kept"]["visionzip"]) == {"base", "minmax", "robust"}
    assert [(s["row"], s["col"]) for s in corner["sinks"]] == [(0, 5)]
    assert corner["sinks"][0]["persistence"] == 1.0 and corner["top_over_median"] >= 8
    assert plain["sinks"] == []
    vz = corner["kept"]["visionzip"]
    assert vz["base"]["on_sinks"] == 8 and vz["minmax"]["on_sinks"] == 0 and vz["robust"]["on_sinks"] == 0
    ht = corner["kept"]["holitom"]
    assert ht["robust"]["on_sinks"] <= 1 and ht["robust"]["on_sinks"] == ht["minmax"]["on_sinks"]  # merged over time
    folder_stats = data["folder"]
    assert folder_stats["videos"] == 2 and folder_stats["videos_with_sinks"] == 1 and folder_stats["failed"] == 0
    assert folder_stats["sink_share"][0][5] == 0.5 and sum(map(sum, folder_stats["sink_share"])) == 0.5
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_sinks_table_and_bad_files(tiny_model, videos, tmp_path):
    r = runner.invoke(app, ["sinks", str(videos["good"]), "--model", tiny_model, "--frames", "4"])
    assert r.exit_code == 0, r.output
    assert "red_circle.mp4" in r.stdout and "video(s) have a sink" in r.stdout
    r = runner.invoke(app, ["sinks", str(videos["text"]), "--model", tiny_model])
    assert r.exit_code == 1 and "error: cannot decode" in r.output and "Traceback" not in r.output
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.mp4").write_text("not a video")
    write_video(folder / "ok.mp4", moving_shape_frames(frames=4))
    r = runner.invoke(app, ["sinks", str(folder), "--model", tiny_model, "--frames", "4", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["folder"]["failed"] == 1 and data["folder"]["videos"] == 1
    assert any(v["error"] and v["video"].endswith("broken.mp4") for v in data["videos"])


@pytest.mark.parametrize("args, message", [
    (["sinks", "nowhere/"], "not a video or a folder"),
    (["sinks", "samples", "--ratio", "1.2"], "[0, 1)"),
    (["sinks", "samples", "--ratio", "0"], "--ratio 0 keeps every token"),
    (["sinks", "samples", "--pruners", "uniform"], "pruners SToP wraps"),
    (["sinks", "samples", "--pruners", "nope"], "unknown pruner 'nope'"),
    (["sinks", "samples", "--out", "x.jpg"], "--out must be a .png"),
    (["sinks", "samples", "--frames", "0"], "--frames must be at least 1"),
])
def test_stop_sinks_argument_errors(args, message, tmp_path):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_an_empty_folder_is_an_argument_error(tmp_path):
    r = runner.invoke(app, ["sinks", str(tmp_path)])
    assert r.exit_code == 2 and "no videos" in r.output


def test_the_help_names_the_thresholds_the_test_uses():
    from stopcli.pruners.stop import SINK_PERSISTENCE, SINK_RATIO

    r = runner.invoke(app, ["sinks", "--help"], terminal_width=400)
    assert f">= {SINK_RATIO:g}x the frame's median in >= {SINK_PERSISTENCE:.0%} of" in " ".join(r.stdout.split())
