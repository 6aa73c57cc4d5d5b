"""The InternVL (HF format) adapter against the unmodified transformers model, on a tiny random checkpoint."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stopcli.backbones import InternVLBackbone, load_backbone
from stopcli.embedded.tiny_models import build_internvl
from stopcli.pruners import NAMES, PrunedTokens, get_pruner


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(build_internvl(tmp_path_factory.mktemp("internvl") / "tiny-internvl"))


@pytest.fixture(scope="module")
def backbone(folder):
    bb = load_backbone(folder, torch.device("cpu"), torch.float32)
    assert isinstance(bb, InternVLBackbone)
    return bb


def frames(n, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (n, 80, 100, 3), dtype=np.uint8)


def prepare(bb, n, seed=0, question="what color is the circle ?"):
    inputs = bb.prepare(frames(n, seed), question)
    return inputs, bb.encode(inputs)


def frame_label_before(bb, ids, col):
    """N of the last `FrameN` label before column col."""
    tok = bb.processor.tokenizer
    labels = {tok.convert_tokens_to_ids(f"Frame{i}"): i for i in range(1, 65)}
    for c in range(col - 1, -1, -1):
        if int(ids[c]) in labels:
            return labels[int(ids[c])]
    raise AssertionError("no frame label before a visual token")


def record_first_ids(bb):
    """The input_ids of the model's first (prefill) call."""
    captured = {}

    def hook(module, args, kwargs):
        captured.setdefault("ids", kwargs["input_ids"][0].clone())

    return captured, bb.model.register_forward_pre_hook(hook, with_kwargs=True)


def test_encode_gives_pixel_shuffled_tokens(backbone):
    inputs, enc = prepare(backbone, 4)
    tok = enc.tokens
    assert inputs["pixel_values"].shape == (4, 3, 64, 64)  # the frames, as images
    assert tok.features.shape == (4, 16, 64) and tok.grid == (4, 4)  # 8x8 patches -> 4x4 tokens per frame
    assert tok.attention.shape == (4, 16) and tok.keys.shape == (4, 16, 16)
    out = backbone.model.model.get_image_features(inputs["pixel_values"])
    assert torch.equal(tok.features, out.pooler_output)


def test_attention_equals_eager_attention_without_cls_pooled_like_pixel_shuffle(backbone):
    inputs, enc = prepare(backbone, 3)
    tower = backbone.model.model.vision_tower
    tower.set_attn_implementation("eager")
    try:
        eager = tower(pixel_values=inputs["pixel_values"], output_attentions=True).attentions[-1]  # [T, H, 65, 65]
    finally:
        tower.set_attn_implementation("sdpa")
    received = eager.mean(dim=(1, 2))[:, 1:]  # [T, 64]: every query (CLS too), CLS as a key dropped
    # pixel shuffle puts each 2x2 block of patches into one token, tokens in raster order
    blocks = received.reshape(3, 4, 2, 4, 2).mean(dim=(2, 4)).reshape(3, 16)
    assert torch.allclose(enc.tokens.attention, blocks * (64 / 729), atol=1e-7)
    # and the keys pool the same way (keys after the q/k norm, mean over heads)
    attn = tower.encoder.layer[-1].attention
    hidden = {}
    handle = attn.register_forward_pre_hook(lambda m, a: hidden.update(x=a[0]))
    try:
        tower(pixel_values=inputs["pixel_values"])
    finally:
        handle.remove()
    k = attn.k_norm(attn.k_proj(hidden["x"])).reshape(3, 65, 2, -1).mean(2)[:, 1:]  # [T, 64, hd]
    ref = k.reshape(3, 4, 2, 4, 2, -1).mean(dim=(2, 4)).reshape(3, 16, -1)
    assert torch.allclose(enc.tokens.keys, ref, atol=1e-6)


def test_no_pruning_reproduces_stock_generate_bit_for_bit(backbone):
    inputs, enc = prepare(backbone, 6, question="which direction does the red circle move ?")
    ours = backbone.generate(inputs, enc, backbone.prune(get_pruner("none"), enc, 1.0), 5, keep_logits=True,
                             min_new_tokens=5)
    stock = backbone.model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                                    return_dict_in_generate=True, output_logits=True)
    assert ours.new_ids == stock.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    assert torch.equal(ours.first_logits, stock.logits[0][0])


@pytest.mark.parametrize("name, stop", [(n, s) for n in NAMES for s in (False, True)
                                        if not (s and n in ("none", "uniform"))])
