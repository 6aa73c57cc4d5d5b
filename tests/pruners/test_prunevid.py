"""PruneVid: window refinement and the static/dynamic split worked out on paper, the exact budget rule, one-frame
videos, and our own (untuned) sink hooks, which the authors' code does not have."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stopcli.pruners import SinkHooks, SToP, VisualTokens, get_pruner
from stopcli.pruners.planted import planted_sink_tokens
from stopcli.pruners.prunevid import PruneVid, refine_labels

from test_properties import make_tokens


def test_refine_labels_on_paper():
    # label 0: runs [0-1] and [5] -> keeps [0-1]; label 1: two runs of 3 -> keeps both; label 3: one frame -> freed.
    # Frame 5: left run (label 1) has 3 frames, right run (label 2) 2 -> joins label 1. Frame 8: left run
    # (label 2) 2 frames, right run (label 1) 3 -> label 1.
    assert refine_labels([0, 0, 1, 1, 1, 0, 2, 2, 3, 1, 1, 1]) == [0, 0, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1]
    assert refine_labels([1, 1, 2, 2, 3]) == [1, 1, 2, 2, 2]  # tie-free: the only neighbour
    assert refine_labels([5, 5, 7, 2, 2]) == [5, 5, 5, 2, 2]  # equal neighbours: the left one
    assert refine_labels([3, 4, 3, 4]) == [0, 0, 0, 0]  # nothing survives: one window labelled 0


def test_two_scenes_give_two_windows():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(9, 8, generator=g), torch.randn(9, 8, generator=g)
    x = torch.stack([a] * 4 + [b] * 4) + 0.01 * torch.randn(8, 9, 8, generator=g)
    tokens = VisualTokens(x, torch.rand(8, 9, generator=g), (3, 3))
    assert PruneVid().windows(tokens) == [(0, 3), (4, 7)]  # floor(8 / 4) = 2 frame clusters


def _two_frames():
    # positions: 0 identical (cos 1), 1 orthogonal (cos 0), 2 cos 0.9, 3 cos 0.7
    c, d = 0.9, 0.7
    x = torch.tensor([[[1.0, 0], [1, 0], [1, 0], [1, 0]],
                      [[1.0, 0], [0, 1], [c, (1 - c * c) ** 0.5], [d, (1 - d * d) ** 0.5]]])
    return VisualTokens(x, torch.full((2, 4), 0.25), (2, 2))


def test_static_dynamic_split_on_paper():
    tokens = _two_frames()
    out = PruneVid()(tokens, 0.3)
    # One window (T = 2 -> 1 frame cluster). Static: 0 and 2 (mean cosine over the window's pair > 0.8),
    # each the mean of its two frames; dynamic: 1 and 3 in each frame. Sets of <= 14 tokens are kept whole.
    assert out.positions.tolist() == [[0, 0], [0, 2], [0, 1], [0, 3], [1, 1], [1, 3]]
    assert torch.allclose(out.features[1], (tokens.features[0, 2] + tokens.features[1, 2]) / 2)
    assert torch.equal(out.features[2:], tokens.features[[0, 0, 1, 1], [1, 3, 1, 3]])
    assert out.counts.tolist() == [2, 2, 1, 1, 1, 1]
    assert out.source.tolist() == [[0, 2, 1, 3], [0, 4, 1, 5]]


def test_sttp_hook_makes_a_sink_position_static():
    tokens = _two_frames()
    hooks = SinkHooks(torch.tensor([0.0, 0, 0, 1]), mu_t=0.15)  # 0.7 + 0.15 > 0.8 at position 3
    out = PruneVid()(tokens, 0.3, hooks)
    assert out.positions.tolist() == [[0, 0], [0, 2], [0, 3], [0, 1], [1, 1]]
    assert out.counts.tolist() == [2, 2, 2, 1, 1]


def test_clustering_count_and_plain_means_on_paper():
    tokens = _two_frames()
    pv = PruneVid(cluster_above=1)  # force clustering on this tiny grid
    p = pv.plan(tokens, 0.3)
    # r_w = 0.3 * 4 * 2 / (2 + 2 * 2) + 0.005 = 0.405: int(2 * 0.405) = 0 -> at least one cluster per set
    assert abs(float(p["r_w"][0]) - 0.405) < 1e-6
    assert p["k_static"].tolist() == [1] and p["k_dynamic"].tolist() == [1, 1]
    out = pv(tokens, 0.3)
    static_mean = (tokens.features[:, [0, 2]].mean(0)).mean(0)  # plain mean of the two window means
    assert torch.allclose(out.features[0], static_mean)
    assert torch.allclose(out.features[2], tokens.features[1, [1, 3]].mean(0))
    assert out.counts.tolist() == [4, 2, 2]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.integers(1, 10), h=st.integers(1, 5), w=st.integers(1, 5),
       keep=st.floats(0.01, 1.0), above=st.sampled_from([0, 3, 14]), mu_t=st.sampled_from([0.0, 0.1]))
def test_kept_count_follows_the_rule(seed, t, h, w, keep, above, mu_t):
    tokens = make_tokens(seed, t, h, w, 6, static_frac=0.7)
    s = h * w
    pv = PruneVid(cluster_above=above)
    hooks = SToP(pv, mu_s=0.0, mu_t=mu_t).hooks(tokens)
    p = pv.plan(tokens, keep, hooks)
    windows = p["windows"]
    assert windows[0][0] == 0 and windows[-1][1] == t - 1
    assert all(b2 == e1 + 1 for (_, e1), (b2, _) in itertools.pairwise(windows))
    assert t == 1 or all(e > b for b, e in windows), "refinement leaves no one-frame window"
    expect = 0
    for (b, e), static in zip(windows, p["static"]):
        width, n_s = e - b + 1, int(static.sum())
        r_w = np.float32(keep * s) * np.float32(width) / np.float32(n_s + (s - n_s) * width) + np.float32(0.005)
        r_w = min(r_w, np.float32(1.0))
        for n in [n_s] + [s - n_s] * width:
            expect += max(1, int(np.float32(n) * r_w)) if n > above else n
    out = pv(tokens, keep, hooks)
    assert len(out) == expect == pv.budget(tokens, keep, hooks)


def test_one_frame_video_is_all_dynamic_without_nans():
    tokens = make_tokens(4, 1, 5, 5, 8)
    pv = PruneVid()
    p = pv.plan(tokens, 0.1)
    assert p["windows"] == [(0, 0)] and not p["static"].any()
    out = pv(tokens, 0.1)
    assert len(out) == max(1, int(25 * (0.1 * 25 / 25 + 0.005)))
    assert torch.isfinite(out.features).all() and (out.positions[:, 0] == 0).all()
    # the authors' 0/0 (NaN) is never static, whatever STTP adds
    assert not pv.plan(tokens, 0.1, SinkHooks(torch.ones(25), mu_t=1.0))["static"].any()


def test_stop_at_the_authors_mu_is_prunevid_itself():
    video, _, _ = planted_sink_tokens(8, 14, 14, 16, seed=1, sink_cos=0.5)
    base = get_pruner("prunevid")(video, 0.15)
    for wrapped in (get_pruner("prunevid", stop=True), get_pruner("prunevid", authors_baseline=True)):
        assert wrapped.mu == (0.0, 0.0)
        out = wrapped(video, 0.15)
        for field in ("features", "positions", "counts", "source"):
            assert torch.equal(getattr(out, field), getattr(base, field)), field


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_sink_kept_by_prunevid_merged_by_our_hooks(seed):
    # A sink that flips between two directions (cosine 0.5): dynamic in every window, alone in its small dynamic set.
    video, sink, _ = planted_sink_tokens(8, 14, 14, 16, seed=seed, sink_cos=0.5)
    base = get_pruner("prunevid")(video, 0.15)
    stop = get_pruner("prunevid", stop=True, mu_s=0.04, mu_t=0.1)(video, 0.15)
    alone = lambda out: ((out.positions[:, 1] == sink) & (out.counts == 1)).sum()
    assert alone(base) == 8, "PruneVid keeps the sink as a token of its own in every frame"
    assert alone(stop) == 0
    assert stop.source[:, sink].unique().numel() == 1  # STTP: one static token for the whole window
    assert len(stop) < len(base)


@pytest.mark.parametrize("stop", [False, True])
def test_dtype_and_device_kept(stop):
    tokens = make_tokens(2, 5, 4, 4, 8, dtype=torch.bfloat16)
    out = get_pruner("prunevid", stop=stop, mu_s=0.04 if stop else None, mu_t=0.07 if stop else None)(tokens, 0.25)
    assert out.features.dtype == torch.bfloat16 and out.features.device == tokens.features.device
