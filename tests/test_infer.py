import numpy as np
import pytest
import torch
from PIL import Image

from ocrobin import models
from ocrobin.exceptions import UsageError
from ocrobin.infer import Binarizer, threshold, tiles
from ocrobin.modelfile import ModelInfo, make_meta


@pytest.fixture(scope="module")
def seed():
    return Binarizer("lstm2-seed")


def test_default_model_loads():
    b = Binarizer()
    assert b.info.meta["arch"] in models.architectures()


def test_inputs_of_every_kind_agree(seed, page):
    f = seed.binarize(page.astype(np.float32) / 255)
    assert f.dtype == np.float32 and f.shape == page.shape
    assert 0.0 <= f.min() and f.max() <= 1.0
    np.testing.assert_allclose(seed.binarize(page), f, atol=1e-6)
    np.testing.assert_allclose(seed.binarize(Image.fromarray(page)), f, atol=1e-6)
    np.testing.assert_allclose(seed.binarize(np.dstack([page] * 3)), f, atol=1e-6)


def test_finds_the_ink(seed, page):
    ink = threshold(seed.binarize(page))
    dark = page < 128
    assert (ink & dark).sum() > 0.5 * dark.sum()
    assert (ink & ~dark).sum() < 0.05 * (~dark).sum()


def test_batch_equals_single(seed, page):
    other = page[::-1].copy()
    out = seed.binarize_batch([page, other])
    np.testing.assert_allclose(out[1], seed.binarize(other), atol=1e-6)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_constant_pages_are_white(seed, value):
    p = seed.binarize(np.full((30, 40), value, np.uint8))
    assert np.isfinite(p).all() and not threshold(p).any()


def test_tiles_cover_each_pixel_once():
    for size, tile, ov in [(100, 40, 5), (7, 40, 5), (256, 64, 16)]:
        hits = np.zeros(size, int)
        for r0, r1, k0, k1 in tiles(size, tile, ov):
            assert r0 <= k0 < k1 <= r1 and r1 - r0 <= tile
            hits[k0:k1] += 1
        assert (hits == 1).all()


def test_tiled_lstm2_close_to_untiled(seed, shared):
    from ocrobin.imageio import read_gray

    g = read_gray(shared / "seed" / "sample.png")[:800, :600]
    full = seed.binarize(g)
    tiled = Binarizer("lstm2-seed", tile=320, overlap=48).binarize(g)
    assert ((full > 0.5) == (tiled > 0.5)).mean() >= 0.995


def test_tiled_fcn_equals_untiled_with_enough_context():
    torch.manual_seed(0)
    m = models.build("msfcn", widths=[8, 8, 8, 8], head=4).eval()
    info = ModelInfo(m, make_meta(m))
    rng = np.random.default_rng(0)
    g = rng.random((300, 260)).astype(np.float32)
    full = Binarizer(info, tile=0).binarize(g)
    tiled = Binarizer(info, tile=200, overlap=64).binarize(g)
    assert np.abs(full - tiled).max() < 0.05
    assert ((full > 0.5) == (tiled > 0.5)).mean() > 0.99


def test_page_norm_of_the_model_is_applied_to_the_whole_page_before_tiling():
    torch.manual_seed(0)
    m = models.build("msfcn", widths=[8, 8, 8, 8], head=4).eval()
    plain = ModelInfo(m, make_meta(m))
    normed = ModelInfo(m, {**make_meta(m), "page_norm": dict(models.PAGE_NORM)})
    rng = np.random.default_rng(0)
    g = (0.55 + 0.1 * rng.random((300, 260))).astype(np.float32)  # a faint page
    want = Binarizer(plain, tile=0).binarize(models.normalize_page(g, models.PAGE_NORM))
    np.testing.assert_allclose(Binarizer(normed, tile=0).binarize(g), want, atol=1e-6)
    assert np.abs(Binarizer(plain, tile=0).binarize(g) - want).max() > 0.01
    tiled = Binarizer(normed, tile=200, overlap=64).binarize(g)
    assert ((tiled > 0.5) == (want > 0.5)).mean() > 0.99


def test_default_model_keeps_blank_grainy_paper_white():
    rng = np.random.default_rng(3)
    g = np.clip(0.8 + rng.normal(0, 0.015, (400, 300)), 0, 1).astype(np.float32)
    assert threshold(Binarizer().binarize(g)).mean() < 0.005


