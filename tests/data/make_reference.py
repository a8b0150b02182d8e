"""Regenerate the reference outputs that pin seeded synthetic data and the default model's result.

    .venv/bin/python tests/data/make_reference.py          # rewrite reference.json and default-model.png
    .venv/bin/python tests/data/make_reference.py --page   # also redraw clean-page.png (changes every hash)

Run it only when a change of the outputs is intended (a new effect, a new default model), and say so in
the commit: ``tests/test_reference.py`` compares against these files, so a refactor cannot quietly change
training data or results.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PAGE = HERE / "clean-page.png"
REFERENCE = HERE / "reference.json"
MODEL_OUT = HERE / "default-model.png"
#: seeds of the degraded pages pinned per preset and colour mode
SEEDS = (0, 1, 2)


def clean_page() -> np.ndarray:
    """The committed clean page as ink coverage in [0, 1] (1 = ink)."""
    return 1.0 - np.asarray(Image.open(PAGE).convert("L"), dtype=np.float32) / 255.0


def degraded(preset: str, seed: int, rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    """The page degraded with ``preset`` from ``default_rng(seed)``: (image uint8, ink bool)."""
    from ocrobin import degrade as D

    img, ink, _ = D.degrade(clean_page(), np.random.default_rng(seed), preset, rgb=rgb)
    return img, ink


def digest(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def model_input() -> np.ndarray:
    """The page the default model's reference output is made from (default preset, seed 0, grey)."""
    return degraded("default", 0, False)[0]


def main(argv: list[str]) -> None:
    from ocrobin import Binarizer
    from ocrobin.degrade import PRESETS

    if "--page" in argv:
        from ocrobin.render import render_page

        cov = render_page(np.random.default_rng(7), (256, 320), kind="mixed", xheight=11)
        Image.fromarray(np.round((1.0 - cov) * 255).astype(np.uint8)).save(PAGE)
    ref = {
        f"{preset}/{'rgb' if rgb else 'grey'}/{seed}": digest(*degraded(preset, seed, rgb))
        for preset in PRESETS for rgb in (False, True) for seed in SEEDS
    }
    REFERENCE.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    ink = Binarizer().binarize(model_input()) > 0.5
    Image.fromarray(~ink).save(MODEL_OUT)
    print(f"wrote {REFERENCE.name} ({len(ref)} hashes) and {MODEL_OUT.name} ({ink.mean():.4f} ink)")


if __name__ == "__main__":
    main(sys.argv[1:])
