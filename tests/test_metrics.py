"""DIBCO metrics: conformance with the Doxa / DIBCO reference values, hand-made cases, edge conventions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrobin import metrics
from ocrobin.exceptions import InputError

# expected.json key -> attribute of metrics.Scores
EXPECTED_KEYS = {
    "accuracy": "accuracy", "fmeasure": "fm", "recall": "recall", "precision": "precision",
    "pseudo_fmeasure": "pfm", "pseudo_recall": "pseudo_recall", "pseudo_precision": "pseudo_precision",
    "mcc": "mcc", "nrm": "nrm", "psnr": "psnr", "drd": "drd",
}


@pytest.fixture(scope="module")
def conformance(shared: Path) -> dict:
    d = shared / "conformance" / "doxa-2JohnC1V3"
    if not (d / "expected.json").is_file():
        pytest.skip(f"conformance files not found in {d}")
    spec = json.loads((d / "expected.json").read_text())

    def ink(name: str) -> np.ndarray:
        with Image.open(d / name) as img:
            assert img.mode == "1"
            return ~np.asarray(img, dtype=bool)  # PBM: black pixels are text

    gt, pred = ink(spec["ground_truth"]), ink(spec["binary"])
    weights = metrics.load_weights(d / spec["pseudo_recall_weights"], d / spec["pseudo_precision_weights"],
                                   gt.shape)
    return {"spec": spec, "gt": gt, "pred": pred, "weights": weights}


def test_conformance_all_expected_values(conformance: dict) -> None:
    spec = conformance["spec"]
    assert set(spec["expected"]) <= set(EXPECTED_KEYS), "a new expected value has no mapping here"
    scores = metrics.evaluate(conformance["gt"], conformance["pred"], conformance["weights"])
    for key, want in spec["expected"].items():
        got = getattr(scores, EXPECTED_KEYS[key])
        assert got == pytest.approx(want, abs=spec["tolerance"]), key


def test_conformance_generated_weights_match_dibco_files(conformance: dict) -> None:
    gen = metrics.pseudo_weights(conformance["gt"])
    ref = conformance["weights"]
    assert gen.source == "generated"
    # The .dat files print six decimals: agreement to rounding means the same maps.
    assert np.abs(gen.recall - ref.recall).max() < 1e-6
    assert np.abs(gen.precision - ref.precision).max() < 1e-6
    got = metrics.evaluate(conformance["gt"], conformance["pred"], gen).pfm
    assert got == pytest.approx(conformance["spec"]["expected"]["pseudo_fmeasure"], abs=1e-3)


# ---------------------------------------------------------------------------- hand-made cases


def _small() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((4, 4), bool)
    gt[1, 1:4] = True  # 3 ink pixels
    pred = np.zeros((4, 4), bool)
    pred[1, 1:3] = True  # 2 hits, 1 miss
    pred[3, 0] = True  # 1 false alarm
    return gt, pred


def test_counts_and_ratios_by_hand() -> None:
    gt, pred = _small()
    c = metrics.confusion(gt, pred)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 12)
    assert metrics.precision(gt, pred) == pytest.approx(200 / 3)
    assert metrics.recall(gt, pred) == pytest.approx(200 / 3)
    assert metrics.fmeasure(gt, pred) == pytest.approx(200 / 3)
    assert metrics.accuracy(gt, pred) == pytest.approx(100 * 14 / 16)
    assert metrics.psnr(gt, pred) == pytest.approx(10 * math.log10(16 / 2))
    assert metrics.nrm(gt, pred) == pytest.approx((1 / 3 + 1 / 13) / 2)
    assert metrics.mcc(gt, pred) == pytest.approx((2 * 12 - 1 * 1) / math.sqrt(3 * 3 * 13 * 13))


def test_precision_and_recall_differ_in_the_right_direction() -> None:
    gt = np.zeros((5, 5), bool)
    gt[2, :] = True
    pred = gt.copy()
    pred[0, :] = True  # five false alarms, no miss
    assert metrics.recall(gt, pred) == 100.0
    assert metrics.precision(gt, pred) == pytest.approx(50.0)
    assert metrics.fmeasure(gt, pred) == pytest.approx(200 * 0.5 / 1.5)


def test_all_correct() -> None:
    rng = np.random.default_rng(0)
    gt = rng.random((24, 40)) < 0.3
    w = metrics.pseudo_weights(gt)
    s = metrics.evaluate(gt, gt.copy(), w)
    assert (s.fm, s.precision, s.recall, s.pfm, s.accuracy) == (100.0, 100.0, 100.0, 100.0, 100.0)
    assert s.psnr == metrics.PSNR_IDENTICAL
    assert (s.drd, s.nrm, s.mcc) == (0.0, 0.0, 1.0)


def test_all_wrong() -> None:
    rng = np.random.default_rng(1)
    gt = rng.random((24, 40)) < 0.3
    s = metrics.evaluate(gt, ~gt, metrics.pseudo_weights(gt))
    assert (s.fm, s.precision, s.recall, s.pfm, s.accuracy) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert s.psnr == pytest.approx(0.0)  # every pixel wrong: MSE 1
    assert s.nrm == pytest.approx(1.0)
    assert s.mcc == pytest.approx(-1.0)
    assert s.drd > 0


def test_empty_ground_truth_conventions() -> None:
    gt = np.zeros((16, 16), bool)
    w = metrics.pseudo_weights(gt)
    assert not w.recall.any() and not w.precision.any()
    both_empty = metrics.evaluate(gt, gt.copy(), w)
    assert (both_empty.fm, both_empty.pfm, both_empty.mcc, both_empty.drd) == (100.0, 100.0, 1.0, 0.0)
    pred = gt.copy()
    pred[3:5, 3:6] = True
    s = metrics.evaluate(gt, pred, w)
    assert (s.fm, s.precision, s.recall, s.pfm) == (0.0, 0.0, 100.0, 0.0)
    assert s.mcc == 0.0
    assert s.nrm == pytest.approx(6 / 256 / 2)
    # No mixed 8×8 block in an empty ground truth: NUBN is taken as 1, DRD is the plain sum.
    assert s.drd == pytest.approx(metrics._drd_sum(gt, np.flatnonzero(pred)))
    assert all(math.isfinite(v) for v in s.as_dict().values() if v is not None)


def test_ink_but_empty_prediction() -> None:
    gt = np.zeros((16, 16), bool)
    gt[4:8, 4:12] = True
    s = metrics.evaluate(gt, np.zeros_like(gt))
    assert (s.fm, s.precision, s.recall, s.mcc) == (0.0, 100.0, 0.0, 0.0)
    assert s.pfm is None and s.pseudo_recall is None


def test_shape_mismatch_and_bad_rank_raise() -> None:
    with pytest.raises(InputError, match="size mismatch"):
        metrics.evaluate(np.zeros((4, 5), bool), np.zeros((5, 4), bool))
    with pytest.raises(InputError, match="2-D"):
        metrics.confusion(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool))


# ---------------------------------------------------------------------------- DRD


def _drd_reference(gt: np.ndarray, pred: np.ndarray) -> float:
    """Straight transcription of the definition, pixel by pixel."""
    wm = np.zeros((5, 5))
    for y in range(5):
        for x in range(5):
            if (y, x) != (2, 2):
                wm[y, x] = 1 / math.hypot(y - 2, x - 2)
    wm /= wm.sum()
    h, w = gt.shape
    total = 0.0
    for y, x in zip(*np.nonzero(gt != pred), strict=True):
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    total += wm[dy + 2, dx + 2] * abs(int(gt[y + dy, x + dx]) - int(pred[y, x]))
    blocks = 0
    for by in range(h // 8):
        for bx in range(w // 8):
            s = gt[by * 8:by * 8 + 8, bx * 8:bx * 8 + 8].sum()
            blocks += 0 < s < 64
    return total / max(blocks, 1)


def test_drd_single_flip_in_white_area_is_one_over_nubn() -> None:
    gt = np.zeros((8, 8), bool)
    gt[0, 0] = True  # one mixed block
    pred = gt.copy()
    pred[4, 4] = True  # the whole 5×5 window is paper: DRD_k = sum of all weights = 1
    assert metrics.nubn(gt) == 1
    assert metrics.drd(gt, pred) == pytest.approx(1.0)


def test_drd_window_outside_the_page_counts_nothing() -> None:
    gt = np.zeros((8, 8), bool)
    gt[4, 4] = True
    pred = gt.copy()
    pred[0, 7] = True  # corner: only the 3×3 quarter of the window is on the page
    wm = metrics._DRD_W
    assert metrics.drd(gt, pred) == pytest.approx(wm[2:, :3].sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drd_matches_pixelwise_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.random((21, 27)) < 0.35
    pred = gt ^ (rng.random(gt.shape) < 0.15)
    assert metrics.drd(gt, pred) == pytest.approx(_drd_reference(gt, pred))


def test_nubn_ignores_partial_blocks() -> None:
    gt = np.zeros((15, 17), bool)
    gt[8:15, 0] = True  # only in the partial bottom row of blocks
    assert metrics.nubn(gt) == 0
    gt[3, 3] = True
    assert metrics.nubn(gt) == 1
    gt[:8, 8:16] = True  # a full ink block is uniform
    assert metrics.nubn(gt) == 1


# ---------------------------------------------------------------------------- pseudo-F-measure


def test_pseudo_fmeasure_with_flat_weights_equals_fmeasure() -> None:
    rng = np.random.default_rng(3)
    gt = rng.random((20, 30)) < 0.3
    pred = gt ^ (rng.random(gt.shape) < 0.1)
    flat = metrics.PseudoWeights(gt.astype(float), np.zeros(gt.shape))
    ps = metrics.pseudo_fmeasure(gt, pred, flat)
    assert ps.recall == pytest.approx(metrics.recall(gt, pred))
    assert ps.precision == pytest.approx(metrics.precision(gt, pred))
    assert ps.pfm == pytest.approx(metrics.fmeasure(gt, pred))


def test_pseudo_weights_count_as_documented() -> None:
    gt = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    w = metrics.PseudoWeights(np.array([[0.25, 0.75, 0, 0]]), np.array([[0.0, 0.0, 1.5, 0.0]]))
    ps = metrics.pseudo_fmeasure(gt, pred, w)
    assert ps.recall == pytest.approx(25.0)  # 0.25 / (0.25 + 0.75)
    assert ps.precision == pytest.approx(100 * 1 / (1 + 2.5))  # hit counts 1 + 0, false alarm 1 + 1.5
    with pytest.raises(InputError, match="weight maps"):
        metrics.pseudo_fmeasure(gt, pred, metrics.PseudoWeights(np.zeros((2, 2)), np.zeros((2, 2))))


def test_generated_weights_are_well_formed_on_awkward_pages() -> None:
    pages = {
        "single pixel": np.pad(np.ones((1, 1), bool), 5),
        "touches every border": np.pad(np.ones((4, 30), bool), ((0, 9), (0, 0))) | np.eye(13, 30, dtype=bool),
        "all ink": np.ones((9, 11), bool),
        "ring with hole": np.pad(np.pad(np.zeros((3, 3), bool), 3, constant_values=True), 4),
    }
    for name, gt in pages.items():
        w = metrics.pseudo_weights(gt)
        assert w.recall.shape == gt.shape and w.precision.shape == gt.shape, name
        assert np.all(np.isfinite(w.recall)) and np.all(np.isfinite(w.precision)), name
        assert not w.recall[~gt].any(), name  # recall weights live on the text only
        assert not w.precision[gt].any(), name  # precision weights live on the background only
        assert w.precision.min() >= 0 and w.precision.max() <= 2, name
        assert w.recall[gt].sum() > 0, name


def test_recall_weights_grow_towards_the_stroke_centre() -> None:
    gt = np.zeros((20, 40), bool)
    gt[6:13, 5:35] = True  # a 7-pixel-thick bar
    w = metrics.pseudo_weights(gt).recall
    column = w[6:13, 20]
    assert column[0] == 0 and column[-1] == 0  # contour pixels weigh nothing
    assert column[3] == column.max() > column[1] > 0


def test_weight_files_round_trip_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a = np.round(rng.random((3, 5)) * 2, 6)
    p = tmp_path / "x_RWeights.dat"
    metrics.write_weights(p, a)
    np.testing.assert_allclose(metrics.read_weights(p, (3, 5)), a, atol=1e-6)
    with pytest.raises(InputError, match="15 values, expected 16"):
        metrics.read_weights(p, (4, 4))
    bad = tmp_path / "bad.dat"
    bad.write_text("0.1 zwei 0.3\n")
    with pytest.raises(InputError, match="non-numeric"):
        metrics.read_weights(bad, (1, 3))
    with pytest.raises(InputError, match="cannot read"):
        metrics.read_weights(tmp_path / "missing.dat", (1, 3))


def test_mean_scores_skips_missing_values() -> None:
    rows = [{k: 1.0 for k in metrics.KEYS}, {**{k: 3.0 for k in metrics.KEYS}, "pfm": None}]
    mean = metrics.mean_scores(rows)
    assert mean["fm"] == 2.0 and mean["pfm"] == 1.0
    assert metrics.mean_scores([{**rows[1]}])["pfm"] is None
