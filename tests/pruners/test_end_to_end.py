"""PruneVid and FlashVid through `stop ask`, on the embedded LLaVA-OneVision and on a tiny random Qwen2.5-VL:
the same pruning path for every backbone."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stopcli.cli import app
from stopcli.embedded.tiny_models import build_qwen_vl

SAMPLE = Path(__file__).parents[2] / "samples" / "red_circle.mp4"
runner = CliRunner()


def ask(*args):
    r = runner.invoke(app, ["ask", str(SAMPLE), "which direction does the red circle move?", *map(str, args),
                            "--max-new-tokens", "2", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def qwen25(tmp_path_factory):
    return str(build_qwen_vl(tmp_path_factory.mktemp("qwen") / "qwen2.5", version="2.5"))


@pytest.mark.parametrize("name, mu", [("prunevid", {"s": 0.0, "t": 0.0}), ("flashvid", {"s": 0.02, "t": 0.0})])
def test_ask_on_the_embedded_model(name, mu):
    data = ask("--pruner", name)  # default preset: stop-tiny-ov, 8 frames of 6 x 6 tokens, ratio 0.9, SToP on
    assert data["model"].startswith("stopcli:") and data["pruner"] == name and data["mu"] == mu
    before, after = data["visual_tokens"]["before"], data["visual_tokens"]["after"]
    assert before == 288 and 0 < after < before
    if name == "flashvid":  # B = ceil(36 * 0.1 * 1.25) = 5 a frame, a ceil's extra token at most per frame
        assert 8 * 4 <= after <= 8 * 6


@pytest.mark.parametrize("name", ["prunevid", "flashvid"])
def test_ask_on_a_tiny_qwen25_vl(qwen25, name):
    data = ask("--model", qwen25, "--frames", 8, "--pruner", name, "--ratio", 0.75, "--mu-s", 0.02, "--mu-t", 0.05)
    assert data["pruner"] == name and data["stop"] is True and data["mu"] == {"s": 0.02, "t": 0.05}
    assert data["frames"] == 4  # temporal patches of two frames
    assert 0 < data["visual_tokens"]["after"] < data["visual_tokens"]["before"]
