"""The synthetic test page of the benchmark scripts: lines of dark stroke 'words' on shaded, noisy paper.

Light enough in memory for a 100-MP page (float32 throughout, shading as an outer product).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def synthetic_page(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A grey page (uint8, width × height) that looks enough like text for timing a binarizer."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (width, height), 225)
    draw = ImageDraw.Draw(img)
    for top in range(40, height - 40, 36):
        x = 30
        while x < width - 80:
            word = int(rng.integers(30, 140))
            for _ in range(word // 10):
                x0 = x + int(rng.integers(0, word))
                y0 = top + int(rng.integers(2, 14))
                draw.line((x0, y0, x0 + int(rng.integers(-6, 9)), y0 + int(rng.integers(6, 18))),
                          fill=int(rng.integers(20, 70)), width=int(rng.integers(2, 4)))
            x += word + int(rng.integers(14, 30))
    a = np.asarray(img, dtype=np.float32)
    del img
    a += 18 * np.outer(np.cos(np.arange(height, dtype=np.float32) / 250.0),
                       np.sin(np.arange(width, dtype=np.float32) / 300.0))
    a += rng.standard_normal(a.shape, dtype=np.float32) * 3
    return np.clip(a, 0, 255, out=a).astype(np.uint8)


def save_page(path: str, width: int, height: int, dpi: int = 300) -> None:
    """Write :func:`synthetic_page` as a PNG (Pillow's size guard is off: the page is our own)."""
    Image.MAX_IMAGE_PIXELS = None
    Image.fromarray(synthetic_page(width, height)).save(path, dpi=(dpi, dpi))
