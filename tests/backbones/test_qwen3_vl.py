"""Qwen3-VL (DeepStack, timestamps) and Qwen3.5 adapters against the unmodified transformers models, on tiny random
checkpoints; and the DeepStack carrying against finite differences of the unchanged pruners."""

import json
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stopcli.backbones import Qwen3VLBackbone, load_backbone
from stopcli.backbones.qwen3_vl import CarriedTokens, carry
from stopcli.embedded.tiny_models import build_qwen3_vl
from stopcli.errors import StopError
from stopcli.pruners import NAMES, PrunedTokens, VisualTokens, get_pruner

FPS, STEP = 2.0, 3  # the clip's timing: frame i of the sample is frame 3 * i of a 2 fps file


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3")
    return {v: str(build_qwen3_vl(root / f"qwen{v}", version=v)) for v in ("3", "3.5")}


@pytest.fixture(scope="module", params=["3", "3.5"])
def backbone(request, folders):
    bb = load_backbone(folders[request.param], torch.device("cpu"), torch.float32)
    assert isinstance(bb, Qwen3VLBackbone) and bb.deepstack == (2 if request.param == "3" else 0)
    return bb


def frames(n, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (n, 96, 128, 3), dtype=np.uint8)


def prepare(bb, n, seed=0, question="what color is the circle ?"):
    inputs = bb.prepare(frames(n, seed), question, fps=FPS, indices=np.arange(n) * STEP)
    return inputs, bb.encode(inputs)


def capture_prefill(bb):
    seen = []

    def hook(module, args, kwargs):
        if not seen:
            seen.append({k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()
                         if k in ("inputs_embeds", "position_ids", "visual_pos_masks", "deepstack_visual_embeds")})

    return seen, bb.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


def pruners():
    return [(n, s) for n in NAMES for s in (False, True) if not (s and n in ("none", "uniform"))]


def test_encode_reads_merged_tokens_and_deepstack_levels(backbone):
    inputs, enc = prepare(backbone, 8)
    tok = enc.tokens
    assert tok.features.shape[:2] == (4, 12) and tok.grid == (3, 4)  # 96x128 px, 16 px patches, 2x2 merge
    assert torch.allclose(tok.attention.mean(1), torch.full((4,), 1 / 729), rtol=1e-4)  # the common scale
    if backbone.deepstack:
        out = backbone.model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        levels = enc.extra["deepstack"]
        assert levels.shape == (2, 4, 12, 64)
        for k, level in enumerate(out.deepstack_features):
            assert torch.equal(levels[k].reshape(48, -1), level[0])
    else:
        assert "deepstack" not in enc.extra


def test_probe_matches_transformers_eager_attention(backbone):
    inputs = backbone.prepare(frames(4), "what ?", fps=FPS)
    module = backbone.block.attn
    assert backbone.block is backbone.model.model.visual.blocks[-1]  # the block the merger reads
    captured = {}
    handle = module.register_forward_pre_hook(lambda m, a, k: captured.update(hidden=a[0], kwargs=k),
                                              with_kwargs=True)
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
    assert len(cu) == 3  # one attention group per temporal patch
    ref = []
    for a, b in zip(cu[:-1], cu[1:]):
        _, weights = mod.eager_attention_forward(module, q[a:b].transpose(0, 1)[None], k[a:b].transpose(0, 1)[None],
                                                 v[a:b].transpose(0, 1)[None], None, scaling=module.scaling)
        ref.append(weights[0].mean(dim=(0, 1)))  # [L] mean over heads and queries
    ref = torch.cat(ref).reshape(-1, 4).mean(-1) * (48 / 729)  # merge units in raster order, common scale
    assert torch.allclose(enc.tokens.attention.flatten(), ref, atol=1e-7)


