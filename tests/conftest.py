"""Shared fixtures: the read-only ../shared folder (tests using it skip without it) and small pages."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ocrobin.batch import Claims

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCROBIN_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder with the seed model, conformance files and benchmark data."""
    if not (SHARED / "seed").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


def text_page(h: int = 96, w: int = 160, seed: int = 0) -> np.ndarray:
    """A small synthetic grey page (uint8): dark strokes on uneven light paper."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (w, h), 230)
    d = ImageDraw.Draw(img)
    for y in range(12, h - 12, 18):
        x = 8
        while x < w - 20:
            wl = int(rng.integers(6, 20))
            d.rectangle([x, y, x + wl, y + 7], outline=40, width=2)
            x += wl + 6
    a = np.asarray(img, dtype=np.float32)
    a += np.linspace(-15, 15, w)[None, :] + rng.normal(0, 4, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def page_with_band(h: int = 448, w: int = 320, seed: int = 0, uneven: bool = False
                   ) -> tuple[np.ndarray, tuple[int, int]]:
    """A text page whose rows 160..256 are a dark band holding light text (a reverse-printed heading), with a
    margin of paper between it and the text above and below (text nearer than a block may be inverted).

    ``uneven``: the band's ground darkens from right to left by 150 grey levels, so it is not a flat printed
    band (:func:`ocrobin.polarity.find_bands`) and only the block search can find it."""
    paper = np.full((32, w), 230, np.uint8)
    page = np.vstack([text_page(128, w, seed), paper, text_page(96, w, seed + 1), paper,
                      text_page(h - 288, w, seed + 2)])
    band = 255 - page[160:256].astype(np.float32) - 10
    if uneven:
        band += np.linspace(0, 150, w)[None, :]
    page[160:256] = np.clip(band, 0, 255).astype(np.uint8)
    return page, (160, 256)


@pytest.fixture
def page() -> np.ndarray:
    return text_page()


def hold_then_release(root, key, until, write=None) -> threading.Thread:
    """Hold a claim as another live run would; once ``until()`` holds and a second more, (optionally write
    the output) and release it."""
    claims = Claims(root)
    assert claims.claim(key)

    def later():
        t0 = time.monotonic()
        while not until() and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        time.sleep(1.0)
        if write is not None:
            write()
        claims.close()

    t = threading.Thread(target=later)
    t.start()
    return t