def test_pruned_prefill_keeps_frame_texts_with_their_frames(backbone, name, stop):
    inputs, enc = prepare(backbone, 6, seed=1)
    pruned = backbone.prune(get_pruner(name, stop=stop), enc, 0.3)
    seen = []

    def embeds(module, args, kwargs):
        if not seen:
            seen.append(kwargs["inputs_embeds"].detach().clone())

    handle = backbone.model.model.language_model.register_forward_pre_hook(embeds, with_kwargs=True)
    captured, gen_hook = record_first_ids(backbone)
    try:
        gen = backbone.generate(inputs, enc, pruned, max_new_tokens=2)
    finally:
        handle.remove()
        gen_hook.remove()
    ids, new_ids = inputs["input_ids"][0], captured["ids"]
    token = backbone.image_token_id
    text = ids.shape[0] - int((ids == token).sum())
    assert seen[0].shape[1] == gen.prompt_tokens == text + len(pruned)  # kept + text
    assert torch.equal(new_ids[new_ids != token], ids[ids != token])  # every frame label and <img></img> kept
    visual = (new_ids == token).nonzero().flatten()
    # The embeddings at the kept placeholders: the pruned features, each under its own frame's label.
    frame = torch.tensor([frame_label_before(backbone, new_ids, c) - 1 for c in visual.tolist()])
    embeds = seen[0][0, visual]
    match = (embeds[:, None] == pruned.features[None]).all(-1)  # [N, N]: which pruned token sits at each slot
    assert torch.equal(match.sum(1), torch.ones(len(pruned), dtype=torch.long))
    assert torch.equal(pruned.positions[match.float().argmax(1), 0], frame)


def test_a_frame_whose_tokens_are_all_pruned_keeps_its_label(backbone):
    inputs, enc = prepare(backbone, 3)
    full = backbone.prune(get_pruner("none"), enc, 1.0)
    keep = full.positions[:, 0] != 1
    pruned = PrunedTokens(features=full.features[keep], positions=full.positions[keep], counts=full.counts[keep],
                          source=full.source)
    captured, hook = record_first_ids(backbone)
    try:
        backbone.generate(inputs, enc, pruned, max_new_tokens=1)
    finally:
        hook.remove()
    tok = backbone.processor.tokenizer
    text = tok.decode(captured["ids"]).replace(" ", "")
    assert "Frame2:<img></img>" in text and "Frame1:<img><IMG_CONTEXT>" in text and "Frame3:<img><IMG_CONTEXT>" in text


@pytest.mark.parametrize("n", [5, 1])
def test_odd_frame_counts_and_single_images(backbone, n):
    inputs, enc = prepare(backbone, n)
    assert enc.tokens.num_frames == n
    gen = backbone.generate(inputs, enc, backbone.prune(get_pruner("holitom", stop=True), enc, 0.5), 2)
    assert gen.visual_tokens <= enc.tokens.num_tokens


def test_stop_ask_takes_the_same_path(folder, videos, tmp_path):
    from stopcli.cli import app

    r = CliRunner().invoke(app, ["ask", str(videos["good"]), "what color is the circle?", "--model", folder,
                                 "--frames", "5", "--ratio", "0.5", "--max-new-tokens", "2", "--json",
                                 "--show", str(tmp_path / "i.png")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["frames"] == 5 and data["video_frames"] == 5
    assert 0 < data["visual_tokens"]["after"] < data["visual_tokens"]["before"] == 80
    assert (tmp_path / "i.png").stat().st_size > 1000


def test_tokens_go_to_their_own_frame_in_whatever_order_the_pruner_emits_them(backbone):
    inputs, enc = prepare(backbone, 3)
    full = backbone.prune(get_pruner("none"), enc, 1.0)
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
    shuffled = PrunedTokens(features=full.features[perm], positions=full.positions[perm], counts=full.counts[perm],
                            source=full.source)
    ours = backbone.generate(inputs, enc, shuffled, 3, keep_logits=True, min_new_tokens=3)
    stock = backbone.model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                                    return_dict_in_generate=True, output_logits=True)
    assert torch.equal(ours.first_logits, stock.logits[0][0])  # the same prompt as the unshuffled video


def test_system_turn_and_answer_prefix_survive_pruning(backbone):
    chat = backbone.chat_text("which way ?", system="you are a helpful assistant", prefix="answer :")
    assert chat.startswith("<|im_start|>system\nyou are a helpful assistant<|im_end|>\n")
    assert chat.endswith("<|im_start|>assistant\nanswer :")
    inputs = backbone.prepare(frames(3), "which way ?", system="you are a helpful assistant", prefix="answer :")
    enc = backbone.encode(inputs)
    pruned = backbone.prune(get_pruner("holitom", stop=True), enc, 0.3)
    captured, hook = record_first_ids(backbone)
    try:
        gen = backbone.generate(inputs, enc, pruned, 3, min_new_tokens=3)
    finally:
        hook.remove()
    ids, token = inputs["input_ids"][0], backbone.image_token_id
    assert torch.equal(captured["ids"][captured["ids"] != token], ids[ids != token])
    assert len(gen.new_ids) == 3
