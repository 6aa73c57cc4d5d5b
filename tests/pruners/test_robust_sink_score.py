"""The robust and gated sink scores: hand-computed cases, properties, and SToP built on them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stopcli.pruners import (SToP, get_pruner, gated_sink_score, robust_sink_score, sink_positions,
                             sink_score)
from stopcli.pruners.planted import planted_sink_tokens
from stopcli.pruners.stop import SINK_RATIO
from stopcli.pruners.types import VisualTokens

BASE = 1 / 729  # our adapters' scale: mean attention per token


def flat(t=8, s=9):
    return torch.full((t, s), BASE)


def test_flat_attention_scores_zero_everywhere():
    assert robust_sink_score(flat()).tolist() == [0.0] * 9
    assert gated_sink_score(flat()).tolist() == [0.0] * 9


def test_one_planted_outlier_scores_one_there_and_zero_elsewhere():
    a = flat()
    a[:, 4] = 10 * BASE  # every frame, 10x the median
    assert robust_sink_score(a).tolist() == [0, 0, 0, 0, 1.0, 0, 0, 0, 0]
    assert gated_sink_score(a).tolist() == [0, 0, 0, 0, 1.0, 0, 0, 0, 0]  # min-max of a flat rest: 0 there too


def test_a_position_high_in_one_frame_only_is_not_a_sink():
    a = flat()
    a[3, 2] = 50 * BASE  # its temporal mean is 7.1x the others' (min-max gives it s = 1)
    assert float(sink_score(a)[2]) == 1.0
    assert not sink_positions(a).any()
    assert robust_sink_score(a).abs().sum() == 0 and gated_sink_score(a).abs().sum() == 0


def test_persistence_is_the_share_of_frames_in_which_a_position_is_an_outlier():
    a = flat()
    a[:6, 1] = 8 * BASE  # 6 of 8 frames = 0.75: a sink
    a[:5, 7] = 8 * BASE  # 5 of 8: not one
    assert sink_positions(a).nonzero().flatten().tolist() == [1]


def test_the_outlier_test_is_against_each_frames_median():
    a = flat()
    a[:, 0] = SINK_RATIO * BASE
    a[:, 1] = 0.99 * SINK_RATIO * BASE
    assert sink_positions(a).tolist() == [True] + [False] * 8
    # a frame whose attention is all twice as high leaves the test unchanged
    a[2] *= 2
    assert sink_positions(a).tolist() == [True] + [False] * 8


def test_two_sinks_score_what_min_max_gives_them_when_the_top_is_a_sink():
    a = flat(t=4, s=6)
    a[:, 0], a[:, 5] = 20 * BASE, 10 * BASE
    a[:, 2] = 3 * BASE  # above the rest but no sink: min-max scores it, robust does not
    mm, rb = sink_score(a), robust_sink_score(a)
    assert torch.allclose(rb[[0, 5]], mm[[0, 5]]) and rb[0] == 1.0
    assert mm[2] > 0 and rb[2] == 0 and rb[[1, 3, 4]].abs().sum() == 0
    assert torch.equal(gated_sink_score(a), mm)


def test_robust_normalises_by_the_strongest_sink_not_the_most_attended_position():
    a = flat(t=4, s=5)
    a[:, 0] = 8 * BASE  # the only sink
    a[0, 3] = 100 * BASE  # higher on average, in one frame only
    rb = robust_sink_score(a)
    assert rb.tolist() == [1.0, 0, 0, 0, 0]


attention = st.integers(1, 6).flatmap(lambda t: st.integers(2, 30).flatmap(lambda s: st.lists(
    st.floats(0.0, 0.05, allow_nan=False), min_size=t * s, max_size=t * s).map(
    lambda v: torch.tensor(v, dtype=torch.float32).reshape(t, s))))


@settings(max_examples=60, deadline=None)
@given(attention, st.floats(0.01, 100.0))
def test_robust_score_is_bounded_zero_off_the_sinks_and_free_of_the_scale(a, c):
    s, sinks = robust_sink_score(a), sink_positions(a)
    assert s.shape == (a.shape[1],) and bool(((s >= 0) & (s <= 1)).all())
    assert bool((s[~sinks] == 0).all())
    assert torch.equal(sink_positions(a * c), sinks)
    assert torch.allclose(robust_sink_score(a * c), s, atol=1e-5)
    g = gated_sink_score(a)
    assert torch.equal(g, sink_score(a)) if sinks.any() else not g.any()


@pytest.mark.parametrize("name", ["visionzip", "fastvid", "holitom"])
@pytest.mark.parametrize("score", ["robust", "gated"])
def test_without_sinks_stop_returns_what_the_base_pruner_returns(name, score):
    g = torch.Generator().manual_seed(3)
    t, s = 6, 36
    feats = torch.randn(t, s, 8, generator=g)
    attn = (0.5 + torch.rand(t, s, generator=g)) / 729 * 4  # up to 3x the median: no sink
    tokens = VisualTokens(feats, attn, (6, 6))
    assert not sink_positions(attn).any()
    for keep in (0.1, 0.25):
        a, b = get_pruner(name)(tokens, keep), get_pruner(name, stop=True, sink_score=score)(tokens, keep)
        assert torch.equal(a.features, b.features) and torch.equal(a.source, b.source)
        c = get_pruner(name, stop=True)(tokens, keep)  # min-max: the most attended position becomes a sink
        assert not torch.equal(a.source, c.source)


@pytest.mark.parametrize("name", ["visionzip", "fastvid", "holitom"])
def test_on_the_planted_sink_robust_stop_treats_the_sink_as_min_max_stop_does(name):
    video, sink, obj = planted_sink_tokens(8, 14, 14, 16, seed=0)
    assert sink_positions(video.attention).nonzero().flatten().tolist() == [sink]
    for keep in (0.1, 0.25):
        base = get_pruner(name)(video, keep)
        mm = get_pruner(name, stop=True)(video, keep)
        rb = get_pruner(name, stop=True, sink_score="robust")(video, keep)
        gt = get_pruner(name, stop=True, sink_score="gated")(video, keep)
        own = lambda out: int(((out.positions[:, 1] == sink) & (out.counts == 1)).sum())  # noqa: E731
        assert own(base) == 8 and own(mm) == own(rb) == 0  # kept in every frame by the base, by neither SToP
        assert torch.equal(mm.source[:, sink] >= 0, rb.source[:, sink] >= 0)  # merged (or dropped) alike
        assert torch.equal(gt.source, mm.source) and torch.equal(gt.features, mm.features)
        kept = {(int(f), int(p)) for f, p in rb.positions}
        assert {(t, p) for t, p in enumerate(obj)} <= kept  # the moving object survives


def test_score_names_are_checked():
    from stopcli.pruners import VisionZip

    with pytest.raises(ValueError, match="unknown sink score 'nope'"):
        SToP(VisionZip(), score="nope")
    assert get_pruner("holitom", stop=True, sink_score="robust").score == "robust"


@pytest.mark.parametrize("static", [False, True])
def test_several_8x_sinks_are_dropped_by_robust_stop_as_by_min_max_stop(static):
    from stopcli.pruners.planted import planted_sinks_tokens

    video, sinks, obj = planted_sinks_tokens(8, strength=8.0, static_attention=static, seed=1)
    assert sorted(sink_positions(video.attention).nonzero().flatten().tolist()) == sorted(sinks)
    on_sinks = lambda out: int(torch.isin(out.positions[:, 1], torch.tensor(sinks)).sum())  # noqa: E731
    for name in ("visionzip", "fastvid", "holitom"):
        for keep in (0.1, 0.25):
            base = get_pruner(name)(video, keep)
            mm = get_pruner(name, stop=True)(video, keep)
            rb = get_pruner(name, stop=True, sink_score="robust")(video, keep)
            gt = get_pruner(name, stop=True, sink_score="gated")(video, keep)
            alone = lambda out: int((torch.isin(out.positions[:, 1], torch.tensor(sinks)) &  # noqa: E731
                                     (out.counts == 1)).sum())
            assert alone(base) == 3 * 8 and alone(mm) == alone(rb) == 0, (name, keep)
            assert on_sinks(rb) <= on_sinks(base) and len(rb) == len(mm)
            assert torch.equal(gt.source, mm.source)  # gated: min-max itself wherever there is a sink