@pytest.mark.parametrize("version", ["3", "3.5", "3-moe"])
def test_no_pruning_reproduces_stock_generate_bit_for_bit(version, folders, tmp_path):
    folder = folders.get(version) or str(build_qwen3_vl(tmp_path / "moe", version=version))
    bb = load_backbone(folder, torch.device("cpu"), torch.float32)
    inputs, enc = prepare(bb, 8, question="which direction does the red circle move ?")
    ours = bb.generate(inputs, enc, bb.prune(get_pruner("none"), enc, 1.0), 5, keep_logits=True, min_new_tokens=5)
    stock = bb.model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                              return_dict_in_generate=True, output_logits=True)
    assert ours.new_ids == stock.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    assert torch.equal(ours.first_logits, stock.logits[0][0])


def timestamp_before(bb, ids, col):
    """The seconds value of the `<x.y seconds>` text in front of the temporal-patch run holding column col."""
    specials = torch.tensor([bb.vision_start_id, bb.vision_end_id])
    marks = torch.isin(ids[:col], specials).nonzero().flatten().tolist()
    # [..., end of the previous run (or the video's opening vision_start), timestamp text, this run's vision_start]
    assert len(marks) >= 2 and ids[marks[-1]] == bb.vision_start_id, "the visual token is not inside a run"
    text = bb.processor.tokenizer.decode(ids[marks[-2] + 1:marks[-1]]).replace(" ", "")
    match = re.fullmatch(r"<([0-9.]+)seconds>", text)
    assert match, f"no timestamp in front of the run: {text!r}"
    return float(match.group(1))


def patch_times(n):
    idx = np.arange(n) * STEP
    idx = np.concatenate([idx, idx[-1:]]) if n % 2 else idx
    return [float(f"{t:.1f}") for t in (idx[0::2] + idx[1::2]) / 2 / FPS]  # as the processor writes them


@pytest.mark.parametrize("name, stop", pruners())
def test_pruned_prefill_keeps_positions_timestamps_and_deepstack(backbone, name, stop):
    inputs, enc = prepare(backbone, 8, seed=1)
    s = enc.tokens.tokens_per_frame
    seen, handle = capture_prefill(backbone)
    try:
        backbone.model.generate(**inputs, max_new_tokens=1, do_sample=False)
        full = seen.pop()
        pruned = backbone.prune(get_pruner(name, stop=stop), enc, 0.3)
        gen = backbone.generate(inputs, enc, pruned, max_new_tokens=2)
        part = seen.pop()
    finally:
        handle.remove()
    ids = inputs["input_ids"][0]
    slots = (ids == backbone.video_token_id).nonzero().flatten()
    text = ids.shape[0] - slots.numel()
    assert part["inputs_embeds"].shape[1] == gen.prompt_tokens == text + len(pruned)  # kept + text

    new, order = backbone.pruned_prompt(inputs, pruned, s)
    new_ids = new["input_ids"][0]
    assert torch.equal(new_ids[new_ids != backbone.video_token_id], ids[ids != backbone.video_token_id])
    visual = (new_ids == backbone.video_token_id).nonzero().flatten()  # [N] prompt columns of the kept tokens
    frame = pruned.positions[order, 0]  # the temporal patch of the token at each of those columns
    assert torch.equal(frame, frame.sort().values)  # each patch's tokens in its own run, patches in order
    # every kept token sits after its own temporal patch's timestamp
    times = patch_times(8)
    for col, f in zip(visual.tolist(), frame.tolist()):
        assert timestamp_before(backbone, new_ids, col) == times[f]

    # The language model receives the kept features, in that order, at those columns.
    assert torch.equal(part["inputs_embeds"][0, visual], pruned.features[order])
    # Positions: kept tokens and every text token (timestamps, question) keep their unpruned 3-D positions.
    full_cols = slots[pruned.positions[order, 0] * s + pruned.positions[order, 1]]
    pos_full, pos_part = full["position_ids"], part["position_ids"]
    assert torch.equal(pos_part[1:, 0, visual], pos_full[1:, 0, full_cols])
    text_part = (new_ids != backbone.video_token_id).nonzero().flatten()
    text_full = (ids != backbone.video_token_id).nonzero().flatten()
    assert torch.equal(pos_part[1:, 0, text_part], pos_full[1:, 0, text_full])
    assert torch.equal(pos_part[0, 0], torch.arange(pos_part.shape[-1]))  # row 0 contiguous
    if backbone.deepstack:
        levels = enc.extra["deepstack"]  # [L, T, S, D]
        assert isinstance(pruned, CarriedTokens) and pruned.riders.shape == (2, len(pruned), 64)
        assert torch.equal(part["visual_pos_masks"][0], new_ids == backbone.video_token_id)
        single = pruned.counts[order] == 1  # tokens kept as they were hold exactly their own level features
        pos = pruned.positions[order]
        for k in range(2):
            got = part["deepstack_visual_embeds"][k]
            assert torch.equal(got, pruned.riders[k][order])
            assert torch.equal(got[single], levels[k][pos[single, 0], pos[single, 1]])


