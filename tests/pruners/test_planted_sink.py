"""A planted sink: one corner position with the highest attention in every frame and an uninformative feature
that barely changes. Base pruners keep it; SToP at the authors' default mu drops it (or merges it over time)."""

import pytest
import torch

from stopcli.pruners import VisualTokens, get_pruner, sink_score

T, H, W, D = 8, 14, 14, 16
S = H * W
SINK = 13  # top-right corner


def planted_video(seed=0):
    g = torch.Generator().manual_seed(seed)
    scene = torch.randn(S, D, generator=g)
    feats = scene[None] + 0.05 * torch.randn(T, S, D, generator=g)  # near-static background
    obj = 3.0 * torch.randn(D, generator=g)
    for t in range(T):  # an object moving along the middle row
        feats[t, 7 * W + 3 + t] = obj + 0.3 * torch.randn(D, generator=g)
    # Sink feature: uninformative and large-norm (ViT sinks carry massive activations), alternating between two directions with cosine 0.76: not static for HoliTom's 0.8,
    # static once STTP adds mu_t = 0.07.
    u = torch.randn(D, generator=g)
    u /= u.norm()
    v = torch.randn(D, generator=g)
    v -= (v @ u) * u
    v /= v.norm()
    u2 = 0.76 * u + (1 - 0.76 ** 2) ** 0.5 * v
    for t in range(T):
        feats[t, SINK] = 8.0 * (u if t % 2 == 0 else u2)
    # Attention on SigLIP's scale (~1/729 per patch); the sink draws ~15x that in every frame.
    attn = (0.5 + torch.rand(T, S, generator=g)) / 729
    attn[:, SINK] = 0.02
    for t in range(T):
        attn[t, 7 * W + 3 + t] = 0.012  # the object is salient but less than the sink
    return VisualTokens(feats, attn, (H, W))


def kept_at(out, position):
    return (out.positions[:, 1] == position) & (out.counts == 1)


def test_sink_score_finds_the_planted_position():
    s = sink_score(planted_video().attention)
    assert int(s.argmax()) == SINK and float(s[SINK]) == 1.0
    assert float(s[torch.arange(S) != SINK].max()) < 0.2


@pytest.mark.parametrize("name", ["visionzip", "fastvid"])
def test_spatial_pruners_keep_the_sink_and_stop_drops_it(name):
    video = planted_video()
    base = get_pruner(name)(video, 0.15)
    stop = get_pruner(name, stop=True)(video, 0.15)
    assert kept_at(base, SINK).sum() == T, "the base pruner keeps the sink in every frame"
    assert not (stop.positions[:, 1] == SINK).any(), "SToP must not keep the sink as a token of its own"
    assert len(stop) == len(base)
    # the moving object survives in both
    for out in (base, stop):
        obj = {(int(f), int(p)) for f, p in out.positions if p // W == 7}
        assert {(t, 7 * W + 3 + t) for t in range(T)} <= obj


def test_holitom_stop_merges_the_sink_over_time():
    video = planted_video()
    base = get_pruner("holitom")(video, 0.15)
    stop = get_pruner("holitom", stop=True)(video, 0.15)
    # Base: the sink is dynamic and, having the top attention, kept in every frame.
    assert kept_at(base, SINK).sum() == T
    # SToP: STTP judges it static, so all its frames go into one token, and no frame keeps it alone.
    assert kept_at(stop, SINK).sum() == 0
    assert stop.source[:, SINK].unique().numel() == 1
    assert int(stop.source[0, SINK]) >= 0
    assert len(stop) < len(base)  # the authors' behaviour: STTP makes more static tokens than the budget assumed


def test_stop_spends_the_freed_budget_on_real_tokens():
    video = planted_video()
    base = get_pruner("visionzip")(video, 0.15)
    stop = get_pruner("visionzip", stop=True)(video, 0.15)
    attn_kept = lambda out: set(map(tuple, out.positions.tolist()))  # noqa: E731
    gained = attn_kept(stop) - attn_kept(base)
    assert len(gained) >= T and all(p != SINK for _, p in gained)
