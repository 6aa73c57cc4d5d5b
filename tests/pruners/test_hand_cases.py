"""Small cases worked out on paper, one per pruner, and the sink score."""

import math

import torch

from stopcli.pruners import FastVID, HoliTom, SToP, VisionZip, VisualTokens, get_pruner, sink_score
from stopcli.pruners.holitom import best_windows, similar_run_counts


def test_sink_score_is_minmax_of_powered_temporal_mean():
    attn = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.2, 0.5]])  # mean over frames: 0.2, 0.2, 0.6
    s = sink_score(attn, gamma=1.1)
    lo, hi = 0.2 ** 1.1, 0.6 ** 1.1
    assert torch.allclose(s, torch.tensor([0.0, 0.0, 1.0]))
    s2 = sink_score(torch.tensor([[0.2, 0.4, 0.6]]), gamma=1.1)
    assert math.isclose(float(s2[1]), (0.4 ** 1.1 - lo) / (hi - lo), rel_tol=1e-5)


def test_uniform_picks_the_middle_of_each_stride():
    x = torch.arange(8.0).reshape(1, 4, 2)
    out = get_pruner("uniform")(VisualTokens(x, torch.zeros(1, 4), (2, 2)), 0.5)
    assert out.positions.tolist() == [[0, 1], [0, 3]]


def test_visionzip_one_dominant_one_contextual():
    # 2x2 frame, keep 0.5: n = 2, d = floor(2 * 54/64) = 1, c = 1.
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]])
    attn = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    out = VisionZip()(VisualTokens(x, attn, (2, 2)), 0.5)
    # dominant: position 1; remaining [0, 2, 3], one target at index 0 (position 0) absorbing 2 and 3:
    # contextual = x0 + mean(x2, x3) = [1, 0] + [3, 1]
    assert out.positions.tolist() == [[0, 1], [0, 0]]
    assert torch.equal(out.features, torch.tensor([[0.0, 1.0], [4.0, 1.0]]))
    assert out.counts.tolist() == [1, 3]
    assert out.source.tolist() == [[1, 0, 1, 1]]


def test_visionzip_sink_skip_moves_targets_off_sinks_without_duplicates():
    vz = VisionZip(sink_positions=3)
    score = torch.zeros(20)
    score[[0, 5, 6]] = 1.0  # sinks at grid positions 0, 5, 6
    from stopcli.pruners import SinkHooks
    hooks = SinkHooks(score, mu_s=0.03, side_tricks=True)
    # remaining 12, c = 3 -> stride 4: targets 0, 4, 8; 0 is a "sink" index -> 1
    assert vz.targets(12, 3, hooks).tolist() == [1, 4, 8]
    # stride 5: targets 0, 5, 10 -> 0 -> 1, 5 -> 7 (6 is a sink too), 10 stays
    assert vz.targets(15, 3, hooks).tolist() == [1, 7, 10]
    assert vz.targets(15, 3, SinkHooks()).tolist() == [0, 5, 10]


def test_holitom_two_frames_one_static_position():
    # position 0 identical in both frames (static), position 1 changes (cos = 0).
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    attn = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    out = HoliTom()(VisualTokens(x, attn, (1, 2)), 0.5)
    # one window [0, 1], R = 1, keep' = 0.5 * 4 / 3; static {0}: round(1 * 2/3) = 1 token;
    # dynamic: ceil(1 * 2/3) = 1 per frame.
    assert out.positions.tolist() == [[0, 0], [0, 1], [1, 1]]
    assert torch.equal(out.features, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    assert out.counts.tolist() == [2, 1, 1]
    assert out.source.tolist() == [[0, 1], [0, 2]]


def test_holitom_window_dp_on_a_table():
    # 4 frames, 3 positions; True = similar between frame t and t+1.
    similar = torch.tensor([[True, True, False], [True, True, True], [False, False, True]])
    counts = similar_run_counts(similar)
    assert counts.tolist() == [[2, 0, 0], [3, 2, 0], [1, 1, 0]]
    # [0, 2] saves 2 * 2 = 4; [3] alone. [0,1]+[2,3] saves 2 + 1 = 3; [0..3] saves 0.
    windows, saved = best_windows(counts, 4)
    assert windows == [(0, 2), (3, 3)] and saved == 4


def test_fastvid_single_frame_density_centre():
    # 6 tokens, keep 0.5: n = 3, context floor(1.2) = 1, salient 2 (positions 0 and 4 by attention).
    x = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-9.0, 9.0], [0.0, 5.0]]])
    attn = torch.tensor([[0.9, 0.1, 0.1, 0.1, 0.8, 0.1]])
    out = FastVID()(VisualTokens(x, attn, (2, 3)), 0.5)
    # Rest = positions 1, 2, 3, 5. Densest: position 1 (ties with 2 and 3 go to the lower index), delta = max
    # distance -> centre. All four join it: w = max(1/5, 0.6); merged = 0.6 [1, 0] + 0.4 mean = [0.9, 0.5].
    assert out.positions.tolist() == [[0, 0], [0, 1], [0, 4]]
    assert torch.allclose(out.features[1], torch.tensor([0.9, 0.5]))
    assert out.counts.tolist() == [1, 4, 1]
    assert out.source.tolist() == [[0, 1, 1, 1, 2, 1]]


def test_fastvid_anchors_are_counted_from_the_segment_end():
    fv = FastVID(anchor_stride=4)
    seg = torch.tensor([0] * 6 + [1])  # a 6-frame segment and a 1-frame segment
    end, length, m, penalty = fv.anchors(seg, n_c=4, f=50)
    assert end.tolist() == [5] * 6 + [6] and length.tolist() == [6] * 6 + [1]
    # A = ceil(6/4) = 2 anchors (frames 5 and 1), m = floor(4 * 6 / 2) = 12 each; the lone frame gets n_c.
    assert m.tolist() == [0, 12, 0, 0, 0, 12, 4]
    assert penalty.tolist() == [2.0] * 6 + [1.0]


def test_get_pruner_defaults_and_names():
    p = get_pruner("holitom", stop=True)
    assert isinstance(p, SToP) and p.mu == (0.04, 0.07) and p.name == "holitom+stop"
    assert get_pruner("visionzip", stop=True).mu == (0.03, 0.0)
    assert get_pruner("fastvid", stop=True, mu_s=0.05).mu == (0.05, 0.0)
    assert get_pruner("holitom", tau=0.65).tau == 0.65


def test_authors_baseline_reproduces_their_mu_zero_side_tricks():
    from stopcli.pruners.planted import planted_sink_tokens

    video = planted_sink_tokens()[0]
    # make grid position 0 the strongest sink: the authors' VisionZip baseline moves its first target off index 0
    attn = video.attention.clone()
    attn[:, 0] = 0.05
    video = VisualTokens(video.features, attn, video.grid)
    clean, authors = get_pruner("visionzip")(video, 0.1), get_pruner("visionzip", authors_baseline=True)(video, 0.1)
    assert len(clean) == len(authors) and not torch.equal(clean.positions, authors.positions)
    assert get_pruner("visionzip", authors_baseline=True).mu == (0.0, 0.0)
    # FastVID's baseline is clean in the authors' code as well
    a, b = get_pruner("fastvid")(video, 0.1), get_pruner("fastvid", authors_baseline=True)(video, 0.1)
    assert torch.equal(a.positions, b.positions) and torch.equal(a.features, b.features)
