"""Training patches: cutting, scaling and augmenting patches of training pages, and pages of paper only.

Everything here is a pure function of the page and the generator it is given, so a batch is a pure
function of the trainer's seed and step (see :mod:`ocrobin.train`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import models
from .degrade.frame import SIDES, beyond, edge_line
from .degrade.paper import line_coverage
from .render import smooth_noise

if TYPE_CHECKING:
    from .train import Pair


def to_u8(gray: np.ndarray) -> np.ndarray:
    """A page in [0, 1] as uint8."""
    return np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)


@dataclass
class Augment:
    """Augmentation settings (probabilities and ranges)."""

    scale: tuple[float, float] = (0.6, 1.6)
    min_range: float = 0.25
    random_invert: float = 0.0
    blur: float = 0.2
    noise: float = 0.3
    jpeg: float = 0.2
    contrast: float = 0.5
    ghost: float = 0.3
    ghost_strength: tuple[float, float] = (0.1, 0.6)
    #: show-through is seen through the paper, so it is always blurred; faint *sharp* strokes (pencil,
    #: faded ink on the front) are text and must not be learnt as paper
    ghost_blur: tuple[float, float] = (1.5, 3.5)
    blank: float = 0.03
    #: what lies around the page, added to a patch of any page (see :func:`add_frame`)
    frame: float = 0.12


def sample_patch(page: Pair, size: int, rng: np.random.Generator, aug: Augment,
                 ghost: Pair | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut one augmented patch: grey float32 in [0, 1] and ink float32, both size×size.

    Half the patches are centred on a random ink pixel, so sparse pages still teach strokes. With
    ``ghost``, the mirrored, blurred ink of that page is printed faintly into the patch (show-through
    from the back of the leaf), which must stay paper in the target.
    """
    h, w = page.gray.shape
    s = math.exp(rng.uniform(math.log(aug.scale[0]), math.log(aug.scale[1])))
    src = max(8, int(round(size / s)))
    points = page.ink_points()
    if rng.random() < 0.5 and len(points):
        cy, cx = (int(v) for v in points[rng.integers(len(points))])
        y0, x0 = cy - src // 2 + int(rng.integers(-src // 4, src // 4 + 1)), cx - src // 2 + int(
            rng.integers(-src // 4, src // 4 + 1))
    else:
        y0, x0 = int(rng.integers(-src // 4, max(1, h - src + src // 4))), int(
            rng.integers(-src // 4, max(1, w - src + src // 4)))
    g = np.full((src, src), 255, np.uint8)
    t = np.zeros((src, src), bool)
    ya, yb, xa, xb = max(0, y0), min(h, y0 + src), max(0, x0), min(w, x0 + src)
    if yb > ya and xb > xa:
        g[ya - y0:yb - y0, xa - x0:xb - x0] = page.gray[ya:yb, xa:xb]
        t[ya - y0:yb - y0, xa - x0:xb - x0] = page.ink[ya:yb, xa:xb]
    gray = g.astype(np.float32) / 255.0
    ink = t.astype(np.float32)
    if src != size:
        gt = torch.from_numpy(np.stack([gray, ink]))[None]
        r = F.interpolate(gt, size=(size, size), mode="bilinear", align_corners=False, antialias=src > size)[0]
        gray, ink = r[0].numpy(), (r[1].numpy() > 0.5).astype(np.float32)
    if rng.random() < aug.frame:
        gray, ink = add_frame(gray, ink, rng)
    if ghost is not None:
        gray = _add_ghost(gray, ink, ghost, rng, aug)
    if rng.random() < aug.contrast:
        lo, hi = float(gray.min()), float(gray.max())
        if hi - lo > 1e-3:
            span = rng.uniform(aug.min_range, 1.0)
            base = rng.uniform(0.0, 1.0 - span)
            gray = base + (gray - lo) / (hi - lo) * span
    if rng.random() < aug.blur:
        sigma = rng.uniform(0.3, 1.5)
        gray = _blur(gray, sigma)
    if rng.random() < aug.noise:
        gray = gray + rng.normal(0.0, rng.uniform(0.01, 0.08), gray.shape).astype(np.float32)
    gray = np.clip(gray, 0.0, 1.0)
    if rng.random() < aug.jpeg:
        buf = io.BytesIO()
        Image.fromarray(to_u8(gray)).save(buf, format="JPEG", quality=int(rng.integers(15, 90)))
        gray = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
    if rng.random() < aug.random_invert:
        gray = 1.0 - gray
    return gray.astype(np.float32), ink


def blank_patch(size: int, rng: np.random.Generator, page_norm: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """A page without ink: paper level, a smooth stain and grain, contrast-normalised as a whole page would be.

    Why: page normalisation stretches the texture of a blank page by its largest gain; these patches teach
    the network that stretched grain and stains are still paper.
    """
    paper = rng.uniform(0.4, 0.95)
    low = rng.normal(0.0, 1.0, (size // 32 + 2, size // 32 + 2)).astype(np.float32)
    stain = F.interpolate(torch.from_numpy(low)[None, None], size=(size, size), mode="bicubic",
                          align_corners=False)[0, 0].numpy()
    gray = paper + rng.uniform(0.0, 0.05) * stain + rng.normal(0.0, rng.uniform(0.003, 0.03), (size, size))
    gray = models.normalize_page(np.clip(gray, 0.0, 1.0).astype(np.float32), page_norm)
    return gray, np.zeros((size, size), np.float32)


def _add_ghost(gray: np.ndarray, ink: np.ndarray, ghost: Pair, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Darken ``gray`` with mirrored, blurred strokes of another page, weaker than the page's own ink."""
    size = gray.shape[0]
    gh, gw = ghost.ink.shape
    y0 = int(rng.integers(0, max(1, gh - size + 1)))
    x0 = int(rng.integers(0, max(1, gw - size + 1)))
    g = np.zeros((size, size), np.float32)
    crop = ghost.ink[y0:y0 + size, x0:x0 + size].astype(np.float32)
    g[:crop.shape[0], :crop.shape[1]] = crop
    g = _blur(g[:, ::-1].copy(), rng.uniform(*aug.ghost_blur))
    paper = float(np.percentile(gray, 90))
    ink_level = float(np.percentile(gray[ink > 0.5], 30)) if (ink > 0.5).sum() > 20 else paper - 0.5
    contrast = max(0.05, paper - ink_level)
    strength = rng.uniform(*aug.ghost_strength)
    return np.clip(gray - strength * contrast * g, 0.0, 1.0)


def _blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    k = k / k.sum()
    x = torch.from_numpy(np.ascontiguousarray(gray))[None, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x[0, 0].numpy()


def add_frame(gray: np.ndarray, ink: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add what lies around a page to a patch of a real (or synthetic) page, keeping its ground truth right.

    Why: real pages carry the ground-truth conventions the benchmarks score; giving them, too, the dark
    areas past a page edge (no ink there), binding shadows and preprinted rulings (both leave the ink as it
    is) teaches those cases with real text. One of:

    * ``edge`` (45 %): the page ends inside the patch; past a wobbling, tilted edge a dark background
      (0-0.35, graded and textured) with a light or dark rim half the time; the ground truth has no ink there;
    * ``shadow`` (30 %): a binding shadow darkening 0.2-0.85 towards one side;
    * ``rulings`` (25 %): ruled lines (a third of them squared) under the ink, 15-85 % of its darkness.
    """
    size = gray.shape[0]
    kind = ("edge", "shadow", "rulings")[int(rng.choice(3, p=[0.45, 0.3, 0.25]))]
    side = SIDES[int(rng.integers(4))]
    if kind == "edge":
        edge = edge_line(rng, size, rng.uniform(0.05, 0.6) * size, rng.uniform(0.0, 0.02) * size,
                         rng.normal(0.0, 0.05) * size)
        d = beyond(side, size, size, edge)
        near, far = rng.uniform(0.0, 0.35, 2)
        t = np.clip(d / max(1.0, float(d.max())), 0.0, 1.0)
        tex = 1.0 + rng.uniform(0.0, 0.08) * smooth_noise(rng, (size, size), float(rng.uniform(4.0, 40.0)), octaves=2)
        m = np.clip(d + 0.5, 0.0, 1.0)
        gray = gray * (1.0 - m) + np.clip((near + (far - near) * t) * tex, 0.0, 1.0) * m
        if rng.random() < 0.5:
            width, level = rng.uniform(1.0, 4.0), rng.choice([rng.uniform(0.85, 1.0), rng.uniform(0.1, 0.4)])
            r = np.clip(d + width + 0.5, 0.0, 1.0) * (d <= 0.5)
            gray = gray * (1.0 - r) + level * r
            m = np.maximum(m, r)
        return gray.astype(np.float32), (ink * (m < 0.5)).astype(np.float32)
    if kind == "shadow":
        edge = edge_line(rng, size, rng.uniform(-0.3, 0.3) * size, rng.uniform(0.0, 0.01) * size, 0.0)
        into = np.maximum(0.0, -beyond(side, size, size, edge))
        width, depth, power = rng.uniform(0.1, 1.0) * size, rng.uniform(0.2, 0.85), rng.uniform(1.0, 2.5)
        return (gray * (1.0 - depth * np.exp(-((into / width) ** power)))).astype(np.float32), ink
    paper = float(np.percentile(gray, 90))
    ink_level = float(np.percentile(gray[ink > 0.5], 30)) if (ink > 0.5).sum() > 20 else paper - 0.5
    a = math.radians(rng.normal(0.0, 1.0))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    spacing, width, phase = rng.uniform(14.0, 60.0), rng.uniform(0.6, 3.0), rng.uniform(0.0, 60.0)
    r = line_coverage(yy * math.cos(a) - xx * math.sin(a) - phase, width, spacing)
    if rng.random() < 1 / 3:
        r = np.maximum(r, line_coverage(xx * math.cos(a) + yy * math.sin(a) - phase, width, spacing))
    level = paper - rng.uniform(0.15, 0.85) * max(0.05, paper - ink_level)
    return np.minimum(gray, gray * (1.0 - r) + level * r).astype(np.float32), ink  # under the ink
