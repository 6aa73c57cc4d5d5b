"""FlashVid: the budget rule, ADTS picks and temporal merging worked out on paper, the authors' duplicate quirks
behind faithful=True, and SToP's sink penalty inside ADTS (per segment, as the authors score it)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stopcli.pruners import SinkHooks, SToP, VisualTokens, get_pruner
from stopcli.pruners.flashvid import FlashVid
from stopcli.pruners.planted import planted_sink_tokens

from test_properties import make_tokens


@settings(max_examples=200, deadline=None)
@given(s=st.integers(1, 800), keep=st.floats(0.01, 1.0))
def test_split_is_ceil_of_125_percent_then_70_percent(s, keep):
    b, n_a, n_m = FlashVid().split(s, keep)
    exact = s * keep * 1.25
    assert b - 1 < exact + 1e-6 and b >= exact - 1e-6  # B = ceil(1.25 * keep * S)
    assert n_a == min(s, math.ceil(b * 0.7 - 1e-9)) and n_m == b - n_a


def test_split_at_the_authors_ratios_on_196_tokens():
    # the README table: 10% -> 25 (18 + 7), 15% -> 37, 20% -> 49 (35 + 14), 25% -> 62 (44 + 18)
    assert [FlashVid().split(196, r) for r in (0.1, 0.15, 0.2, 0.25)] == [
        (25, 18, 7), (37, 26, 11), (49, 35, 14), (62, 44, 18)]
    assert FlashVid().split(196, 1 - 0.8) == (49, 35, 14)  # the CLI's keep = 1 - ratio carries float noise


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.integers(1, 9), h=st.integers(1, 5), w=st.integers(2, 5),
       keep=st.floats(0.05, 1.0), stop=st.booleans())
def test_kept_count_follows_the_rule(seed, t, h, w, keep, stop):
    tokens = make_tokens(seed, t, h, w, 6, static_frac=0.8)
    s = h * w
    fv = FlashVid()
    hooks = SToP(fv).hooks(tokens) if stop else None
    p = fv.plan(tokens, keep, hooks)
    out = fv(tokens, keep, hooks)
    _, n_a, n_m = fv.split(s, keep)
    picks = p["chosen"].sum(1)
    assert (picks >= 1).all() and (picks <= n_a).all()
    assert (picks[p["repeat"] < 0] == n_a).all()  # a frame stops early only where the authors would repeat
    # Step 4 recomputed here from the survivors: ceil(n_f * n_m * W / M) per frame when n_m * W < M.
    expect = int(picks.sum())
    seg = p["segments"]
    for g in seg.unique().tolist():
        frames = (seg == g).nonzero().flatten()
        n_f = p["survivor"][frames].sum(1).tolist()
        m, want = sum(n_f), n_m * len(frames)
        expect += sum(math.ceil(n * want / m) if want < m else n for n in n_f) if m else 0
        assert not (p["chosen"][frames] & p["survivor"][frames]).any()
    assert len(out) == expect == fv.budget(tokens, keep, hooks)


def test_kept_count_is_about_125_percent_of_the_nominal_budget():
    tokens = make_tokens(7, 32, 14, 14, 16, static_frac=0.9)
    for keep in (0.1, 0.2):
        out = FlashVid()(tokens, keep)
        b = FlashVid().split(196, keep)[0]
        assert 32 * b <= len(out) <= 32 * b + 31  # all picks made; ceil adds at most one token per frame
        assert len(out) > 1.2 * keep * 32 * 196


def test_adts_on_paper_diversity_beats_raw_attention():
    # One frame, keep 0.4 on 4 tokens: B = ceil(2.0) = 2 = n_a, n_m = 0 (only ADTS picks survive).
    # Mean token m = (3/4, 1/4, 1/4); e = <x, m> = (0.75, 0.25, 0.25, 1.5); attention (4, 1, 1, 3)e-6
    # -> column weights W = a * 1e6 * e = (3, 0.25, 0.25, 4.5); d[i, j] = (1 - cos) * W_j.
    # Second-smallest per column: (0, 0.25, 0.25, 0) (tokens 0 and 3 point the same way) -> first pick 1;
    # then d[1, :] = (3, 0, 0.25, 4.5) -> token 3. Top-2 attention would have taken 0 and 3.
    x = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 0]]])
    a = torch.tensor([[4.0, 1, 1, 3]]) * 1e-6
    out = FlashVid()(VisualTokens(x, a, (2, 2)), 0.4)
    assert out.positions.tolist() == [[0, 1], [0, 3]]
    assert torch.equal(out.features, x[0, [1, 3]])
    assert out.source.tolist() == [[-1, 0, -1, 1]] and out.counts.tolist() == [1, 1]


def test_v2_repeat_quirk_only_under_faithful():
    # 3 tokens, keep 0.8: B = 3 = n_a. Token 2 points against the mean token: e < 0, its column is negative.
    # Picks: 0, then 1; then every min-distance is <= 0 and the argmax is token 0 again.
    x = torch.tensor([[[1.0, 0], [0, 1], [-0.1, -0.1]]])
    tokens = VisualTokens(x, torch.full((1, 3), 1e-6), (1, 3))
    clean, faithful = FlashVid()(tokens, 0.8), FlashVid(faithful=True)(tokens, 0.8)
    assert clean.positions.tolist() == [[0, 0], [0, 1]]  # the authors' distinct picks, no copy
    assert faithful.positions.tolist() == [[0, 0], [0, 0], [0, 1]]  # their code: token 0 twice
    assert torch.equal(faithful.features[0], faithful.features[1])
    assert FlashVid().plan(tokens, 0.8)["repeat"].tolist() == [0]


def _three_frame_segment():
    # One segment (min_segments=1), 3 tokens a frame, token 0 with the top attention is every frame's pick
    # (adts_share 0.5: B = ceil(3 * 0.5 * 1.25) = 2 = 1 pick + 1 merged). Position 1 keeps its direction:
    # frame 2 -> frame 1 -> frame 0 (cos 1 > 0.8) is one chain; position 2 of frame 2 joins frame 1's
    # (cos 1), frame 1's does not reach frame 0's (cos 0.71).
    x = torch.tensor([[[3.0, 0], [0, 1], [0, -1]], [[3.0, 0], [0, 2], [1, -1]], [[3.0, 0], [0, 3], [1, -1]]])
    a = torch.tensor([[1.0, 1e-6, 1e-6]] * 3)
    return VisualTokens(x, a, (1, 3))


def test_temporal_merging_on_paper_with_the_authors_chain_divisor():
    tokens = _three_frame_segment()
    fv = FlashVid(min_segments=1, adts_share=0.5)
    p = fv.plan(tokens, 0.5)
    assert p["merged"].long().tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1]]
    out = fv(tokens, 0.5)
    # Survivors (0,1) [tree of 3, one direct child], (0,2), (1,2) [tree of 2]: M = 3 = n_m * W -> no clustering.
    # The authors divide a tree's sum by 1 + its direct children: (0,1) = (1 + 2 + 3) / 2 = 3 along y.
    assert out.positions.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 2], [2, 0]]
    assert torch.equal(out.features, torch.tensor([[3.0, 0], [0, 3], [0, -1], [3, 0], [1, -1], [3, 0]]))
    assert out.counts.tolist() == [1, 3, 1, 1, 2, 1]
    assert out.source.tolist() == [[0, 1, 2], [3, 1, 4], [5, 1, 4]]
    mean = FlashVid(min_segments=1, adts_share=0.5, chain_mean=True)(tokens, 0.5)
    assert torch.equal(mean.features[1], torch.tensor([0.0, 2.0]))  # the tree's mean instead


def test_one_frame_segments_cluster_only_unselected_tokens_by_default():
    tokens = make_tokens(3, 4, 4, 4, 8)  # 4 frames < 8 segments: every segment is one frame
    clean, faithful = FlashVid()(tokens, 0.3), FlashVid(faithful=True)(tokens, 0.3)
    p = FlashVid().plan(tokens, 0.3)
    assert (p["segments"] == torch.arange(4)).all()
    flat = clean.positions[:, 0] * 16 + clean.positions[:, 1]
    assert flat.unique().numel() == len(clean)
    assert torch.equal(clean.counts, torch.bincount(clean.source[clean.source >= 0], minlength=len(clean)))
    # the authors' whole-frame clustering counts every selected token twice
    assert int(faithful.counts.sum()) == 64 + int(p["chosen"].sum())


def test_sink_score_is_taken_per_segment_like_the_authors():
    tokens = make_tokens(5, 6, 3, 3, 8)
    seen = []

    def scorer(attn):
        seen.append(attn.shape[0])
        return torch.zeros(attn.shape[1])

    hooks = SinkHooks(torch.zeros(9), mu_s=0.02, scorer=scorer)
    seg = FlashVid().plan(tokens, 0.3, hooks)["segments"]
    assert seen == torch.bincount(seg).tolist()
    seen.clear()
    FlashVid(segment_sink_score=False).plan(tokens, 0.3, hooks)
    assert seen == []


def test_planted_sink_picked_by_adts_and_banned_by_stop():
    video, sink, obj = planted_sink_tokens(32, 14, 14, 16, seed=0)
    x = video.features
    assert ((x[:, sink] * x.mean(1)).sum(-1) > 0).all()  # the sink's event relevance e is positive
    fv = FlashVid()
    stop = get_pruner("flashvid", stop=True)
    assert stop.mu == (0.02, 0.0)
    base_plan, stop_plan = fv.plan(video, 0.15), fv.plan(video, 0.15, stop.hooks(video))
    assert base_plan["chosen"][:, sink].all(), "ADTS picks the sink in every frame"
    assert not stop_plan["chosen"][:, sink].any(), "a - 0.02 s is negative there: never picked"
    base, pruned = fv(video, 0.15), stop(video, 0.15)
    for out in (base, pruned):  # the moving object is picked in every frame either way
        kept = {(int(f), int(p)) for f, p in out.positions}
        assert {(t, p) for t, p in enumerate(obj)} <= kept
    assert abs(len(pruned) - len(base)) <= 32


@pytest.mark.parametrize("stop", [False, True])
def test_dtype_and_device_kept(stop):
    tokens = make_tokens(2, 5, 4, 4, 8, dtype=torch.bfloat16)
    out = get_pruner("flashvid", stop=stop)(tokens, 0.25)
    assert out.features.dtype == torch.bfloat16 and out.features.device == tokens.features.device
    assert torch.isfinite(out.features.float()).all()
