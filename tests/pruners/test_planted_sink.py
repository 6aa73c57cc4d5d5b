"""A planted sink: one corner position with the highest attention in every frame and an uninformative feature
that barely changes. Base pruners keep it; SToP at the authors' default mu drops it (or merges it over time)."""

import pytest
import torch

from stopcli.pruners import get_pruner, sink_score
from stopcli.pruners.planted import planted_sink_tokens

T = 8


def planted_video(seed=0):
    return planted_sink_tokens(T, 14, 14, 16, seed=seed)


def kept_at(out, position):
    return (out.positions[:, 1] == position) & (out.counts == 1)


def test_sink_score_finds_the_planted_position():
    video, sink, _ = planted_video()
    s = sink_score(video.attention)
    assert int(s.argmax()) == sink and float(s[sink]) == 1.0
    assert float(s[torch.arange(196) != sink].max()) < 0.2


@pytest.mark.parametrize("name", ["visionzip", "fastvid"])
def test_spatial_pruners_keep_the_sink_and_stop_drops_it(name):
    video, sink, obj = planted_video()
    base = get_pruner(name)(video, 0.15)
    stop = get_pruner(name, stop=True)(video, 0.15)
    assert kept_at(base, sink).sum() == T, "the base pruner keeps the sink in every frame"
    assert not (stop.positions[:, 1] == sink).any(), "SToP must not keep the sink as a token of its own"
    assert len(stop) == len(base)
    for out in (base, stop):  # the moving object survives in both
        kept = {(int(f), int(p)) for f, p in out.positions}
        assert {(t, p) for t, p in enumerate(obj)} <= kept


def test_holitom_stop_merges_the_sink_over_time():
    video, sink, _ = planted_video()
    base = get_pruner("holitom")(video, 0.15)
    stop = get_pruner("holitom", stop=True)(video, 0.15)
    assert kept_at(base, sink).sum() == T  # dynamic with the top attention: kept in every frame
    assert kept_at(stop, sink).sum() == 0  # STTP judges it static: no frame keeps it alone...
    assert stop.source[:, sink].unique().numel() == 1 and int(stop.source[0, sink]) >= 0  # ...one merged token
    assert len(stop) < len(base)  # the authors' behaviour: more static tokens than the budget assumed


def test_stop_spends_the_freed_budget_on_real_tokens():
    video, sink, _ = planted_video()
    base = get_pruner("visionzip")(video, 0.15)
    stop = get_pruner("visionzip", stop=True)(video, 0.15)
    kept = lambda out: set(map(tuple, out.positions.tolist()))  # noqa: E731
    gained = kept(stop) - kept(base)
    assert len(gained) >= T and all(p != sink for _, p in gained)
