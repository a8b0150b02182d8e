"""Synthetic pairs: alignment, determinism, one signature test per effect, sources, CLI errors."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrobin import degrade as D
from ocrobin import render as R
from ocrobin.cli import main
from ocrobin.degrade.sheet import QUIET
from ocrobin.exceptions import DataError, UsageError
from ocrobin.shards import iter_samples

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    """A small printed page with plenty of ink (module-wide: rendering is the slow part)."""
    for seed in range(20):
        cov = R.render_page(np.random.default_rng(seed), (192, 200), kind="print", xheight=9)
        if (cov > 0.5).mean() > 0.06:
            return cov
    raise AssertionError("no dense page rendered")


TONE = {"paper": 0.8, "ink": 0.1}


def with_and_without(
    clean: np.ndarray,
    effect: str,
    seed: int = 3,
    rgb: bool = False,
    tone: dict | None = None,
    verso: np.ndarray | None = None,
    **override: object,
):
    """Degrade ``clean`` with only ``effect`` on and with nothing on, from identical random streams.

    Returns ((img, ink) with the effect, (img, ink) without it, the effect's parameters).
    """
    params = D.draw_params(np.random.default_rng(seed), clean.shape, only=[effect], rgb=rgb)
    params["tone"] = dict(tone or TONE)
    params["effects"][effect].update(override)
    base = copy.deepcopy(params)
    del base["effects"][effect]
    img, ink, used = D.degrade(clean, np.random.default_rng(seed + 100), params, rgb=rgb, verso=verso)
    img0, ink0, _ = D.degrade(clean, np.random.default_rng(seed + 100), base, rgb=rgb, verso=verso)
    return (img.astype(np.float64), ink), (img0.astype(np.float64), ink0), used["effects"][effect]


def paper_mask(ink: np.ndarray, margin: int = 3) -> np.ndarray:
    """Pixels at least ``margin`` pixels away from any ink."""
    near = ink.copy()
    for axis in (0, 1):  # separable square dilation, no wrap-around
        grown = near.copy()
        n = near.shape[axis]
        for s in range(1, margin + 1):
            a, b = [slice(None)] * 2, [slice(None)] * 2
            a[axis], b[axis] = slice(s, n), slice(0, n - s)
            grown[tuple(a)] |= near[tuple(b)]
            grown[tuple(b)] |= near[tuple(a)]
        near = grown
    return ~near


def core_ink(ink: np.ndarray) -> np.ndarray:
    """Ink pixels whose 4 neighbours are ink too."""
    return ink & np.roll(ink, 1, 0) & np.roll(ink, -1, 0) & np.roll(ink, 1, 1) & np.roll(ink, -1, 1)


def solid(clean: np.ndarray) -> np.ndarray:
    """Fully inked pixels of an untransformed page."""
    return clean >= 0.999


def blank(clean: np.ndarray, margin: int = 3) -> np.ndarray:
    """Pixels of an untransformed page at least ``margin`` pixels away from any trace of ink."""
    return paper_mask(clean > 0.01, margin)


def hf_energy(img: np.ndarray) -> float:
    """Mean absolute Laplacian: high-frequency content."""
    lap = 4 * img[1:-1, 1:-1] - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:]
    return float(np.abs(lap).mean())


# --- alignment and binary ground truth ----------------------------------------------------------------------


@pytest.mark.parametrize("rgb", [False, True])
def test_alignment_without_photometric_effects(page: np.ndarray, rgb: bool) -> None:
    moved = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        img, ink, params = D.degrade(page, rng, "none", rgb=rgb)
        assert set(params["effects"]) <= set(D.GEOMETRIC) and "affine" in params["effects"]
        gray = img if img.ndim == 2 else img[..., 0]
        if rgb:
            assert img.shape == (*ink.shape, 3)
        np.testing.assert_array_equal(gray < 128, ink)
        moved += int(not np.array_equal(ink, page >= 0.5))
    assert moved == 6  # the geometry really moved the page, and the grey followed it exactly


def test_geometry_applies_to_ground_truth_and_grey_alike(page: np.ndarray) -> None:
    """With heavy photometric effects the grey is still darkest where the (moved) ground truth is ink."""
    for seed in range(4):
        params = D.draw_params(
            np.random.default_rng(seed), page.shape, only=["affine", "warp", "blur", "noise"]
        )
        img, ink, _ = D.degrade(page, np.random.default_rng(seed), params)
        img = img.astype(np.float64)
        assert img[core_ink(ink)].mean() < img[paper_mask(ink)].mean() - 0.3 * 255 * 0.4


@pytest.mark.parametrize("preset", list(D.PRESETS))
def test_every_preset_gives_binary_aligned_shapes(preset: str) -> None:
    for seed in range(2):
        img, ink, params = D.make_pair(np.random.default_rng(seed), (96, 120), preset=preset)
        assert ink.dtype == np.bool_ and img.dtype == np.uint8
        assert img.shape == ink.shape
        assert params["preset"] == preset
        json.dumps(params)  # JSON-ready


def test_preset_none_is_plain_black_on_white(page: np.ndarray) -> None:
    img, ink, params = D.degrade(page, np.random.default_rng(0), "none")
    assert params["tone"] == {"paper": 1.0, "ink": 0.0}
    assert (img[paper_mask(ink)] == 255).mean() > 0.99
    assert np.median(img[core_ink(ink)]) == 0 and np.percentile(img[core_ink(ink)], 90) < 64


def test_original_preset_uses_only_the_original_effects() -> None:
    seen = set()
    for seed in range(10):
        seen |= set(D.draw_params(np.random.default_rng(seed), (64, 64), "original")["effects"])
    assert seen == {"affine", "ink_noise", "texture", "blur"}


# --- one signature per effect -------------------------------------------------------------------------------


def test_affine_translation_shifts_ground_truth_and_grey(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), _ = with_and_without(
        page, "affine", tx=0.05, ty=0.0, rotate=0.0, scale=0.0, aniso=0.0
    )
    s = 10  # 0.05 × 200 pixels
    np.testing.assert_array_equal(ink[:, s:], ink0[:, :-s])
    np.testing.assert_array_equal(img[:, s:], img0[:, :-s])


def test_affine_rotation_scale_change_ground_truth(page: np.ndarray) -> None:
    (_, ink), (_, ink0), p = with_and_without(
        page, "affine", tx=0.0, ty=0.0, rotate=2.0, scale=0.1, aniso=0.1
    )
    assert (ink != ink0).mean() > 0.02
    # larger scale: more ink (about 1.1², less what leaves the page)
    assert 1.0 < ink.sum() / ink0.sum() < 1.35


def test_warp_moves_pixels_locally(page: np.ndarray) -> None:
    (_, ink), (_, ink0), _ = with_and_without(page, "warp", amplitude=3.0, cell=32.0)
    changed = ink != ink0
    assert changed.mean() > 0.01
    # small local displacements: the ink is still close to where it was
    inter = (ink & ink0).sum() / max(1, (ink | ink0).sum())
    assert inter > 0.2
    # not one global shift: no integer shift explains the change
    best = max(
        ((np.roll(ink0, (dy, dx), (0, 1)) == ink)[8:-8, 8:-8].mean())
        for dy in range(-4, 5)
        for dx in range(-4, 5)
    )
    assert best < 0.995


def test_border_darkens_the_edge_and_hides_the_page(page: np.ndarray) -> None:
    (img, ink), (img0, _), _ = with_and_without(page, "border", sides={"left": 0.1}, level=0.05, rough=0.0)
    band = img[:, :15]
    assert band.mean() < 0.15 * 255
    assert img[:, 40:].mean() == pytest.approx(img0[:, 40:].mean(), abs=0.5)
    assert not ink[:, :18].any()  # no ground-truth ink under the scanner background


def test_ink_spread_darkens_around_strokes_only(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), _ = with_and_without(page, "ink_spread", sigma=1.2, gain=1.6)
    np.testing.assert_array_equal(ink, ink0)
    ring = ~ink & ~paper_mask(ink, 1)
    assert img[ring].mean() < img0[ring].mean() - 10
    far = blank(page, 5)
    assert np.abs(img[far] - img0[far]).max() <= 1


def test_fade_lightens_ink(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), _ = with_and_without(page, "fade", floor=0.3, scale=40.0)
    np.testing.assert_array_equal(ink, ink0)
    core = solid(page)
    assert img[core].mean() > img0[core].mean() + 20
    assert img[core].std() > img0[core].std() + 5  # unevenly
    far = blank(page)
    assert np.abs(img[far] - img0[far]).max() <= 1


def test_broken_ink_opens_holes_in_strokes(page: np.ndarray) -> None:
    (img, ink), (img0, _), _ = with_and_without(page, "broken", fraction=0.3, grain=2.0, residual=0.1)
    mid = 255 * (TONE["paper"] + TONE["ink"]) / 2
    core = solid(page)
    holes, holes0 = (img[core] > mid).mean(), (img0[core] > mid).mean()
    assert holes0 == 0.0 and holes > 0.05


def test_ink_noise_varies_ink_density(page: np.ndarray) -> None:
    (img, ink), (img0, _), _ = with_and_without(page, "ink_noise", amplitude=0.3, scale=4.0)
    core = solid(page)
    assert img0[core].std() < 1.0
    assert img[core].std() > 5.0


def test_low_contrast_sets_ink_paper_difference(page: np.ndarray) -> None:
    params = D.draw_params(np.random.default_rng(0), page.shape, only=["low_contrast"])
    params["effects"]["low_contrast"]["difference"] = 0.1
    tone = params["tone"]
    tone["ink"] = tone["paper"] - 0.1
    img, ink, _ = D.degrade(page, np.random.default_rng(1), params)
    img = img.astype(np.float64)
    diff = np.median(img[blank(page)]) - np.median(img[solid(page)])
    assert diff == pytest.approx(0.1 * 255, abs=3)


def test_texture_adds_grain_fibres_and_mottle(page: np.ndarray) -> None:
    def corr(d: np.ndarray, axis: int) -> float:
        d = d - d.mean()
        a = np.diff(d, axis=axis)  # neighbour correlation = 1 - var(diff) / (2 var)
        return 1.0 - float((a * a).mean()) / (2.0 * float((d * d).mean()))

    (img, _), (img0, _), _ = with_and_without(
        page, "texture", grain=0.05, grain_scale=3.0, stretch=1.0, vertical=False, mottle=0.0
    )
    far = blank(page)
    assert img0[far].std() < 0.5 and img[far].std() > 5
    blank_page = np.zeros((128, 128), np.float32)
    (img, _), _, _ = with_and_without(
        blank_page, "texture", grain=0.05, grain_scale=2.0, stretch=2.5, vertical=True, mottle=0.0
    )
    assert corr(img, 0) > corr(img, 1) + 0.05  # fibres run along y
    (img, _), _, _ = with_and_without(
        blank_page,
        "texture",
        grain=0.002,
        grain_scale=1.0,
        stretch=1.0,
        vertical=False,
        mottle=0.05,
        mottle_scale=64.0,
    )
    assert img.std() > 3 and corr(img, 1) > 0.9  # broad blotches


def test_color_tints_paper_and_ink(page: np.ndarray) -> None:
    (img, ink), (img0, _), _ = with_and_without(
        page, "color", rgb=True, paper="beige", ink="blue", saturation=1.0
    )
    far = blank(page)
    assert np.abs(img0[..., 0] - img0[..., 2]).max() == 0
    assert (img[..., 0] - img[..., 2])[far].mean() > 30  # yellowish paper: red over blue
    core = solid(page)
    assert (img[..., 2] - img[..., 0])[core].mean() > 20  # blue ink


def test_bleed_through_shows_the_mirrored_verso() -> None:
    blank = np.zeros((120, 160), np.float32)
    verso = np.zeros_like(blank)
    verso[:, :60] = 1.0  # ink on the left of the back ...
    (img, ink), (img0, _), _ = with_and_without(
        blank, "bleed", verso=verso, strength=0.5, sigma=1.0, flip="horizontal", dx=0.0, dy=0.0
    )
    assert not ink.any()
    assert np.ptp(img0) == 0
    left, right = img[:, 10:60].mean(), img[:, 110:150].mean()
    assert right < left - 0.3 * 255 * 0.7  # ... shows through on the right of the front
    assert left == pytest.approx(img0.mean(), abs=1)


def test_inverted_region_is_dark_with_light_text(page: np.ndarray) -> None:
    (img, ink), (img0, _), _ = with_and_without(
        page, "inverted", boxes=[[40, 50, 100, 100]], dark=0.1, light=0.9, soft=0.0
    )
    box = (slice(40, 140), slice(50, 150))
    assert img0[box].mean() > 150 and img[box].mean() < 100
    inside_ink, inside_paper = ink[box], blank(page)[box]
    assert img[box][solid(page)[box]].mean() > img[box][inside_paper].mean() + 100
    assert inside_ink.any()  # the text stays text in the ground truth
    out = np.ones_like(ink)
    out[35:145, 45:155] = False
    assert np.abs(img - img0)[out].max() <= 1


def test_stain_darkens_a_blob_and_leaves_the_rest(page: np.ndarray) -> None:
    blob = {
        "y": 96.0,
        "x": 100.0,
        "radius": 40.0,
        "darkness": 0.35,
        "rim": 0.0,
        "irregular": 0.05,
        "aspect": 1.0,
    }
    (img, _), (img0, _), _ = with_and_without(page, "stains", blobs=[blob])
    c = (slice(86, 106), slice(90, 110))
    assert (img0[c] - img[c]).mean() > 0.3 * 0.8 * 255 * 0.6
    assert np.abs(img[:25, :25] - img0[:25, :25]).max() <= 1


def test_fold_shades_a_line(page: np.ndarray) -> None:
    fold = {"vertical": False, "pos": 96.0, "angle": 0.0, "width": 5.0, "depth": 0.3, "highlight": 0.0}
    (img, _), (img0, _), _ = with_and_without(page, "fold", folds=[fold])
    on = (img0[95:98] - img[95:98]).mean(axis=1)
    assert (on > 0.2 * img0[95:98].mean()).all()
    assert np.abs(img[:70] - img0[:70]).max() <= 1 and np.abs(img[125:] - img0[125:]).max() <= 1


def test_illumination_gradient_darkens_one_side(page: np.ndarray) -> None:
    (img, ink), (img0, _), _ = with_and_without(
        page, "illumination", gradient=0.4, angle=0.0, vignette=0.0, field=0.0
    )
    far = blank(page)
    left = img[:, :40][far[:, :40]].mean()
    right = img[:, -40:][far[:, -40:]].mean()
    assert left - right > 0.25 * 0.8 * 255
    assert img0[:, :40][far[:, :40]].mean() == pytest.approx(img0[:, -40:][far[:, -40:]].mean(), abs=0.5)


def test_blur_lowers_high_frequencies(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), _ = with_and_without(page, "blur", sigma=1.5)
    np.testing.assert_array_equal(ink, ink0)
    assert hf_energy(img) < 0.5 * hf_energy(img0)
    assert img.mean() == pytest.approx(img0.mean(), abs=1.5)


def test_noise_adds_uncorrelated_pixel_noise() -> None:
    blank = np.zeros((128, 128), np.float32)
    (img, _), (img0, _), _ = with_and_without(blank, "noise", sigma=0.03)
    assert np.ptp(img0) == 0
    assert img.std() == pytest.approx(0.03 * 255, rel=0.15)
    d = img - img.mean()
    assert abs((d[:, 1:] * d[:, :-1]).mean() / (d * d).mean()) < 0.1


def test_speckle_adds_small_specks_that_are_not_ink() -> None:
    blank = np.zeros((160, 160), np.float32)
    (img, ink), (img0, _), _ = with_and_without(blank, "speckle", density=5e-4, radius=1.0, dark_fraction=1.0)
    assert not ink.any()
    dark = img < img0 - 60
    assert 0 < dark.mean() < 0.05


def test_gamma_bends_the_tone_curve() -> None:
    blank = np.zeros((32, 32), np.float32)
    (img, _), (img0, _), _ = with_and_without(blank, "gamma", gamma=1.5)
    assert img0.mean() == pytest.approx(0.8 * 255, abs=0.6)
    assert img.mean() == pytest.approx(0.8**1.5 * 255, abs=0.6)


def test_jpeg_introduces_8x8_blocks(page: np.ndarray) -> None:
    params = D.draw_params(np.random.default_rng(0), page.shape, only=["texture", "jpeg"])
    params["tone"] = dict(TONE)
    params["effects"]["texture"].update(grain=0.06, grain_scale=1.5, stretch=1.0, mottle=0.0)
    params["effects"]["jpeg"]["quality"] = 15
    base = copy.deepcopy(params)
    del base["effects"]["jpeg"]

    def blockiness(img: np.ndarray) -> float:
        d = np.abs(np.diff(img.astype(np.float64), axis=1))
        at = d[:, 7::8].mean()
        within = np.delete(d, np.s_[7::8], axis=1).mean()
        return at / within

    img, _, _ = D.degrade(page, np.random.default_rng(5), params)
    img0, _, _ = D.degrade(page, np.random.default_rng(5), base)
    assert blockiness(img0) < 1.1
    assert blockiness(img) > 1.3


def test_page_edge_hides_the_page_under_a_dark_graded_background(page: np.ndarray) -> None:
    sides = {"left": {"width": 40.0, "wobble": 0.0, "tilt": 0.0}}
    (img, ink), (img0, ink0), _ = with_and_without(
        page, "page_edge", sides=sides, near=0.05, far=0.3, texture=0.0, rim="light", rim_width=3.0, rim_level=1.0
    )
    assert not ink[:, :43].any() and ink0[:, :43].any()  # past the edge (and its rim) the page is gone
    np.testing.assert_array_equal(ink[:, 46:], ink0[:, 46:])
    assert img[:, 2:6].mean() > img[:, 34:38].mean() + 0.15 * 255  # graded: far side lighter here
    assert img[:, 38:40].mean() < 0.12 * 255
    assert img[:, 41:43].mean() > 0.9 * 255  # the light rim of the paper edge
    assert np.abs(img - img0)[:, 50:].max() <= 1


def test_binding_shadow_darkens_towards_the_gutter_and_keeps_the_text(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), _ = with_and_without(
        page, "binding", side="right", pos=0.0, width=30.0, depth=0.7, power=1.5, wobble=0.0
    )
    np.testing.assert_array_equal(ink, ink0)
    paper = paper_mask(ink0)
    ratio = [img[:, c][paper[:, c]].mean() / img0[:, c][paper[:, c]].mean() for c in (199, 185, 160, 100)]
    assert ratio[0] < 0.4 and ratio[0] < ratio[1] < ratio[2] < ratio[3] and ratio[3] > 0.99
    assert (img[core_ink(ink)] < img[paper_mask(ink)].mean()).mean() > 0.95  # text still darker than its paper


def test_facing_page_sliver_is_background_with_text_past_a_gutter(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), p = with_and_without(
        page, "facing_page", side="left", width=30.0, wobble=0.0, gutter=6.0, gutter_level=0.1, paper=1.0,
        shadow=0.3, falloff=0.5, page_shadow=0.0, page_shadow_width=5.0, shift=[37, 91],
    )
    assert not ink[:, :27].any()
    np.testing.assert_array_equal(ink[:, 34:], ink0[:, 34:])
    gutter = img[:, 26:28].mean()
    assert gutter < 0.25 * 255 < img[:, 2:20].mean()
    text = np.roll(page, (37, 91), axis=(0, 1))[:, :20] > 0.9  # the facing page shows text of its own
    assert img[:, :20][text].mean() < img[:, :20][~text].mean() - 60
    assert np.abs(img - img0)[:, 40:].max() <= 1


def test_sharp_bleed_through_is_strong_sharp_and_background() -> None:
    blank = np.zeros((120, 160), np.float32)
    verso = np.zeros_like(blank)
    verso[:, :60] = 1.0
    tone = {"paper": 0.9, "ink": 0.1}
    (img, ink), (img0, _), _ = with_and_without(
        blank, "bleed_sharp", verso=verso, tone=tone, strength=0.8, sigma=0.0, flip="horizontal", dx=0.0, dy=0.0
    )
    assert not ink.any()
    # 80 % of the front ink's darkness, with a sharp edge (a few pixels wide)
    assert img[:, 110:150].mean() == pytest.approx((0.9 - 0.8 * 0.8) * 255, abs=3)
    row = img[60]
    assert np.abs(np.diff(row[96:106])).max() > 0.3 * 255


@pytest.mark.parametrize("kind", ["lines", "grid", "ledger"])
def test_rulings_are_printed_under_the_text_as_background(page: np.ndarray, kind: str) -> None:
    columns = [[120.0, True]] if kind == "ledger" else []
    (img, ink), (img0, ink0), _ = with_and_without(
        page, "rulings", rgb=True, kind=kind, colour="blue", spacing=24.0, phase=5.0, width=2.0, darkness=0.5,
        margin=None, columns=columns, unevenness=0.0,
    )
    np.testing.assert_array_equal(ink, ink0)
    on = (np.arange(192) - 5) % 24 == 0
    paper = paper_mask(ink0)
    grey, grey0 = img.mean(axis=2), img0.mean(axis=2)
    assert (grey0 - grey)[on][paper[on]].mean() > 0.2 * 255 * 0.5  # dark lines every 24 rows
    assert np.abs(grey - grey0)[~on & ~np.roll(on, 1) & ~np.roll(on, -1)][:, 140:].max() <= 2 or kind == "grid"
    line = img[on][paper[on]]
    assert line[:, 2].mean() > line[:, 0].mean() + 20  # blue
    if kind == "grid":
        assert (grey0 - grey)[:, 5][paper[:, 5]].mean() > 20  # and columns
    if kind == "ledger":
        assert (grey0 - grey)[:, 120][paper[:, 120]].mean() > 20


def test_inverted_band_spans_the_page_with_light_text(page: np.ndarray) -> None:
    (img, ink), (img0, ink0), p = with_and_without(
        page, "inverted_band", boxes=[[60, 0, 40, 200]], dark=0.1, light=0.9, soft=0.0
    )
    np.testing.assert_array_equal(ink, ink0)
    band = slice(60, 100)
    assert img[band].mean() < 100 < img0[band].mean()
    assert img[band][solid(page)[band]].mean() > img[band][blank(page)[band]].mean() + 100


def test_inverted_band_edges_fall_between_lines_of_text(page: np.ndarray) -> None:
    rows = page.sum(axis=1)
    cut = int(np.argmax(rows[40:150])) + 40  # the busiest row of a line of text: the drawn edge cuts it
    (img, ink), (img0, _), p = with_and_without(
        page, "inverted_band", boxes=[[cut, 0, 40, 200]], dark=0.1, light=0.9, soft=0.0, snap=True
    )
    changed = np.nonzero(np.abs(img - img0).reshape(len(rows), -1).max(axis=1) > 60)[0]
    top, bottom = int(changed.min()), int(changed.max()) + 1
    assert abs(top - cut) <= 40 // 3 and top != cut
    for edge in (top, bottom):  # the band's edges lie on the quietest rows near where they were drawn
        assert rows[edge] <= rows[max(0, edge - 13):edge + 14].min() + 1e-6
        assert rows[edge] < 0.2 * rows[cut]
    (img_u, _), _, _ = with_and_without(page, "inverted_band", boxes=[[cut, 0, 40, 200]], dark=0.1, light=0.9,
                                        soft=0.0)
    top_u = int(np.nonzero(np.abs(img_u - img0).reshape(len(rows), -1).max(axis=1) > 60)[0].min())
    assert abs(top_u - cut) <= 3  # unsnapped: where drawn (a row or two around it may read as changed)


def test_an_inverted_band_thinner_than_a_line_grows_to_hold_it(page: np.ndarray) -> None:
    rows = page.sum(axis=1)
    cut = int(np.argmax(rows[60:150])) + 60  # the busiest row of a line of text (below the page's rule)
    quiet = rows <= QUIET * page.shape[1]  # no letter crosses the row
    line = (int(np.flatnonzero(quiet[:cut])[-1]), cut + int(np.flatnonzero(quiet[cut:])[0]))  # its quiet rows
    (img, _), (img0, _), _ = with_and_without(
        page, "inverted_band", boxes=[[cut - 2, 0, 5, 200]], dark=0.1, light=0.9, soft=0.0, snap=True
    )
    changed = np.nonzero(np.abs(img - img0).reshape(len(rows), -1).max(axis=1) > 60)[0]
    top, bottom = int(changed.min()), int(changed.max()) + 1
    assert top <= line[0] + 1 and bottom >= line[1] - 1  # the whole line is inside: no letter cut in half
    assert bottom - top < 3 * (line[1] - line[0])  # and not much more
    assert quiet[top] and quiet[bottom]  # its edges: the first row in it and the first row after it


def test_drawn_inverted_bands_are_snapped() -> None:
    p = D.draw_params(np.random.default_rng(1), (300, 300), only=["inverted_band"])["effects"]["inverted_band"]
    assert p["snap"] is True


def test_clean_pages_are_high_contrast_with_few_effects() -> None:
    seen: set[str] = set()
    for seed in range(40):
        params = D.draw_params(np.random.default_rng(seed), (64, 64), only=list(D.EFFECTS))
        assert set(params["effects"]) <= {"clean", "affine", "warp", "blur", "noise", "jpeg", "color"}
        tone = params["tone"]
        assert tone["paper"] >= 0.8 and tone["ink"] <= 0.2
        assert params["effects"]["blur"]["sigma"] <= 1.0
        seen |= set(params["effects"])
    assert "clean" in seen
    n = sum("clean" in D.draw_params(np.random.default_rng(s), (64, 64))["effects"] for s in range(400))
    assert 0.06 < n / 400 < 0.2  # the default preset's share



def test_every_effect_has_a_documented_range_and_a_row_in_the_docs() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "degrade.md").read_text(encoding="utf-8")
    for name in D.EFFECTS:
        assert name in D.RANGES
        assert f"`{name}`" in doc, name
    for name in D.PRESETS:
        assert f"`{name}`" in doc, name


def test_draw_params_rejects_unknown_names() -> None:
    with pytest.raises(UsageError, match="unknown preset 'fancy'"):
        D.draw_params(np.random.default_rng(0), (10, 10), "fancy")
    with pytest.raises(UsageError, match="unknown effect 'sparkle'"):
        D.draw_params(np.random.default_rng(0), (10, 10), only=["sparkle"])


# --- rendering ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(R.LAYOUTS))
def test_each_layout_draws_ink_and_is_deterministic(kind: str) -> None:
    a = R.render_page(np.random.default_rng(7), (160, 180), kind=kind)
    b = R.render_page(np.random.default_rng(7), (160, 180), kind=kind)
    assert a.shape == (160, 180) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert (a > 0.5).mean() > 0.005
    np.testing.assert_array_equal(a, b)


def test_render_works_with_pillow_builtin_font_only() -> None:
    info: dict = {}
    cov = R.render_page(np.random.default_rng(1), (160, 240), kind="print", fonts=[], info=info)
    assert (cov > 0.5).mean() > 0.01
    assert info["fonts"] and set(info["fonts"]) == {"pillow-default"}


def test_handwriting_strokes_without_fonts() -> None:
    info: dict = {}
    cov = R.render_page(np.random.default_rng(2), (200, 240), kind="hand", fonts=[], info=info, xheight=12)
    assert info["hand"] == "strokes" and info["words"] > 3
    assert (cov > 0.5).mean() > 0.01
    # anti-aliased edges: intermediate coverage exists
    assert ((cov > 0.1) & (cov < 0.9)).mean() > 0.002


def test_xheight_controls_text_size() -> None:
    def ink_rows(xh: float) -> float:
        cov = R.render_page(np.random.default_rng(3), (300, 300), kind="print", fonts=[], xheight=xh)
        rows = (cov > 0.5).any(axis=1)
        return float(rows.sum()) / max(
            1, int(np.count_nonzero(np.diff(rows.astype(int)) == 1))
        )  # line height

    assert ink_rows(24) > 2 * ink_rows(8)


@pytest.mark.parametrize(
    "script,alphabet",
    [
        ("latin", "abcdefghijklmnopqrstuvwxyz"),
        ("greek", R._GREEK_VOWELS + R._GREEK_CONS + "ς"),
        ("cyrillic", R._CYR_VOWELS + R._CYR_CONS),
        ("hebrew", R._HEBREW),
        ("arabic", R._ARABIC),
    ],
)
def test_random_words_use_their_script(script: str, alphabet: str) -> None:
    rng = np.random.default_rng(0)
    words = [R.random_word(rng, script) for _ in range(50)]
    assert all(w and set(w) <= set(alphabet) for w in words)
    assert len(set(words)) > 40


def test_text_source_has_case_numbers_and_punctuation() -> None:
    words = R.TextSource(np.random.default_rng(0)).words(600)
    text = " ".join(words)
    assert any(w[:1].isupper() for w in words)
    assert any(c.isdigit() for c in text)
    assert any(c in text for c in ",.;:")


# --- sources ------------------------------------------------------------------------------------------------


def _write_clean(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    a = np.full((150, 170), 255, np.uint8)
    a[30:60, 20:150] = 0
    a[90:140, 70:80] = 0
    p = folder / "page.png"
    Image.fromarray(a).save(p)
    return p


def test_clean_folder_pages_keep_their_ink(tmp_path: Path) -> None:
    path = _write_clean(tmp_path / "clean")
    clean = np.asarray(Image.open(path)) < 128
    src = D.PageSource(clean=D.list_clean(tmp_path / "clean"))
    found = 0
    for seed in range(12):
        img, ink, params = D.make_pair(
            np.random.default_rng(seed), (100, 120), "none", source=src, disable=["affine", "warp"]
        )
        info = params["source"]
        assert info["kind"] == "clean" and info["file"].endswith("page.png")
        if info["scale"] == 1.0:
            y, x, h, w = info["crop"]
            np.testing.assert_array_equal(ink, clean[y : y + h, x : x + w])
            np.testing.assert_array_equal(img < 128, ink)
            found += 1
    assert found >= 2


def _write_dibco(root: Path) -> None:
    for s, stems in (("SetA", ["a1", "a2"]), ("SetB", ["b1"])):
        (root / s / "img").mkdir(parents=True)
        (root / s / "gt").mkdir(parents=True)
        for i, stem in enumerate(stems):
            gt = np.full((80, 90), 255, np.uint8)
            gt[10 + 5 * i : 40, 10:70] = 0
            Image.fromarray(gt).save(root / s / "gt" / f"{stem}.png")
            Image.fromarray(np.where(gt == 0, 60, 200).astype(np.uint8)).save(
                root / s / "img" / f"{stem}.png"
            )


def test_pairs_folder_ground_truth_is_re_degraded(tmp_path: Path) -> None:
    _write_dibco(tmp_path / "dibco")
    truths = D.list_pair_truths(tmp_path / "dibco")
    assert [Path(t).name for t in truths] == ["a1.png", "a2.png", "b1.png"]
    src = D.PageSource(pairs=truths)
    img, ink, params = D.make_pair(np.random.default_rng(0), (64, 64), "default", source=src)
    assert params["source"]["kind"] == "pairs"
    assert ink.any() and img.shape == ink.shape


def test_render_fraction_mixes_sources(tmp_path: Path) -> None:
    _write_clean(tmp_path / "c")
    src = D.PageSource(clean=D.list_clean(tmp_path / "c"), render_fraction=0.5)
    kinds = {
        D.make_pair(np.random.default_rng(s), (64, 64), "mild", source=src)[2]["source"]["kind"]
        for s in range(12)
    }
    assert kinds == {"clean", "render"}


def test_missing_or_empty_folders_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        D.list_clean(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        D.list_clean(tmp_path / "empty")
    with pytest.raises(DataError, match="no DIBCO-style sets"):
        D.list_pair_truths(tmp_path / "empty")


@pytest.mark.skipif(not (SHARED / "data" / "train" / "DIBCO2009").is_dir(), reason="../shared/data is absent")
def test_real_ground_truth_can_be_re_degraded() -> None:
    truths = D.list_pair_truths(SHARED / "data" / "train" / "DIBCO2009")
    assert len(truths) == 10
    src = D.PageSource(pairs=truths[:1])
    img, ink, params = D.make_pair(
        np.random.default_rng(0), (200, 200), "none", source=src, disable=["affine", "warp"]
    )
    assert ink.any() and np.array_equal(img < 128, ink)


# --- command line -------------------------------------------------------------------------------------------

ARGS = ["--size", "64..96", "--shard-size", "3"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["degrade", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _shard_bytes(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("*.tar"))]


def test_same_seed_gives_identical_shards_also_with_two_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, extra in (("a", []), ("b", []), ("c", ["--workers", "2"]), ("d", ["--seed", "1"])):
        rc, out, _ = _run(
            capsys, "--pages", "5", "--out", str(tmp_path / name / "s-%04d.tar"), "--seed", "0", *ARGS, *extra
        )
        assert rc == 0 and "pages/s" in out and "MP/s" in out
    a, b, c, d = (_shard_bytes(tmp_path / n) for n in "abcd")
    assert len(a) == 2
    assert a == b == c
    assert a != d


def test_shards_read_back_with_webdataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, _ = _run(capsys, "--pages", "4", "--out", str(tmp_path / "s-%04d.tar"), *ARGS, "--seed", "9")
    assert rc == 0
    samples = list(iter_samples(str(tmp_path / "s-{0000..0001}.tar")))
    assert [s["__key__"] for s in samples] == [D.sample_key(9, i) for i in range(4)]
    for s in samples:
        gray = Image.open(io.BytesIO(s["gray.png"]))
        gt = np.asarray(Image.open(io.BytesIO(s["bin.png"])))
        meta = json.loads(s["json"])
        assert gray.mode == "L" and gt.dtype == np.uint8
        assert set(np.unique(gt)) <= {0, 255}
        assert gray.size == (gt.shape[1], gt.shape[0]) and 64 <= min(gt.shape) <= max(gt.shape) <= 96
        assert meta["seed"] == 9 and meta["preset"] == "default" and meta["source"]["kind"] == "render"
        assert meta["size"] == list(gt.shape)


def test_rgb_option_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(
        capsys,
        "--pages",
        "2",
        "--out",
        str(tmp_path / "s-%04d.tar"),
        *ARGS,
        "--rgb",
        "--preview",
        str(tmp_path / "grid.png"),
    )
    assert rc == 0 and "preview" in out
    s = next(iter(iter_samples(str(tmp_path / "s-0000.tar"))))
    assert Image.open(io.BytesIO(s["gray.png"])).mode == "RGB"
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width > 2 * 64 and grid.height > 2 * 64


def test_preview_alone_makes_sixteen_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "--preview", str(tmp_path / "g.jpg"), "--size", "48..64", "--preset", "mild")
    assert rc == 0 and out.startswith("16 pages")
    assert Image.open(tmp_path / "g.jpg").format == "JPEG"
    assert not list(tmp_path.glob("*.tar"))


def test_cli_clean_and_pairs_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_clean(tmp_path / "clean")
    _write_dibco(tmp_path / "dibco")
    rc, _, _ = _run(
        capsys,
        "--pages",
        "6",
        "--out",
        str(tmp_path / "s-%04d.tar"),
        *ARGS,
        "--clean",
        str(tmp_path / "clean"),
        "--pairs",
        str(tmp_path / "dibco"),
    )
    assert rc == 0
    kinds = {
        json.loads(s["json"])["source"]["kind"] for s in iter_samples(str(tmp_path / "s-{0000..0001}.tar"))
    }
    assert kinds == {"clean", "pairs"}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--pages", "0", "--out", "x-%d.tar"], "--pages must be at least 1"),
        (["--pages", "-3", "--out", "x-%d.tar"], "--pages must be at least 1"),
        (["--pages", "2", "--out", "x-%d.tar", "--size", "900..100"], "MIN is larger than MAX"),
        (["--pages", "2", "--out", "x-%d.tar", "--size", "big"], "expected MIN..MAX"),
        (["--pages", "2", "--out", "x-%d.tar", "--size", "4..8"], "sides must lie in"),
        (["--pages", "2", "--out", "synth.tar"], "needs one integer field"),
        (["--pages", "2", "--out", "x-%d.tar", "--preset", "fancy"], "unknown preset 'fancy'"),
        (["--pages", "2", "--out", "x-%d.tar", "--clean", "/nonexistent/clean"], "no such directory"),
        (["--pages", "2", "--out", "x-%d.tar", "--pairs", "/nonexistent/pairs"], "no such directory"),
        (["--pages", "2", "--out", "x-%d.tar", "--workers", "0"], "--workers must be at least 1"),
        (["--pages", "2", "--out", "x-%d.tar", "--disable", "sparkle"], "unknown effect 'sparkle'"),
        (["--out", "x-%d.tar"], "--pages N is required"),
        (["--pages", "3"], "nothing to do"),
    ],
)
def test_bad_arguments_give_one_line_errors(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(capsys, *argv)
    assert rc == 2
    assert message in err
    assert err.startswith("ocrobin degrade: error:") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_forced_effects_are_on_every_page_and_the_rest_follows_the_preset() -> None:
    rng = np.random.default_rng(5)
    drawn = [D.draw_params(rng, (400, 300), "default", force=["inverted_band"], disable=["inverted"])["effects"]
             for _ in range(40)]
    assert all("inverted_band" in e for e in drawn if "clean" not in e)  # a clean page keeps its own few
    assert sum("clean" in e for e in drawn) < 15
    assert not any("inverted" in e for e in drawn)
    others = {name for e in drawn for name in e} - {"inverted_band"}
    assert len(others) > 5  # the preset's mix around it
    assert not all(e.keys() == drawn[0].keys() for e in drawn)
    with pytest.raises(UsageError, match="unknown effect"):
        D.draw_params(rng, (400, 300), force=["no_such_effect"])


def test_cli_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "--pages", "3", "--out", str(tmp_path / "f-%06d.tar"), *ARGS,
                      "--force", "inverted_band,rulings")
    assert rc == 0, err
    import tarfile

    with tarfile.open(tmp_path / "f-000000.tar") as tf:
        metas = [json.loads(tf.extractfile(m).read()) for m in tf if m.name.endswith(".json")]
    assert len(metas) == 3
    assert all({"inverted_band", "rulings"} <= set(m["effects"]) for m in metas)
    rc, _, err = _run(capsys, "--pages", "1", "--out", str(tmp_path / "g-%06d.tar"), *ARGS,
                      "--force", "rulings", "--disable", "rulings")
    assert rc == 2 and "same effect" in err
