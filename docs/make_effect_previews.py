"""Draw the effect previews of ``docs/degrade.md``: whole pages with one effect on, ground truth below.

    .venv/bin/python docs/make_effect_previews.py [EFFECT ...]     # default: every effect in EFFECTS below

Pages are rendered and degraded with only that effect (plus the random affine) from seeds 0-3, shown
whole and reduced, because several of these effects live at the page's edges.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ocrobin import degrade as D
from ocrobin.render import render_page

OUT = Path(__file__).resolve().parent / "effects"
EFFECTS = ("page_edge", "binding", "facing_page", "bleed_sharp", "rulings", "clean", "inverted_band")
SIZE = (520, 400)  # rendered page (height, width)
SCALE = 0.5


def preview(effect: str, seeds: range = range(4)) -> Image.Image:
    """One row per seed pair: degraded page above its ground truth, reduced by :data:`SCALE`."""
    tiles = []
    for seed in seeds:
        rng = np.random.default_rng([seed, 11])
        info: dict = {}
        cov = render_page(rng, SIZE, info=info)
        params = D.draw_params(rng, cov.shape, only=[effect, "affine"], rgb=True)
        verso = None
        if effect.startswith("bleed"):
            verso = render_page(rng, (SIZE[0] // 2, SIZE[1] // 2), kind=info.get("layout"),
                                xheight=info.get("xheight", 12.0) / 2)
        img, ink, _ = D.degrade(cov, rng, params, rgb=True, verso=verso)
        pair = np.vstack([img, np.full((6, img.shape[1], 3), 90, np.uint8),
                          np.repeat(np.where(ink, 0, 255).astype(np.uint8)[..., None], 3, axis=2)])
        tiles.append(Image.fromarray(pair))
    gap = 6
    w, h = tiles[0].size
    sheet = Image.new("RGB", (len(tiles) * (w + gap) + gap, h + 2 * gap), (90, 90, 90))
    for i, t in enumerate(tiles):
        sheet.paste(t, (gap + i * (w + gap), gap))
    return sheet.resize((int(sheet.width * SCALE), int(sheet.height * SCALE)), Image.Resampling.LANCZOS)


def main(names: list[str]) -> None:
    OUT.mkdir(exist_ok=True)
    for name in names or EFFECTS:
        path = OUT / f"{name}.jpg"
        preview(name).save(path, quality=82)
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
