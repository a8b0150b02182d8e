"""Automatic polarity: negatives and light-on-dark regions are found, normal pages are left exactly alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ocrobin import Binarizer
from ocrobin.infer import model_view
from ocrobin.modelfile import ModelInfo
from ocrobin.models import normalize_page, page_norm_mapping
from ocrobin.polarity import BLOCK, Polarity, block_percentiles, detect, detect_bands, find_bands

from .conftest import page_with_band, text_page


def test_normal_and_negative_pages() -> None:
    page = np.vstack([text_page(96, 160, s) for s in range(3)])
    p = detect(page)
    assert p.mode == "normal" and p.score < 0
    n = detect(255 - page)
    assert n.mode == "inverted" and n.score > 0
    assert n.score == pytest.approx(-p.score, abs=0.02)  # the score is the same measure, mirrored


def test_modes_normal_and_inverted_are_not_detected() -> None:
    page = text_page()
    assert detect(255 - page, mode="normal").mode == "normal"
    assert detect(page, mode="inverted").mode == "inverted"
    with pytest.raises(ValueError, match="unknown polarity"):
        detect(page, mode="upside-down")


def test_blank_and_solid_dark_pages_stay_normal() -> None:
    assert detect(np.full((200, 200), 230, np.uint8)).mode == "normal"
    page = text_page(256, 320)
    page[:, :120] = 20  # a big black scan border without light strokes: not a negative, not a region
    assert detect(page).mode == "normal"


def test_a_printed_band_is_found_to_the_pixel() -> None:
    page, (y0, y1) = page_with_band()
    assert find_bands(page) == [(y0, y1, 0, page.shape[1])]
    p = detect(page)
    assert p.mode == "regions" and p.regions == 1 and p.bands == ((y0, y1, 0, page.shape[1]),)
    m = p.tile_mask(torch.from_numpy(page.astype(np.float32) / 255), 0, 0)
    assert m is not None and m[y0:y1].min() == 1 and m[:y0].max() == 0 and m[y1:].max() == 0
    # 16-bit and float pages alike
    assert find_bands(page.astype(np.uint16) * 257, 65535.0) == [(y0, y1, 0, page.shape[1])]
    assert find_bands(page.astype(np.float32) / 255, 1.0) == [(y0, y1, 0, page.shape[1])]
    # a large page is searched reduced, and its band's edges placed to the pixel on the page itself
    big = np.repeat(np.repeat(page, 5, axis=0), 5, axis=1)
    assert find_bands(big) == [(5 * y0, 5 * y1, 0, big.shape[1])]


def test_a_band_with_a_ruling_running_close_along_its_edge_is_found() -> None:
    # a table's rule below the band, skewed: from 2 to 15 px below its edge, so the closed page joins it to
    # the band along part of its length; the paper beside the thin rule keeps the edge sharp
    page, (y0, y1) = page_with_band()
    for x in range(page.shape[1]):
        r = y1 + 2 + (14 * x) // page.shape[1]
        page[r:r + 2, x] = 40
    (found,) = find_bands(page)
    assert found[0] == y0 and found[2:] == (0, page.shape[1])
    assert y1 <= found[1] <= y1 + 8  # (where the rule comes within 2 px, it may be taken into the band)


def test_a_band_along_the_page_edge_is_found_where_a_scan_border_is_not() -> None:
    page, (y0, y1) = page_with_band()
    top = np.ascontiguousarray(page[y0 - 5:])  # the page cropped 5 px above its heading band
    assert find_bands(top) == [(5, y1 - y0 + 5, 0, top.shape[1])]
    flush = np.ascontiguousarray(page[y0:])  # cropped at the band itself
    assert find_bands(flush) == [(0, y1 - y0, 0, flush.shape[1])]
    border = text_page(256, 320)
    rng = np.random.default_rng(5)
    border[:60] = np.clip(40 + rng.normal(0, 4, (60, 320)), 0, 255)  # a scan border along the top edge,
    border[:60][rng.random((60, 320)) < 0.03] = 200  # its dust light specks
    assert find_bands(border) == []


def test_a_band_running_into_a_darker_scan_border_is_found() -> None:
    # a grey band down the page from a black border along the page's top: one dark area, split by level
    page, (x0, x1) = page_with_band()
    page = np.ascontiguousarray(page.T)  # the band runs down the page, columns x0..x1
    band = page[:, x0:x1].astype(np.int32)
    page[:, x0:x1] = (60 + (band - band.min()) * 0.6).astype(np.uint8)  # ground 60, its text light
    page[:40] = 10
    (found,) = find_bands(page)
    assert abs(found[0] - 40) <= 3 and found[1:] == (page.shape[0], x0, x1)  # (its edge on the border: ±3 px)


def test_a_band_is_found_on_a_page_reduced_until_its_text_is_grey(monkeypatch: pytest.MonkeyPatch) -> None:
    # a huge page is searched reduced some 10 times: its lines of text turn into a grey as far below the
    # paper as a band's ground is, and join the band unless the search also cuts nearer the band's ground
    # the benchmarks' page: lines of short strokes, as dense as text
    spec = importlib.util.spec_from_file_location("pages", Path(__file__).parent.parent / "benchmarks" / "pages.py")
    assert spec is not None and spec.loader is not None
    pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pages)
    page = pages.synthetic_page(1600, 1600)
    page[400:700] = 245 - page[400:700]
    monkeypatch.setattr("ocrobin.polarity.bands.BAND_PIXELS", 20_000)
    assert find_bands(page) == [(400, 700, 0, 1600)]


def test_a_band_split_by_a_tall_letter_is_found_whole() -> None:
    # a heading bar whose text sits at its right end, behind a light letter as tall as the bar nearly: the
    # letter splits the dark area in two, and the left part, with no text, fails the tests on its own
    page, (y0, y1) = page_with_band(w=480)
    ground = int(np.median(page[y0 + 5:y1 - 5, :40]))
    page[y0:y1, :320] = ground
    page[y0 + 8:y1 - 8, 330:342] = 230
    assert find_bands(page) == [(y0, y1, 0, 480)]


def noisy_bar(noise: float, text: bool) -> np.ndarray:
    """A text page with a dark bar across rows 144..240 whose ground is grainy (grey noise of ``noise``
    levels), holding light text or nothing."""
    rng = np.random.default_rng(1)
    paper = np.full((24, 480), 230, np.uint8)
    page = np.vstack([text_page(120, 480, 0), paper, text_page(96, 480, 1), paper, text_page(120, 480, 2)])
    page = page.astype(np.float32)
    bar = 290 - page[144:240] if text else np.full((96, 480), 40.0)  # ground 60, its text light
    page[144:240] = bar + rng.normal(0, noise, bar.shape)
    return np.clip(page, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("noise", [8, 24, 32])
def test_a_grainy_band_is_found_and_a_grainy_empty_bar_is_not(noise: float) -> None:
    # the grey opening that finds thick dark areas takes a grainy ground for darker than it is: the ground's
    # flatness is measured about its own pixels, and its grain is no light text
    assert find_bands(noisy_bar(noise, text=True)) == [(144, 240, 0, 480)]
    assert find_bands(noisy_bar(noise, text=False)) == []


def test_paper_framed_by_a_band_and_scan_borders_is_no_band() -> None:
    # a band between dark scan borders left and right, a third along the bottom: with the paper below the
    # band they make one dark frame round a light hole, no printed band
    rng = np.random.default_rng(2)
    page = text_page(600, 600, 3).astype(np.float32)
    page[150:230, 80:520] = 290 - page[150:230, 80:520]
    for sl in (np.s_[:, :80], np.s_[:, 520:], np.s_[480:, :]):
        page[sl] = 40 + rng.normal(0, 4, page[sl].shape)
    page = np.clip(page, 0, 255).astype(np.uint8)
    assert all(y1 - y0 <= 80 for y0, y1, _, _ in find_bands(page))


def dark_things(kind: str) -> np.ndarray:
    """A text page with a dark area that is not a reverse-printed band (each with light marks inside)."""
    rng = np.random.default_rng(3)
    page = text_page(400, 400, 4).astype(np.float32)
    yy, xx = np.mgrid[0:400, 0:400]
    if kind == "stain":  # a round dark blot
        blot = ((yy - 200) / 90.0) ** 2 + ((xx - 200) / 120.0) ** 2 < 1
        page[blot] = 40 + rng.normal(0, 4, int(blot.sum()))
    elif kind == "border":  # a scan border along the left edge
        page[:, :70] = 30 + rng.normal(0, 4, (400, 70))
    elif kind == "bold text":  # a line of heavy, blurred type
        from scipy import ndimage
        line = np.zeros((400, 400), bool)
        for x in range(10, 380, 34):
            line[150:182, x:x + 26] = True
        page[ndimage.gaussian_filter(line.astype(np.float32), 3) > 0.5] = 35
    elif kind == "heavy words":  # words of heavy handwriting: their gaps look like light text on a dark ground
        for y in (60, 160, 260):
            for x0, n in ((20, 6), (230, 8)):
                for i in range(n):  # the arches of an 'nnnn': 12-px strokes, 5-px gaps open below
                    x = x0 + i * 17
                    page[y:y + 34, x:x + 12] = 15
                    page[y:y + 8, x:x + 17] = 15
    elif kind == "shadow":  # a binding shadow: dark at the edge, fading into the page
        page *= np.clip(np.linspace(0.1, 1.4, 400), 0.1, 1.0)[None, :]
    spots = rng.random((400, 400)) < 0.02  # light specks everywhere
    page[spots] = 220
    if kind == "redaction":  # a bar of solid black over a line: not a light pixel inside to measure from
        page[150:230, 40:360] = 10
    return np.clip(page, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["stain", "border", "bold text", "heavy words", "shadow", "redaction"])
def test_dark_areas_that_are_not_bands_are_left_alone(kind: str) -> None:
    assert find_bands(dark_things(kind)) == []


def test_a_plain_black_box_is_no_band_at_any_size() -> None:
    # no light pixel inside to measure a band's ground from (this once raised IndexError)
    page = np.full((600, 800), 230, np.uint8)
    page[200:320, 100:700] = 30
    assert find_bands(page) == []
    big = np.repeat(np.repeat(page, 3, axis=0), 3, axis=1)  # searched reduced: its text test is elsewhere
    assert find_bands(big) == []
    assert detect(big).mode == "normal"


def test_a_redaction_bar_is_left_as_it_is() -> None:
    page = dark_things("redaction")
    b = Binarizer(polarity="auto")
    r = b.run(page)
    assert r.polarity == "normal"
    np.testing.assert_array_equal(r.ink_mask(), b.run(page, polarity="normal").ink_mask())


def test_a_band_is_normalised_apart_from_the_page() -> None:
    # a dark band would set the page's black point; the page is measured without it and the band on its own
    page, (y0, y1) = page_with_band()
    b = Binarizer()
    assert b.page_norm is not None
    plan = b._plan(page)
    g = page.astype(np.float32) / 255
    assert plan.band_mapping == pytest.approx(page_norm_mapping(1 - g[y0:y1], b.page_norm), abs=1e-6)
    assert plan.mapping == pytest.approx(page_norm_mapping(np.delete(g, np.s_[y0:y1], axis=0), b.page_norm),
                                         abs=1e-6)
    assert b._plan(page, "normal").band_mapping is None


def test_detect_bands_finds_the_bands_and_nothing_else() -> None:
    page, (y0, y1) = page_with_band()
    pol = detect_bands(page)
    assert pol.mode == "regions" and [b[:2] for b in pol.bands] == [(y0, y1)] and pol.inside is None
    assert pol.band_edge > 0 and len(pol.band_levels) == 1
    assert detect_bands(page_with_band(uneven=True)[0]).mode == "normal"  # a region only the model confirms
    assert detect_bands(255 - text_page(256, 320)).mode == "normal"  # a negative is no band
    assert detect_bands(dark_things("shadow")).mode == "normal"


def test_model_view_is_what_the_binarizer_shows_the_model() -> None:
    # training pages go through the same band treatment as pages at inference
    page, (y0, y1) = page_with_band()
    b = Binarizer()
    g = page.astype(np.float32) / 255
    view = model_view(g, b.page_norm)
    np.testing.assert_allclose(view, b._prepared(b._plan(page), page, 0, 0)[0, 0].numpy(), atol=1e-5)
    assert np.median(view[y0 + 8:y1 - 8]) > 0.9 > 0.3 > np.median(g[y0 + 8:y1 - 8])  # the band is paper now
    plain = text_page(256, 320).astype(np.float32) / 255
    np.testing.assert_array_equal(model_view(plain, b.page_norm), normalize_page(plain, b.page_norm))
    np.testing.assert_array_equal(model_view(plain, None), plain)


def test_a_band_page_tiled_equals_untiled_with_the_default_model() -> None:
    # the band's own normalisation and its edge are applied tile by tile exactly as on the whole page
    page, (y0, y1) = page_with_band(480, 330)
    b = Binarizer()
    full = Binarizer(b.info, tile=0).run(page)
    tiled = Binarizer(b.info, tile=192, overlap=64).run(page)
    assert full.polarity == tiled.polarity == "inverted-regions"
    assert (full.ink_mask() == tiled.ink_mask()).mean() > 0.995
    # and the band's light text comes out as ink, its ground as paper
    text = page[y0 + 4:y1 - 4] > 128
    assert (full.ink_mask()[y0 + 4:y1 - 4] == text).mean() > 0.97


def test_a_blurred_band_edge_does_not_become_a_line_of_ink() -> None:
    from scipy import ndimage

    page, (y0, y1) = page_with_band(480, 330)
    soft = np.clip(ndimage.gaussian_filter(page.astype(np.float32), 1.2), 0, 255).astype(np.uint8)
    r = Binarizer().run(soft)
    assert r.polarity == "inverted-regions"
    # no text within 12 rows of the band's top edge: the edge's grey ramp is given to the model as paper
    # (inverted or not, it would be a grey line; 3 % of these rows come out as ink without this)
    assert r.ink_mask()[y0 - 3:y0 + 3].mean() < 0.015


def test_an_uneven_dark_region_with_light_text_is_a_region() -> None:
    page, (y0, y1) = page_with_band(uneven=True)
    assert find_bands(page) == []
    p = detect(page)
    assert p.mode == "regions" and p.regions == 1 and p.decision == "inverted-regions"
    assert p.inside is not None and p.edge is not None
    rows = np.flatnonzero(p.inside.any(axis=1))
    assert y0 // BLOCK <= rows.min() and rows.max() < -(-y1 // BLOCK)
    # the mask inverts the band and nothing above it
    x = torch.from_numpy(page.astype(np.float32) / 255)
    m = p.tile_mask(x, 0, 0)
    assert m is not None
    assert m[y0 + 8:y1 - 8].mean() > 0.9 and m[: y0 - 8].max() == 0 and m[y1 + 8:].max() == 0


def test_a_band_that_outweighs_faint_text_is_not_a_negative() -> None:
    # faint text (ink 200 on paper 230) and a band holding strong light text: the band's strokes win the
    # page score, but their ground is far darker than the page's, so this is a region, not a negative
    page, (y0, y1) = page_with_band()
    faint = np.where(page > 150, page, 200).astype(np.uint8)
    faint[y0:y1] = page[y0:y1]
    p = detect(faint)
    assert p.score > 0.15  # without the ground test, a clear negative
    assert p.mode == "regions" and p.regions == 1
    neg = detect(255 - np.where(page > 150, page, 200).astype(np.uint8))  # a faint page's negative still is one
    assert neg.mode == "inverted"


def test_a_region_is_not_inverted_where_the_model_reads_it_already() -> None:
    page, _ = page_with_band(uneven=True)
    assert detect(page, check=lambda a: (0.05, 0.5)).mode == "normal"  # the model finds little ink as it is
    assert detect(page, check=lambda a: (0.6, 0.5) if a.mean() < 0.5 else (0.05, 0.5)).mode == "regions"


def test_tile_mask_is_the_same_whatever_the_tiling() -> None:
    page, _ = page_with_band(480, 330, uneven=True)
    p = detect(page)
    x = torch.from_numpy(page.astype(np.float32) / 255)
    whole = p.tile_mask(x, 0, 0)
    assert whole is not None
    for y0, x0 in ((0, 0), (120, 96), (150, 32), (200, 170)):
        tile = x[y0:y0 + 100, x0:x0 + 150]
        got = p.tile_mask(tile, y0, x0)
        want = whole[y0:y0 + 100, x0:x0 + 150]
        if got is None:  # nothing of a region in this tile
            assert want.max() == 0
            continue
        # the edge test looks at a 9x9 neighbourhood, which a tile cuts at its border
        inner = (slice(5, -5), slice(5, -5))
        assert torch.equal(got[inner], want[inner]) and want.max() == 1


def test_block_percentiles_cover_ragged_edges() -> None:
    a = np.arange(70 * 45, dtype=np.uint16).reshape(70, 45)
    q = block_percentiles(a, 65535.0)
    assert q.shape == (5, 3, 2)
    assert np.all(np.diff(q, axis=0) >= 0)  # percentiles rise


class DarkIsInk(nn.Module):
    """A model that calls every dark pixel ink (a global threshold): it makes a negative a solid block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 - x) * 40.0


