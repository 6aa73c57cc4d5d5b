"""Qwen2-VL and Qwen2.5-VL adapters against the unmodified transformers models, on tiny random checkpoints."""

import sys

import numpy as np
import pytest
import torch

from stopcli.backbones import QwenVLBackbone, load_backbone
from stopcli.pruners import get_pruner
from stopcli.embedded.tiny_models import build_qwen_vl


@pytest.fixture(scope="module", params=["2.5", "2"])
def backbone(request, tmp_path_factory):
    path = build_qwen_vl(tmp_path_factory.mktemp("qwen") / f"qwen{request.param}", version=request.param)
    bb = load_backbone(str(path), torch.device("cpu"), torch.float32)
    assert isinstance(bb, QwenVLBackbone) and bb.windowed == (request.param == "2.5")
    return bb


def frames(n, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (n, 112, 112, 3), dtype=np.uint8)


def prefill_kwargs(bb):
    seen = []

    def hook(module, args, kwargs):
        if not seen:
            seen.append({k: kwargs[k].detach().clone() for k in ("inputs_embeds", "position_ids")})

    return seen, bb.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


def test_encode_reads_merged_tokens_in_raster_order(backbone):
    inputs = backbone.prepare(frames(8), "what color is the circle?")
    enc = backbone.encode(inputs)
    tok = enc.tokens
    assert tok.features.shape[:2] == (4, 16) and tok.grid == (4, 4)  # 8 frames -> 4 temporal patches of 4x4
    # attention on the common scale: 64 patches per temporal patch -> mean 1/729 per token
    assert torch.allclose(tok.attention.mean(1), torch.full((4,), 1 / 729), rtol=1e-4)
    # The merge-unit order the adapter uses is the one transformers itself uses to undo windowing.
    visual = backbone.model.model.visual
    out = visual(inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"])
    units = out.last_hidden_state.reshape(-1, 4, out.last_hidden_state.shape[-1])
    order = backbone._merge_order(inputs["video_grid_thw"])
    remerged = visual.merger(units[order].reshape(-1, units.shape[-1]))
    assert torch.allclose(remerged, tok.features.reshape(-1, tok.features.shape[-1]), atol=1e-5)


def test_probe_matches_transformers_eager_attention(backbone):
    inputs = backbone.prepare(frames(4), "what?")
    module = backbone.block.attn
    captured = {}
    handle = module.register_forward_pre_hook(
        lambda m, a, k: captured.update(hidden=a[0], kwargs=k), with_kwargs=True)
    try:
        enc = backbone.encode(inputs)
    finally:
        handle.remove()
    mod = sys.modules[type(module).__module__]
    hidden, kw = captured["hidden"], captured["kwargs"]
    n = hidden.shape[0]
    q, k, v = module.qkv(hidden).reshape(n, 3, module.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = mod.apply_rotary_pos_emb_vision(q, k, *kw["position_embeddings"])
    cu = kw["cu_seqlens"].tolist()
    ref = []
    for a, b in zip(cu[:-1], cu[1:]):
        _, weights = mod.eager_attention_forward(module, q[a:b].transpose(0, 1)[None], k[a:b].transpose(0, 1)[None],
                                                 v[a:b].transpose(0, 1)[None], None, scaling=module.scaling)
        ref.append(weights[0].mean(dim=(0, 1)))  # [L] mean over heads and queries
    ref = torch.cat(ref).reshape(-1, 4)[backbone._merge_order(inputs["video_grid_thw"])].mean(-1) * (64 / 729)
    assert torch.allclose(enc.tokens.attention.flatten(), ref, atol=1e-7)


def test_no_pruning_reproduces_stock_generate_bit_for_bit(backbone):
    inputs = backbone.prepare(frames(8), "which direction does the red circle move?")
    enc = backbone.encode(inputs)
    ours = backbone.generate(inputs, enc, get_pruner("none")(enc.tokens), 5, keep_logits=True, min_new_tokens=5)
    stock = backbone.model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                                    return_dict_in_generate=True, output_logits=True)
    assert ours.new_ids == stock.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    assert torch.equal(ours.first_logits, stock.logits[0][0])


@pytest.mark.parametrize("name", ["visionzip", "holitom"])
def test_pruned_prefill_keeps_unpruned_positions(backbone, name):
    inputs = backbone.prepare(frames(8, seed=1), "what color is the circle?")
    enc = backbone.encode(inputs)
    seen, handle = prefill_kwargs(backbone)
    try:
        backbone.model.generate(**inputs, max_new_tokens=1, do_sample=False)
        full = seen.pop()
        pruned = get_pruner(name, stop=True)(enc.tokens, 0.1)
        gen = backbone.generate(inputs, enc, pruned, max_new_tokens=2)
        part = seen.pop()
    finally:
        handle.remove()
    ids = inputs["input_ids"][0]
    video = (ids == backbone.video_token_id).nonzero().flatten()
    first, n_video = int(video[0]), video.numel()
    text = ids.shape[0] - n_video
    assert part["inputs_embeds"].shape[1] == gen.prompt_tokens == text + len(pruned)
    kept_cols = first + pruned.positions[:, 0] * 16 + pruned.positions[:, 1]
    pos_full, pos_part = full["position_ids"], part["position_ids"]
    assert torch.equal(pos_part[1:, 0, first:first + len(pruned)], pos_full[1:, 0, kept_cols])  # kept: as unpruned
    assert torch.equal(pos_part[1:, 0, first + len(pruned):], pos_full[1:, 0, first + n_video:])  # text after: too
    assert torch.equal(pos_part[0, 0], torch.arange(pos_part.shape[-1]))  # row 0 contiguous
    assert torch.equal(part["inputs_embeds"][0, first:first + len(pruned)], pruned.features)


@pytest.mark.parametrize("n", [7, 1])
def test_odd_frame_counts_and_single_images(backbone, n):
    inputs = backbone.prepare(frames(n), "what?")
    enc = backbone.encode(inputs)
    assert enc.tokens.num_frames == (n + 1) // 2
    gen = backbone.generate(inputs, enc, get_pruner("holitom", stop=True)(enc.tokens, 0.5), max_new_tokens=2)
    assert gen.visual_tokens <= enc.tokens.num_tokens


def test_system_turn_and_answer_prefix_go_through_the_chat_template(backbone):
    chat = backbone.chat_text("which way?", system="Be brief.", prefix="Best option:(")
    assert chat.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert chat.endswith("<|im_start|>assistant\nBest option:(")
    plain = backbone.prepare(frames(4), "which way?")["input_ids"][0]
    prefixed = backbone.prepare(frames(4), "which way?", prefix="Best option:(")["input_ids"][0]
    assert len(prefixed) > len(plain) and prefixed[:len(plain)].tolist() == plain.tolist()  # appended after it
    inputs = backbone.prepare(frames(4), "which way?", system="Be brief.", prefix="Best option:(")
    assert inputs["input_ids"][0][-(len(prefixed) - len(plain)):].tolist() == prefixed[len(plain):].tolist()
    enc = backbone.encode(inputs)  # pruned generation continues after the prefix, positions intact
    out = backbone.generate(inputs, enc, get_pruner("holitom")(enc.tokens, 0.5), 3, min_new_tokens=3)
    assert len(out.new_ids) == 3 and out.prompt_tokens < inputs["input_ids"].shape[1]