def test_a_patch_whose_tokens_are_all_pruned_keeps_its_timestamp(backbone):
    inputs, enc = prepare(backbone, 8)
    full = backbone.prune(get_pruner("none"), enc, 1.0)
    s = enc.tokens.tokens_per_frame
    keep = full.positions[:, 0] != 1  # temporal patch 1 loses every token
    fields = dict(features=full.features[keep], positions=full.positions[keep], counts=full.counts[keep],
                  source=full.source)
    pruned = (CarriedTokens(**fields, riders=full.riders[:, keep]) if isinstance(full, CarriedTokens)
              else PrunedTokens(**fields))
    new, _ = backbone.pruned_prompt(inputs, pruned, s)
    new_ids = new["input_ids"][0]
    start, end = backbone.vision_start_id, backbone.vision_end_id
    runs = (new_ids == start).nonzero().flatten()[1:]  # each temporal patch's vision_start (the first opens the video)
    assert runs.numel() == 4  # all four runs survive, each behind its own timestamp
    assert [timestamp_before(backbone, new_ids, int(r) + 1) for r in runs] == patch_times(8)
    assert new_ids[int(runs[1]) + 1] == end  # patch 1's run is empty: <|vision_start|><|vision_end|>
    assert all(new_ids[int(r) + 1] != end for r in runs[[0, 2, 3]])
    gen = backbone.generate(inputs, enc, pruned, max_new_tokens=2)
    assert gen.prompt_tokens == inputs["input_ids"].shape[1] - s


def test_deepstack_needs_prune_through_the_backbone(folders):
    bb = load_backbone(folders["3"], torch.device("cpu"), torch.float32)
    inputs, enc = prepare(bb, 4)
    with pytest.raises(StopError, match="backbone.prune"):
        bb.generate(inputs, enc, get_pruner("holitom")(enc.tokens, 0.5), max_new_tokens=1)


