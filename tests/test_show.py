"""`stop show`: the PNG's size and panels, and a planted sink highlighted in the heat map and dropped by SToP."""

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from stopcli.cli import app
from stopcli.pruners import get_pruner
from stopcli.pruners.planted import planted_sink_tokens
from stopcli.show import TITLE_PX, render_tokens
from stopcli.embedded.world import moving_shape_frames


def test_planted_sink_is_bright_in_the_heat_map_and_dimmed_in_the_stop_row(tmp_path):
    tokens, sink, obj = planted_sink_tokens(frames=8, h=6, w=6, sink=5)
    frames = moving_shape_frames(frames=8, size=96, background=200)
    base = get_pruner("visionzip")(tokens, 0.25)
    stop = get_pruner("visionzip", stop=True)(tokens, 0.25)
    layout = render_tokens(frames, tokens, base, stop, tmp_path / "t.png", "test", show_frames=4, cell=16)
    img = np.asarray(Image.open(tmp_path / "t.png").convert("RGB")).astype(int)
    assert img.shape == (layout.height, layout.width, 3) == (TITLE_PX + 3 * 96 + 2 * 4, 4 * 96 + 3 * 4, 3)
    assert layout.columns == 4 and layout.frames == [0, 2, 5, 7]
    for col in range(layout.columns):
        t, l_, b, r = layout.cell_box(0, col, sink)
        heat = img[t + 4:b - 4, l_ + 4:r - 4].mean((0, 1))
        t2, l2, b2, r2 = layout.cell_box(0, col, 14)  # an ordinary background cell
        other = img[t2 + 4:b2 - 4, l2 + 4:r2 - 4].mean((0, 1))
        assert heat.sum() > other.sum() + 150  # inferno's bright end vs its dark end
        # base row: the sink cell is outlined green (kept as it was)
        t, l_, b, r = layout.cell_box(1, col, sink)
        edge = img[t, l_ + 4:r - 4].mean(0)
        assert edge[1] > 180 and edge[0] < 120
        # SToP row: the sink cell is dimmed (dropped or merged), not outlined, darker than in the base row
        t, l_, b, r = layout.cell_box(2, col, sink)
        inner_stop = img[t + 5:b - 5, l_ + 5:r - 5].mean()
        t, l_, b, r = layout.cell_box(1, col, sink)
        inner_base = img[t + 5:b - 5, l_ + 5:r - 5].mean()
        assert inner_stop < 0.7 * inner_base
        t, l_, b, r = layout.cell_box(2, col, sink)
        assert not (img[t, l_ + 4:r - 4].mean(0)[1] > 180 and img[t, l_ + 4:r - 4].mean(0)[0] < 120)


def test_show_command_writes_one_png(tiny_model, videos, tmp_path):
    out = tmp_path / "tokens.png"
    r = CliRunner().invoke(app, ["show", str(videos["good"]), "--model", tiny_model, "--frames", "8",
                                 "--ratio", "0.9", "--pruner", "holitom", "--out", str(out)])
    assert r.exit_code == 0, r.output
    w, h = Image.open(out).size
    assert h == TITLE_PX + 3 * 6 * 24 + 2 * 4 and w == 8 * 6 * 24 + 7 * 4  # 3 rows x 8 frames of 6x6 cells
    bad = CliRunner().invoke(app, ["show", str(videos["good"]), "--model", tiny_model, "--pruner", "none"])
    assert bad.exit_code == 2 and "--show needs a pruner" in bad.stderr


def test_ask_show_draws_without_a_second_vision_pass(tiny_model, videos, tmp_path, monkeypatch):
    from stopcli.backbones.llava_onevision import LlavaOnevisionBackbone

    calls = []
    real = LlavaOnevisionBackbone.encode
    monkeypatch.setattr(LlavaOnevisionBackbone, "encode", lambda self, i: calls.append(1) or real(self, i))
    out = tmp_path / "ask.png"
    r = CliRunner().invoke(app, ["ask", str(videos["good"]), "what?", "--model", tiny_model, "--frames", "4",
                                 "--max-new-tokens", "1", "--show", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000 and len(calls) == 1
