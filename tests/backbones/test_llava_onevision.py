"""The LLaVA-OneVision adapter against the unmodified transformers model, on a tiny random checkpoint."""

import pytest
import torch

from stopcli.backbones import load_backbone
from stopcli.backbones.base import AttentionProbe
from stopcli.errors import StopError
from stopcli.pruners import get_pruner
from stopcli.video import read_video


@pytest.fixture(scope="module")
def backbone(tiny_model):
    return load_backbone(tiny_model, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def prepared(backbone, videos):
    clip = read_video(videos["good"], num_frames=8)
    inputs = backbone.prepare(clip.frames, "which direction does the red circle move?")
    return inputs, backbone.encode(inputs)


def capture_prefill(backbone):
    """Record what the language model receives on its first (prefill) call."""
    seen = []

    def hook(module, args, kwargs):
        if not seen:
            seen.append(kwargs["inputs_embeds"].detach().clone())

    handle = backbone.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, handle


def test_encode_gives_aligned_tokens(prepared):
    _, enc = prepared
    tok = enc.tokens
    assert tok.features.shape == (8, 36, 64) and tok.grid == (6, 6)
    assert tok.attention.shape == (8, 36) and tok.keys.shape == (8, 36, 16)
    assert tok.frame_features.shape == (8, 32)
    assert (tok.attention > 0).all()


def test_no_pruning_reproduces_stock_generate_bit_for_bit(backbone, prepared):
    inputs, enc = prepared
    ours = backbone.generate(inputs, enc, get_pruner("none")(enc.tokens), max_new_tokens=6, keep_logits=True,
                             min_new_tokens=6)
    stock = backbone.model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                    return_dict_in_generate=True, output_logits=True)
    assert ours.new_ids == stock.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    assert torch.equal(ours.first_logits, stock.logits[0][0])


@pytest.mark.parametrize("name", ["uniform", "visionzip", "fastvid", "holitom"])
def test_prefill_sees_kept_tokens_plus_text(backbone, prepared, name):
    inputs, enc = prepared
    pruned = get_pruner(name, stop=name != "uniform")(enc.tokens, 0.1)
    text_tokens = inputs["input_ids"].shape[1] - (enc.tokens.num_tokens + 1)
    seen, handle = capture_prefill(backbone)
    try:
        gen = backbone.generate(inputs, enc, pruned, max_new_tokens=2)
    finally:
        handle.remove()
    assert len(pruned) < enc.tokens.num_tokens * 0.2
    assert seen[0].shape[1] == gen.prompt_tokens == text_tokens + len(pruned) + 1  # + the one image_newline
    # The video run holds exactly the pruned features, in order, then the newline embedding.
    ids = inputs["input_ids"][0]
    first = int((ids == backbone.video_token_id).nonzero()[0])
    run = seen[0][0, first:first + len(pruned) + 1]
    assert torch.equal(run[:-1], pruned.features)
    assert torch.equal(run[-1], enc.extra["newline"])


def test_attention_probe_matches_eager_attention(backbone, prepared):
    inputs, _ = prepared
    pixels = inputs["pixel_values_videos"][0]
    tower = backbone.model.model.vision_tower
    with AttentionProbe(backbone.attn_module, backbone.num_heads, max_elements=4096) as probe:  # several chunks
        tower(pixels)
    tower.set_attn_implementation("eager")
    try:
        eager = tower(pixels, output_attentions=True).attentions[-1]  # [T, H, N, N]
    finally:
        tower.set_attn_implementation("sdpa")
    assert torch.allclose(probe.received, eager.mean(dim=(1, 2)), atol=1e-6)


def test_unloadable_models_are_one_line_errors(tmp_path):
    with pytest.raises(StopError, match="cannot load model"):
        load_backbone(str(tmp_path / "missing"), torch.device("cpu"), torch.float32)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(StopError, match="not supported"):
        load_backbone(str(tmp_path / "cfg"), torch.device("cpu"), torch.float32)
