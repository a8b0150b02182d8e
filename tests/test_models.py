import numpy as np
import pytest
import torch

from ocrobin import models


def test_lstm2_seed_has_the_original_parameter_count():
    m = models.build("lstm2-seed")
    assert models.count_parameters(m) == 1001


def test_registry_lists_and_rejects_unknown():
    assert {"lstm2-seed", "msfcn"} <= set(models.architectures())
    with pytest.raises(KeyError, match="unknown architecture"):
        models.build("nope")


@pytest.mark.parametrize("arch", ["lstm2-seed", "msfcn"])
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (100, 31)])
def test_output_has_input_size(arch, shape):
    m = models.build(arch).eval()
    with torch.inference_mode():
        y = m(torch.rand(2, 1, *shape))
    assert y.shape == (2, 1, *shape)
    assert torch.isfinite(y).all()


def test_lstm2_per_image_bn_uses_each_images_statistics():
    m = models.build("lstm2-seed").eval()
    a, b = torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24) * 0.3
    with torch.inference_mode():
        together = m(torch.cat([a, b]))
        alone = torch.cat([m(a), m(b)])
    torch.testing.assert_close(together, alone)


def test_lstm2_bn_stats_argument_matches_per_image_mode():
    m = models.build("lstm2-seed").eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        f = m.features(x)
        stats = (f.mean((0, 2, 3)), f.var((0, 2, 3), unbiased=False))
        torch.testing.assert_close(m(x, bn_stats=stats), m(x), atol=1e-5, rtol=1e-4)


def test_normalize_page_stretches_faint_pages_to_full_contrast():
    rng = np.random.default_rng(0)
    g = np.full((200, 300), 0.62, np.float32)
    g[50:60, 20:280] = 0.52  # faint stroke: a tenth of the grey range
    g += rng.normal(0, 0.003, g.shape).astype(np.float32)
    before = g.copy()
    out = models.normalize_page(g, {"low": 0.5, "high": 99.5, "max_gain": 20})
    np.testing.assert_array_equal(g, before)  # input untouched
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert np.median(out[52:58, 30:270]) < 0.1 and np.median(out[100:, :]) > 0.85


def test_normalize_page_gain_is_capped_and_keeps_the_paper():
    rng = np.random.default_rng(1)
    g = np.clip(0.8 + rng.normal(0, 0.01, (256, 256)), 0, 1).astype(np.float32)  # blank paper, grain only
    out = models.normalize_page(g, {"low": 0.5, "high": 99.5, "max_gain": 4})
    assert np.std(out) == pytest.approx(4 * np.std(g), rel=0.05)
    assert np.percentile(out, 99.5) == pytest.approx(1.0, abs=1e-3)


def test_normalize_page_is_the_same_for_subsampled_percentiles(monkeypatch):
    rng = np.random.default_rng(2)
    g = rng.random((400, 500)).astype(np.float32) * 0.3 + 0.5
    monkeypatch.setattr(models, "PAGE_NORM_SAMPLE", 10_000)
    sub = models.normalize_page(g, models.PAGE_NORM)
    monkeypatch.setattr(models, "PAGE_NORM_SAMPLE", 10**9)
    full = models.normalize_page(g, models.PAGE_NORM)
    assert np.abs(sub - full).max() < 0.05


@pytest.mark.parametrize("bad", [{}, {"low": 1, "high": 99}, {"low": 50, "high": 10, "max_gain": 2},
                                 {"low": 1, "high": 99, "max_gain": 0.5}, {"low": "x", "high": 99, "max_gain": 2}])
def test_check_page_norm_rejects_bad_specs(bad):
    with pytest.raises(ValueError, match="page_norm"):
        models.check_page_norm(bad)


@pytest.mark.parametrize("shape", [(1, 1, 33, 65), (1, 1, 301, 257), (2, 1, 130, 96), (1, 1, 700, 160)])
def test_msfcn_lean_inference_gives_the_forward_logits(shape):
    """``infer`` (BatchNorm folded, channels-last, by rows) equals ``forward`` in eval mode, whatever the rows."""
    torch.manual_seed(0)
    m = models.build("msfcn").eval()
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(*shape)
    with torch.inference_mode():
        want = m(x)
        for rows in (1, 3, 1000):
            got = m.infer(x, rows=rows)
            assert got.shape == want.shape
            assert (got - want).abs().max() < 1e-4, rows


@pytest.mark.parametrize("core", [(0, 301, 0, 257), (40, 200, 36, 190), (3, 17, 5, 11), (288, 301, 250, 257)])
def test_msfcn_core_and_emit_give_the_full_logits_where_wanted(core):
    """A tile's core (and its bands handed to ``emit``) equals the whole input's logits there."""
    torch.manual_seed(1)
    m = models.build("msfcn").eval()
    x = torch.rand(1, 1, 301, 257)
    r0, r1, c0, c1 = core
    with torch.inference_mode():
        want = m.infer(x)[0, 0, r0:r1, c0:c1]
        got = torch.full_like(want, float("nan"))
        bands = []

        def emit(a: int, b: int, c: int, logits: torch.Tensor) -> None:
            bands.append((a, b))
            assert c <= c0 and c % 4 == 0
            lo, hi = max(a, r0), min(b, r1)
            if lo < hi:
                got[lo - r0:hi - r0] = logits[0, 0, lo - a:hi - a, c0 - c:c1 - c]

        assert m.infer(x, emit=emit, core=core) is None
        assert [a for a, _ in bands] == sorted(a for a, _ in bands)
        assert bands[0][0] <= r0 and bands[-1][1] >= r1
        if core != (0, 301, 0, 257):
            assert sum(b - a for a, b in bands) < 301  # the rows outside the core were not computed
        assert torch.isfinite(got).all()
        assert (got - want).abs().max() < 1e-4
        part = m.infer(x, core=core)  # without emit: the core is filled in the full-size result
        assert (part[0, 0, r0:r1, c0:c1] - want).abs().max() < 1e-4
