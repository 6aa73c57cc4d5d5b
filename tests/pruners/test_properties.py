"""Properties every pruner must hold, over random shapes, keeps and contents (hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stopcli.pruners import PRUNERS, FastVID, HoliTom, SToP, VisualTokens, VisionZip, get_pruner
from stopcli.pruners.basic import NoPruning, Uniform


def make_tokens(seed, t, h, w, d, dtype=torch.float32, keys=True, static_frac=0.5):
    g = torch.Generator().manual_seed(seed)
    s = h * w
    scene = torch.randn(1, s, d, generator=g)
    noise = torch.randn(t, s, d, generator=g)
    is_static = torch.rand(1, s, 1, generator=g) < static_frac
    # A mix of near-static and changing positions so that HoliTom finds windows and FastVID finds segments.
    feats = torch.where(is_static, scene + 0.1 * noise, noise)
    attn = torch.rand(t, s, generator=g) / s
    k = torch.randn(t, s, 4, generator=g) if keys else None
    return VisualTokens(feats.to(dtype), attn.to(dtype), (h, w), keys=k)


def expected_len(pruner, tokens, keep):
    base = pruner.base if isinstance(pruner, SToP) else pruner
    t, s = tokens.num_frames, tokens.tokens_per_frame
    if isinstance(base, NoPruning | Uniform | VisionZip):
        return base.budget(t, s, keep)
    if isinstance(base, FastVID):
        return base.budget(tokens, keep)
    return base.budget(tokens, keep, pruner.hooks(tokens) if isinstance(pruner, SToP) else None)


shapes = dict(seed=st.integers(0, 10_000), t=st.integers(1, 7), h=st.integers(1, 5), w=st.integers(1, 5),
              d=st.integers(1, 9), keep=st.floats(0.01, 1.0), stop=st.booleans())


@pytest.mark.parametrize("name", list(PRUNERS))
@settings(max_examples=40, deadline=None)
@given(**shapes)
def test_budget_positions_and_bookkeeping(name, seed, t, h, w, d, keep, stop):
    tokens = make_tokens(seed, t, h, w, d)
    pruner = get_pruner(name, stop=stop)
    out = pruner(tokens, keep)
    n = len(out)
    s = h * w
    assert n == expected_len(pruner, tokens, keep)
    assert n >= 1
    assert out.features.shape == (n, d) and out.features.dtype == tokens.features.dtype
    assert out.positions.shape == (n, 2) and out.positions.dtype == torch.long
    frame, pos = out.positions[:, 0], out.positions[:, 1]
    assert ((frame >= 0) & (frame < t)).all() and ((pos >= 0) & (pos < s)).all()
    flat = frame * s + pos
    assert flat.unique().numel() == n, "two output tokens claim the same (frame, position)"
    assert (frame[1:] >= frame[:-1]).all(), "frames must never go back in the output order"
    # Every output token stands for at least one input token and the map points at valid outputs.
    assert out.source.shape == (t, s)
    assert ((out.source >= -1) & (out.source < n)).all()
    assert torch.isin(torch.arange(n), out.source.flatten()).all()
    assert (out.counts >= 1).all()
    if name != "fastvid":  # FastVID's tokens can feed several anchors, the map records only the nearest one
        assert torch.equal(out.counts, torch.bincount(out.source[out.source >= 0], minlength=n))
    # A kept token keeps its own feature where the method does not merge.
    single = out.counts == 1
    if name in ("none", "uniform"):
        assert torch.equal(out.features, tokens.features[frame, pos])
    elif name in ("visionzip", "holitom", "prunevid", "flashvid"):
        assert torch.allclose(out.features[single], tokens.features[frame[single], pos[single]])


@pytest.mark.parametrize("name", ["none", "uniform", "fastvid", "flashvid"])
def test_raster_order(name):
    tokens = make_tokens(3, 6, 4, 5, 8)
    out = get_pruner(name)(tokens, 0.3)
    flat = out.positions[:, 0] * 20 + out.positions[:, 1]
    assert (flat[1:] > flat[:-1]).all()


def test_visionzip_order_is_dominant_then_contextual_per_frame():
    tokens = make_tokens(4, 3, 6, 6, 8)
    vz = VisionZip()
    out = vz(tokens, 0.3)
    n = vz.budget_per_frame(36, 0.3)
    d = int(n * 54 / 64)
    pos = out.positions[:, 1].reshape(3, n)
    assert (out.positions[:, 0].reshape(3, n) == torch.arange(3)[:, None]).all()
    assert (pos[:, 1:d] > pos[:, : d - 1]).all() and (pos[:, d + 1:] > pos[:, d:-1]).all()
    assert (out.counts.reshape(3, n)[:, :d] == 1).all()


def test_holitom_order_static_first_in_each_window():
    tokens = make_tokens(5, 6, 4, 4, 8, static_frac=0.7)
    out = HoliTom()(tokens, 0.3)
    merged = out.counts > 1
    assert merged.any()
    plan = HoliTom().plan(tokens, 0.3, SToP(HoliTom(), 0, 0).hooks(tokens))
    for b, e in plan["windows"]:
        in_win = (out.positions[:, 0] >= b) & (out.positions[:, 0] <= e)
        idx = in_win.nonzero().flatten()
        kinds = merged[idx]
        # static (merged over the window) tokens come first, then frame-by-frame dynamic ones
        if kinds.any():
            first_dynamic = int((~kinds).nonzero()[0]) if (~kinds).any() else len(kinds)
            assert kinds[:first_dynamic].all() and not kinds[first_dynamic:].any()


@pytest.mark.parametrize("name", ["visionzip", "fastvid", "holitom", "prunevid", "flashvid"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.integers(1, 6), keep=st.floats(0.05, 1.0))
def test_stop_with_zero_mu_is_the_base_bit_for_bit(name, seed, t, keep):
    tokens = make_tokens(seed, t, 4, 4, 6)
    base = get_pruner(name)
    a, b = base(tokens, keep), SToP(base, mu_s=0.0, mu_t=0.0)(tokens, keep)
    for field in ("features", "positions", "counts", "source"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("name", list(PRUNERS))
def test_deterministic_and_ties_go_to_lower_index(name):
    tokens = make_tokens(11, 4, 4, 4, 8)
    flat = VisualTokens(tokens.features, torch.full((4, 16), 1 / 16), (4, 4))
    p = get_pruner(name, stop=True)
    a, b = p(flat, 0.25), p(flat, 0.25)
    assert torch.equal(a.features, b.features) and torch.equal(a.positions, b.positions)
    if name == "visionzip":  # equal attention: the dominant tokens are the first positions of each frame
        d = int(VisionZip().budget_per_frame(16, 0.25) * 54 / 64)
        assert torch.equal(a.positions[:d, 1], torch.arange(d))


@pytest.mark.parametrize("name", list(PRUNERS))
@pytest.mark.parametrize("stop", [False, True])
def test_bfloat16_in_bfloat16_out(name, stop):
    tokens = make_tokens(2, 4, 4, 4, 8, dtype=torch.bfloat16)
    out = get_pruner(name, stop=stop)(tokens, 0.25)
    assert out.features.dtype == torch.bfloat16
    ref = get_pruner(name, stop=stop)(make_tokens(2, 4, 4, 4, 8), 0.25)
    assert len(out) == len(ref)


def test_bad_keep_and_shapes_are_refused():
    tokens = make_tokens(0, 2, 2, 2, 3)
    for keep in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="keep"):
            get_pruner("visionzip")(tokens, keep)
    with pytest.raises(ValueError, match="grid"):
        VisualTokens(torch.zeros(2, 4, 3), torch.zeros(2, 4), (3, 3))
    with pytest.raises(ValueError, match="attention"):
        VisualTokens(torch.zeros(2, 4, 3), torch.zeros(2, 5), (2, 2))
    with pytest.raises(KeyError, match="unknown pruner"):
        get_pruner("tome")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(PRUNERS))
def test_cuda_matches_cpu(name):
    tokens = make_tokens(1, 6, 4, 4, 8)
    cuda = VisualTokens(tokens.features.cuda(), tokens.attention.cuda(), (4, 4), keys=tokens.keys.cuda())
    a, b = get_pruner(name, stop=True)(tokens, 0.3), get_pruner(name, stop=True)(cuda, 0.3)
    assert b.features.device.type == "cuda"
    assert torch.equal(a.positions, b.positions.cpu())