@pytest.fixture(scope="module")
def seed() -> Binarizer:
    return Binarizer(ModelInfo(DarkIsInk(), {"arch": "test", "name": "dark-is-ink"}))


def test_binarizer_auto_gives_the_upright_result_on_a_negative(seed: Binarizer) -> None:
    page = np.vstack([text_page(96, 160, s) for s in range(3)])
    upright = seed.run(page, polarity="normal")
    neg = seed.run(255 - page, polarity="auto")
    assert neg.polarity == "inverted" and "inverted" in neg.flags
    assert (neg.ink_mask() == upright.ink_mask()).mean() > 0.999
    assert seed.run(page, polarity="auto").polarity == "normal"
    # the negative taken as it is: a solid block of ink
    assert seed.run(255 - page, polarity="normal").ink_fraction > 3 * upright.ink_fraction
    # and the default model: the negative binarized as the upright page
    b = Binarizer()
    assert (b.run(255 - page).ink_mask() == b.run(page).ink_mask()).mean() > 0.999


def test_binarizer_auto_binarizes_a_band_as_text(seed: Binarizer) -> None:
    page, (y0, y1) = page_with_band()
    auto = seed.run(page, polarity="auto")
    as_is = seed.run(page, polarity="normal")
    assert auto.polarity == "inverted-regions" and "inverted-regions" in auto.flags
    band = slice(y0 + 4, y1 - 4)
    # inverted, the band's light text is ink and its dark ground paper; taken as it is, the band is ink
    assert auto.ink_mask()[band].mean() < 0.5 * as_is.ink_mask()[band].mean()
    upright = page.copy()
    upright[y0:y1] = 255 - upright[y0:y1]
    want = seed.run(upright, polarity="normal").ink_mask()
    assert (auto.ink_mask()[band] == want[band]).mean() > 0.97
    # outside the band nothing changes
    assert np.array_equal(auto.ink_mask()[: y0 - 40], as_is.ink_mask()[: y0 - 40])


def test_tiled_auto_polarity_equals_untiled(seed: Binarizer) -> None:
    page, _ = page_with_band(480, 330)
    full = Binarizer(seed.info, tile=0).run(page)
    tiled = Binarizer(seed.info, tile=160, overlap=32).run(page)
    assert full.polarity == tiled.polarity == "inverted-regions"
    assert (full.ink_mask() == tiled.ink_mask()).mean() > 0.99


def test_polarity_decision_is_a_plain_value() -> None:
    assert Polarity().decision == "normal"
    assert Polarity("inverted").tile_mask(torch.zeros(4, 4), 0, 0).sum() == 16
    assert Polarity().tile_mask(torch.zeros(4, 4), 0, 0) is None