def _recording(b: Binarizer) -> list[tuple[int, int]]:
    """Record the (height, width) of every input the network runs on (``Binarizer._logits``, its one door)."""
    seen: list[tuple[int, int]] = []
    run = b._logits

    def logits(x, *args, size=None, **kwargs):
        seen.append(tuple(size) if size is not None else tuple(x.shape[-2:]))
        return run(x, *args, size=size, **kwargs)

    b._logits = logits
    return seen


def _tiny_fcn() -> ModelInfo:
    torch.manual_seed(0)
    m = models.build("msfcn", widths=[8, 8, 8, 8], head=4).eval()
    return ModelInfo(m, make_meta(m))


@pytest.mark.parametrize("arch", ["msfcn", "lstm2-seed"])
def test_tiling_runs_the_model_on_tiles_no_larger_than_the_tile(arch):
    b = Binarizer(_tiny_fcn() if arch == "msfcn" else "lstm2-seed", tile=80, overlap=8)
    seen = _recording(b)
    g = np.random.default_rng(1).random((150, 130)).astype(np.float32)
    out = b.binarize(g)
    assert out.shape == g.shape and np.isfinite(out).all()
    n = len(list(tiles(150, 80, 8, b.align))) * len(list(tiles(130, 80, 8, b.align)))
    assert n >= 9 and len(seen) == n
    assert max(h for h, _ in seen) <= 80 and max(w for _, w in seen) <= 80
    seen.clear()
    b.binarize(g[:70, :60])  # a page within one tile: one run on the whole page
    assert seen == [(70, 60)]


def test_pages_above_the_auto_tile_size_are_tiled(monkeypatch):
    import ocrobin.infer as infer

    monkeypatch.setattr(infer, "AUTO_TILE_PIXELS", 20_000)
    monkeypatch.setattr(infer, "DEFAULT_TILE", 128)
    b = Binarizer(_tiny_fcn())  # tile=None: automatic
    seen = _recording(b)
    rng = np.random.default_rng(2)
    b.binarize(rng.random((140, 140)).astype(np.float32))  # 19,600 pixels: not above the limit
    assert seen == [(140, 140)]
    seen.clear()
    b.binarize(rng.random((150, 140)).astype(np.float32))  # 21,000 pixels: tiled
    assert len(seen) == len(list(tiles(150, 128, 32, b.align))) * len(list(tiles(140, 128, 32, b.align))) >= 4
    assert max(max(s) for s in seen) <= 128
    seen.clear()
    Binarizer(_tiny_fcn(), tile=0).binarize(rng.random((150, 140)).astype(np.float32))  # tile=0: never
    assert seen == []


def test_tiles_run_in_batches_give_the_same_page():
    """Tiles stacked into batches (how a GPU runs them) give the tiles' results one by one."""
    from .conftest import text_page

    page = np.vstack([np.hstack([text_page(96, 160, s + 3 * r) for s in range(3)]) for r in range(3)])
    one = Binarizer(tile=128, overlap=32, polarity="normal").run(page)
    batched = Binarizer(tile=128, overlap=32, polarity="normal", batch_tiles=4)
    seen = _recording(batched)
    got = batched.run(page)
    n_tiles = len(list(tiles(page.shape[0], 128, 32, batched.align))) * len(list(tiles(page.shape[1], 128, 32,
                                                                                      batched.align)))
    assert n_tiles > 4 and len(seen) < n_tiles  # fewer runs than tiles: they were batched
    assert (got.ink_mask() == one.ink_mask()).mean() > 0.999