def small_tokens(seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 16, 32, generator=g, dtype=torch.float64)
    att = torch.rand(6, 16, generator=g, dtype=torch.float64)
    tokens = VisualTokens(features=x, attention=att / att.sum(1, keepdim=True), grid=(4, 4),
                          keys=torch.randn(6, 16, 8, generator=g, dtype=torch.float64))
    return tokens, torch.randn(2, 6, 16, 32, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", ["auto", "tangents"])
@pytest.mark.parametrize("name, stop", pruners())
def test_carried_levels_equal_finite_differences_of_the_pruner(name, stop, method):
    """The carried level is the pruner's own linear map applied to it: (p(x + eps L) - p(x)) / eps, with the
    same tokens kept, computed without autodiff."""
    tokens, levels = small_tokens()
    x = tokens.features
    pruner = get_pruner(name, stop=stop)
    carried = carry(pruner, tokens, 0.3, levels, method=method)
    base = pruner(tokens, 0.3)
    assert torch.equal(carried.positions, base.positions) and torch.equal(carried.features, base.features)
    for k in range(2):
        # The pruners compute in float32, so the step must be large enough for rounding (~1e-7 / eps) to stay small,
        # and small enough not to flip a decision: the largest of these that keeps the same tokens.
        for eps in (1e-2, 3e-3, 1e-3):
            moved = pruner(replace(tokens, features=x + eps * levels[k]), 0.3)
            if torch.equal(moved.positions, base.positions):
                break
        assert torch.equal(moved.positions, base.positions)  # same decisions
        diff = (moved.features.double() - base.features.double()) / eps
        assert torch.allclose(carried.riders[k].double(), diff, atol=2e-6 / eps), (name, stop, k, eps)


@pytest.mark.parametrize("name", ["none", "uniform", "visionzip", "holitom"])
def test_the_two_run_codes_method_serves_pruners_that_merge_within_their_source_groups(name):
    tokens, levels = small_tokens(seed=4)
    pruner = get_pruner(name, stop=name not in ("none", "uniform"))
    codes = carry(pruner, tokens, 0.3, levels, method="codes")
    assert codes is not None
    assert torch.allclose(codes.riders, carry(pruner, tokens, 0.3, levels, method="tangents").riders, atol=1e-6)


def soft_merge(tokens, keep):
    """One token: the features averaged with weights from the features themselves (not a fixed linear map)."""
    x = tokens.features.reshape(-1, tokens.features.shape[-1])
    w = torch.softmax(3 * x[:, 0], 0)
    return PrunedTokens(features=(w[:, None] * x).sum(0, keepdim=True), positions=torch.zeros(1, 2).long(),
                        counts=torch.tensor([x.shape[0]]), source=torch.zeros(tokens.features.shape[:2]).long())


def test_a_pruner_with_feature_dependent_weights_is_refused():
    tokens = VisualTokens(features=torch.randn(2, 4, 8), attention=torch.full((2, 4), 0.25), grid=(2, 2))
    assert carry(soft_merge, tokens, 0.5, torch.randn(1, 2, 4, 8), method="codes") is None
    with pytest.raises(StopError, match="depend on the feature values"):
        carry(soft_merge, tokens, 0.5, torch.randn(1, 2, 4, 8))


@pytest.mark.parametrize("n", [7, 1])
def test_odd_frame_counts_and_single_images(backbone, n):
    inputs, enc = prepare(backbone, n)
    assert enc.tokens.num_frames == (n + 1) // 2
    pruned = backbone.prune(get_pruner("holitom", stop=True), enc, 0.5)
    gen = backbone.generate(inputs, enc, pruned, max_new_tokens=2)
    assert gen.visual_tokens == len(pruned) <= enc.tokens.num_tokens
    new, order = backbone.pruned_prompt(inputs, pruned, enc.tokens.tokens_per_frame)
    visual = (new["input_ids"][0] == backbone.video_token_id).nonzero().flatten()
    for col, f in zip(visual.tolist(), pruned.positions[order, 0].tolist()):
        assert timestamp_before(backbone, new["input_ids"][0], col) == patch_times(n)[f]


@pytest.mark.parametrize("version", ["3", "3.5"])
def test_stop_ask_takes_the_same_path(version, folders, videos, tmp_path):
    from stopcli.cli import app

    r = CliRunner().invoke(app, ["ask", str(videos["good"]), "what color is the circle?", "--model", folders[version],
                                 "--frames", "5", "--ratio", "0.5", "--pruner", "fastvid", "--max-new-tokens", "2",
                                 "--json", "--show", str(tmp_path / "q.png")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["frames"] == 3 and data["video_frames"] == 5  # 5 frames -> 3 temporal patches
    assert 0 < data["visual_tokens"]["after"] < data["visual_tokens"]["before"]
    assert (tmp_path / "q.png").stat().st_size > 1000


def test_bfloat16_takes_the_same_path(folders):
    """The dtype a GPU run uses: no pruning is still stock generation bit for bit, and every level is carried."""
    bb = load_backbone(folders["3"], torch.device("cpu"), torch.bfloat16)
    inputs, enc = prepare(bb, 4)
    assert enc.extra["deepstack"].dtype == torch.bfloat16
    ours = bb.generate(inputs, enc, bb.prune(get_pruner("none"), enc, 1.0), 3, keep_logits=True, min_new_tokens=3)
    stock = bb.model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                              return_dict_in_generate=True, output_logits=True)
    assert torch.equal(ours.first_logits, stock.logits[0][0])
    pruned = bb.prune(get_pruner("holitom", stop=True), enc, 0.3)
    assert pruned.riders.dtype == torch.bfloat16 and pruned.riders.shape[:2] == (2, len(pruned))
    assert bb.generate(inputs, enc, pruned, max_new_tokens=2).visual_tokens == len(pruned)


def test_auto_falls_back_to_tangents_when_an_output_mixes_tokens_its_source_does_not_name():
    def mean_all(tokens, keep):  # one output, the mean of every token; `source` names only token (0, 0)
        x = tokens.features
        source = torch.full(x.shape[:2], -1, dtype=torch.long)
        source[0, 0] = 0
        return PrunedTokens(features=x.reshape(-1, x.shape[-1]).mean(0, keepdim=True),
                            positions=torch.zeros(1, 2).long(), counts=torch.tensor([x.shape[0] * x.shape[1]]),
                            source=source)

    tokens = VisualTokens(features=torch.randn(2, 4, 8), attention=torch.full((2, 4), 0.25), grid=(2, 2))
    levels = torch.randn(1, 2, 4, 8)
    assert carry(mean_all, tokens, 0.5, levels, method="codes") is None
    carried = carry(mean_all, tokens, 0.5, levels)
    assert torch.allclose(carried.riders[0, 0], levels[0].reshape(-1, 8).mean(0), atol=1e-6)


class _NoForwardMode(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad


def _keep_first(tokens, features):
    source = torch.full(tokens.features.shape[:2], -1, dtype=torch.long)
    source[0, 0] = 0
    return PrunedTokens(features=features, positions=torch.zeros(1, 2).long(), counts=torch.ones(1).long(),
                        source=source)


@pytest.mark.parametrize("leave, says", [
    (lambda x: _NoForwardMode.apply(x), "cannot run under forward-mode autodiff"),  # an op with no forward formula
    (lambda x: torch.from_numpy(x.numpy().copy()), "outside torch"),  # leaves torch: no tangent follows
])
def test_pruners_autodiff_cannot_follow_are_one_line_errors(leave, says):
    def pruner(tokens, keep):
        return _keep_first(tokens, leave(tokens.features.reshape(-1, tokens.features.shape[-1])[:1]))

    tokens = VisualTokens(features=torch.randn(2, 4, 8), attention=torch.full((2, 4), 0.25), grid=(2, 2))
    with pytest.raises(StopError, match=says):
        carry(pruner, tokens, 0.5, torch.randn(1, 2, 4, 8))


def test_system_turn_and_answer_prefix_survive_pruning(backbone):
    plain = backbone.prepare(frames(4), "which way ?", fps=FPS)["input_ids"][0]
    inputs = backbone.prepare(frames(4), "which way ?", system="you are a helpful assistant", prefix="answer :",
                              fps=FPS)
    ids = inputs["input_ids"][0]
    assert len(ids) > len(plain)
    enc = backbone.encode(inputs)
    pruned = backbone.prune(get_pruner("holitom", stop=True), enc, 0.3)
    new, _ = backbone.pruned_prompt(inputs, pruned, enc.tokens.tokens_per_frame)
    text = ids[ids != backbone.video_token_id]
    assert torch.equal(new["input_ids"][0][new["input_ids"][0] != backbone.video_token_id], text)
    tail = len(ids) - int((ids == backbone.video_token_id).nonzero().max()) - 1  # tokens after the last visual one
    assert torch.equal(new["input_ids"][0][-tail:], ids[-tail:])  # question, generation prompt, answer prefix
    assert len(backbone.generate(inputs, enc, pruned, 3, min_new_tokens=3).new_ids) == 3
