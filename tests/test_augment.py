"""Training patches: what lies around a page is added with the right ground truth."""

from __future__ import annotations

import numpy as np

from ocrobin.augment import add_frame, to_u8


def _patch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ink = np.zeros((128, 128), np.float32)
    for y in range(10, 120, 16):
        ink[y:y + 3, 8:120] = 1.0
    gray = np.where(ink > 0.5, 0.2, 0.85).astype(np.float32) + rng.normal(0, 0.01, ink.shape).astype(np.float32)
    return np.clip(gray, 0, 1), ink


def test_every_kind_keeps_the_ground_truth_right() -> None:
    kinds = set()
    for seed in range(60):
        gray, ink = _patch()
        g, t = add_frame(gray.copy(), ink.copy(), np.random.default_rng(seed))
        assert g.shape == t.shape == gray.shape and g.dtype == np.float32 and t.dtype == np.float32
        assert set(np.unique(t)) <= {0.0, 1.0}
        assert (t <= ink).all()  # ink may only disappear (past a page edge), never appear
        if np.array_equal(t, ink):
            # shadows, rulings (or an edge with no text past it): the ink is where it was and no lighter
            assert (g <= gray + 1e-6)[ink > 0.5].all()
            kinds.add("photometric")
        else:
            # a page edge: where the ink went, the page is gone: dark background or its rim, no text left
            gone = (ink > 0.5) & (t < 0.5)
            assert gone.any()
            kinds.add("edge")
    assert kinds == {"photometric", "edge"}


def test_to_u8_rounds_and_clips() -> None:
    assert to_u8(np.array([-0.1, 0.0, 0.5, 1.0, 1.2])).tolist() == [0, 0, 128, 255, 255]