def test_a_missing_gpu_is_a_clear_error():
    from ocrobin.exceptions import UsageError

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(UsageError, match="no CUDA device"):
        Binarizer(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batches_agree_with_the_cpu():
    from .conftest import text_page

    page = np.vstack([np.hstack([text_page(300, 400, s + 3 * r) for s in range(4)]) for r in range(4)])
    cpu = Binarizer(polarity="normal").run(page)
    gpu = Binarizer(device="cuda", polarity="normal").run(page)
    assert (gpu.ink_mask() == cpu.ink_mask()).mean() > 0.999


@pytest.mark.parametrize("tile", [None, 256])
@pytest.mark.parametrize("polarity", ["inverted", "auto"])
def test_the_callers_page_is_never_changed(polarity, tile):
    """The network's input is inverted and normalised in place: a float32 or read-only page must be copied
    first, or overlapping tiles read rows already inverted (and the caller gets its page back changed)."""
    import warnings

    from .conftest import text_page

    upright = text_page(400, 250, 5)
    noise = np.random.default_rng(1).random(upright.shape, dtype=np.float32) * 0.05
    page = upright.astype(np.float32) / 255.0 * 0.95 + noise  # values whose 1 − (1 − v) is not v again
    if polarity == "inverted":
        page = 1.0 - page  # a negative
    else:
        page[60:200, 20:230] = 1.0 - page[60:200, 20:230]  # a reverse-printed band
    before = page.copy()
    b = Binarizer(tile=tile, overlap=64, polarity=polarity)  # 256: tiles as wide as the page's rows
    got = b.run(page)
    assert np.array_equal(page, before)
    ref = b.run(page.astype(np.float64))  # converted, so never shared with the network's input
    assert np.array_equal(got.ink_mask(), ref.ink_mask())
    frozen = before.copy()
    frozen.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch warns about tensors made from read-only arrays
        again = b.run(frozen)
    assert np.array_equal(again.ink_mask(), ref.ink_mask())


def test_a_float_negative_is_left_as_it_was():
    rng = np.random.default_rng(0)
    page = (rng.random((300, 400)) * 0.2 + 0.7).astype(np.float32)
    page[100:120, 50:300] = 0.1
    before = page.copy()
    Binarizer(polarity="inverted").run(page)
    assert np.array_equal(page, before)


def test_upsampled_rows_are_bilinear_interpolation_row_band_by_row_band():
    from ocrobin.infer import upsampled_rows

    small = torch.rand(13, 17)
    full = torch.nn.functional.interpolate(small[None, None], size=(40, 51), mode="bilinear",
                                           align_corners=False)[0, 0]
    bands = torch.cat([upsampled_rows(small, y, min(40, y + 7), 40, 51) for y in range(0, 40, 7)])
    assert torch.allclose(bands, full, atol=1e-5)


def test_resize_runs_the_model_on_the_resized_page_and_answers_at_full_size():
    from ocrobin.infer import resized, upsampled_rows

    from .conftest import text_page

    page = text_page(150, 230, 3)
    b = Binarizer(resize=0.5)
    p = b.binarize(page)
    small = Binarizer().binarize(resized(page, 0.5))
    assert small.shape == (75, 115) and p.shape == page.shape
    np.testing.assert_allclose(p, upsampled_rows(torch.from_numpy(small), 0, 150, 150, 230).numpy(), atol=1e-6)
    r = b.run(page, prob=True)
    assert (r.width, r.height) == (230, 150) and r.prob.shape == page.shape
    assert (r.ink_mask() == (p > 0.5)).mean() > 0.999  # the run goes through the 8-bit map of the small page
    assert not np.array_equal(r.ink_mask(), Binarizer().run(page).ink_mask())
    assert Binarizer(resize=0.5).run(np.full((40, 60), 200, np.uint8)).blank
    # a 16-bit page keeps its scale when resized: a negative is still found
    neg = 255 - page
    small16 = resized(neg.astype(np.uint16) * 257, 0.5)
    assert small16.dtype == np.uint16 and np.abs(small16 / 257.0 - resized(neg, 0.5)).max() <= 1.0
    r8, r16 = b.run(neg), b.run(neg.astype(np.uint16) * 257)
    assert r8.polarity == r16.polarity == "inverted" and (r8.ink_mask() == r16.ink_mask()).mean() > 0.999
    for bad in (0, -1, float("nan")):
        with pytest.raises(UsageError, match="resize"):
            Binarizer(resize=bad)
        with pytest.raises(UsageError, match="resize"):
            b.run(page, resize=bad)
    # one binarizer, the factor given per page (as a server does per request)
    plain = Binarizer()
    np.testing.assert_array_equal(plain.run(page, resize=0.5).ink, b.run(page).ink)
    np.testing.assert_array_equal(b.run(page, resize=1.0).ink, plain.run(page).ink)


def test_binarize_resize_option_keeps_the_page_size_and_dpi(tmp_path):
    from ocrobin.cli import main

    from .conftest import text_page

    src = tmp_path / "p.png"
    Image.fromarray(text_page(120, 200, 1)).save(src, dpi=(600, 600))
    out = tmp_path / "o"
    assert main(["binarize", str(src), "-o", str(out), "--resize", "0.5", "--no-progress", "--workers", "1"]) == 0
    with Image.open(out / "p.bin.png") as im:
        assert im.size == (200, 120) and im.mode == "1" and round(im.info["dpi"][0]) == 600
    assert main(["binarize", str(src), "-o", str(tmp_path / "o2"), "--resize", "0", "--no-progress"]) == 2
